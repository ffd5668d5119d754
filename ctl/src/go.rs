//! Small reimplementations of the Go library behaviour kumactl users see: `time.Duration`
//! parsing and printing, pflag's `key=value` map flags, and `net/url` escaping.

use std::time::Duration;

/// Why a Go-style value could not be read. The messages are Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoParseError {
    #[error("time: invalid duration {0:?}")]
    InvalidDuration(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("negative durations are not allowed: {0:?}")]
    Negative(String),
    #[error("{0} must be formatted as key=value")]
    NotKeyValue(String),
}

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's `time.ParseDuration` (`24h`, `1h30m`, `1.5h`, `300ms`), refusing negative values.
pub fn parse_duration(input: &str) -> Result<Duration, GoParseError> {
    let invalid = || GoParseError::InvalidDuration(input.to_string());
    let mut s = input;
    if let Some(rest) = s.strip_prefix('-') {
        if rest == "0" {
            return Ok(Duration::ZERO);
        }
        return Err(GoParseError::Negative(input.to_string()));
    }
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        // number: digits, optional fraction
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        if unit.is_empty() {
            return Err(GoParseError::MissingUnit(input.to_string()));
        }
        let per = NANOS_PER_UNIT
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, n)| *n)
            .ok_or_else(|| GoParseError::UnknownUnit {
                unit: unit.to_string(),
                input: input.to_string(),
            })?;
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(per).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // at most 18 fraction digits matter for nanosecond precision
            let digits = &frac_part[..frac_part.len().min(18)];
            let numerator: u128 = digits.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(digits.len() as u32);
            value += numerator * per / scale;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as u128 {
            return Err(invalid());
        }
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Go's `time.Duration.String()`: `24h0m0s`, `1m30s`, `1.5s`, `300ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        return if nanos < 1_000 {
            format!("{nanos}ns")
        } else if nanos < 1_000_000 {
            format!("{}\u{b5}s", fraction(nanos, 1_000))
        } else {
            format!("{}ms", fraction(nanos, 1_000_000))
        };
    }
    let seconds = format!("{}s", fraction(nanos % 60_000_000_000, 1_000_000_000));
    let total_minutes = nanos / 60_000_000_000;
    if total_minutes == 0 {
        return seconds;
    }
    let minutes = total_minutes % 60;
    let hours = total_minutes / 60;
    if hours == 0 {
        format!("{minutes}m{seconds}")
    } else {
        format!("{hours}h{minutes}m{seconds}")
    }
}

/// `value / unit` with the fraction printed without trailing zeros, like Go's `fmtFrac`.
fn fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// One occurrence of a pflag `StringToString` flag (`--var a=b`, `--headers a=1,b=2`).
/// With exactly one `=` the whole text is one pair (commas stay in the value); with more, the
/// text is read as one CSV record of pairs.
pub fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, GoParseError> {
    let pairs: Vec<String> = match text.matches('=').count() {
        0 => return Err(GoParseError::NotKeyValue(text.to_string())),
        1 => vec![text.trim_matches('"').to_string()],
        _ => csv_record(text),
    };
    pairs
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(GoParseError::NotKeyValue(pair)),
        })
        .collect()
}

/// A clap value parser for [`parse_key_values`].
pub fn key_values_arg(text: &str) -> Result<Vec<(String, String)>, String> {
    parse_key_values(text).map_err(|e| e.to_string())
}

/// A clap value parser for [`parse_duration`].
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// One record of Go's `encoding/csv`: comma-separated fields, `"` quoting with `""` escapes.
fn csv_record(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                at_field_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    fields.push(field);
    fields
}

fn escape(text: &str, keep: impl Fn(u8) -> bool, space_plus: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep(b) {
            out.push(b as char);
        } else if b == b' ' && space_plus {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn query_escape(text: &str) -> String {
    escape(text, |_| false, true)
}

/// Go's `url.PathEscape` (one path segment).
pub fn path_escape(text: &str) -> String {
    escape(
        text,
        |b| matches!(b, b'$' | b'&' | b'+' | b',' | b':' | b';' | b'=' | b'@'),
        false,
    )
}

/// Go's `url.Values.Encode()`: pairs sorted by key (stable for equal keys), `k=v&k=v`.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub fn query_unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("1"),
            Err(GoParseError::MissingUnit("1".into()))
        );
        assert_eq!(
            parse_duration("1d").expect_err("unknown unit").to_string(),
            r#"time: unknown unit "d" in duration "1d""#
        );
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1h").is_err());
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(Duration::from_secs(86_400)), "24h0m0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::from_micros(2)), "2\u{b5}s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m0s");
    }

    #[test]
    fn key_values_like_pflag() {
        assert_eq!(
            parse_key_values("kuma.io/service=web,web-api").expect("key=value"),
            vec![("kuma.io/service".into(), "web,web-api".into())]
        );
        assert_eq!(
            parse_key_values("a=1,b=2").expect("key=value"),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            parse_key_values("key=YWJj==").expect("key=value"),
            vec![("key".into(), "YWJj==".into())]
        );
        assert!(parse_key_values("novalue").is_err());
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            query_escape("kuma.io/service:web"),
            "kuma.io%2Fservice%3Aweb"
        );
        assert_eq!(
            encode_query(&[("size".into(), "2".into()), ("offset".into(), "1".into())]),
            "offset=1&size=2"
        );
        assert_eq!(query_unescape("a%2Fb+c"), "a/b c");
        assert_eq!(path_escape("a b/c"), "a%20b%2Fc");
    }
}
