//! Tables as kumactl prints them: Go's `text/tabwriter` (min width 1, padding 3, spaces)
//! and the cell formats of `app/kumactl/pkg/output/table/cells.go`.

use time::OffsetDateTime;

/// A table: header row, rows, and an optional footer line after an empty line.
#[derive(Debug, Default, Clone)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub footer: Option<String>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            footer: None,
        }
    }

    /// The text kumactl writes: every line tab-separated, aligned by [`tabwrite`].
    pub fn render(&self) -> String {
        let mut text = String::new();
        if !self.headers.is_empty() {
            text.push_str(&self.headers.join("\t"));
            text.push('\n');
        }
        for row in &self.rows {
            text.push_str(&row.join("\t"));
            text.push('\n');
        }
        if let Some(footer) = &self.footer {
            text.push('\n');
            text.push_str(footer);
            text.push('\n');
        }
        tabwrite(&text, 1, 3)
    }
}

/// Go's `tabwriter.NewWriter(out, minwidth, 0, padding, ' ', 0)` over `text`: cells are
/// tab-terminated, the text after a line's last tab is not part of any column, and each
/// column block (consecutive lines having that column) is as wide as its widest cell plus
/// `padding`.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let mut lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    // The text after the final newline is an unterminated last line; keep it (usually empty).
    let trailing = lines.pop().unwrap_or_default();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(
        &lines,
        0,
        lines.len(),
        &mut widths,
        minwidth,
        padding,
        &mut out,
    );
    out.push_str(&trailing.join("\t"));
    out
}

fn width_of(cell: &str) -> usize {
    cell.chars().count()
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = minwidth;
        while this < line1 {
            let line = &lines[this];
            if column + 1 >= line.len() {
                break;
            }
            width = width.max(width_of(line[column]) + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, minwidth, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    line0: usize,
    line1: usize,
    widths: &[usize],
    out: &mut String,
) {
    for line in &lines[line0..line1] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() {
                let pad = widths[j].saturating_sub(width_of(cell));
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

/// `on`/`off`.
pub fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// `*` for the selected row.
pub fn check(selected: bool) -> &'static str {
    if selected { "*" } else { "" }
}

/// Go's `time.Duration` range in nanoseconds: differences saturate at about 292 years.
fn go_sub_nanos(now: OffsetDateTime, then: OffsetDateTime) -> i128 {
    let nanos = (now - then).whole_nanoseconds();
    nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX))
}

/// kumactl's human duration: `Ns`, `Nm`, `Nh`, `Nd`, `Ny`; `never` when more than a second
/// in the future.
pub fn duration(nanos: i128) -> String {
    // Go truncates toward zero when converting the float seconds to int.
    let seconds = nanos / 1_000_000_000;
    if seconds < -1 {
        return "never".to_string();
    }
    if nanos < 0 && seconds <= 0 {
        return "0s".to_string();
    }
    if seconds < 60 {
        return format!("{seconds}s");
    }
    let minutes = nanos / 60_000_000_000;
    if minutes < 60 {
        return format!("{minutes}m");
    }
    let hours = nanos / 3_600_000_000_000;
    if hours < 24 {
        return format!("{hours}h");
    }
    if hours < 24 * 365 {
        return format!("{}d", hours / 24);
    }
    format!("{}y", hours / 24 / 365)
}

/// AGE: time since `then`.
pub fn time_since(then: OffsetDateTime, now: OffsetDateTime) -> String {
    duration(go_sub_nanos(now, then))
}

/// `... AGO` columns: `never` when there is no time.
pub fn ago(then: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    match then {
        Some(t) => time_since(t, now),
        None => "never".to_string(),
    }
}

/// `2006-01-02 15:04:05`, `-` when there is no time. Printed in UTC.
pub fn date(t: Option<OffsetDateTime>) -> String {
    match t {
        None => "-".to_string(),
        Some(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
    }
}

/// Parses an RFC 3339 time as the REST API writes it.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn aligned_like_tabwriter() {
        let mut table = Table::new(&["MESH", "NAME", "AGE"]);
        table.rows.push(vec![
            "default".into(),
            "traffic-permission-1".into(),
            "292y".into(),
        ]);
        assert_eq!(
            table.render(),
            "MESH      NAME                   AGE\ndefault   traffic-permission-1   292y\n"
        );
    }

    #[test]
    fn footer_after_blank_line() {
        let mut table = Table::new(&["NAME", "AGE"]);
        table.rows.push(vec!["a".into(), "1s".into()]);
        table.footer =
            Some("Rerun command with --offset=1 argument to retrieve more resources".into());
        assert_eq!(
            table.render(),
            "NAME   AGE\na      1s\n\nRerun command with --offset=1 argument to retrieve more resources\n"
        );
    }

    #[test]
    fn empty_cells_are_padded() {
        let mut table = Table::new(&["ACTIVE", "NAME", "ADDRESS"]);
        table.rows.push(vec![
            "*".into(),
            "local".into(),
            "http://localhost:5681".into(),
        ]);
        table
            .rows
            .push(vec!["".into(), "other".into(), "http://x:5681".into()]);
        assert_eq!(
            table.render(),
            "ACTIVE   NAME    ADDRESS\n*        local   http://localhost:5681\n         other   http://x:5681\n"
        );
    }

    #[test]
    fn age_formatting() {
        let now = datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(time_since(datetime!(2025-12-31 23:59:30 UTC), now), "30s");
        assert_eq!(time_since(datetime!(2025-12-31 23:58:00 UTC), now), "2m");
        assert_eq!(time_since(datetime!(2025-12-31 21:00:00 UTC), now), "3h");
        assert_eq!(time_since(datetime!(2025-12-20 00:00:00 UTC), now), "12d");
        assert_eq!(time_since(datetime!(2023-12-01 00:00:00 UTC), now), "2y");
        assert_eq!(time_since(datetime!(0001-01-01 00:00:00 UTC), now), "292y");
        assert_eq!(time_since(datetime!(2026-01-01 00:00:00.5 UTC), now), "0s");
        assert_eq!(time_since(datetime!(2026-01-01 00:10:00 UTC), now), "never");
        assert_eq!(ago(None, now), "never");
        assert_eq!(
            date(Some(datetime!(2026-03-04 05:06:07 UTC))),
            "2026-03-04 05:06:07"
        );
        assert_eq!(date(None), "-");
    }
}
