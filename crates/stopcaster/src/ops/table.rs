//! Text for the terminal and for spreadsheets: aligned tables and RFC 4180 CSV (cells that
//! would run as formulas neutralised).

use std::borrow::Cow;

/// What a spreadsheet takes for the start of a formula (OWASP, "CSV Injection").
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV field per RFC 4180: quoted when it holds a comma, a double quote, CR or LF, with
/// each double quote doubled. A field that starts like a formula gets a leading `'` first, as
/// OWASP recommends: CasterIds, batch labels and error texts come from messages that anyone
/// allowed to publish wrote, and an operator opens the file in a spreadsheet.
pub fn csv_field(field: &str) -> Cow<'_, str> {
    let field = if field.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{field}"))
    } else {
        Cow::Borrowed(field)
    };
    if field.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        field
    }
}

/// One CSV record, CRLF-terminated as RFC 4180 has it.
pub fn csv_record<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut line = fields
        .into_iter()
        .map(csv_field)
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Rows as aligned columns (`-` for NULL), header first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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
pub struct Flexible {
    pub column: usize,
    /// The width it keeps while another flexible column is wider than its own floor.
    pub floor: usize,
    /// Where to cut: ids that share a prefix (`LIVEPRODUCER_POST-cn-...`) differ at their end.
    pub cut: Cut,
}

/// Where [`shorten`] cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    End,
    Middle,
}

/// Shortens the cells of the `flexible` columns so that [`table`] of `header` and `rows` is at
/// most `max_width` characters wide. The widest flexible column above its floor gives up a
/// character at a time; when all are at their floors, the widest goes on down to its header's
/// width. A shortened cell shows `…` where it was cut. Other columns are kept whole: choose
/// them narrow.
pub fn fit(header: &[&str], rows: &mut [Vec<String>], flexible: &[Flexible], max_width: usize) {
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
pub fn shorten(text: &str, width: usize, cut: Cut) -> String {
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

/// Keeps a table cell on one line: control characters (a multi-line value) become spaces.
pub fn one_line(cell: String) -> String {
    if cell.contains(char::is_control) {
        cell.replace(char::is_control, " ")
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_start_like_a_formula_are_text() {
        assert_eq!(csv_field("=1+2"), "'=1+2");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("@SUM(A1:A9)"), "'@SUM(A1:A9)");
        assert_eq!(csv_field("\tx"), "'\tx");
        // Neutralised, then quoted as RFC 4180 has it.
        assert_eq!(csv_field("\r=1"), "\"'\r=1\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://evil.example\",\"x\")"),
            "\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\""
        );
        assert_eq!(csv_record(["ok", "=cmd", "-"]), "ok,'=cmd,'-\r\n");
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
