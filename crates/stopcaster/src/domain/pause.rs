//! An operator's pause request, checked before anything is written, the same for the command
//! (`stopcaster pause`) and the dashboard (`POST /api/accounts/NAME/pause`): the account's name
//! (`default` for the environment's credentials, or a name of the accounts file), a reason,
//! and when it lifts by itself (`until`: an RFC 3339 time, or a duration from now such as
//! `30m`), refused in words when it is unreadable or not in the future.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::since::parse_since;
use stopcaster_live::ids::AccountName;

/// The name of the environment's credentials' account.
pub(crate) const DEFAULT_ACCOUNT: &str = "default";
/// The longest reason kept (characters).
pub(crate) const MAX_REASON_CHARS: usize = 1_000;
/// The furthest `until` may be.
const MAX_AHEAD: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why a pause request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PauseRequestError {
    #[error("invalid account name: {0}")]
    Account(String),
    #[error(
        "unknown account {0:?}: name one of the accounts file ({1}), or `default` for the environment's credentials"
    )]
    UnknownAccount(String, String),
    #[error("a pause needs a reason (--reason TEXT): it is what the next operator reads")]
    NoReason,
    #[error("the reason is {0} characters long; at most {MAX_REASON_CHARS}")]
    LongReason(usize),
    #[error(
        "--until {0:?}: expected an RFC 3339 time (2026-12-03T21:30:00Z, 2026-12-03T22:30:00+01:00) or a duration from now (30m, 2h, 1h30m)"
    )]
    Until(String),
    #[error(
        "--until {at}: that time is in the past (now: {now}); give a later time, or leave --until out to pause until resumed"
    )]
    Past { at: String, now: String },
    #[error("--until {0}: more than 366 days ahead")]
    TooFar(String),
}

/// The account a pause or resume names, checked: a well-formed name, and one the accounts file
/// lists (or `default`) when `known` gives them.
pub(crate) fn account(name: &str, known: Option<&[String]>) -> Result<String, PauseRequestError> {
    let name = name.trim();
    AccountName::parse(name).map_err(|r| PauseRequestError::Account(r.reason))?;
    if let Some(known) = known
        && name != DEFAULT_ACCOUNT
        && !known.iter().any(|k| k == name)
    {
        let mut listed: Vec<&str> = known.iter().map(String::as_str).collect();
        listed.sort_unstable();
        return Err(PauseRequestError::UnknownAccount(
            name.to_owned(),
            listed.join(", "),
        ));
    }
    Ok(name.to_owned())
}

/// A reason: not blank, at most [`MAX_REASON_CHARS`]; kept as typed (shown escaped).
pub(crate) fn reason(text: &str) -> Result<String, PauseRequestError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(PauseRequestError::NoReason);
    }
    let n = text.chars().count();
    if n > MAX_REASON_CHARS {
        return Err(PauseRequestError::LongReason(n));
    }
    Ok(text.to_owned())
}

/// `--until TEXT` as of `now`: an RFC 3339 time, or a duration from now; in the future and
/// at most a year ahead.
pub(crate) fn until(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, PauseRequestError> {
    let text = text.trim();
    let at = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(at) => at,
        Err(_) => {
            let d = parse_since(text).map_err(|_| PauseRequestError::Until(text.to_owned()))?;
            if d > MAX_AHEAD {
                return Err(PauseRequestError::TooFar(text.to_owned()));
            }
            now + d
        }
    };
    if at <= now {
        return Err(PauseRequestError::Past {
            at: text.to_owned(),
            now: now.format(&Rfc3339).unwrap_or_default(),
        });
    }
    if at - now > MAX_AHEAD {
        return Err(PauseRequestError::TooFar(text.to_owned()));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-03 20:55 UTC);

    #[test]
    fn until_takes_a_time_or_a_duration_and_refuses_the_past() {
        assert_eq!(
            until("2026-12-03T21:30:00Z", NOW),
            Ok(datetime!(2026-12-03 21:30 UTC))
        );
        assert_eq!(
            until("2026-12-04T05:30:00+08:00", NOW),
            Ok(datetime!(2026-12-03 21:30 UTC))
        );
        assert_eq!(until("30m", NOW), Ok(datetime!(2026-12-03 21:25 UTC)));
        assert!(matches!(
            until("2026-12-03T20:00:00Z", NOW),
            Err(PauseRequestError::Past { .. })
        ));
        let e = until("tomorrow", NOW).unwrap_err();
        assert!(e.to_string().contains("expected an RFC 3339 time"), "{e}");
        assert!(matches!(
            until("0s", NOW),
            Err(PauseRequestError::Past { .. })
        ));
        assert!(matches!(
            until("400d", NOW),
            Err(PauseRequestError::TooFar(_))
        ));
        assert!(until("", NOW).is_err());
    }

    #[test]
    fn reasons_and_accounts_are_checked() {
        assert_eq!(reason("  key leaked "), Ok("key leaked".into()));
        assert_eq!(reason(" "), Err(PauseRequestError::NoReason));
        assert_eq!(
            reason(&"x".repeat(1001)),
            Err(PauseRequestError::LongReason(1001))
        );
        assert_eq!(
            reason("\u{1b}[2J"),
            Ok("\u{1b}[2J".into()),
            "kept, shown escaped"
        );
        let known = ["prod".to_owned(), "backup".to_owned()];
        assert_eq!(account("prod", Some(&known)), Ok("prod".into()));
        assert_eq!(account("default", Some(&known)), Ok("default".into()));
        let e = account("nope", Some(&known)).unwrap_err();
        assert!(e.to_string().contains("(backup, prod)"), "{e}");
        assert_eq!(account("anything", None), Ok("anything".into()));
        assert!(account("", None).is_err());
    }
}
