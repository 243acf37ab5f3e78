//! Queues declared by an older version (a classic `P.dead`; a `P.jobs` that dead-letters at
//! most once): the worker uses them as they are and says so in one line, `stopcaster migrate
//! --broker` refuses while a worker consumes, then moves both to the current arguments keeping
//! every message, says there is nothing to do the second time, and finishes an interrupted
//! run.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

use crate::common::{self, AMQP_URL, TestEnv, stderr, stdout};

const WAIT: Duration = Duration::from_secs(30);

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in pairs {
        table.insert((*name).into(), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// The topology as stopcaster declared it before dead letters became a quorum queue.
async fn declare_older_topology(env: &TestEnv) -> Connection {
    let names = env.names();
    let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for (name, kind) in [
        (&names.dlx, ExchangeKind::Fanout),
        (&names.exchange, ExchangeKind::Direct),
    ] {
        ch.exchange_declare(name.as_str().into(), kind, durable, FieldTable::default())
            .await
            .unwrap();
    }
    let old_jobs = args(&[
        ("x-queue-type", text("quorum")),
        ("x-delivery-limit", AMQPValue::LongLongInt(50)),
        ("x-dead-letter-exchange", text(&names.dlx)),
    ]);
    for (queue, queue_args, exchange, key) in [
        (
            &names.dead,
            args(&[("x-queue-type", text("classic"))]),
            &names.dlx,
            "",
        ),
        (&names.jobs, old_jobs, &names.exchange, "stop"),
    ] {
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            queue_args,
        )
        .await
        .unwrap();
        ch.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    conn
}

/// Three dead letters of the older version, with the contract's headers.
async fn dead_letters(conn: &Connection, env: &TestEnv) {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for n in 0..3 {
        let headers = args(&[
            (stopcaster::JOB_ID_HEADER, text(&format!("job-{n}"))),
            (stopcaster::REASON_HEADER, text("InvalidCaster.NotFound")),
        ]);
        let confirm = ch
            .basic_publish(
                "".into(),
                env.names().dead.as_str().into(),
                BasicPublishOptions::default(),
                format!(r#"{{"caster_id":"old-{n}"}}"#).as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .unwrap();
        assert!(confirm.await.unwrap().is_ack());
    }
}

/// True when the queue accepts a declaration with exactly `queue_args`.
async fn takes(queue: &str, queue_args: FieldTable) -> bool {
    let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let ok = ch
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), queue_args)
        .await
        .is_ok();
    conn.close(200, "".into()).await.ok();
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_queues_are_used_then_migrated_keeping_every_message() {
    let env = TestEnv::with_running(&["mig-1", "mig-2"]).await;
    let names = env.names();
    let conn = declare_older_topology(&env).await;
    dead_letters(&conn, &env).await;

    // The worker carries on with them and says how to move them, once.
    let mut worker = env.spawn_worker(common::FAST);
    worker.wait_ready().await;
    env.publish_jobs(&["mig-1".into(), "mig-2".into()]).await;
    env.wait_terminal(2, WAIT).await;
    assert_eq!(env.count_status("succeeded").await, 2);
    let said = worker
        .logs()
        .iter()
        .filter(|l| l.contains("stopcaster migrate --broker"))
        .count();
    assert_eq!(said, 1, "{}", worker.logs().join("\n"));

    // Not while a worker consumes: its unacknowledged messages would have nowhere to go back.
    let refused = env.run_cli(&["migrate", "--broker"], &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("stop the workers"),
        "{}",
        stderr(&refused)
    );
    assert!(takes(&names.dead, args(&[("x-queue-type", text("classic"))])).await);

    worker.signal("TERM");
    assert!(worker.wait_exit(WAIT).await.success());
    let migrated = env.run_cli(&["migrate", "--broker"], &[]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let out = stdout(&migrated);
    assert!(
        out.contains(&format!(
            "{}: moved to the current arguments, 3 message(s) kept",
            names.dead
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}: moved to the current arguments, 0 message(s) kept",
            names.jobs
        )),
        "{out}"
    );

    // Both now take the current arguments, and the dead letters are all there, headers and all.
    assert!(takes(&names.dead, args(&[("x-queue-type", text("quorum"))])).await);
    let current_jobs = args(&[
        ("x-queue-type", text("quorum")),
        ("x-delivery-limit", AMQPValue::LongLongInt(50)),
        ("x-dead-letter-exchange", text(&names.dlx)),
        ("x-dead-letter-strategy", text("at-least-once")),
        ("x-overflow", text("reject-publish")),
    ]);
    assert!(takes(&names.jobs, current_jobs).await);
    let mut dead = env.drain_dead().await;
    dead.sort();
    let expected: Vec<_> = (0..3)
        .map(|n| {
            (
                format!(r#"{{"caster_id":"old-{n}"}}"#).into_bytes(),
                Some(format!("job-{n}")),
                Some("InvalidCaster.NotFound".to_owned()),
            )
        })
        .collect();
    assert_eq!(dead, expected);

    let again = env.run_cli(&["migrate", "--broker"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again),
        format!(
            "{}: already current\n{}: already current\n",
            names.dead, names.jobs
        )
    );

    // An interrupted run left a message in the holding queue: the next run puts it back.
    let holding = format!("{}.migrating", names.jobs);
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        holding.as_str().into(),
        QueueDeclareOptions::durable(),
        args(&[("x-queue-type", text("quorum"))]),
    )
    .await
    .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            holding.as_str().into(),
            BasicPublishOptions::default(),
            br#"{"caster_id":"left-behind"}"#,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    assert!(confirm.await.unwrap().is_ack());
    let resumed = env.run_cli(&["migrate", "--broker"], &[]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stdout(&resumed).contains("1 message(s) moved back from"),
        "{}",
        stdout(&resumed)
    );
    assert_eq!(env.queue_len(&names.jobs).await, 1);
    conn.close(200, "".into()).await.ok();
}
