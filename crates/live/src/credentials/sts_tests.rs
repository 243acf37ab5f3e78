//! Unit tests of the STS requests and answers (a file of their own to keep the module short).

use std::collections::BTreeMap;

use super::*;
use crate::credentials::Secret;

/// Decodes `a=b&c=d` (the tests' own, minimal: `%XX` only, as the signer writes).
fn decode(s: &str) -> BTreeMap<String, String> {
    fn unescape(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (unescape(k), unescape(v))
        })
        .collect()
}

fn role() -> RamRole {
    RamRole {
        role_arn: "acs:ram::100:role/stopper".into(),
        session_name: "sess".into(),
        duration_seconds: 3600,
        policy: Some("{\"Version\":\"1\"}".into()),
        external_id: Some(Secret::new("ext")),
        sts_endpoint: "https://sts.aliyuncs.com".into(),
    }
}

#[test]
fn assume_role_is_signed_over_query_and_body() {
    let creds = Credentials::new("testid", "testsecret");
    let r = assume_role_request(&creds, &role(), "nonce-1", "2024-01-02T03:04:05Z");
    let query = decode(&r.query);
    let body = decode(&r.body);
    assert_eq!(query["Action"], "AssumeRole");
    assert_eq!(query["Version"], "2015-04-01");
    assert_eq!(query["Format"], "JSON");
    assert_eq!(query["AccessKeyId"], "testid");
    assert_eq!(query["SignatureMethod"], "HMAC-SHA1");
    assert_eq!(query["SignatureVersion"], "1.0");
    assert_eq!(query["SignatureNonce"], "nonce-1");
    assert_eq!(query["Timestamp"], "2024-01-02T03:04:05Z");
    assert!(!query.contains_key("SecurityToken"));
    assert!(!query.contains_key("RoleArn"));
    assert_eq!(body["RoleArn"], "acs:ram::100:role/stopper");
    assert_eq!(body["RoleSessionName"], "sess");
    assert_eq!(body["DurationSeconds"], "3600");
    assert_eq!(body["Policy"], "{\"Version\":\"1\"}");
    assert_eq!(body["ExternalId"], "ext");
    // What a verifier does: every parameter but Signature, wherever it came from.
    let mut all = query.clone();
    all.extend(body.clone());
    let expected = signer::sign(
        "POST",
        "testsecret",
        all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    assert_eq!(query["Signature"], expected);
    // Another secret, another signature: the check above could fail.
    assert_ne!(
        query["Signature"],
        signer::sign(
            "POST",
            "other",
            all.iter().map(|(k, v)| (k.as_str(), v.as_str()))
        )
    );
    assert_eq!(format!("{r:?}"), "RpcRequest(***)");
}

#[test]
fn a_temporary_base_sends_its_token() {
    let creds = Credentials::new("STS.id", "s").with_security_token(Some("tok".into()));
    let mut bare = role();
    bare.policy = None;
    bare.external_id = None;
    let r = assume_role_request(&creds, &bare, "n", "t");
    let query = decode(&r.query);
    assert_eq!(query["SecurityToken"], "tok");
    let body = decode(&r.body);
    assert!(!body.contains_key("Policy") && !body.contains_key("ExternalId"));
}

#[test]
fn oidc_is_unsigned_and_carries_the_token_in_the_body() {
    let role = OidcRole {
        role_arn: "acs:ram::100:role/r".into(),
        oidc_provider_arn: "acs:ram::100:oidc-provider/ack".into(),
        token_file: "/t".into(),
        session_name: "s".into(),
        duration_seconds: 900,
        policy: None,
        sts_endpoint: "https://sts.aliyuncs.com".into(),
    };
    let r = assume_role_with_oidc_request(&role, "eyJ.token+/=", "2024-01-02T03:04:05Z");
    let query = decode(&r.query);
    assert_eq!(
        query.keys().collect::<Vec<_>>(),
        ["Action", "Format", "Timestamp", "Version"]
    );
    assert_eq!(query["Action"], "AssumeRoleWithOIDC");
    let body = decode(&r.body);
    assert_eq!(body["OIDCToken"], "eyJ.token+/=");
    assert_eq!(body["OIDCProviderArn"], "acs:ram::100:oidc-provider/ack");
    assert_eq!(body["RoleArn"], "acs:ram::100:role/r");
    assert_eq!(body["RoleSessionName"], "s");
    assert_eq!(body["DurationSeconds"], "900");
    assert!(!r.query.contains("eyJ"));
}

#[test]
fn caller_identity_is_signed() {
    let creds = Credentials::new("testid", "testsecret");
    let r = caller_identity_request(&creds, "n", "2024-01-02T03:04:05Z");
    assert_eq!(r.body, "");
    let query = decode(&r.query);
    assert_eq!(query["Action"], "GetCallerIdentity");
    let expected = signer::sign(
        "POST",
        "testsecret",
        query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    assert_eq!(query["Signature"], expected);
}

#[test]
fn parses_assume_role_answers() {
    let ok = br#"{"RequestId":"R","AssumedRoleUser":{"Arn":"acs:ram::100:role/r/s","AssumedRoleId":"3:s"},
        "Credentials":{"AccessKeyId":"STS.new","AccessKeySecret":"new-secret","SecurityToken":"new-token","Expiration":"2030-01-02T03:04:05Z"}}"#;
    let c = parse_assume_role(200, ok).unwrap();
    assert_eq!(c.access_key_id(), "STS.new");
    assert_eq!(c.secret().expose(), "new-secret");
    assert_eq!(c.security_token().unwrap().expose(), "new-token");
    assert_eq!(
        c.expiration(),
        Some(time::macros::datetime!(2030-01-02 03:04:05 UTC))
    );

    let e = parse_assume_role(
        403,
        br#"{"RequestId":"R2","HostId":"sts.aliyuncs.com","Code":"NoPermission","Message":"You are not authorized"}"#,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "HTTP 403 NoPermission (RequestId R2)");

    for (body, expected) in [
        (&br#"{"RequestId":"R"}"#[..], "no Credentials"),
        (
            br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"leak","Expiration":"2030-01-02T03:04:05Z"}}"#,
            "no Credentials.SecurityToken",
        ),
        (
            br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"leak","SecurityToken":"t"}}"#,
            "no Credentials.Expiration",
        ),
        (
            br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"leak","SecurityToken":"t","Expiration":"soon"}}"#,
            "Credentials.Expiration is not",
        ),
        (b"<html>", "not JSON"),
    ] {
        let e = parse_assume_role(200, body).unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
        assert!(!e.contains("leak"), "{e}");
    }
}

#[test]
fn parses_caller_identity() {
    let ok = br#"{"IdentityType":"RAMUser","AccountId":"1234567890123456","RequestId":"R","PrincipalId":"2","UserId":"2","Arn":"acs:ram::1234567890123456:user/u"}"#;
    assert_eq!(parse_caller_identity(200, ok).unwrap(), "1234567890123456");
    assert!(
        parse_caller_identity(200, br#"{"RequestId":"R"}"#)
            .unwrap_err()
            .to_string()
            .contains("no AccountId")
    );
    let e = parse_caller_identity(400, br#"{"Code":"InvalidAccessKeyId.NotFound"}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "HTTP 400 InvalidAccessKeyId.NotFound");
}
