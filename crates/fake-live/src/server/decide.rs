//! What the stand-in answers a call, decided under the state lock: steps 9 to 14 of the checks
//! documented on the crate (nonce, throttle, faults, the studio), and STS's own checks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::shared::Shared;
use crate::identity::Identity;
use crate::protocol::Refusal;
use crate::state::{self, State, StopResult};
use crate::verify::{self, Action, Verified};
use crate::{Fault, sts};

/// What the server decided for one call, before any latency is added.
pub(super) enum Answer {
    Stopped,
    /// An STS action's JSON answer.
    Sts(Vec<u8>),
    Refused(Refusal),
    Html502,
    /// Close the connection without answering.
    Drop,
}

pub(super) struct Decision {
    pub(super) answer: Answer,
    pub(super) delay: Duration,
    pub(super) admitted: bool,
    pub(super) fault: Option<Fault>,
}

impl Decision {
    fn refused(refusal: Refusal) -> Self {
        Self {
            answer: Answer::Refused(refusal),
            delay: Duration::ZERO,
            admitted: false,
            fault: None,
        }
    }
}

/// What a call's decision reads besides the state.
pub(super) struct Call<'a> {
    pub(super) identity: &'a Identity,
    pub(super) params: &'a BTreeMap<String, String>,
    pub(super) request_id: &'a str,
    pub(super) wall_now: OffsetDateTime,
}

/// Steps 9 to 14 (and STS's own checks), under the state lock.
pub(super) fn decide(
    st: &mut State,
    qps: u32,
    fail_rate: f64,
    verified: &Result<Verified<'_>, Refusal>,
    call: &Call<'_>,
    now: Instant,
) -> Decision {
    let v = match verified {
        Ok(v) => v,
        Err(refusal) => return Decision::refused(refusal.clone()),
    };
    // Only a proven caller consumes a nonce, so a forged request cannot burn someone's nonce.
    if !st.nonces.check_and_insert(
        v.access_key_id,
        v.nonce,
        v.timestamp,
        call.wall_now.unix_timestamp(),
    ) {
        return Decision::refused(Refusal::NonceUsed);
    }
    let sts_answer = |result: Result<Vec<u8>, Refusal>| Decision {
        answer: result.map_or_else(Answer::Refused, Answer::Sts),
        delay: Duration::ZERO,
        admitted: false,
        fault: None,
    };
    match v.action {
        Action::StopCaster => {}
        Action::AssumeRole => {
            return sts_answer(sts::assume_role(
                call.identity,
                &v.caller,
                call.params,
                call.request_id,
                call.wall_now,
            ));
        }
        Action::GetCallerIdentity => {
            return sts_answer(Ok(sts::get_caller_identity(&v.caller, call.request_id)));
        }
        // Unsigned: decided before any of this, in `rpc`.
        Action::AssumeRoleWithOidc => return Decision::refused(Refusal::InvalidAction),
    }
    // Alibaba counts the quota per account: every key of one UID, temporary keys included.
    if !st.throttle.admit(&v.caller.account, now, qps) {
        return Decision::refused(Refusal::Throttled);
    }
    let caster_id = verify::param(call.params, "CasterId").unwrap_or_default();
    let fault = st.faults.pop_front();
    let mut decision = Decision {
        answer: Answer::Stopped,
        delay: Duration::ZERO,
        admitted: true,
        fault,
    };
    decision.answer = match fault {
        Some(Fault::Status503) => Answer::Refused(Refusal::ServiceUnavailable),
        Some(Fault::Status500InternalError) => Answer::Refused(Refusal::InternalError),
        Some(Fault::Throttle) => Answer::Refused(Refusal::Throttled),
        Some(Fault::Html502) => Answer::Html502,
        Some(Fault::DropConnection) => Answer::Drop,
        Some(Fault::Delay(d)) => {
            decision.delay = d;
            stop(st, caster_id)
        }
        Some(Fault::StopThenDrop) => {
            // The studio's fate is sealed before the answer is lost.
            let _ = stop(st, caster_id);
            Answer::Drop
        }
        None if fail_rate > 0.0 && rand::random::<f64>() < fail_rate => {
            Answer::Refused(Refusal::ServiceUnavailable)
        }
        None => stop(st, caster_id),
    };
    decision
}

/// `AssumeRoleWithOIDC`, which no signature guards: STS's checks against the token file, read
/// afresh now because the file rotates (Kubernetes replaces it hourly).
pub(super) async fn assume_role_with_oidc(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    request_id: &str,
    wall_now: OffsetDateTime,
) -> Answer {
    if let Err(refusal) = verify::check_required(Action::AssumeRoleWithOidc, params) {
        return Answer::Refused(refusal);
    }
    let expected = match &shared.oidc_token_file {
        None => None,
        Some(path) => match tokio::fs::read_to_string(path).await {
            Ok(token) => Some(token),
            Err(e) => {
                // The path and the error only: the token is a credential.
                tracing::warn!(path = %path.display(), error = %e, "fake-live cannot read its OIDC token file");
                return Answer::Refused(Refusal::OidcTokenFileUnreadable);
            }
        },
    };
    match sts::assume_role_with_oidc(
        &shared.identity,
        params,
        expected.as_deref(),
        request_id,
        wall_now,
    ) {
        Ok(body) => Answer::Sts(body),
        Err(refusal) => Answer::Refused(refusal),
    }
}

/// Steps 12 to 14: what the studio itself says.
fn stop(st: &mut State, caster_id: &str) -> Answer {
    if !state::well_formed_caster_id(caster_id) {
        return Answer::Refused(Refusal::CasterIdMalformed);
    }
    match st.studios.stop(caster_id) {
        StopResult::Stopped => Answer::Stopped,
        StopResult::AlreadyStopped => Answer::Refused(Refusal::IncorrectSceneStatus),
        StopResult::NotFound => Answer::Refused(Refusal::CasterNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{base, check, identity, signed};

    #[test]
    fn decision_pipeline() {
        let now = OffsetDateTime::now_utc();
        let k = identity();
        let mut st = State::new(None);
        let t = Instant::now();
        let call = |st: &mut State, nonce: &str, caster: &str, qps: u32| {
            let mut p = base(now);
            p.insert("SignatureNonce".into(), nonce.into());
            p.insert("CasterId".into(), caster.into());
            let p = signed("POST", "sk", p);
            let c = Call {
                identity: &k,
                params: &p,
                request_id: "RID",
                wall_now: now,
            };
            let d = decide(st, qps, 0.0, &check(&k, "POST", &p, now), &c, t);
            match d.answer {
                Answer::Stopped => "ok",
                Answer::Sts(_) => "sts",
                Answer::Refused(r) => r.code(),
                Answer::Html502 => "html502",
                Answer::Drop => "drop",
            }
        };
        assert_eq!(call(&mut st, "a", "c1", 10), "ok");
        assert_eq!(call(&mut st, "a", "c2", 10), "SignatureNonceUsed");
        assert_eq!(call(&mut st, "b", "c1", 10), "IncorrectSceneStatus");
        assert_eq!(
            call(&mut st, "c", "bad id", 10),
            "InvalidCasterId.Malformed"
        );
        st.faults
            .extend([Fault::StopThenDrop, Fault::Status503, Fault::Html502]);
        assert_eq!(call(&mut st, "d", "c3", 10), "drop");
        assert_eq!(st.studios.get("c3"), Some(crate::StudioState::Stopped));
        assert_eq!(call(&mut st, "e", "c4", 10), "ServiceUnavailable");
        assert_eq!(st.studios.get("c4"), None, "a 503 stops nothing");
        assert_eq!(call(&mut st, "f", "c4", 10), "html502");
        assert_eq!(call(&mut st, "g", "c4", 10), "ok");
        // Same instant, qps 7 already used up by the seven admitted calls above.
        st.faults.push_back(Fault::DropConnection);
        assert_eq!(call(&mut st, "h", "c5", 7), "Throttling.User");
        assert_eq!(st.faults.len(), 1, "a throttled call consumes no fault");
    }
}
