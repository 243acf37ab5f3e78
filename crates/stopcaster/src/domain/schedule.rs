//! Scheduled stops, the pure part: how far ahead a job may be scheduled, when a scheduled job is
//! handed back to the pipeline, and what `enqueue --at TIME [--tz ZONE]` means.
//!
//! Time zones come from `jiff`: the system's `/usr/share/zoneinfo` when it has one, else the copy
//! of the tz database built into the binary (feature `tzdb-bundle-always`), so `--tz` works on a
//! slim image without tzdata too.

use std::time::Duration;

use jiff::civil::{DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The furthest ahead a `not_before` may be: a later one is taken for a typo (a wrong year)
/// and the message is rejected rather than held for years.
pub(crate) const MAX_AHEAD: time::Duration = time::Duration::days(366);

/// A job due within this is handed to the pipeline rather than held as `scheduled`: the stager
/// publishes due rows this long ahead, and a delivery that arrives this close to its due time
/// is kept by its worker, which takes its pacer slot ahead and calls at the due time.
pub(crate) const LEAD: Duration = Duration::from_secs(3);

/// How long before a job's due time its worker reserves the pacer slot, so the first call of a
/// scheduled batch leaves at the due time and none of the lead is lost.
pub(crate) const SLOT_LEAD: Duration = Duration::from_secs(1);

/// Why `--at` was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AtError {
    #[error(
        "--at {0:?}: expected an RFC 3339 time (2026-11-27T21:00:00+08:00) or HH:MM[:SS] (21:00)"
    )]
    Format(String),
    #[error("--tz {0:?}: unknown time zone (an IANA name such as Asia/Shanghai or UTC)")]
    UnknownZone(String),
    #[error(
        "--tz applies to HH:MM[:SS] only; {0:?} carries its own offset (drop --tz, or give HH:MM)"
    )]
    ZoneWithOffset(String),
    #[error("--at {at}: that time is in the past (now: {now}); nothing was enqueued")]
    Past { at: String, now: String },
    #[error("--at {0}: more than 366 days ahead; nothing was enqueued")]
    TooFar(String),
    #[error("--at {0:?}: {1}")]
    Zone(String, String),
}

/// The due time `enqueue --at` resolved, and how to say it back to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct At {
    pub at: OffsetDateTime,
    /// The time in the zone it was given in, with the zone's name when there was one, e.g.
    /// `2026-11-27T21:00:00+08:00[Asia/Shanghai]`.
    pub described: String,
}

/// Reads `enqueue --at TEXT [--tz ZONE]` as of `now`:
///
/// - RFC 3339 (`2026-11-27T21:00:00+08:00`, `...Z`): that instant; `--tz` is refused with it.
/// - `HH:MM` or `HH:MM:SS`: the next time the clock in `zone` (an IANA name; `None`: the local
///   zone, `TZ` or `/etc/localtime`, UTC if neither says) shows it, today or tomorrow.
///   Daylight saving: a time skipped by a spring-forward gap is taken as the instant the
///   clock jumps past it, shifted by the gap (02:30 in a 02:00 to 03:00 gap is 03:30, as cron
///   and RFC 5545 do); a time that occurs twice in an autumn fold is the next occurrence (the
///   first, or the second if the first has passed).
///
/// A time in the past, or more than 366 days ahead, is refused: a typo must not stop every
/// studio of a batch now.
pub(crate) fn parse_at(text: &str, zone: Option<&str>, now: OffsetDateTime) -> Result<At, AtError> {
    let text = text.trim();
    if let Some((h, m, s)) = clock_time(text) {
        let tz = match zone {
            Some(name) => TimeZone::get(name).map_err(|_| AtError::UnknownZone(name.to_owned()))?,
            None => TimeZone::system(),
        };
        let at = next_clock_time(&tz, Time::constant(h, m, s, 0), now)
            .map_err(|e| AtError::Zone(text.to_owned(), e.to_string()))?;
        let described = jiff_timestamp(at).to_zoned_datetime(tz).to_string();
        return Ok(At { at, described });
    }
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| AtError::Format(text.to_owned()))?;
    if zone.is_some() {
        return Err(AtError::ZoneWithOffset(text.to_owned()));
    }
    if at <= now {
        return Err(AtError::Past {
            at: text.to_owned(),
            now: now.format(&Rfc3339).unwrap_or_default(),
        });
    }
    if at - now > MAX_AHEAD {
        return Err(AtError::TooFar(text.to_owned()));
    }
    Ok(At {
        at,
        described: text.to_owned(),
    })
}

/// `H:MM`, `HH:MM` or `HH:MM:SS` with valid ranges.
fn clock_time(text: &str) -> Option<(i8, i8, i8)> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let number = |p: &str, max: i8, widths: &[usize]| -> Option<i8> {
        if !widths.contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse::<i8>().ok().filter(|n| *n <= max)
    };
    let h = number(parts[0], 23, &[1, 2])?;
    let m = number(parts[1], 59, &[2])?;
    let s = match parts.get(2) {
        Some(p) => number(p, 59, &[2])?,
        None => 0,
    };
    Some((h, m, s))
}

/// The first instant after `now` at which the clock in `tz` shows `time` (see [`parse_at`]).
fn next_clock_time(
    tz: &TimeZone,
    time: Time,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, jiff::Error> {
    let now_ts = jiff_timestamp(now);
    let today = now_ts.to_zoned_datetime(tz.clone()).date();
    let mut day = today;
    // Today, then tomorrow; a third day only if a zone skipped a whole day (Samoa, 2011).
    for _ in 0..3 {
        let civil = DateTime::from_parts(day, time);
        let ambiguous = tz.to_ambiguous_timestamp(civil);
        let candidates = match ambiguous.offset() {
            AmbiguousOffset::Fold { .. } => vec![ambiguous.earlier()?, ambiguous.later()?],
            // A gap: the civil time shifted forward by the gap ("compatible").
            _ => vec![ambiguous.compatible()?],
        };
        if let Some(next) = candidates.into_iter().find(|t| *t > now_ts) {
            return Ok(offset_date_time(next));
        }
        day = day.tomorrow()?;
    }
    unreachable!("a clock time occurs within three days")
}

fn jiff_timestamp(t: OffsetDateTime) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(t.unix_timestamp_nanos()).expect("a time within jiff's range")
}

fn offset_date_time(t: jiff::Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond()).expect("a time within range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(text: &str, zone: Option<&str>, now: OffsetDateTime) -> Result<OffsetDateTime, AtError> {
        parse_at(text, zone, now).map(|a| a.at)
    }

    #[test]
    fn rfc3339_is_an_instant_and_must_be_ahead() {
        let now = datetime!(2026-11-27 12:00 UTC);
        assert_eq!(
            at("2026-11-27T21:00:00+08:00", None, now),
            Ok(datetime!(2026-11-27 13:00 UTC))
        );
        assert_eq!(
            at(" 2026-11-27T12:00:01Z ", None, now),
            Ok(datetime!(2026-11-27 12:00:01 UTC))
        );
        assert!(matches!(
            at("2026-11-27T11:59:59Z", None, now),
            Err(AtError::Past { .. })
        ));
        assert!(matches!(
            at("2026-11-27T12:00:00Z", None, now),
            Err(AtError::Past { .. })
        ));
        assert!(matches!(
            at("2028-01-01T00:00:00Z", None, now),
            Err(AtError::TooFar(_))
        ));
        assert!(matches!(
            at("2026-11-27T21:00:00+08:00", Some("Asia/Shanghai"), now),
            Err(AtError::ZoneWithOffset(_))
        ));
        let err = at("2026-11-27T11:00:00Z", None, now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in the past"), "{err}");
    }

    #[test]
    fn clock_times_are_the_next_such_time_in_the_zone() {
        // 12:00 UTC is 20:00 in Shanghai: 21:00 is today, 19:00 tomorrow.
        let now = datetime!(2026-11-27 12:00 UTC);
        let shanghai = Some("Asia/Shanghai");
        assert_eq!(
            at("21:00", shanghai, now),
            Ok(datetime!(2026-11-27 13:00 UTC))
        );
        assert_eq!(
            at("19:00", shanghai, now),
            Ok(datetime!(2026-11-28 11:00 UTC))
        );
        assert_eq!(
            at("20:00:00", shanghai, now),
            Ok(datetime!(2026-11-28 12:00 UTC))
        );
        assert_eq!(
            at("20:00:01", shanghai, now),
            Ok(datetime!(2026-11-27 12:00:01 UTC))
        );
        assert_eq!(
            at("9:30", Some("UTC"), now),
            Ok(datetime!(2026-11-28 09:30 UTC))
        );
        let described = parse_at("21:00", shanghai, now).unwrap().described;
        assert_eq!(described, "2026-11-27T21:00:00+08:00[Asia/Shanghai]");
    }

    #[test]
    fn bad_times_and_zones_are_refused() {
        let now = datetime!(2026-11-27 12:00 UTC);
        for bad in [
            "24:00",
            "12:60",
            "12:00:60",
            "1200",
            "12",
            "12:0",
            "tomorrow",
            "",
            "12:00:00:00",
            "-1:00",
            "+1:00",
        ] {
            assert!(
                matches!(at(bad, Some("UTC"), now), Err(AtError::Format(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            at("21:00", Some("Mars/Olympus_Mons"), now),
            Err(AtError::UnknownZone("Mars/Olympus_Mons".into()))
        );
    }

    #[test]
    fn daylight_saving_gaps_shift_forward_and_folds_take_the_next_occurrence() {
        // Europe/Berlin springs forward on 2026-03-29 at 02:00 CET to 03:00 CEST.
        let berlin = Some("Europe/Berlin");
        let before = datetime!(2026-03-28 23:00 UTC); // 00:00 CET on the 29th
        assert_eq!(
            at("02:30", berlin, before),
            Ok(datetime!(2026-03-29 01:30 UTC)),
            "03:30 CEST"
        );
        // Falls back on 2026-10-25 at 03:00 CEST to 02:00 CET: 02:30 happens twice.
        let night = datetime!(2026-10-24 22:00 UTC); // 00:00 CEST
        assert_eq!(
            at("02:30", berlin, night),
            Ok(datetime!(2026-10-25 00:30 UTC)),
            "first, CEST"
        );
        let between = datetime!(2026-10-25 00:45 UTC); // 02:45 CEST, before the fold's repeat
        assert_eq!(
            at("02:30", berlin, between),
            Ok(datetime!(2026-10-25 01:30 UTC)),
            "second, CET"
        );
        let after = datetime!(2026-10-25 01:45 UTC); // 02:45 CET
        assert_eq!(
            at("02:30", berlin, after),
            Ok(datetime!(2026-10-26 01:30 UTC)),
            "tomorrow"
        );
    }

    #[test]
    fn the_built_in_tz_database_serves_machines_without_tzdata() {
        let db = jiff::tz::TimeZoneDatabase::bundled();
        let tz = db.get("Asia/Shanghai").expect("bundled Asia/Shanghai");
        let now = datetime!(2026-11-27 12:00 UTC);
        assert_eq!(
            next_clock_time(&tz, Time::constant(21, 0, 0, 0), now).unwrap(),
            datetime!(2026-11-27 13:00 UTC)
        );
    }
}
