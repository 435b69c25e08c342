//! Aligned columns for people, as wide as their widest cell.

/// Rows of cells, the first of them the header if there is one.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

/// The gap between columns.
const GAP: &str = "  ";

impl Table {
    /// A table under `headers`.
    pub fn new(headers: &[&str]) -> Self {
        let mut t = Self::default();
        if !headers.is_empty() {
            t.rows
                .push(headers.iter().map(|h| (*h).to_owned()).collect());
        }
        t
    }

    /// A row; an empty cell shows as `-`, so that columns stay countable.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| match c.as_ref() {
                    "" => "-".to_owned(),
                    text => printable(text),
                })
                .collect(),
        );
    }

    /// The lines, each ending in a newline, with no space at their ends.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` with control characters escaped: reasons and names come from other operators and from
/// agents, and a newline would break the columns, an escape sequence drive the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A time `at` as an age at `now` (both RFC 3339, as the API writes them): `5s ago`, `3m ago`, ...;
/// `at` itself when either does not parse. Counting from the reply's own time rather than this
/// machine's clock keeps a skew between the two out of it.
pub fn age(at: &str, now: &str) -> String {
    let (Ok(then), Ok(now)) = (humantime::parse_rfc3339(at), humantime::parse_rfc3339(now)) else {
        return at.to_owned();
    };
    let secs = now.duration_since(then).map_or(0, |d| d.as_secs());
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_end_without_spaces() {
        let mut t = Table::new(&["NAME", "PORT", "NOTE"]);
        t.row(["app.demo.local", "80", ""]);
        t.row(["b", "8080", "two\nlines"]);
        assert_eq!(
            t.render(),
            "NAME            PORT  NOTE\n\
             app.demo.local  80    -\n\
             b               8080  two\\nlines\n"
        );
    }

    #[test]
    fn a_table_without_headers_has_only_its_rows() {
        let mut t = Table::new(&[]);
        t.row(["ready", "yes"]);
        t.row(["version", "0.1.0"]);
        assert_eq!(t.render(), "ready    yes\nversion  0.1.0\n");
    }

    #[test]
    fn ages_count_from_the_replys_time() {
        let now = "2026-01-01T10:00:00.000Z";
        assert_eq!(age("2026-01-01T09:59:58.500Z", now), "1s ago");
        assert_eq!(age("2026-01-01T09:57:00.000Z", now), "3m ago");
        assert_eq!(age("2026-01-01T07:00:00.000Z", now), "3h ago");
        assert_eq!(age("2025-12-30T10:00:00.000Z", now), "2d ago");
        assert_eq!(
            age("2026-01-01T10:00:01.000Z", now),
            "0s ago",
            "later: no negative ages"
        );
        assert_eq!(age("yesterday", now), "yesterday");
    }
}
