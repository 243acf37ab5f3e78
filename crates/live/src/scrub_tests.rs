//! The shapes in which Alibaba's answers (and the stand-in's, which copies them) quote
//! credentials, each scrubbed with the rest of the message left readable.

use super::*;
use crate::outcome::interpret;
use crate::signer;

/// Shaped like an STS token: `CAIS` and base64, so `+`, `/` and `=` that encoding changes.
const TOKEN: &str =
    "CAIS+v8Bq6Ft5B2yfSjIr5bRLdPPs7Nqg/ZWTYzFnTs+Q7fvbjHyiDz2IHhMdHRqBeAbs/k2mW9R7P4clrp3QqdJcQ==";
const SECRET: &str = "Tmp-Secret-9f8e7d6c5b4a3210";

fn string_to_sign(method: &str, token: &str) -> String {
    let params = [
        ("AccessKeyId", "STS.NUgYrLnoC37mZZCNnAbez2Vi6"),
        ("Action", "StopCaster"),
        ("CasterId", "a2b8e671-2fe5-4642-a2ec-bf93880e1697"),
        ("Format", "JSON"),
        ("RegionId", "cn-shanghai"),
        ("SecurityToken", token),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "c9c7d5a6-1b3f-4b0e-9a44-2f1d6f3e8a10"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2024-01-02T03:04:05Z"),
        ("Version", "2016-11-01"),
    ];
    signer::string_to_sign(method, &signer::canonical_query(params))
}

#[track_caller]
fn assert_clean(scrubbed: &str) {
    let once = signer::percent_encode(TOKEN);
    for leak in [
        TOKEN,
        &once,
        &signer::percent_encode(&once),
        "Bq6Ft5B2yfSjIr5b",
    ] {
        assert!(!scrubbed.contains(leak), "{leak} in {scrubbed}");
    }
    assert!(!scrubbed.contains(SECRET), "{scrubbed}");
    assert!(scrubbed.contains(REDACTED), "{scrubbed}");
}

#[test]
fn signature_does_not_match_quotes_the_string_to_sign() {
    // The stand-in's message (crates/fake-live/src/protocol.rs), and Alibaba's: GET as the
    // SDKs send it, POST as the worker does.
    for method in ["POST", "GET"] {
        let message = format!(
            "Specified signature is not matched with our calculation. server string to sign is:{}",
            string_to_sign(method, TOKEN)
        );
        for known in [&[][..], &[SECRET, TOKEN][..]] {
            let s = scrub(&message, known);
            assert_clean(&s);
            assert!(
                s.starts_with(&format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{method}&%2F&AccessKeyId%3DSTS.NUgYrLnoC37mZZCNnAbez2Vi6%26"
                )),
                "{s}"
            );
            assert!(
                s.contains("%26RegionId%3Dcn-shanghai%26SecurityToken%3D[redacted]%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3Dc9c7d5a6-1b3f-4b0e-9a44-2f1d6f3e8a10%26"),
                "{s}"
            );
            assert!(s.ends_with("%26Version%3D2016-11-01"), "{s}");
        }
    }
}

#[test]
fn incomplete_signature_and_a_body_cut_short() {
    let sts = string_to_sign("GET", TOKEN);
    let message =
        format!("signature does not conform to standards. server string to sign is:{sts}");
    assert_clean(&scrub(&message, &[]));
    // A snippet that ends inside the token: what is left of it goes too.
    let cut = &message[..message.find("SecurityToken%3D").unwrap() + 40];
    assert_eq!(
        scrub(cut, &[]),
        format!("{}[redacted]", &cut[..cut.len() - 24])
    );
}

#[test]
fn a_string_to_sign_inside_a_query_is_encoded_twice() {
    let inner = signer::percent_encode(&string_to_sign("GET", TOKEN));
    let url = format!("https://api.aliyun.com/troubleshoot?q=SignatureDoesNotMatch&sts={inner}");
    let s = scrub(&url, &[]);
    assert_clean(&s);
    assert!(
        s.contains("%2526SecurityToken%253D[redacted]%2526SignatureMethod%253DHMAC-SHA1"),
        "{s}"
    );
}

#[test]
fn roa_quotes_signed_headers() {
    let message = format!(
        "Specified signature is not matched with our calculation. server string to sign is:POST\n\
         application/json\n\napplication/json\nTue, 02 Jan 2024 03:04:05 GMT\n\
         x-acs-security-token:{TOKEN}\nx-acs-signature-method:HMAC-SHA1\n\
         x-acs-signature-nonce:c9c7d5a6\nx-acs-signature-version:1.0\nx-acs-version:2016-11-01\n/casters"
    );
    let s = scrub(&message, &[]);
    assert_clean(&s);
    assert!(
        s.contains("\nx-acs-security-token:[redacted]\nx-acs-signature-method:HMAC-SHA1\n"),
        "{s}"
    );
    assert!(s.contains("x-acs-signature-nonce:c9c7d5a6\n"), "{s}");
    let header = scrub(
        &format!("X-Acs-Security-Token: {TOKEN}\r\nHost: live.aliyuncs.com"),
        &[],
    );
    assert_eq!(
        header,
        "X-Acs-Security-Token: [redacted]\r\nHost: live.aliyuncs.com"
    );
}

#[test]
fn a_signed_url_and_an_authorization_header() {
    let query = format!(
        "AccessKeyId=STS.x&Action=StopCaster&SecurityToken={}&Signature=NLCqQkLf0UGNtU7aSBpXLoEz4CA%3D",
        signer::percent_encode(TOKEN)
    );
    let message =
        format!("error sending request for url (https://live.aliyuncs.com/?{query}): timed out");
    let s = scrub(&message, &[]);
    assert_clean(&s);
    assert_eq!(
        s,
        "error sending request for url (https://live.aliyuncs.com/?AccessKeyId=STS.x&Action=StopCaster&SecurityToken=[redacted]&Signature=[redacted]): timed out"
    );
    assert_eq!(
        strip_url_queries(&message),
        "error sending request for url (https://live.aliyuncs.com/?[redacted]): timed out"
    );
    let acs3 = "Authorization: ACS3-HMAC-SHA256 Credential=LTAI5tTest,SignedHeaders=host;x-acs-action,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0";
    assert_eq!(
        scrub(acs3, &[]),
        "Authorization: ACS3-HMAC-SHA256 Credential=LTAI5tTest,SignedHeaders=host;x-acs-action,Signature=[redacted]"
    );
}

#[test]
fn json_and_xml_fields() {
    let json = format!(
        r#"{{"AccessKeyId": "STS.x", "AccessKeySecret": "{SECRET}", "SecurityToken":"{}", "Expiration":"2024-01-02T03:04:05Z"}}"#,
        TOKEN.replace('/', "\\/")
    );
    let s = scrub(&json, &[]);
    assert_clean(&s);
    assert_eq!(
        s,
        r#"{"AccessKeyId": "STS.x", "AccessKeySecret": "[redacted]", "SecurityToken":"[redacted]", "Expiration":"2024-01-02T03:04:05Z"}"#
    );
    // JSON quoted inside a JSON string (a body quoted in a message).
    let nested = format!(r#"{{"Message":"got {{\"SecurityToken\":\"{TOKEN}\",\"Code\":\"x\"}}"}}"#);
    assert_eq!(
        scrub(&nested, &[]),
        r#"{"Message":"got {\"SecurityToken\":\"[redacted]\",\"Code\":\"x\"}"}"#
    );
    let xml = format!(
        "<Credentials><AccessKeySecret>{SECRET}</AccessKeySecret><SecurityToken>{TOKEN}</SecurityToken></Credentials>"
    );
    assert_eq!(
        scrub(&xml, &[]),
        "<Credentials><AccessKeySecret>[redacted]</AccessKeySecret><SecurityToken>[redacted]</SecurityToken></Credentials>"
    );
}

#[test]
fn known_values_go_wherever_they_are() {
    let message = format!(
        "token {TOKEN} refused; secret {SECRET}; encoded {}",
        signer::percent_encode(TOKEN)
    );
    let s = scrub(&message, &[SECRET, TOKEN]);
    assert_eq!(
        s,
        "token [redacted] refused; secret [redacted]; encoded [redacted]"
    );
    // Without them, a value with no name stays: nothing says it is secret.
    assert_eq!(scrub(&message, &[]), message);
    // Too short to tell from a word: left to the name pass.
    assert_eq!(
        scrub("the caster is stopped", &["is"]),
        "the caster is stopped"
    );
    let creds = Credentials::new("STS.x", SECRET).with_security_token(Some(TOKEN.into()));
    assert_eq!(known_values(&creds), vec![SECRET, TOKEN]);
}

#[test]
fn everything_else_is_left_as_it_is() {
    for text in [
        "Specified signature nonce was used already.",
        "Specified SecurityToken is expired.",
        "InvalidSecurityToken.MismatchWithAccessKey",
        r#"{"Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched"}"#,
        "<Code>MissingSecurityToken</Code>",
        "SignatureMethod=HMAC-SHA1&SignatureNonce=abc&SignatureVersion=1.0",
        "x-acs-signature-nonce:abc",
        "The specified caster does not exist.",
        "HTTP 502: <html><body>502 Bad Gateway</body></html>",
        "SecurityToken=&Action=StopCaster",
        "",
        "é SecurityToken ünïcödé",
    ] {
        assert_eq!(scrub(text, &[SECRET]), text);
    }
}

#[test]
fn scrubbing_twice_changes_nothing() {
    let message = format!("server string to sign is:{}", string_to_sign("GET", TOKEN));
    let once = scrub(&message, &[TOKEN]);
    assert_eq!(scrub(&once, &[TOKEN]), once);
    assert_eq!(scrub(&once, &[]), once);
}

#[test]
fn every_text_of_an_outcome() {
    let body = serde_json::json!({
        "RequestId": "R-1",
        "HostId": "live.aliyuncs.com",
        "Code": "SignatureDoesNotMatch",
        "Message": format!("Specified signature is not matched with our calculation. server string to sign is:{}", string_to_sign("POST", TOKEN)),
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q=SignatureDoesNotMatch&SecurityToken={TOKEN}"),
    });
    // interpret() scrubs on its own: every occurrence here is named.
    let outcome = interpret(400, body.to_string().as_bytes());
    let CallOutcome::CredentialsRefused(e) = &outcome else {
        panic!("{outcome:?}")
    };
    assert_clean(&e.message);
    assert_clean(e.recommend.as_deref().unwrap());
    assert_eq!(e.code, "SignatureDoesNotMatch");
    assert_eq!(e.request_id.as_deref(), Some("R-1"));
    let lost = CallOutcome::Transport(TransportError {
        kind: crate::outcome::TransportKind::Lost,
        message: format!("lost: http://127.0.0.1:1/?SecurityToken={TOKEN}&Signature=x (closed)"),
    });
    let CallOutcome::Transport(t) = scrub_outcome(lost, &[]) else {
        panic!()
    };
    assert_eq!(t.message, "lost: http://127.0.0.1:1/?[redacted] (closed)");
}
