//! Human durations of the config and the API (`500ms`, `30s`, `2m`, `1h`, `7d`): parsing and formatting.

use std::time::Duration;

/// The accepted units, largest first, with their length in milliseconds.
const UNITS_MS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses "500ms", "30s", "2m", "1h", "7d": a non-negative integer followed by exactly one unit
/// (`ms`, `s`, `m`, `h`, `d`). "0s" is valid. The error says what is wrong with the text.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (expected e.g. '30s')".to_string());
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "'{text}' must start with a non-negative integer (e.g. '30s')"
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "'{text}' has no unit (use ms, s, m, h or d, e.g. '{number}s')"
        ));
    }
    let Some(&(_, unit_ms)) = UNITS_MS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!("unknown unit '{unit}' (use ms, s, m, h or d)"));
    };
    let count: u64 = number
        .parse()
        .map_err(|_| format!("'{number}' is too large"))?;
    let total_ms = count
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("'{text}' is too large"))?;
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the largest unit that represents it exactly: 1500ms -> "1500ms",
/// 30s -> "30s", 120s -> "2m", zero -> "0s". The result parses back with [`parse_duration`]
/// whenever the duration is a whole number of milliseconds; finer ones are shown in `us` or `ns`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return if d.subsec_nanos().is_multiple_of(1_000) {
            format!("{}us", d.as_micros())
        } else {
            format!("{}ns", d.as_nanos())
        };
    }
    let total_ms = d.as_millis();
    for (name, unit_ms) in UNITS_MS {
        let unit_ms = u128::from(unit_ms);
        if total_ms.is_multiple_of(unit_ms) {
            return format!("{}{name}", total_ms / unit_ms);
        }
    }
    format!("{total_ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_table() {
        let ok: &[(&str, Duration)] = &[
            ("500ms", Duration::from_millis(500)),
            ("0s", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("7d", Duration::from_secs(7 * 86_400)),
            (" 15m ", Duration::from_secs(900)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            ("fast", "non-negative integer"),
            ("-5s", "non-negative integer"),
            ("30", "no unit"),
            ("30x", "unknown unit 'x'"),
            ("1.5s", "unknown unit '.5s'"),
            ("3 s", "unknown unit ' s'"),
            ("1m30s", "unknown unit 'm30s'"),
            ("99999999999999999999s", "too large"),
            ("999999999999999999d", "too large"),
        ];
        for (text, want) in bad {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        let table: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(86_400 * 7), "7d"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_nanos(7), "7ns"),
        ];
        for (d, want) in table {
            assert_eq!(format_duration(*d), *want);
        }
    }

    #[test]
    fn format_round_trips_through_parse() {
        for ms in [
            1, 999, 1000, 60_000, 61_000, 3_600_000, 86_400_000, 90_000_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
