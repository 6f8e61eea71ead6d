//! Printing: aligned tables that fit a terminal, times as people read them, and JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_coordinator::outln;
use serde::Serialize;

/// A text table with a header row.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// True when only the header is there.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// Prints the table, columns padded to their widest cell and, when that would pass the
    /// terminal's width (`COLUMNS`, else 80), the widest columns cut down (cells marked `…`).
    pub(crate) fn print(&self) {
        for line in self.lines(terminal_width()) {
            outln!("{line}");
        }
    }

    /// The lines of the table fitted into `width` columns.
    fn lines(&self, width: usize) -> Vec<String> {
        /// No column is cut narrower than this.
        const MIN_COLUMN: usize = 8;
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
        while total(&widths) > width {
            let Some((widest, _)) = widths
                .iter()
                .enumerate()
                .filter(|(_, w)| **w > MIN_COLUMN)
                .max_by_key(|(_, w)| **w)
            else {
                break;
            };
            widths[widest] -= 1;
        }
        self.rows
            .iter()
            .map(|row| {
                let mut line = String::new();
                for (c, cell) in row.iter().enumerate() {
                    let cell = clip(cell, widths[c]);
                    if c + 1 == row.len() {
                        line.push_str(&cell);
                    } else {
                        line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                    }
                }
                line.trim_end().to_owned()
            })
            .collect()
    }
}

/// The terminal's width: `COLUMNS` when set, else 80.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|c| *c >= 40)
        .unwrap_or(80)
}

/// Prints a value as pretty JSON.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Seconds since the epoch now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-11-23T10:00:00Z`; times past the year 9999 (which only a hostile or damaged record
/// holds) as `after 9999`.
pub(crate) fn timestamp(secs: u64) -> String {
    /// 9999-12-31T23:59:59Z, the last instant RFC 3339 can write.
    const LAST: u64 = 253_402_300_799;
    match UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
        Some(at) if secs <= LAST => humantime::format_rfc3339_seconds(at).to_string(),
        _ => "after 9999".into(),
    }
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`.
pub(crate) fn ago(secs: u64) -> String {
    let d = now().saturating_sub(secs);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

/// A version or a dash.
pub(crate) fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Prints `text` word-wrapped to the terminal's width, the first line after `first`, the
/// others indented as far.
pub(crate) fn wrapped(first: &str, text: &str) {
    for line in wrap(first, text, terminal_width()) {
        outln!("{line}");
    }
}

fn wrap(first: &str, text: &str, width: usize) -> Vec<String> {
    let indent = " ".repeat(first.chars().count());
    let mut lines = Vec::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if !empty && len + 1 + word.chars().count() > width {
            lines.push(std::mem::replace(&mut line, indent.clone()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    lines.push(line);
    lines
}

/// Cuts text to `max` characters, marking the cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_lines_fit_and_keep_every_word() {
        let text = "waiting: 3 of the 7 devices in force are left out, more than the plan allows";
        let lines = wrap("  note: ", text, 30);
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:?}");
        assert!(lines[0].starts_with("  note: waiting:"));
        assert!(lines[1].starts_with("        "));
        let words: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        assert_eq!(words.len(), text.split_whitespace().count() + 1);
    }

    #[test]
    fn a_wide_table_is_cut_to_fit_and_a_narrow_one_is_not() {
        let mut t = Table::new(&["MODEL", "ALIAS", "BY", "REASON"]);
        t.row(vec![
            "detector".into(),
            "prod".into(),
            "rollout-engine (detector-3.1.0)".into(),
            "rollout detector-3.1.0 completed after every wave passed".into(),
        ]);
        let lines = t.lines(80);
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{lines:#?}");
        assert!(lines[1].contains('…'));
        assert!(lines[1].starts_with("detector  prod"));
        let mut narrow = Table::new(&["A", "B"]);
        narrow.row(vec!["x".into(), "y".into()]);
        assert_eq!(narrow.lines(80), vec!["A  B", "x  y"]);
    }

    #[test]
    fn absurd_times_print_without_overflow() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(u64::MAX), "after 9999");
        assert_eq!(timestamp(253_402_300_800), "after 9999");
        assert!(ago(u64::MAX).ends_with("ago"));
    }
}
