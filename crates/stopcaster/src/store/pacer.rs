//! The shared pacer's schedule, one row per account in `stopcaster_pacer`. Why the schedule is
//! kept this way (a GCRA whose theoretical arrival time lives in the row, on the database's
//! clock) is explained in [`crate::worker::pacer`], the only caller.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

/// Slots of the shared schedule, on the database's clock: `count` of them, `step` apart from
/// `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub first: OffsetDateTime,
    pub step: time::Duration,
    pub count: u32,
    /// The database's clock when it handed the slots out.
    pub now: OffsetDateTime,
}

impl Reservation {
    /// The slots, earliest first.
    pub(crate) fn slots(&self) -> impl Iterator<Item = OffsetDateTime> + use<> {
        let Reservation { first, step, .. } = *self;
        (0..self.count).map(move |i| first + step * i)
    }
}

/// Takes the next `count` slots of `account`'s shared schedule: the first now if the schedule
/// is idle (`tat` not after now), else at least `lead` from now; and no earlier than
/// `not_before` when given (a scheduled job's due time, reserved ahead so that its call leaves
/// at that time; `greatest` ignores a NULL). The same rule as `worker::pacer::earliest_slot`.
/// `last_slot` is the last of them, so the one a process hands back last still closes the gap.
pub(crate) async fn reserve_pacer_slots(
    pool: &PgPool,
    account: &str,
    period: Duration,
    recovery_step: f64,
    lead: Duration,
    not_before: Option<OffsetDateTime>,
    count: u32,
) -> Result<Reservation, sqlx::Error> {
    let count = count.max(1);
    loop {
        let row = sqlx::query!(
            r#"UPDATE stopcaster_pacer p
             SET last_slot = greatest(p.tat, c.now + CASE WHEN p.tat > c.now
                     THEN make_interval(secs => $4) ELSE interval '0' END, $5::timestamptz)
                       + make_interval(secs => $2 * p.slowdown * ($6::float8 - 1)),
                 tat = greatest(p.tat, c.now + CASE WHEN p.tat > c.now
                     THEN make_interval(secs => $4) ELSE interval '0' END, $5::timestamptz)
                       + make_interval(secs => $2 * p.slowdown * $6::float8),
                 slowdown = greatest(1.0, p.slowdown - $3::float8 * $6::float8)
             FROM (SELECT clock_timestamp() AS now) c
             WHERE p.account = $1
             RETURNING p.last_slot AS "last_slot!", p.tat AS "tat!", c.now AS "now!""#,
            account,
            period.as_secs_f64(),
            recovery_step,
            lead.as_secs_f64(),
            not_before,
            f64::from(count),
        )
        .fetch_optional(pool)
        .await?;
        if let Some(row) = row {
            let step = row.tat - row.last_slot;
            return Ok(Reservation {
                first: row.last_slot - step * (count - 1),
                step,
                count,
                now: row.now,
            });
        }
        sqlx::query!(
            "INSERT INTO stopcaster_pacer (account) VALUES ($1) ON CONFLICT DO NOTHING",
            account,
        )
        .execute(pool)
        .await?;
    }
}

/// Gives a slot back if nobody reserved after it, so an unused slot leaves no gap.
pub(crate) async fn release_pacer_slot(
    pool: &PgPool,
    account: &str,
    slot: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE stopcaster_pacer SET tat = last_slot WHERE account = $1 AND last_slot = $2",
        account,
        slot,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves `account`'s schedule back by `by` (a call left that much after its slot).
pub(crate) async fn push_back_pacer(
    pool: &PgPool,
    account: &str,
    by: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE stopcaster_pacer SET tat = tat + make_interval(secs => $2) WHERE account = $1",
        account,
        by.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Slows `account` down after a throttled call, at most once per `pause` however many workers
/// report it: pushes the schedule back by `pause` and multiplies `slowdown`.
pub(crate) async fn throttle_pacer(
    pool: &PgPool,
    account: &str,
    pause: Duration,
    factor: f64,
    max_slowdown: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE stopcaster_pacer
         SET tat = greatest(tat, clock_timestamp()) + make_interval(secs => $2),
             slowdown = least($4, slowdown * $3),
             throttled_at = clock_timestamp()
         WHERE account = $1
           AND (throttled_at IS NULL OR throttled_at < clock_timestamp() - make_interval(secs => $2))",
        account,
        pause.as_secs_f64(),
        factor,
        max_slowdown,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The pacer row of an account: (schedule, slowdown).
pub async fn pacer_state(
    pool: &PgPool,
    account: &str,
) -> Result<Option<(OffsetDateTime, f64)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT tat, slowdown FROM stopcaster_pacer WHERE account = $1",
        account,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.tat, r.slowdown)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_lists_its_slots_a_step_apart_from_the_first() {
        let first = time::macros::datetime!(2026-12-03 12:00:00 UTC);
        let reservation = Reservation {
            first,
            step: time::Duration::microseconds(10),
            count: 3,
            now: first,
        };
        let slots: Vec<_> = reservation.slots().collect();
        assert_eq!(
            slots,
            [
                first,
                first + time::Duration::microseconds(10),
                first + time::Duration::microseconds(20)
            ]
        );
    }
}
