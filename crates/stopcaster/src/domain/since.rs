//! Durations as operators type them (`90s`, `2h`, `1h30m`), for `--since`, `--timeout` and
//! the dashboard's filters.

use std::time::Duration;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SinceError {
    #[error(
        "an empty text is not a duration: a number and a unit s, m, h or d, e.g. 90s, 2h, 1h30m"
    )]
    Empty,
    #[error("{0} is not a duration: a number and a unit s, m, h or d, e.g. 90s, 2h, 1h30m")]
    Invalid(String),
    #[error("{0} is too long a duration (at most 100 years)")]
    Overflow(String),
}

/// Parses `--since`: one or more `<integer><unit>` parts, unit `s`, `m`, `h` or `d`
/// (`2h`, `90s`, `1d12h`). A bare number is refused, since its unit would be a guess.
pub(crate) fn parse_since(text: &str) -> Result<Duration, SinceError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SinceError::Empty);
    }
    let invalid = || SinceError::Invalid(text.to_owned());
    let overflow = || SinceError::Overflow(text.to_owned());
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| overflow())?;
        let mut chars = rest[digits..].chars();
        let unit = match chars.next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => return Err(invalid()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(overflow)?;
        rest = chars.as_str();
    }
    // Postgres intervals end around 178 million years; keep well inside.
    if total > 100 * 365 * 86_400 {
        return Err(overflow());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_units() {
        assert_eq!(parse_since("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_since("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_since("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_since(" 7d "), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_since("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_since("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn since_refuses_what_it_cannot_read() {
        assert_eq!(parse_since(""), Err(SinceError::Empty));
        for bad in ["2", "h", "2x", "2H", "-2h", "2.5h", "2 h", "1h30", "2hh"] {
            assert!(
                matches!(parse_since(bad), Err(SinceError::Invalid(_))),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            parse_since("99999999999999999999s"),
            Err(SinceError::Overflow(_))
        ));
        assert!(matches!(
            parse_since("999999999999d"),
            Err(SinceError::Overflow(_))
        ));
    }
}
