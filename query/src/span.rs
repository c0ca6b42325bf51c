//! The span of time a session sees: `--since` / `--until` as a responder writes them (a day, an
//! RFC 3339 instant, or a relative `7d` / `12h` / `30m` / `2w`), and the predicates that restrict a
//! log table to it.
//!
//! The predicates are written twice on purpose: once on the `date` partition column, which the
//! Delta scan turns into partition pruning (files of other days are never opened), and once on the
//! table's event-time column, which keeps the edges exact inside the first and last day.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, Utc};

use bunker_schemas::LogTable;

/// A half-open span of event time, `[since, until)`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeSpan {
    /// Earliest event time seen, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Event time before which everything is seen (exclusive).
    pub until: Option<DateTime<Utc>>,
}

/// Which end of a span a bound is; a bare day means its start for `since` and its end for `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `--since`: a day means from 00:00 of that day.
    Since,
    /// `--until`: a day means up to and including that whole day.
    Until,
}

/// Parses one end of a span relative to `now`: `2026-11-20`, `2026-11-20T10:00:00Z`, `today`,
/// or a count and unit (`7d`, `12h`, `30m`, `2w`) meaning that long before `now`.
pub fn parse_bound(text: &str, end: End, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let day_start = |day: NaiveDate| day.and_time(NaiveTime::MIN).and_utc();
    let day = |day: NaiveDate| match end {
        End::Since => Some(day_start(day)),
        End::Until => day.checked_add_days(Days::new(1)).map(day_start),
    };
    if text == "today" {
        return day(now.date_naive()).ok_or_else(|| format!("{text}: out of range"));
    }
    if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(count) = text[..text.len() - 1].parse::<i64>()
    {
        let delta = match unit {
            'm' => TimeDelta::try_minutes(count),
            'h' => TimeDelta::try_hours(count),
            'd' => TimeDelta::try_days(count),
            'w' => TimeDelta::try_weeks(count),
            _ => None,
        };
        return delta
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("{text}: expected a count of m, h, d or w (minutes, hours, days, weeks) ago"));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return day(date).ok_or_else(|| format!("{text}: out of range"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text}: expected YYYY-MM-DD, an RFC 3339 time (2026-11-20T10:00:00Z), or 7d / 12h ago"))
}

impl TimeSpan {
    /// Every event.
    pub const ALL: TimeSpan = TimeSpan { since: None, until: None };

    /// The span of `--since` / `--until` as given on a command line, checked for order.
    pub fn parse(since: Option<&str>, until: Option<&str>) -> Result<TimeSpan, String> {
        let now = Utc::now();
        let span = TimeSpan {
            since: since.map(|s| parse_bound(s, End::Since, now)).transpose()?,
            until: until.map(|u| parse_bound(u, End::Until, now)).transpose()?,
        };
        if let (Some(since), Some(until)) = (span.since, span.until)
            && since >= until
        {
            return Err(format!("--since ({since}) is not before --until ({until})"));
        }
        Ok(span)
    }

    /// Whether the span is unbounded at both ends.
    pub fn is_all(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// SQL predicates restricting `table` to the span: the date partition first, then event time.
    pub fn predicates(&self, table: LogTable) -> Vec<String> {
        let mut predicates = Vec::new();
        let time = table.time_column();
        if let Some(since) = self.since {
            predicates.push(format!("date >= DATE '{}'", since.date_naive()));
            predicates.push(format!("{time} >= to_timestamp_micros({})", since.timestamp_micros()));
        }
        if let Some(until) = self.until {
            // `until` is exclusive: an instant at midnight does not need that day's partition.
            let last = until - TimeDelta::microseconds(1);
            predicates.push(format!("date <= DATE '{}'", last.date_naive()));
            predicates.push(format!("{time} < to_timestamp_micros({})", until.timestamp_micros()));
        }
        predicates
    }
}

impl std::fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show =
            |t: Option<DateTime<Utc>>| t.map_or("…".to_owned(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        write!(f, "[{}, {})", show(self.since), show(self.until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn bounds_in_every_spelling() {
        let now = at("2026-11-26T12:30:00Z");
        assert_eq!(parse_bound("2026-11-20", End::Since, now), Ok(at("2026-11-20T00:00:00Z")));
        assert_eq!(parse_bound("2026-11-20", End::Until, now), Ok(at("2026-11-21T00:00:00Z")));
        assert_eq!(parse_bound("2026-11-20T10:15:00Z", End::Until, now), Ok(at("2026-11-20T10:15:00Z")));
        assert_eq!(parse_bound("2026-11-20T10:15:00+02:00", End::Since, now), Ok(at("2026-11-20T08:15:00Z")));
        assert_eq!(parse_bound("7d", End::Since, now), Ok(at("2026-11-19T12:30:00Z")));
        assert_eq!(parse_bound("12h", End::Since, now), Ok(at("2026-11-26T00:30:00Z")));
        assert_eq!(parse_bound("30m", End::Until, now), Ok(at("2026-11-26T12:00:00Z")));
        assert_eq!(parse_bound("2w", End::Since, now), Ok(at("2026-11-12T12:30:00Z")));
        assert_eq!(parse_bound("today", End::Since, now), Ok(at("2026-11-26T00:00:00Z")));
        for bad in ["", "yesterday", "7y", "2026-13-01", "d", "-", "2026-11-20 10:00"] {
            let err = parse_bound(bad, End::Since, now).expect_err(bad);
            assert!(err.starts_with(bad), "{err}");
        }
    }

    #[test]
    fn a_span_must_run_forwards() {
        assert!(TimeSpan::parse(Some("2026-11-20"), Some("2026-11-20")).is_ok(), "one whole day");
        let err = TimeSpan::parse(Some("2026-11-21"), Some("2026-11-20")).expect_err("backwards");
        assert!(err.contains("is not before"), "{err}");
    }

    #[test]
    fn predicates_prune_by_day_and_cut_exactly_by_time() {
        let span = TimeSpan { since: Some(at("2026-11-20T10:00:00Z")), until: Some(at("2026-11-22T00:00:00Z")) };
        let predicates = span.predicates(LogTable::CloudTrail);
        assert_eq!(predicates[0], "date >= DATE '2026-11-20'");
        assert!(predicates[1].starts_with("eventtime >= to_timestamp_micros("), "{predicates:?}");
        // Midnight of the 22nd is exclusive: the last day read is the 21st.
        assert_eq!(predicates[2], "date <= DATE '2026-11-21'");
        assert!(TimeSpan::ALL.predicates(LogTable::Dns).is_empty());
    }
}
