//! Text for the terminal: aligned tables, cells kept on one line and shortened to fit.

use std::borrow::Cow;

use crate::domain::display::{CELL_CHARS, bounded};

/// Rows as aligned columns (`-` for NULL), header first.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A column [`fit`] may shorten.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flexible {
    pub column: usize,
    /// The width it keeps while another flexible column is wider than its own floor.
    pub floor: usize,
    /// Where to cut: ids that share a prefix (`LIVEPRODUCER_POST-cn-...`) differ at their end.
    pub cut: Cut,
}

/// Where [`shorten`] cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    End,
    Middle,
}

/// Shortens the cells of the `flexible` columns so that [`table`] of `header` and `rows` is at
/// most `max_width` characters wide. The widest flexible column above its floor gives up a
/// character at a time; when all are at their floors, the widest goes on down to its header's
/// width. A shortened cell shows `…` where it was cut. Other columns are kept whole: choose
/// them narrow.
pub(crate) fn fit(
    header: &[&str],
    rows: &mut [Vec<String>],
    flexible: &[Flexible],
    max_width: usize,
) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows.iter() {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let separators = 2 * widths.len().saturating_sub(1);
    let mut total = widths.iter().sum::<usize>() + separators;
    let least = |f: &Flexible| header[f.column].chars().count().max(3);
    while total > max_width {
        let widest_above = |floor: &dyn Fn(&Flexible) -> usize| {
            flexible
                .iter()
                .filter(|f| widths[f.column] > floor(f))
                .max_by_key(|f| widths[f.column])
                .map(|f| f.column)
        };
        let Some(i) = widest_above(&|f| f.floor.max(least(f))).or_else(|| widest_above(&least))
        else {
            break;
        };
        widths[i] -= 1;
        total -= 1;
    }
    for row in rows.iter_mut() {
        for f in flexible {
            if let Some(cell) = row.get_mut(f.column) {
                *cell = shorten(cell, widths[f.column], f.cut);
            }
        }
    }
}

/// `text` cut to `width` characters, with `…` where anything was cut.
pub(crate) fn shorten(text: &str, width: usize, cut: Cut) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_owned();
    }
    let keep = width.saturating_sub(1);
    let head = match cut {
        Cut::End => keep,
        Cut::Middle => keep / 2,
    };
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// A value as a table cell: on one line, escaped and bounded as
/// [`crate::domain::display::bounded`] shows it (`\x1b`, `\u{202e}`, `… (N chars)`), so that no
/// escape sequence reaches the terminal, no line is reordered and no row is padded to a
/// megabyte.
pub(crate) fn cell(text: String) -> String {
    match bounded(&text, CELL_CHARS) {
        Cow::Borrowed(_) => text,
        Cow::Owned(shown) => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_bounded() {
        assert_eq!(cell("studio-1".to_owned()), "studio-1");
        assert_eq!(cell("a\nb\u{1b}[2J".to_owned()), "a\\x0ab\\x1b[2J");
        assert_eq!(
            cell("cas-\u{202e}gnp.exe".to_owned()),
            "cas-\\u{202e}gnp.exe"
        );
        let big = cell("c".repeat(5 * 1024 * 1024));
        assert!(big.ends_with("… (5,242,880 chars)"), "{big}");
        assert!(big.chars().count() < CELL_CHARS + 30);
    }

    #[test]
    fn shortened_cells_show_where_they_were_cut() {
        assert_eq!(shorten("abcdefghij", 10, Cut::End), "abcdefghij");
        assert_eq!(shorten("abcdefghij", 6, Cut::End), "abcde…");
        assert_eq!(shorten("abcdefghij", 6, Cut::Middle), "ab…hij");
    }

    #[test]
    fn fit_shrinks_the_widest_flexible_column_first_and_keeps_floors() {
        let header = ["id", "name", "code"];
        let mut rows = vec![vec!["1".to_owned(), "n".repeat(40), "c".repeat(20)]];
        let flexible = [
            Flexible {
                column: 1,
                floor: 8,
                cut: Cut::Middle,
            },
            Flexible {
                column: 2,
                floor: 15,
                cut: Cut::End,
            },
        ];
        fit(&header, &mut rows, &flexible, 30);
        let text = table(&header, &rows);
        assert!(text.lines().all(|l| l.chars().count() <= 30), "{text}");
        assert_eq!(
            rows[0][2].chars().count(),
            15,
            "the code keeps its floor: {text}"
        );
        assert_eq!(rows[0][1].chars().count(), 30 - 2 - 4 - 15, "{text}");
        // Below every floor: on down to the headers.
        fit(&header, &mut rows, &flexible, 16);
        assert!(
            table(&header, &rows)
                .lines()
                .all(|l| l.chars().count() <= 16)
        );
    }
}
