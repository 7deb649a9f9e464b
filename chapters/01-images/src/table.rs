//! Output the way docker prints it: aligned tables, "4.26MB", "2 weeks ago".
//!
//! Learners compare our output with docker's side by side, so the formats
//! follow docker's own (`text/tabwriter` with a minimum cell width of 10
//! and three spaces of padding, `go-units` for sizes and durations).

use std::time::{SystemTime, UNIX_EPOCH};

// ANCHOR: table
/// The smallest width of a column, padding included: docker's tables are
/// `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`, so `TAG` takes 10 columns.
const MIN_WIDTH: usize = 10;
/// Spaces after the widest cell of a column.
const PADDING: usize = 3;

/// Prints rows under headers, like docker's tables: each column (but the
/// last) is as wide as its widest cell plus three spaces, and never
/// narrower than ten.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|h| h.chars().count() + PADDING)
        .collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count() + PADDING);
        }
    }
    for w in &mut widths {
        *w = (*w).max(MIN_WIDTH);
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
// ANCHOR_END: table

/// A size as docker prints it: decimal units, 4 significant digits
/// (`728B`, `1.24kB`, `4.261MB`).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    // Four significant digits, trailing zeros dropped (Go's %.4g).
    let digits_before_point = if value < 1.0 {
        1
    } else {
        (value.log10().floor() as i32 + 1).max(1)
    };
    let decimals = (4 - digits_before_point).max(0) as usize;
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", units[unit])
}

/// "3 days ago", "About an hour ago", as `docker images` says it.
pub fn human_age(created_rfc3339: Option<&str>) -> String {
    let Some(created) = created_rfc3339.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format!("{} ago", human_duration((now - created).max(0) as u64))
}

/// Go-units' HumanDuration.
pub fn human_duration(seconds: u64) -> String {
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    match seconds {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{days} days"),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", days / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", days / 30),
        _ => format!("{} years", days / 365),
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2024-05-01T12:00:00.5Z`,
/// `…+02:00`), the format image configs use.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.get(4..5)? != "-" || s.get(7..8)? != "-" || !matches!(s.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    // Skip fractional seconds, then read the zone.
    let rest = s.get(19..)?;
    let rest = rest
        .strip_prefix('.')
        .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
    let offset = match rest {
        "Z" | "z" => 0,
        zone if zone.len() == 6 => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (zone.get(1..3)?.parse::<i64>().ok()? * 3600
                + zone.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(728), "728B");
        assert_eq!(human_size(1240), "1.24kB");
        assert_eq!(human_size(4_261_000), "4.261MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
    }

    #[test]
    fn parses_image_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:30:00.123456789Z"),
            Some(1709209800)
        );
        assert_eq!(parse_rfc3339("2024-02-29T14:30:00+02:00"), Some(1709209800));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(3 * 365 * 86400), "3 years");
    }

    #[test]
    fn aligns_columns() {
        let out = render(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(out, "A         BB\nlong      x\n");
        let out = render(&["REPOSITORY", "TAG", "SIZE"], &[]);
        assert_eq!(out, "REPOSITORY   TAG       SIZE\n");
        let wide = "a-rather-long-name".to_string();
        let out = render(&["NAME", "X"], &[vec![wide.clone(), "1".into()]]);
        assert_eq!(out, format!("NAME{}X\n{wide}   1\n", " ".repeat(17)));
    }
}
