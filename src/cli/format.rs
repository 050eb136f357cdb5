//! Text formatting shared by the commands: aligned tables, durations, rates, times.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

/// Writes `text` to stdout. A closed pipe (`faultline trajectories | head`) is not an
/// error: the rest is dropped, where `print!` would panic.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table of text cells, rendered with aligned columns separated by two spaces.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
    max_cell: usize,
}

/// The widest a cell is shown; longer text is cut with `…`.
pub const MAX_CELL: usize = 48;

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Table {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: Vec::new(),
            max_cell: MAX_CELL,
        }
    }

    /// Cuts cells longer than `max` characters (default [`MAX_CELL`]).
    pub fn max_cell(mut self, max: usize) -> Table {
        self.max_cell = max.max(2);
        self
    }

    /// Adds a row; missing cells are blank, extra cells are ignored.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let cell = |row: &Vec<String>, i: usize| -> String {
            row.get(i)
                .map(|c| clip(c, self.max_cell))
                .unwrap_or_default()
        };
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| width(h)).collect();
        for row in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(width(&cell(row, i)));
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<String>| {
            let mut text = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(width(c));
                let last = i + 1 == n;
                match self.headers[i].1 {
                    Align::Right => {
                        text.push_str(&" ".repeat(pad));
                        text.push_str(c);
                    }
                    Align::Left => {
                        text.push_str(c);
                        if !last {
                            text.push_str(&" ".repeat(pad));
                        }
                    }
                }
                if !last {
                    text.push_str("  ");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(
            &mut out,
            self.headers.iter().map(|(h, _)| h.clone()).collect(),
        );
        for row in &self.rows {
            line(&mut out, (0..n).map(|i| cell(row, i)).collect());
        }
        out
    }
}

/// Display width in characters (no terminal-width tables: the cells are short and
/// mostly ASCII).
pub fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `max` characters, the last one `…` when cut. Control characters (from
/// hostile telemetry) are shown as spaces so they cannot move the cursor.
pub fn clip(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if width(&clean) <= max {
        return clean;
    }
    let mut out: String = clean.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A duration in nanoseconds: `0.4ms`, `410ms`, `2.31s`, `3m05s`.
pub fn duration_nanos(nanos: u64) -> String {
    let ms = nanos as f64 / 1e6;
    if ms < 1.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        let secs = (ms / 1000.0).round() as u64;
        if secs < 3600 {
            format!("{}m{:02}s", secs / 60, secs % 60)
        } else {
            format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
        }
    }
}

/// Milliseconds from the API (`p50_ms`), or `-`.
pub fn millis(v: &Value) -> String {
    match v.as_f64() {
        Some(ms) if ms < 10.0 => format!("{ms:.1}"),
        Some(ms) => format!("{ms:.0}"),
        None => "-".into(),
    }
}

/// A rate in [0, 1] as a percentage: `8.0%`.
pub fn percent(rate: f64) -> String {
    if rate.is_finite() {
        format!("{:.1}%", rate * 100.0)
    } else {
        "-".into()
    }
}

/// Percent of a JSON number, or `-`.
pub fn percent_of(v: &Value) -> String {
    v.as_f64().map(percent).unwrap_or_else(|| "-".into())
}

/// An integer with thousands separators: `12,345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A JSON unsigned integer with separators, or `-`.
pub fn count_of(v: &Value) -> String {
    v.as_u64().map(count).unwrap_or_else(|| "-".into())
}

/// Unix nanoseconds as UTC `2024-06-01 10:00:01Z`.
pub fn time_nanos(nanos: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(nanos);
    let mut s = humantime::format_rfc3339_seconds(t).to_string();
    // `2024-06-01T10:00:01Z` → `2024-06-01 10:00:01Z`
    if s.len() > 10 {
        s.replace_range(10..11, " ");
    }
    s
}

/// Unix seconds as UTC time.
pub fn time_secs(secs: u64) -> String {
    time_nanos(secs.saturating_mul(1_000_000_000))
}

/// A string field, or `-` when absent or null.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A cohort object (`{"model": "m1", "route": null}`) as `model=m1 route=-`; empty
/// when there are no dimensions.
pub fn cohort(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return String::new();
    };
    let mut out = String::new();
    for (k, v) in map {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{k}={}", text_of(v));
    }
    out
}

/// `{"a": 3, "b": 9}` as `b 9, a 3` (largest first), at most `max` entries.
pub fn top_counts(v: &Value, max: usize) -> String {
    let Some(map) = v.as_object() else {
        return String::new();
    };
    let mut items: Vec<(&String, u64)> = map
        .iter()
        .filter_map(|(k, n)| n.as_u64().filter(|n| *n > 0).map(|n| (k, n)))
        .collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let shown: Vec<String> = items
        .iter()
        .take(max)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let mut out = shown.join(", ");
    if items.len() > max {
        out.push_str(", …");
    }
    out
}

/// The candidate closest to `name` by edit distance, when close enough to be a typo
/// (at most a third of the longer name, and at least 1 edit allowed); ties: the first.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = edit_distance(&name, &c.to_lowercase());
        let allowed = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= allowed && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diag
            } else {
                1 + diag.min(above).min(row[j])
            };
            diag = above;
        }
    }
    row[b.len()]
}
