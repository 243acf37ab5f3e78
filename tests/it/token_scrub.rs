//! The STS security token never leaves the worker, even where Alibaba echoes it back: with
//! temporary credentials and a wrong secret, `SignatureDoesNotMatch`'s message quotes the
//! server's string to sign, token included. The real worker runs against the stand-in; then its
//! log lines, every row of every table, the dashboard's pages and `report` are searched for the
//! token in every form it can take (as is, percent-encoded once and twice).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{KEY_ID, KEY_SECRET, TestEnv, wait_for};
use serde_json::Value;
use stopcaster::signer::{self, percent_encode};
use stopcaster::{CasterId, Credentials, RegionId, Secret, StopCasterRequest, signed_query};
use stopcaster_fake_live::{FakeLiveConfig, Role};

const WAIT: Duration = Duration::from_secs(30);
/// The secret the worker is given: not the temporary key's, so every call is refused.
const WRONG_SECRET: &str = "Wrong-Secret-Never-Shown-1a2b3c4d";

/// Temporary credentials from the stand-in's credentials URI: (AccessKeyId, secret, token).
pub(crate) async fn temporary_key(env: &TestEnv) -> (String, String, String) {
    let url = format!("{}/_fake/credentials", env.fake.endpoint());
    let body = env
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let field = |name: &str| body[name].as_str().unwrap().to_owned();
    (
        field("AccessKeyId"),
        field("AccessKeySecret"),
        field("SecurityToken"),
    )
}

/// Every form in which `value` could be shown: as is, percent-encoded once (a query) and twice
/// (a string to sign), and a stretch from its middle (a value cut short).
pub(crate) fn forms(value: &str) -> Vec<String> {
    let once = percent_encode(value);
    let twice = percent_encode(&once);
    let middle = value[value.len() / 2 - 12..value.len() / 2 + 12].to_owned();
    vec![value.to_owned(), once, twice, middle]
}

/// The places (by name) where one of `needles` appears in `haystacks`, each with a little of
/// the text around it.
pub(crate) fn leaks<'a>(
    needles: &[String],
    haystacks: impl IntoIterator<Item = (String, &'a str)>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (place, text) in haystacks {
        if let Some(at) = needles.iter().find_map(|n| text.find(n.as_str())) {
            let around: String = text[..at]
                .chars()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .chain(text[at..].chars().take(40))
                .collect();
            found.push(format!("{place}: ...{around}..."));
        }
    }
    found
}

/// Every row of every table of the test database, as JSON text.
pub(crate) async fn all_rows(env: &TestEnv) -> Vec<(String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let query = format!("SELECT to_jsonb(t)::text FROM \"{table}\" t");
        let texts: Vec<String> = sqlx::query_scalar(&query)
            .fetch_all(&env.pool)
            .await
            .unwrap();
        rows.extend(texts.into_iter().map(|text| (table.clone(), text)));
    }
    rows
}

/// The message of a StopCaster call signed with `WRONG_SECRET`, read straight off the wire.
async fn raw_refusal(env: &TestEnv, key_id: &str, token: &str) -> String {
    let credentials =
        Credentials::new(key_id, WRONG_SECRET).with_security_token(Some(token.into()));
    let caster = CasterId::parse("scrub-raw").unwrap();
    let region = RegionId::parse("cn-shanghai").unwrap();
    let request = StopCasterRequest {
        caster_id: &caster,
        region_id: &region,
    };
    let timestamp = signer::format_timestamp(time::OffsetDateTime::now_utc());
    let nonce = uuid::Uuid::new_v4().to_string();
    let query = signed_query("POST", &credentials, request, &nonce, &timestamp);
    let url = format!("{}/?{query}", env.fake.endpoint());
    let body = env
        .http
        .post(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["Code"], "SignatureDoesNotMatch", "{body}");
    body["Message"].as_str().unwrap().to_owned()
}

/// `stopcaster dashboard` on a free loopback port; its address once it listens.
fn start_dashboard(env: &TestEnv) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stopcaster"))
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.child_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the dashboard");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("dashboard listening on http://") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(WAIT).expect("the dashboard starts");
    (child, addr)
}

/// With a temporary key and a wrong secret the stand-in answers `SignatureDoesNotMatch` with
/// its string to sign, `SecurityToken` in it: the worker records the calls and pauses the
/// account, and the token is nowhere to be found.
#[tokio::test]
async fn the_token_echoed_by_signature_does_not_match_is_scrubbed_everywhere() {
    let mut config = FakeLiveConfig::new(vec![(KEY_ID.into(), Secret::new(KEY_SECRET))]);
    config.qps = 1000;
    config.ram_roles = vec![Role::parse("acs:ram::1234567890123456:role/stopcaster").unwrap()];
    let env = TestEnv::with_fake(config).await;
    let (key_id, _, token) = temporary_key(&env).await;
    let worker = env.spawn_worker(&[
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", &key_id),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", WRONG_SECRET),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", &token),
        ("RUST_LOG", "trace"),
    ]);
    worker.wait_ready().await;
    let job = env.publish_jobs(&["scrub-1".to_owned()]).await[0];
    worker.wait_log("credentials refused", WAIT).await;
    // The pause's first probes: several calls recorded, each with the refusal's message.
    wait_for(WAIT, || async {
        let attempts = env.attempts(job).await;
        attempts.len() >= 3 && env.job(job).await["error_message"].is_string()
    })
    .await
    .expect("the refused calls are recorded");

    // The stand-in does echo the token: the same call, made by hand, shows it.
    let echoed = raw_refusal(&env, &key_id, &token).await;
    assert!(
        echoed.contains(&percent_encode(&percent_encode(&token))),
        "{echoed}"
    );

    let (mut dashboard, addr) = start_dashboard(&env);
    let mut pages = Vec::new();
    for path in [
        format!("/jobs/{job}"),
        format!("/api/jobs/{job}"),
        "/".to_owned(),
        "/api/overview".to_owned(),
        "/jobs".to_owned(),
        "/api/jobs".to_owned(),
        "/api/jobs/export?format=csv".to_owned(),
        "/api/jobs/export?format=json".to_owned(),
        "/batches".to_owned(),
    ] {
        let response = env.http.get(format!("http://{addr}{path}")).send().await;
        let response = response.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        pages.push((path, response.text().await.unwrap()));
    }
    let _ = dashboard.kill();
    let _ = dashboard.wait();
    let mut commands = Vec::new();
    for format in ["table", "json", "csv"] {
        let out = env.run_cli(&["report", "--format", format, "--wide"], &[]);
        assert!(out.status.success(), "report --format {format}");
        commands.push((
            format!("report --format {format}"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }

    let mut needles = forms(&token);
    needles.extend(forms(WRONG_SECRET));
    let logs = worker.logs();
    let rows = all_rows(&env).await;
    let mut found = leaks(
        &needles,
        logs.iter().map(|l| ("log".to_owned(), l.as_str())),
    );
    found.extend(leaks(
        &needles,
        rows.iter().map(|(t, r)| (t.clone(), r.as_str())),
    ));
    found.extend(leaks(
        &needles,
        pages.iter().map(|(p, b)| (p.clone(), b.as_str())),
    ));
    found.extend(leaks(
        &needles,
        commands.iter().map(|(c, o)| (c.clone(), o.as_str())),
    ));
    assert!(found.is_empty(), "the token leaked:\n{}", found.join("\n"));
    let job_row = env.job(job).await;
    let message = job_row["error_message"].as_str().unwrap();
    assert!(
        message.contains("server string to sign is:") && message.contains("[redacted]"),
        "the rest of the message stays readable: {message}"
    );

    // What was searched is not empty: the refusals are there, without their secret.
    assert!(logs.iter().any(|l| l.contains("SignatureDoesNotMatch")));
    assert!(
        rows.iter()
            .any(|(_, r)| r.contains("SignatureDoesNotMatch"))
    );
    assert!(pages[0].1.contains("SignatureDoesNotMatch"));
}
