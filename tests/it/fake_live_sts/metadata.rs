//! The stand-in's ECS metadata service (IMDSv2) and credentials URI.

use super::*;

#[tokio::test]
async fn ecs_metadata_hands_out_the_first_roles_credentials_with_an_imdsv2_token() {
    let fake = start(config()).await;
    let http = reqwest::Client::new();
    let base = format!("{}/latest", fake.endpoint());
    let put_token = |ttl: &str| {
        http.put(format!("{base}/api/token"))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", ttl)
            .send()
    };
    assert_eq!(put_token("0").await.unwrap().status(), 400);
    assert_eq!(put_token("21601").await.unwrap().status(), 400);
    let token = put_token("21600").await.unwrap();
    assert_eq!(token.status(), 200);
    let token = token.text().await.unwrap();
    assert!(token.len() >= 32);

    let list = format!("{base}/meta-data/ram/security-credentials/");
    // Hardened mode: no token is refused, a wrong one too.
    assert_eq!(http.get(&list).send().await.unwrap().status(), 403);
    let wrong = http
        .get(&list)
        .header("X-aliyun-ecs-metadata-token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let get = |url: String| {
        http.get(url)
            .header("X-aliyun-ecs-metadata-token", token.as_str())
            .send()
    };
    let name = get(list.clone()).await.unwrap();
    assert_eq!(name.status(), 200);
    assert_eq!(name.text().await.unwrap(), "stopcaster");
    assert_eq!(get(format!("{list}other")).await.unwrap().status(), 404);
    let creds = get(format!("{list}stopcaster")).await.unwrap();
    assert_eq!(creds.status(), 200);
    let body: Value = json(creds).await;
    assert_eq!(body["Code"], "Success");
    for field in [
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
        "LastUpdated",
    ] {
        assert!(
            body[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {body}"
        );
    }
    let again: Value = json(get(format!("{list}stopcaster")).await.unwrap()).await;
    assert_eq!(
        again["AccessKeyId"], body["AccessKeyId"],
        "cached until half-life"
    );

    let temp = temp_creds(&(200, serde_json::json!({ "Credentials": body })));
    assert!(matches!(
        stop(&fake, &temp, "ecs-1").await,
        CallOutcome::Stopped { .. }
    ));
    let (_, who) = sts(&fake, Some(key_of(&temp)), "GetCallerIdentity", &[]).await;
    assert_eq!(
        who["Arn"],
        format!("acs:ram::{UID_A}:assumed-role/stopcaster/fake-live-ecs")
    );

    // Without a role there is nothing to hand out.
    let bare = start(FakeLiveConfig::new(vec![(A1.0.into(), Secret::new(A1.1))])).await;
    let token = http
        .put(format!("{}/latest/api/token", bare.endpoint()))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let none = http
        .get(format!(
            "{}/latest/meta-data/ram/security-credentials/",
            bare.endpoint()
        ))
        .header("X-aliyun-ecs-metadata-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn the_credentials_uri_issues_fresh_temporary_credentials() {
    let fake = start(config()).await;
    let url = format!("{}/_fake/credentials", fake.endpoint());
    let first: Value = json(reqwest::get(&url).await.unwrap()).await;
    let second: Value = json(reqwest::get(&url).await.unwrap()).await;
    assert_eq!(first["Code"], "Success");
    assert_ne!(first["AccessKeyId"], second["AccessKeyId"]);
    let temp = temp_creds(&(200, serde_json::json!({ "Credentials": first })));
    assert!(matches!(
        stop(&fake, &temp, "uri-1").await,
        CallOutcome::Stopped { .. }
    ));
    let (_, who) = sts(&fake, Some(key_of(&temp)), "GetCallerIdentity", &[]).await;
    assert_eq!(who["AccountId"], UID_A);

    let bare = start(FakeLiveConfig::new(vec![(A1.0.into(), Secret::new(A1.1))])).await;
    let none = reqwest::get(format!("{}/_fake/credentials", bare.endpoint()))
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}
