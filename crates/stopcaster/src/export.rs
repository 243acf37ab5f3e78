//! The job row as the report and the dashboard's CSV export write it: the columns in order,
//! each row's fields as text, and RFC 4180 CSV with each value in the escaped form of
//! [`crate::domain::display`] (control characters and bidirectional controls as `\x1b`,
//! `\u{202e}`, a backslash as `\\`: the exact value reads back) and cells that would run as
//! formulas neutralised. Below both, so that a column added here reaches both at once.

use std::borrow::Cow;

use time::OffsetDateTime;

use crate::domain::display::escape;
use crate::store::{AuditRow, JobRow};

/// The listed columns, in order: of `--wide`, of the report's CSV and of the dashboard's CSV
/// export. New columns go before `not_before`, which scripts find last, and after
/// `created_at`, which keeps its place.
pub const COLUMNS: [&str; 15] = [
    "job_id",
    "caster_id",
    "region_id",
    "batch_id",
    "status",
    "conclusion",
    "request_id",
    "error_code",
    "http_status",
    "attempts",
    "replays",
    "created_at",
    "finished_at",
    "account",
    "not_before",
];

/// A timestamp as RFC 3339 in UTC, always with the six decimals Postgres keeps.
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    crate::domain::time::rfc3339_micros(t)
}

/// A row's fields as text, in [`COLUMNS`] order; `None` for SQL NULL.
pub(crate) fn fields(row: &JobRow) -> [Option<String>; COLUMNS.len()] {
    [
        Some(row.job_id.to_string()),
        row.caster_id.clone(),
        row.region_id.clone(),
        row.batch_id.clone(),
        Some(row.status.clone()),
        row.conclusion.clone(),
        row.request_id.clone(),
        row.error_code.clone(),
        row.http_status.map(|s| s.to_string()),
        Some(row.attempts.to_string()),
        Some(row.replays.to_string()),
        Some(timestamp(row.created_at)),
        row.finished_at.map(timestamp),
        row.account.clone(),
        row.not_before.map(timestamp),
    ]
}

/// The audit trail's columns, in order: of `stopcaster audit --format csv` and of the
/// dashboard's `/api/audit?format=csv`.
pub(crate) const AUDIT_COLUMNS: [&str; 10] = [
    "at", "action", "actor", "source", "origin", "target", "count", "outcome", "detail", "id",
];

/// An audit row's fields as text, in [`AUDIT_COLUMNS`] order; `None` for SQL NULL.
pub(crate) fn audit_fields(row: &AuditRow) -> [Option<String>; AUDIT_COLUMNS.len()] {
    [
        Some(timestamp(row.at)),
        Some(row.action.clone()),
        Some(row.actor.clone()),
        Some(row.source.clone()),
        Some(row.origin.clone()),
        Some(row.target.clone()),
        row.count.map(|n| n.to_string()),
        Some(row.outcome.clone()),
        row.detail.clone(),
        Some(row.id.to_string()),
    ]
}

/// An audit row as one CSV record (NULL: empty), escaped as every CSV cell.
pub(crate) fn audit_csv_row(row: &AuditRow) -> String {
    csv_record(audit_fields(row).iter().map(|c| c.as_deref().unwrap_or("")))
}

/// A row as one CSV record, in [`COLUMNS`] order (NULL: empty).
pub(crate) fn csv_row(row: &JobRow) -> String {
    csv_record(fields(row).iter().map(|c| c.as_deref().unwrap_or("")))
}

/// What a spreadsheet takes for the start of a formula (OWASP, "CSV Injection").
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV field per RFC 4180: the value escaped ([`escape`]: a terminal that prints the file
/// runs no escape sequence, and no line is reordered), quoted when it holds a comma, a double
/// quote, CR or LF, with each double quote doubled. A field that starts like a formula gets a
/// leading `'` first, as OWASP recommends: CasterIds, batch labels and error texts come from
/// messages that anyone allowed to publish wrote, and an operator opens the file in a
/// spreadsheet.
pub(crate) fn csv_field(field: &str) -> Cow<'_, str> {
    let field = escape(field);
    let field = if field.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{field}"))
    } else {
        field
    };
    if field.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        field
    }
}

/// One CSV record, CRLF-terminated as RFC 4180 has it.
pub(crate) fn csv_record<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut line = fields
        .into_iter()
        .map(csv_field)
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_follows_rfc_4180() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "two\\x0alines");
        assert_eq!(csv_field("cr\r, then"), "\"cr\\x0d, then\"");
        assert_eq!(csv_field(" spaced "), " spaced ");
        assert_eq!(
            csv_record(["a", "b,c", "", "\""]),
            "a,\"b,c\",,\"\"\"\"\r\n"
        );
    }

    #[test]
    fn csv_cells_that_start_like_a_formula_are_text() {
        assert_eq!(csv_field("=1+2"), "'=1+2");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("@SUM(A1:A9)"), "'@SUM(A1:A9)");
        // Escaped, the tab and CR no longer start the cell.
        assert_eq!(csv_field("\tx"), "\\x09x");
        assert_eq!(csv_field("\r=1"), "\\x0d=1");
        // Neutralised, then quoted as RFC 4180 has it.
        assert_eq!(csv_field("=1,2"), "\"'=1,2\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://evil.example\",\"x\")"),
            "\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\""
        );
        assert_eq!(csv_record(["ok", "=cmd", "-"]), "ok,'=cmd,'-\r\n");
    }

    #[test]
    fn csv_cells_are_escaped_and_read_back() {
        assert_eq!(csv_field("\u{1b}]0;x\u{7}"), "\\x1b]0;x\\x07");
        assert_eq!(csv_field("cas-\u{202e}gnp.exe"), "cas-\\u{202e}gnp.exe");
        assert_eq!(csv_field("a\\b"), "a\\\\b");
        let hostile = "\u{1b}[2J\u{202e}\\,\"x\"\r\n";
        let cell = csv_field(hostile);
        let unquoted = cell[1..cell.len() - 1].replace("\"\"", "\"");
        assert_eq!(
            crate::domain::display::unescape(&unquoted).as_deref(),
            Some(hostile)
        );
    }

    #[test]
    fn ordinary_csv_cells_are_unchanged() {
        for plain in [
            "",
            "studio-1",
            "LIVEPRODUCER_POST-cn-0pp1czt",
            "InvalidCaster.NotFound",
            "2026-11-27T11:00:00.123456Z",
            "2026-11-27T11:00:00.123456+08:00",
            "0f8c3b1e-6d2a-4c5e-9b7a-1d2e3f4a5b6c",
            "200",
            "0",
            "a = b",
            "'quoted already",
        ] {
            assert_eq!(csv_field(plain), plain, "{plain:?}");
        }
        assert_eq!(
            csv_record(["job", "2026-11-27T11:00:00.123456Z", "studio-1"]),
            "job,2026-11-27T11:00:00.123456Z,studio-1\r\n"
        );
    }
}
