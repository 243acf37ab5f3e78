//! `--help` prints no secret: with a password in every URL and every secret set in the
//! environment, the help of every command (found from `stopcaster --help`, so that a new command
//! is covered too) names the variables but never their secret values.

use super::*;

const DB_PASSWORD: &str = "db-pw-Never-In-Help-1";
const AMQP_PASSWORD: &str = "amqp-pw-Never-In-Help-2";
const TOKEN: &str = "sts-token-Never-In-Help-3";

/// The subcommands a `--help` lists under `Commands:`, `help` excepted.
fn commands(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let (out, _) = run(&[args, &["--help"]].concat(), env);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_help_text_prints_a_password_or_a_secret() {
    let database_url = format!("postgres://auditor:{DB_PASSWORD}@127.0.0.1:5432/stopcaster");
    let amqp_url = format!("amqp://ops:{AMQP_PASSWORD}@127.0.0.1:5672/%2f");
    let env: &[(&str, &str)] = &[
        ("DATABASE_URL", &database_url),
        ("AMQP_URL", &amqp_url),
        ("STOPCASTER_BENCH_PG", &database_url),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN),
        ("STOPCASTER_DASHBOARD_PASSWORD", PASSWORD),
    ];
    let mut helps = vec![Vec::<String>::new()];
    for command in commands(&[], env) {
        let nested = commands(&[&command], env);
        if nested.is_empty() {
            helps.push(vec![command]);
        } else {
            helps.extend(nested.into_iter().map(|sub| vec![command.clone(), sub]));
        }
    }
    assert!(helps.len() >= 12, "commands found: {helps:?}");
    let mut named_urls = 0;
    for args in &helps {
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.push("--help");
        let (out, _) = run(&argv, env);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{argv:?}: {}", stderr(&out));
        for secret in [DB_PASSWORD, AMQP_PASSWORD, KEY_SECRET, TOKEN, PASSWORD] {
            assert!(
                !text.contains(secret),
                "{argv:?} --help prints {secret}:\n{text}"
            );
        }
        named_urls += usize::from(text.contains("[env: DATABASE_URL]"));
    }
    // The help still says where each URL comes from.
    assert!(named_urls >= 5, "{named_urls} helps name DATABASE_URL");
}
