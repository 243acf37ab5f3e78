//! The job search as it travels in the URL (GET forms, so that a filtered view can be
//! bookmarked, shared and exported): parsing, checking, and writing it back into links.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

use crate::domain::JobStatus;
use crate::store::{Cursor, JobSearch};

pub(super) const DEFAULT_LIMIT: u32 = 50;
pub(super) const MAX_LIMIT: u32 = 500;

/// The query string of `/jobs`, `/api/jobs` and the exports, as received. Blank fields (an
/// empty input of the form) mean "any".
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct SearchParams {
    pub status: Option<String>,
    pub batch: Option<String>,
    pub caster: Option<String>,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    /// Created at or after: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` in UTC (a datetime-local input).
    pub from: Option<String>,
    /// Created before, same forms.
    pub to: Option<String>,
    /// Created within this long: `90s`, `15m`, `2h`, `7d`, `1h30m`.
    pub since: Option<String>,
    /// The last row of the previous page: `CREATED_AT_JOBID`.
    pub after: Option<String>,
    pub limit: Option<String>,
    /// Exports: `csv` or `json`.
    pub format: Option<String>,
}

/// A checked search.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Search {
    pub filter: JobSearch,
    pub after: Option<Cursor>,
    pub limit: u32,
    /// The `since` as given, kept for the form and links.
    pub since: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The earliest and latest times a filter may name: years 1 to 9999 in UTC, what people mean
/// and well inside what Postgres stores (a year -9999 would be a database error).
const EARLIEST: OffsetDateTime = time::macros::datetime!(0001-01-01 00:00 UTC);
const LATEST: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999_999 UTC);

/// Parses a time of the time-range filter; `None` for a text that is not one, or a time out of
/// [`EARLIEST`]..=[`LATEST`].
pub(super) fn parse_time(text: &str) -> Option<OffsetDateTime> {
    parse_any_time(text).filter(|t| (EARLIEST..=LATEST).contains(t))
}

fn parse_any_time(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let minutes = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(text, &seconds)
        .or_else(|_| PrimitiveDateTime::parse(text, &minutes))
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

pub(super) fn encode_cursor(c: &Cursor) -> String {
    format!("{}_{}", super::ts(c.created_at), c.job_id)
}

pub(super) fn decode_cursor(text: &str) -> Option<Cursor> {
    let (t, id) = text.rsplit_once('_')?;
    Some(Cursor {
        created_at: OffsetDateTime::parse(t, &Rfc3339).ok()?,
        job_id: Uuid::parse_str(id).ok()?,
    })
}

impl SearchParams {
    /// Checks every field; the error names the first bad one, for a 400 page.
    pub(super) fn check(&self, now: OffsetDateTime) -> Result<Search, String> {
        let status = given(&self.status);
        if let Some(s) = &status
            && JobStatus::parse(s).is_none()
        {
            return Err(format!("unknown status {s:?}"));
        }
        let time = |name: &str, v: &Option<String>| -> Result<Option<OffsetDateTime>, String> {
            given(v)
                .map(|t| {
                    parse_time(&t).ok_or_else(|| {
                        format!(
                            "{name}: {t:?} is not a time from year 1 to 9999 (RFC 3339 or \
                             YYYY-MM-DDTHH:MM, UTC)"
                        )
                    })
                })
                .transpose()
        };
        let mut from = time("from", &self.from)?;
        let to = time("to", &self.to)?;
        let since = given(&self.since);
        if let Some(s) = &since {
            let d = crate::domain::parse_since(s).map_err(|e| format!("since: {e}"))?;
            let start = now - d;
            from = Some(from.map_or(start, |f| f.max(start)));
        }
        let after = given(&self.after)
            .map(|a| decode_cursor(&a).ok_or_else(|| format!("after: {a:?} is not a page cursor")))
            .transpose()?;
        let limit = match given(&self.limit) {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| format!("limit: {l:?} is not a number from 1 to {MAX_LIMIT}"))?,
        };
        Ok(Search {
            filter: JobSearch {
                status,
                batch_id: given(&self.batch),
                caster_id: given(&self.caster),
                error_code: given(&self.error_code),
                request_id: given(&self.request_id),
                from,
                to,
            },
            after,
            limit,
            since,
        })
    }
}

impl Search {
    /// The store's filter of this search: what "Cancel N" cancels, selected by the same SQL as
    /// `stopcaster cancel` with filters.
    pub(super) fn job_filter(&self) -> crate::store::JobFilter {
        let f = &self.filter;
        crate::store::JobFilter {
            batch_id: f.batch_id.clone(),
            caster_id: f.caster_id.clone(),
            status: f.status.as_deref().and_then(JobStatus::parse),
            error_code: f.error_code.clone(),
            request_id: f.request_id.clone(),
            created_from: f.from,
            created_before: f.to,
            ..Default::default()
        }
    }

    /// The query string of this search (without the cursor), for links: the filters as the
    /// user wrote them, percent-encoded.
    pub(super) fn query(&self, params: &SearchParams) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (name, v) in [
            ("status", &params.status),
            ("batch", &params.batch),
            ("caster", &params.caster),
            ("error_code", &params.error_code),
            ("request_id", &params.request_id),
            ("from", &params.from),
            ("to", &params.to),
            ("since", &params.since),
        ] {
            if let Some(v) = given(v) {
                pairs.push((name, v));
            }
        }
        if self.limit != DEFAULT_LIMIT {
            pairs.push(("limit", self.limit.to_string()));
        }
        encode_pairs(&pairs)
    }
}

/// `a=b&c=d`, each part percent-encoded (form encoding).
pub(super) fn encode_pairs(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(super) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A path segment, percent-encoded (batch ids may hold anything).
pub(super) fn path_segment(s: &str) -> String {
    form_encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-11-27T12:00:00Z", &Rfc3339).unwrap()
    }

    #[test]
    fn blank_fields_mean_any() {
        let p = SearchParams {
            status: Some(String::new()),
            batch: Some("  ".into()),
            ..Default::default()
        };
        let s = p.check(now()).unwrap();
        assert_eq!(s.filter, JobSearch::default());
        assert_eq!(s.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn checks_each_field() {
        let bad = |p: SearchParams| p.check(now()).unwrap_err();
        assert!(
            bad(SearchParams {
                status: Some("done".into()),
                ..Default::default()
            })
            .contains("status")
        );
        assert!(
            bad(SearchParams {
                from: Some("yesterday".into()),
                ..Default::default()
            })
            .contains("from")
        );
        assert!(
            bad(SearchParams {
                limit: Some("0".into()),
                ..Default::default()
            })
            .contains("limit")
        );
        assert!(
            bad(SearchParams {
                after: Some("x".into()),
                ..Default::default()
            })
            .contains("after")
        );
    }

    #[test]
    fn times_out_of_range_name_their_parameter() {
        for (name, text) in [
            ("from", "-9999-01-01T00:00"),
            ("from", "0000-12-31T23:59"),
            ("to", "9999-12-31T23:59:59-01:00"),
            ("to", "+10000-01-01T00:00"),
        ] {
            let mut p = SearchParams::default();
            *(if name == "from" {
                &mut p.from
            } else {
                &mut p.to
            }) = Some(text.into());
            let e = p.check(now()).unwrap_err();
            assert!(e.starts_with(&format!("{name}: ")), "{text}: {e}");
        }
        for text in [
            "0001-01-01T00:00",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
        ] {
            assert!(parse_time(text).is_some(), "{text}");
        }
    }

    #[test]
    fn times_and_since() {
        let p = SearchParams {
            from: Some("2026-11-27T10:00".into()),
            to: Some("2026-11-27T11:30:00+01:00".into()),
            since: Some("1h".into()),
            ..Default::default()
        };
        let s = p.check(now()).unwrap();
        // since 1h (11:00) is later than from (10:00): the later bound wins.
        assert_eq!(s.filter.from, Some(now() - time::Duration::hours(1)));
        assert_eq!(
            s.filter.to,
            Some(OffsetDateTime::parse("2026-11-27T10:30:00Z", &Rfc3339).unwrap())
        );
    }

    #[test]
    fn cursor_round_trip() {
        let c = Cursor {
            created_at: OffsetDateTime::parse("2026-11-27T10:00:00.123456Z", &Rfc3339).unwrap(),
            job_id: Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
    }

    #[test]
    fn links_encode_what_they_carry() {
        let p = SearchParams {
            batch: Some("a&b=<c> d".into()),
            ..Default::default()
        };
        let s = p.check(now()).unwrap();
        assert_eq!(s.query(&p), "batch=a%26b%3D%3Cc%3E%20d");
    }
}
