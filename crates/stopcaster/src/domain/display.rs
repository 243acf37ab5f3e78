//! How a value that came from a message (or from the API's answer about it) is shown to people:
//! the one escaping rule and the one bound, used by the dashboard's pages, the commands' tables,
//! the CSV and the logs alike.
//!
//! The escaped form: a backslash becomes `\\`; an ASCII control character (U+0000 to U+001F,
//! U+007F) becomes `\xNN` (two lowercase hex digits, `\x1b` for ESC); a C1 control (U+0080 to
//! U+009F), a bidirectional control (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to
//! U+2069) and an invisible or line-breaking format character (U+200B to U+200D, U+2028,
//! U+2029, U+2060 to U+2064, U+FEFF) become `\u{N}` (lowercase hex, `\u{202e}`); every other
//! character is itself. Since the
//! backslash is escaped too, the form reads back to the exact value ([`unescape`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// How many characters of a value a table cell or a list page shows.
pub(crate) const CELL_CHARS: usize = 200;
/// How many characters of a long text (an error message) a detail page shows.
pub(crate) const TEXT_CHARS: usize = 2_000;
/// How many characters of a message body the job's page shows.
pub(crate) const PAYLOAD_CHARS: usize = 16_384;
/// How many characters of a text value the API's list endpoints answer.
pub(crate) const API_CHARS: usize = 1_024;

/// Whether [`escape`] writes `c` as an escape: the backslash, control characters (C0, DEL,
/// C1), the characters that reorder text (bidirectional marks, embeddings, overrides and
/// isolates), which would make a value read as another one (`cas-\u{202e}gnp.exe`), and the
/// invisible ones (zero-width characters, the byte-order mark) and line separators, which hide
/// a difference or break a log line.
fn escaped(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        c if escaped(c) && (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if escaped(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `text` in the escaped form (see the module's documentation); borrowed when nothing needs it.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// The exact value back from its escaped form; `None` if `text` is not one.
#[cfg(test)]
pub(crate) fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `n` with a comma between thousands: `5,242,880`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// What follows a shortened value: `… (5,242,880 chars)`, the value's full length.
fn marker(chars: usize) -> String {
    format!("… ({} chars)", thousands(chars))
}

/// Where a value is shown: on one line (a cell, a field), or as a block (a message body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    Line,
    /// Line feeds and tabs kept; everything else escaped as on a line.
    Block,
}

impl Layout {
    fn kept(self, c: char) -> bool {
        !escaped(c) || self == Layout::Block && matches!(c, '\n' | '\t')
    }
}

/// `text` escaped and shown in at most `max` characters (plus the marker): when longer, its
/// first characters (no escape cut in two), then `… (N chars)` with the value's full length.
pub(crate) fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    bounded_as(text, max, Layout::Line)
}

/// [`bounded`] for one [`Layout`].
pub(crate) fn bounded_as(text: &str, max: usize, layout: Layout) -> Cow<'_, str> {
    if text.len() <= max && text.chars().all(|c| layout.kept(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max) + 32);
    let mut shown = 0;
    for c in text.chars() {
        let before = out.len();
        if layout.kept(c) {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
        shown += out[before..].chars().count();
        if shown > max {
            out.truncate(before);
            out.push_str(&marker(text.chars().count()));
            return Cow::Owned(out);
        }
    }
    Cow::Owned(out)
}

/// `text` cut to `max` characters with the [`marker`] of its full length, not escaped (for
/// JSON, which escapes control characters itself); `None` when it fits.
pub(crate) fn cut(text: &str, max: usize) -> Option<(String, usize)> {
    if text.len() <= max {
        return None;
    }
    let end = text.char_indices().nth(max).map(|(i, _)| i)?;
    let chars = text.chars().count();
    Some((format!("{}{}", &text[..end], marker(chars)), chars))
}

/// Bounds every text of a JSON document to `max` characters with [`cut`]; an object whose
/// fields were cut gains `"truncated": {"FIELD": FULL_LENGTH_IN_CHARS}`. For the API's lists:
/// the single job's endpoint keeps the full values.
pub(crate) fn bound_json(value: &mut Value, max: usize) {
    match value {
        Value::String(s) => {
            if let Some((short, _)) = cut(s, max) {
                *s = short;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| bound_json(v, max)),
        Value::Object(fields) => bound_object(fields, max),
        _ => {}
    }
}

fn bound_object(fields: &mut Map<String, Value>, max: usize) {
    let mut truncated = Map::new();
    for (name, v) in fields.iter_mut() {
        match v {
            Value::String(s) => {
                if let Some((short, chars)) = cut(s, max) {
                    *s = short;
                    truncated.insert(name.clone(), Value::from(chars));
                }
            }
            other => bound_json(other, max),
        }
    }
    if !truncated.is_empty() {
        fields.insert("truncated".to_owned(), Value::Object(truncated));
    }
}

#[cfg(test)]
mod tests;
