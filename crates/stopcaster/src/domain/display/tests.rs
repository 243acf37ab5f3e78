//! The escaped form, character class by character class, its round trip, and the bounds.

use super::*;
use serde_json::json;

#[test]
fn control_and_bidirectional_characters_are_escaped_visibly() {
    assert_eq!(escape("plain id-1 é 漢字"), "plain id-1 é 漢字");
    assert!(matches!(escape("studio-1"), Cow::Borrowed(_)));
    assert_eq!(escape("\u{1b}]0;owned\u{7}"), "\\x1b]0;owned\\x07");
    assert_eq!(escape("a\u{0}b\u{7f}c"), "a\\x00b\\x7fc");
    assert_eq!(escape("two\nlines\r\t"), "two\\x0alines\\x0d\\x09");
    assert_eq!(escape("c1\u{85}\u{9b}"), "c1\\u{85}\\u{9b}");
    assert_eq!(escape("cas-\u{202e}gnp.exe"), "cas-\\u{202e}gnp.exe");
    for c in [
        '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
        '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200b}', '\u{200d}', '\u{2028}',
        '\u{2029}', '\u{2060}', '\u{feff}',
    ] {
        assert_eq!(escape(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
    }
    // Neighbours of the escaped ranges are ordinary text.
    assert_eq!(
        escape("\u{200a}\u{202f}\u{206a}\u{fefe}"),
        "\u{200a}\u{202f}\u{206a}\u{fefe}"
    );
}

#[test]
fn a_backslash_is_escaped_so_the_form_reads_back() {
    assert_eq!(escape("C:\\x1b"), "C:\\\\x1b");
    for value in [
        "",
        "plain",
        "\\",
        "\\x1b is not ESC",
        "\u{1b}[2J\u{1b}]0;title\u{7}",
        "cas-\u{202e}gnp.exe\u{2066}\u{85}\u{0}\u{7f}",
        "\\u{202e} and \u{202e}",
        "é漢字\n\r\t,\"",
    ] {
        assert_eq!(
            unescape(&escape(value)).as_deref(),
            Some(value),
            "{value:?}"
        );
    }
    assert_eq!(unescape("\\q"), None);
    assert_eq!(unescape("trailing\\"), None);
    assert_eq!(unescape("\\u{110000}"), None);
}

#[test]
fn long_values_are_cut_with_their_full_length() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1_000), "1,000");
    assert_eq!(thousands(5_242_880), "5,242,880");
    assert_eq!(bounded("abc", 3), "abc");
    assert!(matches!(bounded("abc", 3), Cow::Borrowed(_)));
    assert_eq!(bounded("abcde", 3), "abc… (5 chars)");
    let big = "x".repeat(5 * 1024 * 1024);
    assert_eq!(bounded(&big, 4), "xxxx… (5,242,880 chars)");
    // Characters, not bytes; an escape is not cut in two.
    assert_eq!(bounded("ééééé", 2), "éé… (5 chars)");
    assert_eq!(bounded("ab\u{202e}cd", 5), "ab… (5 chars)");
    assert_eq!(bounded("ab\u{202e}cd", 10), "ab\\u{202e}… (5 chars)");
    assert_eq!(bounded("ab\u{202e}", 10), "ab\\u{202e}");
}

#[test]
fn a_block_keeps_its_lines_and_escapes_the_rest() {
    assert_eq!(
        bounded_as("{\n\t\"a\": 1\n}", 100, Layout::Block),
        "{\n\t\"a\": 1\n}"
    );
    assert_eq!(
        bounded_as("a\r\n\u{1b}[2J", 100, Layout::Block),
        "a\\x0d\n\\x1b[2J"
    );
    assert_eq!(bounded_as("a\nb", 100, Layout::Line), "a\\x0ab");
}

#[test]
fn json_texts_are_cut_and_named_with_their_length() {
    assert_eq!(cut("abc", 3), None);
    assert_eq!(cut("abcd", 3), Some(("abc… (4 chars)".to_owned(), 4)));
    let mut doc = json!({
        "messages": [
            {"caster_id": "c".repeat(10), "batch_id": "short", "n": 3},
            {"caster_id": "ok", "pairs": [["e".repeat(12), 2]]},
        ],
        "queue": "q",
    });
    bound_json(&mut doc, 5);
    assert_eq!(
        doc,
        json!({
            "messages": [
                {"caster_id": "ccccc… (10 chars)", "batch_id": "short", "n": 3,
                 "truncated": {"caster_id": 10}},
                {"caster_id": "ok", "pairs": [["eeeee… (12 chars)", 2]]},
            ],
            "queue": "q",
        })
    );
    // Control characters stay as they are: JSON escapes them itself.
    let mut doc = json!({"a": "\u{1b}\u{202e}"});
    bound_json(&mut doc, 5);
    assert_eq!(doc, json!({"a": "\u{1b}\u{202e}"}));
}
