//! An operator's pause of an account (`stopcaster pause` / `resume`, the dashboard's buttons) and
//! the audit trail of every operator's action, through real workers, RabbitMQ, Postgres and
//! the stand-in: two workers honour a pause within a second, `--until` lifts it by itself,
//! no job's budget is spent, each action is a row with its actor, source and count, and the
//! pages stay safe with hostile reasons (the browser tests are `dashboard::operator`).

mod audit;
mod workers;

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::{self, TestEnv};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Until the worker whose metrics listen on `metrics` says, on `/readyz`, that an operator
/// paused an account.
pub(crate) async fn wait_held(env: &TestEnv, metrics: &str) {
    let readyz = format!("http://{metrics}/readyz");
    common::wait_for(WAIT, || async {
        let (status, body) = common::http::get(&env.http, &readyz).await;
        status == 503 && body.contains("paused by operator")
    })
    .await
    .expect("the worker reads the pause");
}

/// Runs a command; panics with its output unless it succeeds; its standard output.
pub(crate) fn cli_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run_cli(args, &[]);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    common::stdout(&out)
}

/// When each StopCaster call reached the stand-in, in order.
pub(crate) fn call_times(env: &TestEnv) -> Vec<OffsetDateTime> {
    let mut times: Vec<OffsetDateTime> = env
        .fake
        .calls()
        .iter()
        .filter(|c| c.action.as_deref() == Some("StopCaster"))
        .map(|c| OffsetDateTime::parse(&c.time, &Rfc3339).expect("an RFC 3339 call time"))
        .collect();
    times.sort();
    times
}
