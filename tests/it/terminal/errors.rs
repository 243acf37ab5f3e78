//! Errors at the terminal: one line naming the server and the cause, at once; a missing database
//! suggests `migrate`; refused credentials say so; the full chain at debug level; arguments
//! refused in words.

use super::*;

#[test]
fn errors_against_closed_ports_name_the_target_once_and_come_at_once() {
    let port = common::free_port();
    let amqp = format!("amqp://guest:{PASSWORD}@127.0.0.1:{port}/%2f");
    let database = format!("postgres://root:{PASSWORD}@127.0.0.1:{port}/stopcaster");
    let env = [
        ("AMQP_URL", amqp.as_str()),
        ("DATABASE_URL", database.as_str()),
    ];
    for args in [
        &["enqueue", "studio-1"][..],
        &["report"],
        &["report", "--batch", "b", "--watch"],
        &["dead-letters", "list"],
        &["migrate"],
    ] {
        let (out, took) = run(args, &env);
        let line = one_error_line(args, &out);
        assert!(
            line.contains(&format!("127.0.0.1:{port}")),
            "{args:?} names the target: {line}"
        );
        assert!(line.contains("connection refused"), "{args:?}: {line}");
        assert_eq!(
            line.matches("refused").count(),
            1,
            "{args:?}: the cause once: {line}"
        );
        assert!(took < FAST, "{args:?} took {took:?}");
    }
    // Replay needs both: the broker is tried first.
    let args = ["dead-letters", "replay", "--all"];
    let (out, took) = run(&args, &env);
    let line = one_error_line(&args, &out);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(took < FAST, "replay took {took:?}");
}

#[test]
fn a_missing_database_suggests_migrate() {
    let name = common::unique("stopcaster_missing");
    let database = format!("{PG_BASE}/{name}");
    let (out, took) = run(&["report"], &[("DATABASE_URL", &database)]);
    let line = one_error_line(&["report"], &out);
    assert!(line.contains(&name), "{line}");
    assert!(line.contains("does not exist"), "{line}");
    assert!(line.contains("stopcaster migrate"), "{line}");
    assert!(took < FAST, "took {took:?}");
}

#[test]
fn authentication_failures_say_so() {
    // RabbitMQ: guest with a wrong password. Before, lapin logged three ERROR lines first.
    let amqp = format!("amqp://guest:{PASSWORD}@127.0.0.1:5672/%2f");
    let (out, _) = run(&["dead-letters", "list"], &[("AMQP_URL", &amqp)]);
    let line = one_error_line(&["dead-letters", "list"], &out);
    assert!(line.contains("authentication failed"), "{line}");
    assert!(line.contains("amqp://guest@127.0.0.1:5672"), "{line}");
    // Postgres trusts any password here: a user that does not exist is refused instead.
    let database = format!("postgres://no_such_user_x:{PASSWORD}@127.0.0.1:5432/postgres");
    let (out, took) = run(&["report"], &[("DATABASE_URL", &database)]);
    let line = one_error_line(&["report"], &out);
    assert!(line.contains("authentication failed"), "{line}");
    assert!(line.contains("no_such_user_x@127.0.0.1:5432"), "{line}");
    assert!(took < FAST, "took {took:?}");
}

#[test]
fn the_full_chain_is_logged_at_debug_level() {
    let port = common::free_port();
    let amqp = format!("amqp://guest:{PASSWORD}@127.0.0.1:{port}/%2f");
    let (out, _) = run(
        &["dead-letters", "list"],
        &[("AMQP_URL", &amqp), ("RUST_LOG", "debug")],
    );
    let text = stderr(&out);
    assert!(text.contains("the error in full"), "{text}");
    assert!(text.contains("os error 111"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn arguments_that_are_not_what_they_should_be_are_refused_in_words() {
    for (args, words) in [
        (
            &["dead-letters", "replay", "not-a-uuid"][..],
            "not-a-uuid is not a job id (a UUID)",
        ),
        (
            &["report", "--status", "done"],
            "done is not a status: scheduled, pending",
        ),
        (
            &["cancel", "not-a-uuid"],
            "not-a-uuid is not a job id (a UUID)",
        ),
        (&["report", "--since", "2x"], "2x is not a duration"),
        (
            &["report", "--format", "xml"],
            "xml is not a format: table, json or csv",
        ),
        (
            &["dead-letters", "list", "--format", "csv"],
            "csv is not a format: table or json",
        ),
    ] {
        let (out, _) = run(args, &[]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: usage error: {text}");
        assert!(text.contains(words), "{args:?}: {text}");
    }
}
