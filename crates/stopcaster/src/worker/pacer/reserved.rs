//! A reserved slot that gives itself back: a job that takes a slot and then does not call
//! (shutdown, no credentials, another worker holds the job, the database away) must not leave
//! a hole in the schedule, whichever way it leaves.

use std::ops::Deref;

use super::{Pacer, PacerError, Slot, SlotToken};

/// A slot reserved for a call. Hand it back with [`Reserved::release`] where the caller can
/// wait for it (so its next reservation comes after); dropped unreleased and unspent (a `?`, a
/// cancelled future) it hands itself back on a task of its own. [`Reserved::spend`] as the
/// call leaves: a spent slot is the schedule's, never handed back.
pub struct Reserved<'a> {
    pacer: &'a Pacer,
    slot: Option<Slot>,
}

impl Pacer {
    /// [`Pacer::acquire_from`], the slot held by a guard that gives it back unless spent.
    pub async fn reserve(
        &self,
        account: &str,
        not_before: Option<time::OffsetDateTime>,
    ) -> Result<Reserved<'_>, PacerError> {
        let slot = self.acquire_from(account, not_before).await?;
        Ok(Reserved {
            pacer: self,
            slot: Some(slot),
        })
    }
}

impl Reserved<'_> {
    /// Hands the slot back and waits until the schedule has it.
    pub async fn release(mut self) {
        if let Some(slot) = self.slot.take() {
            self.pacer.release(slot).await;
        }
    }

    /// The call is leaving: the slot is used, the guard disarmed.
    pub fn spend(mut self) -> Slot {
        self.slot.take().expect("a reserved slot is spent once")
    }
}

impl Deref for Reserved<'_> {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        self.slot
            .as_ref()
            .expect("a reserved slot is read before it is spent")
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        if let (Pacer::Local(p), SlotToken::Local { account, slot }) = (self.pacer, &slot.token) {
            p.release(account, *slot);
            return;
        }
        let pacer = self.pacer.clone();
        // The shared pacer hands back with a statement, which needs the runtime; without one
        // (the process is ending) the slot is lost, as a stopped process's slot always was.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { pacer.release(slot).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LocalPacer, Rate};
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_dropped_or_released_slot_goes_back_and_a_spent_one_stays_taken() {
        let pacer = Pacer::Local(LocalPacer::new(|_| Rate::new(10)));
        let first = pacer.reserve("a", None).await.unwrap().spend();
        let dropped = pacer.reserve("a", None).await.unwrap().at;
        // The dropped slot is handed out again (as late as the clock has moved since: a timer
        // tick), not the one a period after it; then so is the released one.
        let period = Rate::new(10).period();
        let again = pacer.reserve("a", None).await.unwrap();
        assert!(again.at < dropped + period / 10, "{:?}", again.at - dropped);
        let released = again.at;
        again.release().await;
        let spent = pacer.reserve("a", None).await.unwrap().spend();
        assert!(spent.at < released + period / 10);
        assert!(spent.at >= first.at + period);
        // A spent slot is not handed back: the next one comes after it.
        let next = pacer.reserve("a", None).await.unwrap();
        assert!(next.at > spent.at);
    }
}
