//! Parsing the timestamps AWS writes (`2024-05-01T12:34:56Z`, with or without fractional seconds
//! or an offset) into microseconds since the epoch, without allocating.

use chrono::{DateTime, NaiveDate};

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
const MICROS_PER_DAY: i64 = MICROS_PER_SECOND * SECONDS_PER_DAY;

/// Microseconds since the epoch of an RFC 3339 / ISO 8601 timestamp, or `None` if it is not one.
///
/// The common shape `YYYY-MM-DDTHH:MM:SSZ` is decoded by hand (it is on the hot path of every
/// CloudTrail and DNS record); anything else goes through chrono.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'Z'
    {
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
        };
        let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
        let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || m > 59 || sec > 60 {
            return None;
        }
        let days = i64::from(days_since_epoch(date));
        return Some(days * MICROS_PER_DAY + i64::from(h * 3600 + m * 60 + sec) * MICROS_PER_SECOND);
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros())
}

/// Days since 1970-01-01 of a date (Arrow's `Date32`).
pub fn days_since_epoch(date: NaiveDate) -> i32 {
    const EPOCH_DAYS_FROM_CE: i32 = 719_163;
    chrono::Datelike::num_days_from_ce(&date) - EPOCH_DAYS_FROM_CE
}

/// The UTC day (Arrow `Date32`) that a timestamp in microseconds falls on.
pub fn micros_to_days(micros: i64) -> i32 {
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// Microseconds since the epoch for whole seconds since the epoch (flow-log `start`/`end`).
pub fn seconds_to_micros(seconds: i64) -> Option<i64> {
    seconds.checked_mul(MICROS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_and_slow_paths_agree() {
        for s in ["2024-05-01T12:34:56Z", "1970-01-01T00:00:00Z", "2020-02-29T23:59:59Z"] {
            let fast = parse_rfc3339_micros(s).expect(s);
            let slow = DateTime::parse_from_rfc3339(s).expect(s).timestamp_micros();
            assert_eq!(fast, slow, "{s}");
        }
    }

    #[test]
    fn other_valid_shapes() {
        assert_eq!(parse_rfc3339_micros("2024-05-01T12:34:56.250Z"), Some(1_714_566_896_250_000));
        assert_eq!(parse_rfc3339_micros("2024-05-01T14:34:56+02:00"), Some(1_714_566_896_000_000));
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for s in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-05-01T25:00:00Z",
            "2024-05-01 12:34:56",
        ] {
            assert_eq!(parse_rfc3339_micros(s), None, "{s:?}");
        }
    }

    #[test]
    fn days() {
        assert_eq!(micros_to_days(0), 0);
        assert_eq!(micros_to_days(-1), -1);
        assert_eq!(days_since_epoch(NaiveDate::from_ymd_opt(2024, 5, 1).expect("date")), 19844);
        assert_eq!(micros_to_days(parse_rfc3339_micros("2024-05-01T23:59:59Z").expect("t")), 19844);
    }
}
