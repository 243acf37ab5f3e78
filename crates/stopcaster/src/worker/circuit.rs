//! When an account's calls fail for the world's reasons rather than the job's, the account's
//! circuit opens: the account pauses (see [`super::pause`]) and its jobs wait, their budget
//! untouched, instead of each spending its own attempts against the same dead endpoint.
//!
//! The rule, a pure function of the account's recent results ([`Streak`]):
//!
//! - Every settled call is read as a [`Signal`]. An answer from the API itself that is not a
//!   5xx (a success, a 4xx, throttling, a refusal of the credentials) says the endpoint works:
//!   it ends the streak. A failure with no answer, or a 5xx, is a fault and extends it.
//! - A fault is *unreachable* when the request never reached the API (connection refused or
//!   reset while connecting, DNS, TLS): no studio can cause that. It is *reached* when it may
//!   have (a 5xx, a timeout, an answer lost): a single studio could cause that.
//! - The circuit opens on the [`STREAK`]th fault in a row within [`WINDOW`] (older faults drop
//!   out of the streak), if the streak's last [`STREAK`] faults are all unreachable, or name at
//!   least two different studios.
//!
//! So a dead, untrusted or unresolvable endpoint opens it after three calls, whoever made
//! them; a storm of 5xx or timeouts opens it as soon as it spans two studios; and a studio
//! that answers 500 every time while the account's other calls succeed never opens it (each
//! success ends its streak, and alone it is one studio): it is dead-lettered after
//! `STOPCASTER_MAX_ATTEMPTS`, as before. A mixed picture (one failing studio and another's
//! passing 5xx with no success between) may open it: then the next probe's answer decides,
//! and a success closes it again at once.

use std::collections::VecDeque;
use std::time::Duration;

use stopcaster_live::outcome::is_throttling;
use stopcaster_live::{CallOutcome, TransportKind};
use tokio::time::Instant;

/// Faults in a row that open the circuit.
pub(super) const STREAK: usize = 3;

/// Faults older than this before the newest no longer count in its streak.
pub(super) const WINDOW: Duration = Duration::from_secs(60);

/// What a settled call says of its account's endpoint and credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Signal<'a> {
    /// An answer from the API itself, other than a 5xx: the account works.
    Answered,
    /// The credentials or the clock were refused with this code: the account pauses at once.
    Refused(&'a str),
    /// The world failed the call: no answer, or a 5xx.
    Fault(Fault<'a>),
}

/// A call the world failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fault<'a> {
    /// The code the account pauses with (`Transport.Connect`, `ServiceUnavailable`, ...).
    pub code: &'a str,
    /// The request never reached the API, so the studio cannot be its cause.
    pub unreachable: bool,
}

/// Reads a call's outcome as a [`Signal`].
pub(super) fn signal(outcome: &CallOutcome) -> Signal<'_> {
    match outcome {
        CallOutcome::CredentialsRefused(e) => Signal::Refused(&e.code),
        CallOutcome::Transport(t) => Signal::Fault(Fault {
            code: t.code(),
            unreachable: matches!(
                t.kind,
                TransportKind::Connect | TransportKind::Dns | TransportKind::Tls
            ),
        }),
        CallOutcome::Retryable(e) if e.http_status >= 500 && !is_throttling(&e.code) => {
            Signal::Fault(Fault {
                code: &e.code,
                unreachable: false,
            })
        }
        _ => Signal::Answered,
    }
}

/// One fault in a streak.
#[derive(Clone, Debug)]
struct Entry {
    at: Instant,
    studio: String,
    unreachable: bool,
}

/// An account's faults in a row, newest last.
#[derive(Clone, Debug, Default)]
pub(super) struct Streak {
    faults: VecDeque<Entry>,
}

impl Streak {
    /// An answer from the API ends the streak.
    pub(super) fn answered(&mut self) {
        self.faults.clear();
    }

    /// Adds a fault of a call for `studio` at `at`; true if the circuit opens.
    pub(super) fn fault(&mut self, studio: &str, fault: Fault<'_>, at: Instant) -> bool {
        self.faults
            .retain(|e| at.saturating_duration_since(e.at) <= WINDOW);
        self.faults.push_back(Entry {
            at,
            studio: studio.to_owned(),
            unreachable: fault.unreachable,
        });
        while self.faults.len() > STREAK {
            self.faults.pop_front();
        }
        if self.faults.len() < STREAK {
            return false;
        }
        let first = &self.faults[0].studio;
        self.faults.iter().all(|e| e.unreachable) || self.faults.iter().any(|e| &e.studio != first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stopcaster_live::{ApiError, TransportError};

    const REFUSED: Fault<'static> = Fault {
        code: "Transport.Connect",
        unreachable: true,
    };
    const E500: Fault<'static> = Fault {
        code: "InternalError",
        unreachable: false,
    };

    fn api(status: u16, code: &str) -> CallOutcome {
        let e = ApiError {
            http_status: status,
            code: code.into(),
            message: String::new(),
            request_id: None,
            host_id: None,
            recommend: None,
        };
        match status {
            500.. => CallOutcome::Retryable(e),
            _ if is_throttling(code) => CallOutcome::Retryable(e),
            _ => CallOutcome::Permanent(e),
        }
    }

    fn transport(kind: TransportKind) -> CallOutcome {
        CallOutcome::Transport(TransportError {
            kind,
            message: String::new(),
        })
    }

    #[test]
    fn outcomes_read_as_signals() {
        for (kind, code) in [
            (TransportKind::Connect, "Transport.Connect"),
            (TransportKind::Dns, "Transport.Dns"),
            (TransportKind::Tls, "Transport.Tls"),
        ] {
            assert_eq!(
                signal(&transport(kind)),
                Signal::Fault(Fault {
                    code,
                    unreachable: true
                })
            );
        }
        for kind in [TransportKind::Timeout, TransportKind::Lost] {
            assert!(matches!(
                signal(&transport(kind)),
                Signal::Fault(Fault {
                    unreachable: false,
                    ..
                })
            ));
        }
        assert_eq!(
            signal(&api(503, "ServiceUnavailable")),
            Signal::Fault(Fault {
                code: "ServiceUnavailable",
                unreachable: false
            })
        );
        assert!(matches!(
            signal(&api(502, "UnexpectedResponse")),
            Signal::Fault(_)
        ));
        // Throttling is the pacer's business, whatever its status; a 4xx is the job's.
        assert_eq!(signal(&api(503, "Throttling")), Signal::Answered);
        assert_eq!(signal(&api(400, "Throttling.User")), Signal::Answered);
        assert_eq!(
            signal(&api(404, "InvalidCaster.NotFound")),
            Signal::Answered
        );
        let refused = CallOutcome::CredentialsRefused(match api(400, "SignatureDoesNotMatch") {
            CallOutcome::Permanent(e) => e,
            _ => unreachable!(),
        });
        assert_eq!(signal(&refused), Signal::Refused("SignatureDoesNotMatch"));
        let ok = CallOutcome::Stopped {
            request_id: "R".into(),
            http_status: 200,
        };
        assert_eq!(signal(&ok), Signal::Answered);
    }

    #[test]
    fn a_dead_endpoint_opens_on_the_third_call_whoever_made_them() {
        let t = Instant::now();
        let mut s = Streak::default();
        assert!(!s.fault("a", REFUSED, t));
        assert!(!s.fault("a", REFUSED, t));
        assert!(
            s.fault("a", REFUSED, t),
            "one studio cannot refuse a connection"
        );
    }

    #[test]
    fn one_studio_failing_while_others_succeed_never_opens() {
        let t = Instant::now();
        let mut s = Streak::default();
        for _ in 0..20 {
            assert!(!s.fault("bad", E500, t));
            s.answered();
        }
        // Alone, however long: one studio, so the job's own budget decides.
        for _ in 0..20 {
            assert!(!s.fault("bad", E500, t));
        }
    }

    #[test]
    fn five_hundreds_across_studios_open() {
        let t = Instant::now();
        let mut s = Streak::default();
        assert!(!s.fault("a", E500, t));
        assert!(!s.fault("a", E500, t));
        assert!(s.fault("b", E500, t));
        let mut s = Streak::default();
        assert!(!s.fault("a", E500, t));
        assert!(!s.fault("b", E500, t));
        s.answered();
        assert!(!s.fault("c", E500, t), "an answer ends the streak");
        assert!(!s.fault("d", E500, t));
        assert!(s.fault("e", E500, t));
    }

    #[test]
    fn old_faults_drop_out_of_the_streak() {
        let t = Instant::now();
        let mut s = Streak::default();
        assert!(!s.fault("a", REFUSED, t));
        assert!(!s.fault("b", REFUSED, t));
        let later = t + WINDOW + Duration::from_secs(1);
        assert!(!s.fault("c", REFUSED, later));
        assert!(!s.fault("d", REFUSED, later));
        assert!(s.fault("e", REFUSED, later));
    }

    #[test]
    fn a_mixed_streak_of_one_studio_does_not_open() {
        let t = Instant::now();
        let mut s = Streak::default();
        assert!(!s.fault("a", E500, t));
        assert!(!s.fault("a", REFUSED, t));
        assert!(!s.fault("a", E500, t));
        // The last three are one studio and not all unreachable; another studio's fault opens.
        assert!(s.fault("b", REFUSED, t));
    }
}
