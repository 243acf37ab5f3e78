//! The pause gate's unit tests.

use super::*;
use crate::worker::circuit::Fault;

fn refused(g: &mut Gate, code: &'static str, probe: Option<u64>, now: Instant) -> Option<Change> {
    let report = g.report("a", "s", Signal::Refused(code), probe, now);
    assert!(report.paused);
    report.change
}

fn accepted(g: &mut Gate) -> Option<Change> {
    g.report("a", "s", Signal::Answered, None, Instant::now())
        .change
}

#[test]
fn a_refusal_pauses_and_one_probe_at_a_time_backs_off_to_a_minute() {
    let t0 = Instant::now();
    let mut g = Gate::default();
    assert_eq!(g.turn("a", t0), Turn::Go);
    assert_eq!(
        refused(&mut g, "SignatureDoesNotMatch", None, t0),
        Some(Change::Paused {
            code: "SignatureDoesNotMatch".into(),
            why: Why::Credentials,
        })
    );
    // Other accounts keep running; calls already under way change nothing.
    assert_eq!(g.turn("b", t0), Turn::Go);
    assert_eq!(refused(&mut g, "SignatureDoesNotMatch", None, t0), None);
    assert_eq!(
        g.turn("a", t0),
        Turn::WaitUntil(t0 + Duration::from_secs(1))
    );
    let mut now = t0 + Duration::from_secs(1);
    let mut waits = Vec::new();
    for _ in 0..8 {
        let Turn::Probe(id) = g.turn("a", now) else {
            panic!("a probe is due")
        };
        assert_eq!(g.turn("a", now), Turn::Wait, "one probe at a time");
        assert_eq!(
            refused(&mut g, "SignatureDoesNotMatch", Some(id), now),
            None
        );
        let Turn::WaitUntil(next) = g.turn("a", now) else {
            panic!()
        };
        waits.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(g.next_probe_in("a", now), Some(Duration::ZERO));
    assert_eq!(
        g.next_probe_in("a", now - Duration::from_secs(10)),
        Some(Duration::from_secs(10))
    );
    assert_eq!(g.next_probe_in("b", now), None, "not paused");
    assert_eq!(
        g.paused(),
        [("a".to_owned(), "SignatureDoesNotMatch".to_owned())]
    );
    let Turn::Probe(_) = g.turn("a", now) else {
        panic!()
    };
    assert_eq!(
        accepted(&mut g),
        Some(Change::Resumed {
            code: "SignatureDoesNotMatch".into()
        })
    );
    assert_eq!(g.turn("a", now), Turn::Go);
    assert!(g.paused().is_empty());
    assert_eq!(accepted(&mut g), None);
}

#[test]
fn an_abandoned_probe_lets_the_next_waiter_probe() {
    let t0 = Instant::now();
    let mut g = Gate::default();
    refused(&mut g, "InvalidSecurityToken.Expired", None, t0);
    let later = t0 + Duration::from_secs(5);
    let Turn::Probe(first) = g.turn("a", later) else {
        panic!()
    };
    g.abandon("a", first);
    let Turn::Probe(second) = g.turn("a", later) else {
        panic!()
    };
    assert_ne!(first, second);
    // A stale abandon (of the first probe) does not free the second's place.
    g.abandon("a", first);
    assert_eq!(g.turn("a", later), Turn::Wait);
    assert_eq!(g.next_probe_in("a", later), None, "a probe is in flight");
}

#[test]
fn an_open_circuit_pauses_lets_only_the_probe_leave_and_an_answer_closes_it() {
    let t0 = Instant::now();
    let mut g = Gate::default();
    let down = Signal::Fault(Fault {
        code: "Transport.Connect",
        unreachable: true,
    });
    assert!(!g.report("a", "s1", down, None, t0).paused);
    assert!(!g.report("a", "s2", down, None, t0).paused);
    assert!(g.may_leave("a", None));
    let opened = g.report("a", "s3", down, None, t0);
    assert!(opened.paused, "the call that opened it spends no budget");
    assert_eq!(
        opened.change,
        Some(Change::Paused {
            code: "Transport.Connect".into(),
            why: Why::Circuit
        })
    );
    // A call that took its turn before the pause stays home; one under way changes nothing
    // but spends no budget either.
    assert!(!g.may_leave("a", None));
    assert!(g.may_leave("b", None));
    assert_eq!(
        g.report("a", "s4", down, None, t0),
        Report {
            change: None,
            paused: true
        }
    );
    let later = t0 + Duration::from_secs(1);
    let Turn::Probe(id) = g.turn("a", later) else {
        panic!("a probe is due")
    };
    assert!(g.may_leave("a", Some(id)));
    // A failed probe backs off, now with the storm's code.
    let storm = Signal::Fault(Fault {
        code: "ServiceUnavailable",
        unreachable: false,
    });
    assert!(g.report("a", "s1", storm, Some(id), later).paused);
    assert_eq!(
        g.turn("a", later),
        Turn::WaitUntil(later + Duration::from_secs(2))
    );
    assert_eq!(
        g.paused(),
        [("a".to_owned(), "ServiceUnavailable".to_owned())]
    );
    // Any answer of the API itself closes it, and the streak starts afresh.
    let report = g.report("a", "s1", Signal::Answered, None, later);
    assert_eq!(
        report.change,
        Some(Change::Resumed {
            code: "ServiceUnavailable".into()
        })
    );
    assert!(!report.paused);
    assert!(!g.report("a", "s1", down, None, later).paused);
}

#[test]
fn a_reachable_endpoint_brings_the_next_probe_forward_but_never_a_second_probe() {
    let t0 = Instant::now();
    let mut g = Gate::default();
    assert!(
        !g.probe_now("a", t0),
        "not paused: nothing to bring forward"
    );
    refused(&mut g, "Transport.Connect", None, t0);
    // Backed off: the next probe is a minute away.
    let mut now = t0 + Duration::from_secs(1);
    for _ in 0..7 {
        let Turn::Probe(id) = g.turn("a", now) else {
            panic!("a probe is due")
        };
        refused(&mut g, "Transport.Connect", Some(id), now);
        now += g.next_probe_in("a", now).unwrap();
    }
    now -= Duration::from_millis(59_900);
    assert_eq!(
        g.next_probe_in("a", now),
        Some(Duration::from_millis(59_900))
    );
    assert!(g.probe_now("a", now));
    assert_eq!(g.next_probe_in("a", now), Some(Duration::ZERO));
    let Turn::Probe(id) = g.turn("a", now) else {
        panic!("the probe is due at once")
    };
    // One probe at a time: bringing it forward again starts no second one.
    assert!(!g.probe_now("a", now), "a probe is in flight");
    assert_eq!(g.turn("a", now), Turn::Wait);
    // The probe failed after all: the backoff goes on from where it was.
    refused(&mut g, "Transport.Connect", Some(id), now);
    assert_eq!(
        g.turn("a", now),
        Turn::WaitUntil(now + Duration::from_secs(60))
    );
    // Due already: stays due, not moved later.
    let later = now + Duration::from_secs(90);
    assert!(g.probe_now("a", later));
    assert_eq!(g.next_probe_in("a", later), Some(Duration::ZERO));
    assert_eq!(g.turn("b", later), Turn::Go, "other accounts untouched");
}
