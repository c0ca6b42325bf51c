//! Alerts: what a rule's rows become, folded by dedup key and window, with their evidence.
//!
//! An alert's id is a hash of the rule id, the dedup key's values and the window the first match
//! falls in, so running the same rules over the same rows always gives the same ids: re-running
//! `bunker detect` over history, or a redelivered batch in the worker, updates alerts instead of
//! multiplying them.

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
const MAX_EVIDENCE: usize = 100;

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
    /// Stable id: the same rule, key and window always give the same id.
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

/// Turns a rule's result rows into alerts, folding rows with the same key and window.
pub fn alerts_from_rows(rule: &Rule, batches: &[RecordBatch]) -> Result<Vec<Alert>> {
    let mut alerts: BTreeMap<String, Alert> = BTreeMap::new();
    let window_micros = (rule.dedup.window.as_micros() as i64).max(1);
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
            let micros = times.value(i);
            let time = DateTime::from_timestamp_micros(micros).unwrap_or_default();
            let key_values: Vec<String> =
                rule.dedup.key.iter().map(|k| row.get(k).map(json_text).unwrap_or_default()).collect();
            let dedup_key = std::iter::once(rule.id.clone())
                .chain(rule.dedup.key.iter().zip(&key_values).map(|(k, v)| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join("|");
            let bucket = micros.div_euclid(window_micros);
            let slot = format!("{dedup_key}|{bucket}");
            let mut take = |name: &str| row.remove(name);
            let event_ids = strings(take("event_id")).into_iter().chain(strings(take("event_ids"))).collect::<Vec<_>>();
            let source_keys =
                strings(take("source_key")).into_iter().chain(strings(take("source_keys"))).collect::<Vec<_>>();
            let account = take("account").map(|v| json_text(&v));
            let region = take("region").map(|v| json_text(&v));
            let principal = take("principal").map(|v| json_text(&v));
            let source_ip = take("source_ip").map(|v| json_text(&v));
            row.remove("event_time");
            match alerts.get_mut(&slot) {
                Some(alert) => {
                    alert.count += 1;
                    alert.first_seen = alert.first_seen.min(time);
                    alert.last_seen = alert.last_seen.max(time);
                    extend_capped(&mut alert.event_ids, event_ids);
                    extend_capped(&mut alert.source_keys, source_keys);
                }
                None => {
                    let mut alert = Alert {
                        id: alert_id(&slot),
                        rule_id: rule.id.clone(),
                        title: rule.title.clone(),
                        description: rule.description.clone(),
                        severity: rule.severity,
                        mitre: rule.mitre.clone(),
                        dedup_key,
                        first_seen: time,
                        last_seen: time,
                        count: 1,
                        account: account.filter(|s| !s.is_empty()),
                        region: region.filter(|s| !s.is_empty()),
                        principal: principal.filter(|s| !s.is_empty()),
                        source_ip: source_ip.filter(|s| !s.is_empty()),
                        event_ids: Vec::new(),
                        source_keys: Vec::new(),
                        details: row,
                    };
                    extend_capped(&mut alert.event_ids, event_ids);
                    extend_capped(&mut alert.source_keys, source_keys);
                    alerts.insert(slot, alert);
                }
            }
        }
    }
    let mut alerts: Vec<Alert> = alerts.into_values().collect();
    alerts.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.id.cmp(&b.id)));
    Ok(alerts)
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
}
