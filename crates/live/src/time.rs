//! Every timestamp text of the project, in one place: the RPC protocol's, HTTP's `Date`, and
//! the fixed precision one the audit and the stand-in's call log print.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

const RPC: &[FormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
/// Milliseconds, truncated (not rounded) so that two instants at least a second apart never
/// look closer.
const MILLIS: &[FormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The UTC timestamp the RPC protocol wants: `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rpc_timestamp(at: OffsetDateTime) -> String {
    format_utc(at, RPC)
}

/// RFC 3339 in UTC to the second, `2026-11-27T11:00:00Z`: the short fixed form of a table
/// meant to fit a terminal (truncated, like the others).
pub fn rfc3339_seconds(at: OffsetDateTime) -> String {
    format_utc(at, RPC)
}

/// Parses a `YYYY-MM-DDTHH:MM:SSZ` timestamp (the stand-in checks clients' clocks with it).
pub fn parse_rpc_timestamp(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, RPC)
        .ok()
        .map(|t| t.assume_utc())
}

/// HTTP's `Date`: `Thu, 03 Dec 2026 15:20:52 GMT` (RFC 9110's IMF-fixdate, always GMT).
const HTTP_DATE: &[FormatItem<'_>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// An HTTP `Date` header's text (the stand-in sends its clock's in every answer).
pub fn http_date(at: OffsetDateTime) -> String {
    format_utc(at, HTTP_DATE)
}

/// Parses an HTTP `Date` header (IMF-fixdate, the only form servers send today).
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s.trim(), HTTP_DATE)
        .ok()
        .map(|t| t.assume_utc())
}

/// Microseconds, the precision Postgres keeps: a report's times compare equal to the rows'.
const MICROS: &[FormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// RFC 3339 in UTC with exactly six decimals: `2026-11-27T11:00:00.123456Z`.
pub fn rfc3339_micros(at: OffsetDateTime) -> String {
    format_utc(at, MICROS)
}

/// RFC 3339 in UTC with exactly three decimals: `2026-11-27T11:00:00.123Z`.
pub fn rfc3339_millis(at: OffsetDateTime) -> String {
    format_utc(at, MILLIS)
}

fn format_utc(at: OffsetDateTime, format: &[FormatItem<'_>]) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(format)
        .expect("a UTC date within the years 0..=9999 formats")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_in_utc_with_fixed_precision() {
        let t = datetime!(2026-11-27 20:05:09.987654 +08:00);
        assert_eq!(rpc_timestamp(t), "2026-11-27T12:05:09Z");
        assert_eq!(rfc3339_millis(t), "2026-11-27T12:05:09.987Z");
        assert_eq!(rfc3339_micros(t), "2026-11-27T12:05:09.987654Z");
        assert_eq!(rfc3339_seconds(t), "2026-11-27T12:05:09Z");
        assert_eq!(
            rfc3339_millis(datetime!(2026-01-02 03:04:05 UTC)),
            "2026-01-02T03:04:05.000Z"
        );
        let whole = datetime!(2024-01-02 03:04:05 UTC);
        assert_eq!(rpc_timestamp(whole), "2024-01-02T03:04:05Z");
        assert_eq!(parse_rpc_timestamp("2024-01-02T03:04:05Z"), Some(whole));
        assert_eq!(parse_rpc_timestamp("2024-01-02 03:04:05"), None);
        assert_eq!(parse_rpc_timestamp("2024-01-02T03:04:05"), None);
        let date = datetime!(2026-12-03 15:20:52 UTC);
        assert_eq!(http_date(date), "Thu, 03 Dec 2026 15:20:52 GMT");
        assert_eq!(parse_http_date("Thu, 03 Dec 2026 15:20:52 GMT"), Some(date));
        assert_eq!(parse_http_date("2026-12-03T15:20:52Z"), None);
    }
}
