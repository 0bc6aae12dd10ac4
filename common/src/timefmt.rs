//! RFC 3339 timestamps as they appear on the wire (UTC, microseconds), to and from Unix microseconds.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Unix time in microseconds as an RFC 3339 UTC string, e.g. `2026-11-29T05:00:00.123456Z`.
pub fn format_micros(unix_micros: i64) -> String {
    let nanos = i128::from(unix_micros) * 1_000;
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return String::from("1970-01-01T00:00:00Z");
    };
    let micros = t.microsecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        micros
    )
}

/// Parses an RFC 3339 timestamp into Unix microseconds.
pub fn parse_micros(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for us in [0_i64, 1_764_392_400_123_456, 1_000_000] {
            assert_eq!(parse_micros(&format_micros(us)), Some(us));
        }
        assert_eq!(format_micros(1_000_001), "1970-01-01T00:00:01.000001Z");
        assert_eq!(parse_micros("yesterday"), None);
    }
}
