//! StopCaster's verdicts as the stand-in gives them: a running studio stopped then refused, unknown
//! ids with a casters map, malformed ids, wrong secrets and unknown keys.

use super::*;

#[tokio::test]
async fn stops_a_running_studio_then_refuses_the_second_stop() {
    let fake = start(config()).await;
    let client = client(&fake);

    let first = stop(&client, "studio-1").await;
    let CallOutcome::Stopped {
        request_id,
        http_status,
    } = &first
    else {
        panic!("expected a stop, got {first:?}");
    };
    assert_eq!(*http_status, 200);
    assert_eq!(request_id.len(), 36);
    assert_eq!(*request_id, request_id.to_ascii_uppercase());

    let log = calls_for(&fake, "caster_id=studio-1").await;
    assert_eq!(log.len(), 1, "{log:?}");
    let entry = &log[0];
    assert_eq!(&entry.request_id, request_id);
    assert_eq!(entry.http_status, Some(200));
    assert_eq!(entry.code, None);
    assert_eq!(entry.access_key_id.as_deref(), Some(KEY));
    assert_eq!(entry.action.as_deref(), Some("StopCaster"));
    assert_eq!(entry.method, "POST");
    assert!(entry.admitted);
    assert!(entry.nonce.as_deref().is_some_and(|n| !n.is_empty()));
    time::OffsetDateTime::parse(&entry.time, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 time");

    let casters: HashMap<String, StudioState> =
        get_json(format!("{}/_fake/casters", fake.endpoint())).await;
    assert_eq!(casters.get("studio-1"), Some(&StudioState::Stopped));

    let second = stop(&client, "studio-1").await;
    permanent(&second, 400, "IncorrectSceneStatus");
    let log = calls_for(&fake, "caster_id=studio-1").await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].code.as_deref(), Some("IncorrectSceneStatus"));
    assert_eq!(Some(log[1].request_id.as_str()), second.request_id());
    assert!(calls_for(&fake, "caster_id=other").await.is_empty());
}

#[tokio::test]
async fn with_a_casters_map_other_ids_do_not_exist() {
    let mut config = config();
    config.casters = Some(HashMap::from([
        ("on-air".to_owned(), StudioState::Running),
        ("off-air".to_owned(), StudioState::Stopped),
    ]));
    let fake = start(config).await;
    let client = client(&fake);

    permanent(
        &stop(&client, "no-such-studio").await,
        404,
        "InvalidCaster.NotFound",
    );
    assert_eq!(
        fake.caster("no-such-studio"),
        None,
        "a miss creates nothing"
    );
    permanent(&stop(&client, "off-air").await, 400, "IncorrectSceneStatus");
    assert!(matches!(
        stop(&client, "on-air").await,
        CallOutcome::Stopped { .. }
    ));
    assert_eq!(fake.caster("on-air"), Some(StudioState::Stopped));

    fake.set_caster("off-air", StudioState::Running);
    fake.set_caster("brand-new", StudioState::Running);
    assert!(matches!(
        stop(&client, "off-air").await,
        CallOutcome::Stopped { .. }
    ));
    assert!(matches!(
        stop(&client, "brand-new").await,
        CallOutcome::Stopped { .. }
    ));
}

#[tokio::test]
async fn malformed_caster_ids() {
    let fake = start(config()).await;
    let client = client(&fake);
    for bad in ["has space", "dot.ted", "演播室", &"x".repeat(65)] {
        permanent(&stop(&client, bad).await, 400, "InvalidCasterId.Malformed");
    }
    assert!(matches!(
        stop(&client, &"x".repeat(64)).await,
        CallOutcome::Stopped { .. }
    ));
    let casters: HashMap<String, StudioState> =
        get_json(format!("{}/_fake/casters", fake.endpoint())).await;
    assert_eq!(casters.len(), 1, "{casters:?}");
}

#[tokio::test]
async fn wrong_secret_and_unknown_key_are_refused() {
    let fake = start(config()).await;
    let client = client(&fake);

    let wrong = stop_as(&client, &Credentials::new(KEY, "not-the-secret"), "s1").await;
    refused(&wrong, 400, "SignatureDoesNotMatch");
    let CallOutcome::CredentialsRefused(e) = &wrong else {
        unreachable!()
    };
    let (_, server_sts) = e
        .message
        .split_once("server string to sign is:")
        .expect("message names the server's string to sign");
    assert!(server_sts.starts_with("POST&%2F&AccessKeyId%3DLTAI-test-key%26Action%3DStopCaster"));
    assert!(!e.message.contains(SECRET), "never echo a secret");

    let unknown = stop_as(&client, &Credentials::new("LTAI-nobody", SECRET), "s1").await;
    refused(&unknown, 404, "InvalidAccessKeyId.NotFound");
    assert_eq!(
        unknown.error_message(),
        Some("Specified access key is not found.")
    );
    assert_eq!(fake.caster("s1"), None, "refused calls touch no studio");

    // The second key works with its own secret only.
    let b = Credentials::new(KEY_B, SECRET_B);
    assert!(matches!(
        stop_as(&client, &b, "s1").await,
        CallOutcome::Stopped { .. }
    ));
    let cross = stop_as(&client, &Credentials::new(KEY_B, SECRET), "s2").await;
    refused(&cross, 400, "SignatureDoesNotMatch");

    let log = calls_for(&fake, "").await;
    let codes: Vec<Option<&str>> = log.iter().map(|c| c.code.as_deref()).collect();
    assert_eq!(
        codes,
        [
            Some("SignatureDoesNotMatch"),
            Some("InvalidAccessKeyId.NotFound"),
            None,
            Some("SignatureDoesNotMatch")
        ]
    );
    assert!(log.iter().all(|c| c.admitted == c.code.is_none()));
}
