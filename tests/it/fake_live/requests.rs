//! Raw requests our client never sends: replayed nonces, stale timestamps, GET and form bodies,
//! missing and wrong parameters.

use super::*;

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    let fake = start(config()).await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/?{}",
        fake.endpoint(),
        query("POST", "s1", &new_nonce(), &now_timestamp())
    );

    let (status, _, body) = send(http.post(&url)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(http.post(&url)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureNonceUsed")),
        "{body}"
    );
    assert_eq!(
        body["Message"],
        "Specified signature nonce was used already."
    );

    // Per key: the same nonce from the other key is fresh.
    let caster = CasterId::parse("s2").unwrap();
    let region = RegionId::parse("cn-shanghai").unwrap();
    let nonce = url
        .split("SignatureNonce=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let other = signed_query(
        "POST",
        &Credentials::new(KEY_B, SECRET_B),
        StopCasterRequest {
            caster_id: &caster,
            region_id: &region,
        },
        nonce,
        &now_timestamp(),
    );
    let (status, _, body) = send(http.post(format!("{}/?{other}", fake.endpoint()))).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn timestamps_more_than_15_minutes_off_are_refused() {
    let fake = start(config()).await;
    let http = reqwest::Client::new();
    let now = time::OffsetDateTime::now_utc();
    for (minutes, want) in [
        (-20, Some("InvalidTimeStamp.Expired")),
        (20, Some("InvalidTimeStamp.Expired")),
        (-14, None),
    ] {
        let ts = signer::format_timestamp(now + time::Duration::minutes(minutes));
        let url = format!(
            "{}/?{}",
            fake.endpoint(),
            query("POST", "s1", &new_nonce(), &ts)
        );
        let (status, _, body) = send(http.post(url)).await;
        assert_eq!(body["Code"].as_str(), want, "{minutes} min: {body}");
        assert_eq!(status, if want.is_some() { 400 } else { 200 });
    }
    let url = format!(
        "{}/?{}",
        fake.endpoint(),
        query("POST", "s2", &new_nonce(), "2024-01-02 03:04:05")
    );
    let (status, _, body) = send(http.post(url)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidTimeStamp.Format"))
    );
}

#[tokio::test]
async fn get_and_form_posts_are_accepted() {
    let fake = start(config()).await;
    let http = reqwest::Client::new();
    let base = format!("{}/", fake.endpoint());

    let get = format!(
        "{base}?{}",
        query("GET", "by-get", &new_nonce(), &now_timestamp())
    );
    let (status, content_type, body) = send(http.get(&get)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json;charset=utf-8");
    assert!(body["RequestId"].is_string());

    // Everything in a form body.
    let form = query("POST", "by-form", &new_nonce(), &now_timestamp());
    let (status, _, body) = send(
        http.post(&base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Split between query and body, as SDKs with body parameters send it.
    let form = query("POST", "split", &new_nonce(), &now_timestamp());
    let (in_query, in_body): (Vec<&str>, Vec<&str>) = form
        .split('&')
        .partition(|p| p.starts_with('S') || p.starts_with('A'));
    let (status, _, body) = send(
        http.post(format!("{base}?{}", in_query.join("&")))
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .body(in_body.join("&")),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A body that is not a form is not read.
    let (status, _, body) = send(
        http.post(&base)
            .header("content-type", "text/plain")
            .body(form),
    )
    .await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("MissingParameter"))
    );

    // The method is signed: a GET-signed query sent as POST does not verify.
    let as_post = format!(
        "{base}?{}",
        query("GET", "wrong-method", &new_nonce(), &now_timestamp())
    );
    let (status, _, body) = send(http.post(&as_post)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureDoesNotMatch"))
    );

    let methods: Vec<(String, Option<String>)> = calls_for(&fake, "")
        .await
        .into_iter()
        .map(|c| (c.method, c.caster_id))
        .collect();
    assert_eq!(methods[0], ("GET".to_owned(), Some("by-get".to_owned())));
    assert_eq!(methods[1], ("POST".to_owned(), Some("by-form".to_owned())));
    assert_eq!(methods[2], ("POST".to_owned(), Some("split".to_owned())));
    for id in ["by-get", "by-form", "split"] {
        assert_eq!(fake.caster(id), Some(StudioState::Stopped));
    }
}

#[tokio::test]
async fn missing_and_wrong_parameters() {
    let fake = start(config()).await;
    let http = reqwest::Client::new();
    let base = format!("{}/", fake.endpoint());
    let full = query("POST", "s1", &new_nonce(), &now_timestamp());
    let without = |name: &str| {
        full.split('&')
            .filter(|p| !p.starts_with(&format!("{name}=")))
            .collect::<Vec<_>>()
            .join("&")
    };

    let (status, content_type, body) =
        send(http.post(format!("{base}?{}", without("CasterId")))).await;
    assert_eq!(status, 400);
    assert_eq!(content_type, "application/json;charset=utf-8");
    assert_eq!(body["Code"], "MissingParameter");
    assert_eq!(
        body["Message"],
        "The input parameter \"CasterId\" that is mandatory for processing this request is not supplied."
    );
    assert_eq!(body["HostId"], "live.aliyuncs.com");
    assert_eq!(
        body["Recommend"],
        "https://api.aliyun.com/troubleshoot?q=MissingParameter&product=live"
    );
    assert_eq!(body["RequestId"].as_str().map(str::len), Some(36));

    let (_, _, body) = send(http.post(format!("{base}?{}", without("SignatureNonce")))).await;
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("\"SignatureNonce\"")
    );

    let swapped = full.replace("Action=StopCaster", "Action=StartCaster");
    let (status, _, body) = send(http.post(format!("{base}?{swapped}"))).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (404, Some("InvalidAction.NotFound"))
    );
    let swapped = full.replace("Version=2016-11-01", "Version=2014-05-26");
    let (status, _, body) = send(http.post(format!("{base}?{swapped}"))).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidVersion"))
    );

    // Every refused request is in the log, with what it carried.
    let log = calls_for(&fake, "").await;
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].caster_id, None);
    assert_eq!(log[2].action.as_deref(), Some("StartCaster"));
    assert!(log.iter().all(|c| !c.admitted && c.http_status.is_some()));
    assert_eq!(fake.caster("s1"), None);
}
