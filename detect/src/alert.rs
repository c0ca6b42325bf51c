//! Alerts: what a rule's rows become, folded by dedup key and window, with their evidence.
//!
//! Matches with the same dedup key fold into one alert while they fall within the dedup window of
//! its first match (a window that starts at the first match, not at a multiple of its length). An
//! alert's id is a hash of the rule id, the dedup key's values and the time of that first match,
//! so running the same rules over the same rows always gives the same ids: re-running `bunker
//! detect` over history, or a redelivered batch in the worker, updates alerts instead of
//! multiplying them. Alerts already recorded are joined by the matches that fit in them
//! ([`RecordedAlerts`]), so a span read again from another start finds them too.

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::rule::{Rule, Severity};
use crate::{DetectError, Result};

/// How many event ids and source keys an alert keeps as evidence.
pub const MAX_EVIDENCE: usize = 100;

/// The output columns a rule's SQL may return as evidence.
pub const EVIDENCE_COLUMNS: &[&str] = &[
    "event_time",
    "account",
    "region",
    "principal",
    "source_ip",
    "event_id",
    "event_ids",
    "source_key",
    "source_keys",
];

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Stable id: the same rule, key and first match always give the same id.
    pub id: String,
    /// The rule that fired.
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// The rule's description: what the alert means, for whoever receives it.
    pub description: String,
    /// The rule's severity.
    pub severity: Severity,
    /// MITRE ATT&CK techniques.
    pub mitre: Vec<String>,
    /// `rule_id` and the dedup key's values.
    pub dedup_key: String,
    /// Time of the first matching event.
    pub first_seen: DateTime<Utc>,
    /// Time of the last matching event.
    pub last_seen: DateTime<Utc>,
    /// Matching rows folded into this alert.
    pub count: u64,
    /// Account of the first match.
    pub account: Option<String>,
    /// Region of the first match.
    pub region: Option<String>,
    /// Principal (ARN or name) of the first match.
    pub principal: Option<String>,
    /// Source IP of the first match.
    pub source_ip: Option<String>,
    /// Ids of the matching events (at most 100).
    pub event_ids: Vec<String>,
    /// Objects the matching events came from (at most 100).
    pub source_keys: Vec<String>,
    /// The rule's other output columns, for the first match.
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// An alert already recorded for a dedup key, as folding needs it: a match that fits inside it
/// (the alert then still spans less than the dedup window) joins it instead of starting another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The alert's id.
    pub id: String,
    /// Its first match, in microseconds.
    pub first_seen: i64,
    /// Its last match, in microseconds.
    pub last_seen: i64,
}

/// Where the alerts already recorded are looked up, by dedup key (the `alerts` table as a
/// process knows it: [`crate::store::KnownIds`]).
pub trait RecordedAlerts {
    /// The recorded alerts of `dedup_key`.
    fn recorded(&self, dedup_key: &str) -> Vec<Recorded>;
}

/// No alert recorded: matches fold among themselves only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NothingRecorded;

impl RecordedAlerts for NothingRecorded {
    fn recorded(&self, _: &str) -> Vec<Recorded> {
        Vec::new()
    }
}

/// One row of a rule's result, taken apart.
struct Match {
    micros: i64,
    event_ids: Vec<String>,
    source_keys: Vec<String>,
    account: Option<String>,
    region: Option<String>,
    principal: Option<String>,
    source_ip: Option<String>,
    details: serde_json::Map<String, serde_json::Value>,
}

/// Turns a rule's result rows into alerts, folding rows with the same key that fall within one
/// dedup window of the alert's first match.
pub fn alerts_from_rows(rule: &Rule, batches: &[RecordBatch]) -> Result<Vec<Alert>> {
    alerts_from_rows_with(rule, batches, &NothingRecorded)
}

/// [`alerts_from_rows`], with the alerts already recorded: a match inside one of them joins it
/// (under its id) rather than starting a new alert.
///
/// The window slides with each burst: an alert starts at its first match, and later matches of
/// the same key join it while they are less than `dedup.window` after that first match; the next
/// match starts the next alert. Windows aligned to the epoch split one burst crossing a boundary
/// (09:59 and 10:01 with a 1h window) into two alerts. The id is a hash of the rule, the key and
/// the time of the first match: the same rows give the same ids, in any order, and re-reading a
/// span that overlaps what was recorded finds the recorded alerts rather than making new ones.
pub fn alerts_from_rows_with(
    rule: &Rule,
    batches: &[RecordBatch],
    recorded: &dyn RecordedAlerts,
) -> Result<Vec<Alert>> {
    let mut by_key: BTreeMap<String, Vec<Match>> = BTreeMap::new();
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let times = event_times(rule, batch)?;
        let rows = rows_as_json(batch)?;
        for (i, mut row) in rows.into_iter().enumerate() {
            if times.is_null(i) {
                continue;
            }
            let key_values: Vec<String> =
                rule.dedup.key.iter().map(|k| row.get(k).map(json_text).unwrap_or_default()).collect();
            let dedup_key = std::iter::once(rule.id.clone())
                .chain(rule.dedup.key.iter().zip(&key_values).map(|(k, v)| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join("|");
            let mut take = |name: &str| row.remove(name);
            let event_ids = strings(take("event_id")).into_iter().chain(strings(take("event_ids"))).collect();
            let source_keys = strings(take("source_key")).into_iter().chain(strings(take("source_keys"))).collect();
            let text = |v: Option<serde_json::Value>| v.map(|v| json_text(&v)).filter(|s| !s.is_empty());
            let (account, region) = (text(take("account")), text(take("region")));
            let (principal, source_ip) = (text(take("principal")), text(take("source_ip")));
            row.remove("event_time");
            by_key.entry(dedup_key).or_default().push(Match {
                micros: times.value(i),
                event_ids,
                source_keys,
                account,
                region,
                principal,
                source_ip,
                details: row,
            });
        }
    }
    let window = (rule.dedup.window.as_micros() as i64).max(1);
    let mut alerts = Vec::new();
    for (dedup_key, mut matches) in by_key {
        // In time order, so each alert starts at its first match. The sort is stable: rows at the
        // same instant keep the order the rule returned them in.
        matches.sort_by_key(|m| m.micros);
        alerts.extend(fold_key(rule, &dedup_key, matches, recorded.recorded(&dedup_key), window));
    }
    alerts.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.id.cmp(&b.id)));
    Ok(alerts)
}

/// An alert being folded: its span so far (the recorded one's and the new matches') and the
/// alert the new matches make.
struct Open {
    id: String,
    first: i64,
    last: i64,
    alert: Option<Alert>,
}

impl Open {
    /// Whether the alert, with a match at `micros`, still spans less than `window`.
    fn fits(&self, micros: i64, window: i64) -> bool {
        self.last.max(micros) - self.first.min(micros) < window
    }
}

/// Folds one dedup key's matches (in time order) into alerts, joining the recorded ones.
fn fold_key(rule: &Rule, dedup_key: &str, matches: Vec<Match>, recorded: Vec<Recorded>, window: i64) -> Vec<Alert> {
    let (Some(lowest), Some(highest)) = (matches.first().map(|m| m.micros), matches.last().map(|m| m.micros)) else {
        return Vec::new();
    };
    // Only recorded alerts a match can fit in, ordered by their first match as recorded.
    let mut recorded: Vec<Open> = recorded
        .into_iter()
        .filter(|r| r.last_seen > lowest - window && r.first_seen < highest + window)
        .map(|r| Open { id: r.id, first: r.first_seen, last: r.last_seen, alert: None })
        .collect();
    recorded.sort_by(|a, b| a.first.cmp(&b.first).then_with(|| a.id.cmp(&b.id)));
    let recorded_firsts: Vec<i64> = recorded.iter().map(|o| o.first).collect();
    // New alerts start in time order, each at a match that fits no earlier one: only the latest
    // can take a later match.
    let mut started: Vec<Open> = Vec::new();
    for m in matches {
        let t = m.micros;
        // An alert a match fits in was first seen (as recorded) less than a window before the
        // match, and before the match ends its span less than a window after it: first matches
        // only move earlier, last ones only later.
        let lo = recorded_firsts.partition_point(|&first| first <= t - window);
        let hi = recorded_firsts.partition_point(|&first| first < t + window).max(lo);
        let pick = recorded[lo..hi]
            .iter()
            .enumerate()
            .filter(|(_, o)| o.fits(t, window))
            .min_by_key(|(_, o)| o.first)
            .map(|(i, _)| lo + i);
        let open = match pick {
            Some(index) => &mut recorded[index],
            None => {
                if !started.last().is_some_and(|o| o.fits(t, window)) {
                    started.push(Open { id: alert_id(&format!("{dedup_key}|{t}")), first: t, last: t, alert: None });
                }
                match started.last_mut() {
                    Some(open) => open,
                    None => continue,
                }
            }
        };
        open.first = open.first.min(t);
        open.last = open.last.max(t);
        let time = DateTime::from_timestamp_micros(t).unwrap_or_default();
        match &mut open.alert {
            Some(alert) => {
                alert.count += 1;
                alert.first_seen = alert.first_seen.min(time);
                alert.last_seen = alert.last_seen.max(time);
                extend_capped(&mut alert.event_ids, m.event_ids);
                extend_capped(&mut alert.source_keys, m.source_keys);
            }
            None => {
                let mut alert = Alert {
                    id: open.id.clone(),
                    rule_id: rule.id.clone(),
                    title: rule.title.clone(),
                    description: rule.description.clone(),
                    severity: rule.severity,
                    mitre: rule.mitre.clone(),
                    dedup_key: dedup_key.to_owned(),
                    first_seen: time,
                    last_seen: time,
                    count: 1,
                    account: m.account,
                    region: m.region,
                    principal: m.principal,
                    source_ip: m.source_ip,
                    event_ids: Vec::new(),
                    source_keys: Vec::new(),
                    details: m.details,
                };
                extend_capped(&mut alert.event_ids, m.event_ids);
                extend_capped(&mut alert.source_keys, m.source_keys);
                open.alert = Some(alert);
            }
        }
    }
    recorded.into_iter().chain(started).filter_map(|o| o.alert).collect()
}

fn alert_id(slot: &str) -> String {
    let digest = Sha256::digest(slot.as_bytes());
    hex::encode(&digest[..16])
}

fn event_times(rule: &Rule, batch: &RecordBatch) -> Result<TimestampMicrosecondArray> {
    let column = batch.column_by_name("event_time").ok_or_else(|| DetectError::Rule {
        origin: rule.origin.clone(),
        reason: "the SQL does not return an event_time column".into(),
    })?;
    let micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    micros.as_any().downcast_ref::<TimestampMicrosecondArray>().cloned().ok_or_else(|| DetectError::Rule {
        origin: rule.origin.clone(),
        reason: "event_time is not a timestamp".into(),
    })
}

fn rows_as_json(batch: &RecordBatch) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write_batches(&[batch])?;
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// A JSON value as the text an analyst expects: strings without quotes.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A string or a list of strings (or nothing) as strings.
fn strings(value: Option<serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(items)) => items.iter().map(json_text).filter(|s| !s.is_empty()).collect(),
        Some(serde_json::Value::Null) | None => Vec::new(),
        Some(other) => vec![json_text(&other)].into_iter().filter(|s| !s.is_empty()).collect(),
    }
}

fn extend_capped(into: &mut Vec<String>, values: Vec<String>) {
    for value in values {
        if into.len() >= MAX_EVIDENCE {
            return;
        }
        if !into.contains(&value) {
            into.push(value);
        }
    }
}

/// Whether a column of these types can hold a list of strings (for `event_ids`/`source_keys`).
pub(crate) fn is_string_or_list(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::List(field) | DataType::LargeList(field) => is_string_or_list(field.data_type()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn rule() -> Rule {
        Rule::parse(
            "t.yaml",
            "id: r\ntitle: R\ndescription: D\nseverity: high\ntables: [cloudtrail]\nmitre: [T1078]\n\
             dedup: { key: [account], window: 1h }\nsql: SELECT 1\n",
        )
        .expect("rule")
    }

    fn batch(rows: &[(&str, &str, &str)]) -> RecordBatch {
        let micros: Vec<i64> =
            rows.iter().map(|(t, _, _)| DateTime::parse_from_rfc3339(t).expect("time").timestamp_micros()).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("account", DataType::Utf8, true),
            Field::new("event_id", DataType::Utf8, true),
            Field::new("extra", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC")),
            Arc::new(rows.iter().map(|r| Some(r.1)).collect::<StringArray>()),
            Arc::new(rows.iter().map(|r| Some(r.2)).collect::<StringArray>()),
            Arc::new(StringArray::from(vec!["x"; rows.len()])),
        ];
        RecordBatch::try_new(schema, columns).expect("batch")
    }

    #[test]
    fn matches_fold_by_key_and_window_with_stable_ids() {
        let rows = [
            ("2025-03-03T10:05:00Z", "111", "e1"),
            ("2025-03-03T10:50:00Z", "111", "e2"),
            ("2025-03-03T10:20:00Z", "222", "e3"),
            ("2025-03-03T11:05:00Z", "111", "e4"),
        ];
        let alerts = alerts_from_rows(&rule(), &[batch(&rows)]).expect("alerts");
        assert_eq!(alerts.len(), 3, "{alerts:?}");
        let first = &alerts[0];
        assert_eq!((first.account.as_deref(), first.count), (Some("111"), 2));
        assert_eq!(first.event_ids, ["e1", "e2"]);
        assert_eq!(first.details.get("extra"), Some(&serde_json::json!("x")));
        assert_eq!(first.dedup_key, "r|account=111");
        // The same rows again, in another order: the same alerts with the same ids.
        let mut reversed = rows;
        reversed.reverse();
        let again = alerts_from_rows(&rule(), &[batch(&reversed)]).expect("alerts");
        let ids = |a: &[Alert]| a.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&alerts), ids(&again));
    }

    /// Regression: dedup windows aligned to the epoch split one burst crossing an hour into two
    /// alerts; a window from the first match holds it whole, and the next window starts at the
    /// first match past it, not at the next hour.
    #[test]
    fn a_burst_crossing_a_window_boundary_is_one_alert() {
        let rows = [
            ("2025-03-03T10:59:00Z", "111", "e1"),
            ("2025-03-03T11:01:00Z", "111", "e2"),
            ("2025-03-03T11:58:00Z", "111", "e3"),
            ("2025-03-03T11:59:30Z", "111", "e4"),
        ];
        let alerts = alerts_from_rows(&rule(), &[batch(&rows)]).expect("alerts");
        let folded: Vec<(u64, Vec<String>)> = alerts.iter().map(|a| (a.count, a.event_ids.clone())).collect();
        assert_eq!(
            folded,
            [(3, vec!["e1".to_owned(), "e2".to_owned(), "e3".to_owned()]), (1, vec!["e4".to_owned()])],
            "{alerts:?}"
        );
    }
}
