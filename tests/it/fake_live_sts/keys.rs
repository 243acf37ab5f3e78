//! Temporary keys at StopCaster: accepted with their token only, refused once expired, and the
//! throttle counted per account.

use super::*;

#[tokio::test]
async fn temporary_keys_stop_studios_with_their_token_only() {
    let fake = start(config()).await;
    let temp = assume(&fake, A1, "stopper").await;
    assert!(matches!(
        stop(&fake, &temp, "temp-1").await,
        CallOutcome::Stopped { .. }
    ));
    let log = fake.calls();
    let entry = log
        .iter()
        .find(|c| c.caster_id.as_deref() == Some("temp-1"))
        .unwrap();
    assert_eq!(entry.access_key_id.as_deref(), Some(temp.access_key_id()));
    assert_eq!(entry.account_uid.as_deref(), Some(UID_A));

    let other = assume(&fake, A1, "other").await;
    let swapped = Credentials::new(temp.access_key_id(), temp.secret().expose())
        .with_security_token(other.security_token().map(|t| t.expose().to_owned()));
    refused(
        &stop(&fake, &swapped, "temp-2").await,
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
    );
    let garbage = Credentials::new(temp.access_key_id(), temp.secret().expose())
        .with_security_token(Some("not-a-token".into()));
    refused(
        &stop(&fake, &garbage, "temp-2").await,
        400,
        "InvalidSecurityToken.Malformed",
    );
    let tokenless = Credentials::new(temp.access_key_id(), temp.secret().expose());
    refused(
        &stop(&fake, &tokenless, "temp-2").await,
        400,
        "MissingSecurityToken",
    );
    let wrong_secret = Credentials::new(temp.access_key_id(), "wrong")
        .with_security_token(temp.security_token().map(|t| t.expose().to_owned()));
    refused(
        &stop(&fake, &wrong_secret, "temp-2").await,
        400,
        "SignatureDoesNotMatch",
    );
    assert_eq!(
        fake.caster("temp-2"),
        None,
        "no refused call touched the studio"
    );
}

#[tokio::test]
async fn temporary_keys_expire() {
    let mut config = config();
    config.sts_lifetime = Duration::from_secs(1);
    // The polling below must never meet the throttle instead.
    config.qps = 1000;
    let fake = start(config).await;
    let issued_at = Instant::now();
    let answer = sts(
        &fake,
        Some((A1.0, A1.1, None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", "brief")],
    )
    .await;
    let temp = temp_creds(&answer);
    // Accepted until it expires (this first call may already be late on a starved machine,
    // so only its being refused for expiry is allowed).
    let first = stop(&fake, &temp, "brief-0").await;
    assert!(
        matches!(first, CallOutcome::Stopped { .. })
            || first.error_code() == Some("InvalidSecurityToken.Expired"),
        "{first:?}"
    );
    // Then refused as expired, for good: poll until the server says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let expired = loop {
        n += 1;
        let outcome = stop(&fake, &temp, &format!("brief-{n}")).await;
        if outcome.error_code() == Some("InvalidSecurityToken.Expired") {
            break outcome;
        }
        assert!(
            matches!(outcome, CallOutcome::Stopped { .. }),
            "{outcome:?}"
        );
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    refused(&expired, 400, "InvalidSecurityToken.Expired");
    assert!(issued_at.elapsed() >= Duration::from_millis(900));
    let (status, body) = sts(&fake, Some(key_of(&temp)), "GetCallerIdentity", &[]).await;
    sts_error(&(status, body), 400, "InvalidSecurityToken.Expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_is_per_account() {
    let mut config = config();
    config.qps = 3;
    let fake = start(config).await;
    let temp = assume(&fake, A1, "shares-the-quota").await;
    let keys = [
        Credentials::new(A1.0, A1.1),
        Credentials::new(A2.0, A2.1),
        temp.clone(),
    ];
    // Six calls from each key of account A at once, and three from account B's key.
    let mut calls = Vec::new();
    for (k, creds) in keys.iter().enumerate() {
        for i in 0..6 {
            let (fake_endpoint, creds) = (fake.endpoint(), creds.clone());
            calls.push(tokio::spawn(async move {
                let client = LiveClient::new(&ClientConfig::new(fake_endpoint)).unwrap();
                let caster_id = CasterId::parse(&format!("a{k}-{i}")).unwrap();
                let region_id = RegionId::parse("cn-shanghai").unwrap();
                let request = StopCasterRequest {
                    caster_id: &caster_id,
                    region_id: &region_id,
                };
                client.stop_caster(&creds, request).await
            }));
        }
    }
    let b = Credentials::new(B.0, B.1);
    let b_calls: Vec<_> = (0..3)
        .map(|i| {
            let (endpoint, b) = (fake.endpoint(), b.clone());
            tokio::spawn(async move {
                let client = LiveClient::new(&ClientConfig::new(endpoint)).unwrap();
                let caster_id = CasterId::parse(&format!("b-{i}")).unwrap();
                let region_id = RegionId::parse("cn-shanghai").unwrap();
                let request = StopCasterRequest {
                    caster_id: &caster_id,
                    region_id: &region_id,
                };
                client.stop_caster(&b, request).await
            })
        })
        .collect();
    let mut a_outcomes = Vec::new();
    for call in calls {
        a_outcomes.push(call.await.unwrap());
    }
    for call in b_calls {
        let outcome = call.await.unwrap();
        assert!(
            matches!(outcome, CallOutcome::Stopped { .. }),
            "account B has its own window: {outcome:?}"
        );
    }
    let throttled = a_outcomes.iter().filter(|o| o.is_throttled()).count();
    let stopped = a_outcomes
        .iter()
        .filter(|o| matches!(o, CallOutcome::Stopped { .. }))
        .count();
    assert_eq!(throttled + stopped, 18, "{a_outcomes:?}");
    assert!(throttled >= 1, "18 calls of one account, none throttled");

    let stats: Stats = json(
        reqwest::get(format!("{}/_fake/stats", fake.endpoint()))
            .await
            .unwrap(),
    )
    .await;
    // The promise: the account's keys together never exceed qps in any sliding second, while
    // a per-key throttle would have let each key have 3.
    assert_eq!(stats.max_in_any_1s_window_by_account.get(UID_A), Some(&3));
    assert_eq!(
        stats.admitted_by_account.get(UID_A),
        Some(&(stopped as u64))
    );
    assert_eq!(stats.admitted_by_account.get(UID_B), Some(&3));
    assert!(
        fake.calls()
            .iter()
            .filter(|c| c.code.as_deref() == Some("Throttling.User"))
            .all(|c| c.account_uid.as_deref() == Some(UID_A))
    );
}
