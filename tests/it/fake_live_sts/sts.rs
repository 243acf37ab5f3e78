//! The stand-in's STS: `AssumeRole` by a key of the role's account only, `AssumeRoleWithOIDC`
//! reading its token file afresh, `GetCallerIdentity`.

use super::*;

#[tokio::test]
async fn assume_role_by_a_key_of_the_roles_account_only() {
    let fake = start(config()).await;
    let (status, body) = sts(
        &fake,
        Some((A1.0, A1.1, None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", "worker-1")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["AssumedRoleUser"]["Arn"], format!("{ROLE}/worker-1"));
    assert!(
        body["AssumedRoleUser"]["AssumedRoleId"]
            .as_str()
            .is_some_and(|id| id.ends_with(":worker-1"))
    );
    let creds = temp_creds(&(status, body));
    // The other key of the same account may too.
    assume(&fake, A2, "worker-2").await;

    let other_account = sts(
        &fake,
        Some((B.0, B.1, None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", "intruder")],
    )
    .await;
    sts_error(&other_account, 403, "NoPermission");
    let unknown = sts(
        &fake,
        Some((A1.0, A1.1, None)),
        "AssumeRole",
        &[
            ("RoleArn", "acs:ram::1000000000000100:role/nope"),
            ("RoleSessionName", "s1"),
        ],
    )
    .await;
    sts_error(&unknown, 404, "EntityNotExist.Role");
    let bad_sig = sts(
        &fake,
        Some((A1.0, "wrong", None)),
        "AssumeRole",
        &[("RoleArn", ROLE), ("RoleSessionName", "s1")],
    )
    .await;
    sts_error(&bad_sig, 400, "SignatureDoesNotMatch");

    // The secret and token are nowhere in the call log.
    let log = serde_json::to_string(&fake.calls()).unwrap();
    assert!(!log.contains(creds.secret().expose()));
    assert!(!log.contains(creds.security_token().unwrap().expose()));
    let assume_calls: Vec<CallLogEntry> = fake
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("AssumeRole"))
        .collect();
    assert_eq!(assume_calls.len(), 5);
    assert!(
        assume_calls.iter().all(|c| !c.admitted),
        "STS calls spend no quota"
    );
}

#[tokio::test]
async fn assume_role_with_oidc_reads_the_token_file_afresh() {
    let dir = common::temp_dir("fake-sts");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "eyJ.first-token.sig").unwrap();
    let mut config = config();
    config.oidc_token_file = Some(token_file.clone());
    let fake = start(config).await;
    let oidc = |token: &'static str| {
        let fake = &fake;
        async move {
            sts(
                fake,
                None,
                "AssumeRoleWithOIDC",
                &[
                    ("RoleArn", ROLE),
                    ("OIDCProviderArn", PROVIDER),
                    ("OIDCToken", token),
                    ("RoleSessionName", "pod-1"),
                    ("DurationSeconds", "3600"),
                ],
            )
            .await
        }
    };

    let creds = temp_creds(&oidc("eyJ.first-token.sig").await);
    sts_error(
        &oidc("eyJ.wrong.sig").await,
        401,
        "AuthenticationFail.OIDCToken.Invalid",
    );

    // Kubernetes rotates the projected token: the old one stops working, the new one works,
    // with no restart.
    std::fs::write(&token_file, "eyJ.second-token.sig\n").unwrap();
    sts_error(
        &oidc("eyJ.first-token.sig").await,
        401,
        "AuthenticationFail.OIDCToken.Invalid",
    );
    temp_creds(&oidc("eyJ.second-token.sig").await);

    let wrong_provider = sts(
        &fake,
        None,
        "AssumeRoleWithOIDC",
        &[
            ("RoleArn", ROLE),
            (
                "OIDCProviderArn",
                "acs:ram::1000000000000200:oidc-provider/ack-rrsa",
            ),
            ("OIDCToken", "eyJ.second-token.sig"),
            ("RoleSessionName", "pod-1"),
        ],
    )
    .await;
    sts_error(&wrong_provider, 401, "AuthenticationFail.NoPermission");

    // The OIDC session's key belongs to the role's account.
    let (status, who) = sts(&fake, Some(key_of(&creds)), "GetCallerIdentity", &[]).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["AccountId"], UID_A);
    assert_eq!(
        who["Arn"],
        format!("acs:ram::{UID_A}:assumed-role/stopcaster/pod-1")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn get_caller_identity_names_the_account() {
    let fake = start(config()).await;
    let (status, me) = sts(&fake, Some((A1.0, A1.1, None)), "GetCallerIdentity", &[]).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["AccountId"], UID_A);
    assert_eq!(me["IdentityType"], "Account");
    assert_eq!(me["Arn"], format!("acs:ram::{UID_A}:root"));
    assert!(me["RequestId"].as_str().is_some_and(|r| r.len() == 36));
    let (_, b) = sts(&fake, Some((B.0, B.1, None)), "GetCallerIdentity", &[]).await;
    assert_eq!(b["AccountId"], UID_B);

    let temp = assume(&fake, A1, "who-am-i").await;
    let (status, role) = sts(&fake, Some(key_of(&temp)), "GetCallerIdentity", &[]).await;
    assert_eq!(status, 200, "{role}");
    assert_eq!(role["AccountId"], UID_A);
    assert_eq!(role["IdentityType"], "AssumedRoleUser");
    assert_eq!(
        role["Arn"],
        format!("acs:ram::{UID_A}:assumed-role/stopcaster/who-am-i")
    );
    assert!(
        role["PrincipalId"]
            .as_str()
            .is_some_and(|p| p.ends_with(":who-am-i"))
    );
    assert!(role["RoleId"].as_str().is_some());

    // A key with no account of its own configured gets a stable one.
    let mut config = FakeLiveConfig::new(vec![("LTAI-solo".into(), Secret::new("s"))]);
    config.qps = 1;
    let solo = start(config).await;
    let (_, me) = sts(
        &solo,
        Some(("LTAI-solo", "s", None)),
        "GetCallerIdentity",
        &[],
    )
    .await;
    assert_eq!(me["AccountId"], fake_live::default_account("LTAI-solo"));
}
