//! RFC 3339 timestamps from the API (`2026-11-29T05:00:00.123456Z`) and interval arithmetic on them.

/// Unix microseconds of an RFC 3339 timestamp (`Z` or `+hh:mm`/`-hh:mm`, any fraction); None when malformed.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    let bytes = s.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let year: i64 = digits(s, 0, 4)?;
    let month: i64 = digits(s, 5, 7)?;
    let day: i64 = digits(s, 8, 10)?;
    let hour: i64 = digits(s, 11, 13)?;
    let minute: i64 = digits(s, 14, 16)?;
    let second: i64 = digits(s, 17, 19)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros = 0_i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let kept = &fraction[..len.min(6)];
        micros = kept.parse::<i64>().ok()? * 10_i64.pow(6 - kept.len() as u32);
        rest = &fraction[len..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (digits::<i64>(rest, 1, 3)? * 3600 + digits::<i64>(rest, 4, 6)? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1_000_000 + micros)
}

fn digits<T: std::str::FromStr>(s: &str, from: usize, to: usize) -> Option<T> {
    let part = s.get(from..to)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The largest number of `[start, end]` intervals open at one instant. An interval ending at the very instant
/// another starts does not overlap it.
pub fn max_overlap(intervals: &[(i64, i64)]) -> usize {
    // (time, +1 start / -1 end); ends sort before starts at equal times.
    let mut events: Vec<(i64, i32)> = Vec::with_capacity(intervals.len() * 2);
    for &(start, end) in intervals {
        assert!(
            start <= end,
            "interval ends before it starts: {start} > {end}"
        );
        events.push((start, 1));
        events.push((end, -1));
    }
    events.sort();
    let mut open = 0_i32;
    let mut most = 0_i32;
    for (_, delta) in events {
        open += delta;
        most = most.max(open);
    }
    usize::try_from(most).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01T00:00:01.000001Z", Some(1_000_001)),
            ("2026-11-29T05:00:00.123456Z", Some(1_795_928_400_123_456)),
            (
                "2026-11-29T06:00:00.123456+01:00",
                Some(1_795_928_400_123_456),
            ),
            ("2026-11-29T05:00:00.1Z", Some(1_795_928_400_100_000)),
            (
                "2026-11-29T05:00:00.123456789Z",
                Some(1_795_928_400_123_456),
            ),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000_000)),
            ("2026-11-29 05:00:00", None),
            ("2026-13-29T05:00:00Z", None),
            ("2026-11-29T05:00:00.Z", None),
            ("yesterday", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_rfc3339_micros(input), *expected, "{input}");
        }
    }

    #[test]
    fn counts_overlaps() {
        assert_eq!(max_overlap(&[]), 0);
        assert_eq!(max_overlap(&[(0, 10)]), 1);
        assert_eq!(max_overlap(&[(0, 10), (10, 20)]), 1);
        assert_eq!(max_overlap(&[(0, 10), (5, 20), (6, 7)]), 3);
        assert_eq!(max_overlap(&[(0, 10), (1, 11), (10, 20), (11, 21)]), 2);
    }
}
