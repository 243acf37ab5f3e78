//! The rules of [`super`], one by one: precedence, every mode, what is missing.

use std::collections::HashMap;

use super::*;

/// An environment of these variables only (profile.rs's tests use it too).
pub(in crate::credentials) fn env_of(
    pairs: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn pick(pairs: &[(&str, &str)]) -> Result<Source, ConfigError> {
    select(&env_of(pairs), None)
}

#[test]
fn static_keys_come_first() {
    let s = pick(&[
        (ACCESS_KEY_ID, "LTAIenv"),
        (ACCESS_KEY_SECRET, "env-secret"),
        (ROLE_ARN, "acs:ram::1:role/r"),
        (OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
        (OIDC_TOKEN_FILE, "/tmp/t"),
        (CREDENTIALS_URI, "http://127.0.0.1/c"),
        (ECS_METADATA, "role"),
    ])
    .unwrap();
    assert_eq!(s.label, "env");
    let SourceKind::Static(c) = &s.kind else {
        panic!("{s:?}")
    };
    assert_eq!(c.access_key_id(), "LTAIenv");
    assert!(c.security_token().is_none());
    assert!(s.is_static());

    let s = pick(&[
        (ACCESS_KEY_ID, "STS.x"),
        (ACCESS_KEY_SECRET, "s"),
        (SECURITY_TOKEN, "tok"),
    ])
    .unwrap();
    let SourceKind::Static(c) = &s.kind else {
        panic!()
    };
    assert_eq!(c.security_token().unwrap().expose(), "tok");
    assert!(!format!("{s:?}").contains("tok\""));
}

#[test]
fn half_a_key_pair_is_an_error_that_names_the_missing_variable() {
    let e = pick(&[(ACCESS_KEY_ID, "LTAI")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ALIBABA_CLOUD_ACCESS_KEY_ID is set but not ALIBABA_CLOUD_ACCESS_KEY_SECRET"
    );
    let e = pick(&[(ACCESS_KEY_SECRET, "very-secret")]).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("but not ALIBABA_CLOUD_ACCESS_KEY_ID")
    );
    assert!(!e.to_string().contains("very-secret"));
    // Empty counts as unset, as in Alibaba's libraries.
    let s = pick(&[(ACCESS_KEY_ID, ""), (ACCESS_KEY_SECRET, "")]).unwrap();
    assert_eq!(s.label, "ecs-ram-role");
}

#[test]
fn oidc_from_the_environment() {
    let s = pick(&[
        (ROLE_ARN, "acs:ram::1:role/r"),
        (OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
        (OIDC_TOKEN_FILE, "/var/run/token"),
        (ROLE_SESSION_NAME, "my-session"),
        (CREDENTIALS_URI, "http://127.0.0.1/c"),
    ])
    .unwrap();
    let SourceKind::Oidc(o) = s.kind else {
        panic!()
    };
    assert_eq!(
        o,
        OidcRole {
            role_arn: "acs:ram::1:role/r".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/p".into(),
            token_file: "/var/run/token".into(),
            session_name: "my-session".into(),
            duration_seconds: 3600,
            policy: None,
            sts_endpoint: "https://sts.aliyuncs.com".into(),
        }
    );
    let s = pick(&[
        (ROLE_ARN, "a"),
        (OIDC_PROVIDER_ARN, "p"),
        (OIDC_TOKEN_FILE, "/t"),
    ])
    .unwrap();
    let SourceKind::Oidc(o) = s.kind else {
        panic!()
    };
    assert!(
        o.session_name.starts_with("stopcaster-"),
        "{}",
        o.session_name
    );
}

#[test]
fn partial_oidc_names_what_is_missing() {
    let e = pick(&[(ROLE_ARN, "a"), (ECS_METADATA, "role")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ALIBABA_CLOUD_ROLE_ARN is set but not ALIBABA_CLOUD_OIDC_PROVIDER_ARN and \
         ALIBABA_CLOUD_OIDC_TOKEN_FILE"
    );
    let e = pick(&[(OIDC_TOKEN_FILE, "/t"), (OIDC_PROVIDER_ARN, "p")]).unwrap_err();
    assert!(
        e.to_string().ends_with("but not ALIBABA_CLOUD_ROLE_ARN"),
        "{e}"
    );
}

#[test]
fn credentials_uri_comes_before_the_cli_profile() {
    let cli = CliConfigFile {
        path: "/h/.aliyun/config.json".into(),
        text: Some(
            r#"{"current":"a","profiles":[{"name":"a","mode":"AK","access_key_id":"K","access_key_secret":"S"}]}"#
                .into(),
        ),
    };
    let s = select(
        &env_of(&[(CREDENTIALS_URI, "http://127.0.0.1:9/creds?token=abc")]),
        Some(&cli),
    )
    .unwrap();
    assert_eq!(s.label, "credentials-uri");
    assert!(!format!("{s:?}").contains("abc"), "{s:?}");
    let e = pick(&[(CREDENTIALS_URI, "ftp://x")]).unwrap_err();
    assert!(e.to_string().contains(CREDENTIALS_URI));
    // Without the URI, the profile.
    assert_eq!(
        select(&env_of(&[]), Some(&cli)).unwrap().label,
        "cli-profile \"a\" (AK)"
    );
    // Disabled: skipped, down to ECS.
    assert_eq!(
        select(&env_of(&[(CLI_PROFILE_DISABLED, "TRUE")]), Some(&cli))
            .unwrap()
            .label,
        "ecs-ram-role"
    );
}

#[test]
fn a_named_profile_needs_the_file() {
    let cli = CliConfigFile {
        path: "/h/.aliyun/config.json".into(),
        text: None,
    };
    let e = select(&env_of(&[(PROFILE, "prod")]), Some(&cli)).unwrap_err();
    assert!(
        e.to_string().contains("/h/.aliyun/config.json") && e.to_string().contains(PROFILE),
        "{e}"
    );
    // No file and no profile named: not configured, on to ECS.
    let s = select(&env_of(&[]), Some(&cli)).unwrap();
    assert_eq!(s.label, "ecs-ram-role");
}

#[test]
fn ecs_is_the_last_resort_unless_disabled() {
    let s = pick(&[]).unwrap();
    let SourceKind::Ecs(e) = s.kind else { panic!() };
    assert_eq!(
        e,
        EcsRole {
            role_name: None,
            endpoint: "http://100.100.100.200".into(),
            imdsv1_disabled: false,
            implicit: true,
        }
    );
    let s = pick(&[
        (ECS_METADATA, "worker-role"),
        (ECS_METADATA_ENDPOINT, "http://127.0.0.1:1234/"),
        (IMDSV1_DISABLED, "true"),
    ])
    .unwrap();
    let SourceKind::Ecs(e) = s.kind else { panic!() };
    assert_eq!(e.role_name.as_deref(), Some("worker-role"));
    assert_eq!(e.endpoint, "http://127.0.0.1:1234");
    assert!(e.imdsv1_disabled && !e.implicit);

    let e = select(
        &env_of(&[(ECS_METADATA_DISABLED, "true")]),
        Some(&CliConfigFile {
            path: "/h/c.json".into(),
            text: None,
        }),
    )
    .unwrap_err();
    assert_eq!(
        e,
        ConfigError::NothingConfigured {
            cli_config_path: Some("/h/c.json".into()),
            ecs_disabled: true
        }
    );
    let shown = e.to_string();
    assert!(shown.starts_with("no credentials configured"), "{shown}");
    assert!(!shown.contains("ECS"), "{shown}");
}

#[test]
fn sts_endpoint_derivation() {
    let e = |pairs: &[(&str, &str)], region: Option<&str>, vpc: Option<bool>| {
        sts_endpoint(&env_of(pairs), region, vpc)
    };
    assert_eq!(e(&[], None, None), "https://sts.aliyuncs.com");
    // ACK injects a bare host; ours wins when both are set.
    assert_eq!(
        e(
            &[(ALIBABA_STS_ENDPOINT, "sts-vpc.cn-hangzhou.aliyuncs.com")],
            None,
            None
        ),
        "https://sts-vpc.cn-hangzhou.aliyuncs.com"
    );
    assert_eq!(
        e(
            &[
                (ALIBABA_STS_ENDPOINT, "sts-vpc.cn-hangzhou.aliyuncs.com"),
                (STS_ENDPOINT, "http://127.0.0.1:8080/")
            ],
            Some("cn-beijing"),
            None
        ),
        "http://127.0.0.1:8080"
    );
    assert_eq!(
        e(&[(STS_REGION, "cn-shanghai")], None, None),
        "https://sts.cn-shanghai.aliyuncs.com"
    );
    assert_eq!(
        e(
            &[(STS_REGION, "cn-shanghai"), (VPC_ENDPOINT_ENABLED, "true")],
            None,
            None
        ),
        "https://sts-vpc.cn-shanghai.aliyuncs.com"
    );
    // VPC without a region: the central endpoint, as Alibaba's libraries do.
    assert_eq!(
        e(&[(VPC_ENDPOINT_ENABLED, "true")], None, None),
        "https://sts.aliyuncs.com"
    );
    // A profile's region and VPC choice come first.
    assert_eq!(
        e(
            &[(STS_REGION, "cn-beijing"), (VPC_ENDPOINT_ENABLED, "true")],
            Some("ap-southeast-1"),
            Some(false)
        ),
        "https://sts.ap-southeast-1.aliyuncs.com"
    );
    // The explicit endpoint wins over everything.
    assert_eq!(
        e(
            &[(STS_ENDPOINT, "http://127.0.0.1:8080/"), (STS_REGION, "x")],
            Some("y"),
            Some(true)
        ),
        "http://127.0.0.1:8080"
    );
}

#[test]
fn cli_config_path_honours_the_variable() {
    assert_eq!(
        cli_config_path(&env_of(&[("HOME", "/home/u")])),
        Some(PathBuf::from("/home/u/.aliyun/config.json"))
    );
    assert_eq!(
        cli_config_path(&env_of(&[
            ("HOME", "/home/u"),
            (CONFIG_FILE, "/etc/a.json")
        ])),
        Some(PathBuf::from("/etc/a.json"))
    );
    assert_eq!(cli_config_path(&env_of(&[])), None);
}

#[test]
fn durations() {
    assert_eq!(duration_seconds(None), Ok(3600));
    assert_eq!(duration_seconds(Some(0)), Ok(3600));
    assert_eq!(duration_seconds(Some(900)), Ok(900));
    assert!(duration_seconds(Some(899)).unwrap_err().contains("900"));
}
