//! The `alerts` table: every alert bunker ever emitted, one row per emission.
//!
//! An alert is updated, not repeated, while its condition recurs inside its dedup window (same
//! rule, same key, same window → same `id`). The table is append-only so that several workers can
//! write it without rewriting each other's files: each emission appends the alert's state at that
//! moment, and the newest row per `id` (greatest `emitted_at`, then `count`) is the alert as it
//! stands. `bunker query` registers that view as `alerts` and the raw rows as `alert_updates`.
//! Partitioned by the UTC date of the alert's first matching event.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::{DATE_COLUMN, field, required_field, utc_timestamp};

/// Name of the Delta table in the lake (and of the raw rows in SQL).
pub const TABLE_NAME: &str = "alert_updates";

/// Name of the SQL view holding the current state of every alert.
pub const VIEW_NAME: &str = "alerts";

/// The newest row of each alert among the rows of [`TABLE_NAME`] that `filter` keeps (a `WHERE`
/// clause, or empty): the `alerts` view, and how the detections read back an alert's state.
pub fn newest_sql(filter: &str) -> String {
    format!(
        "SELECT * EXCEPT (update_rank) FROM (\
           SELECT *, row_number() OVER (PARTITION BY id ORDER BY emitted_at DESC, count DESC) AS update_rank \
           FROM {TABLE_NAME} {filter}) WHERE update_rank = 1"
    )
}

fn strings() -> DataType {
    DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)))
}

/// The schema of the `alert_updates` table.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        required_field("emitted_at", utc_timestamp(), "when this state of the alert was emitted (UTC)"),
        required_field("id", DataType::Utf8, "stable alert id: the same rule, dedup key and window give the same id"),
        required_field("rule_id", DataType::Utf8, "id of the rule that fired"),
        field("title", DataType::Utf8, "the rule's title"),
        field("severity", DataType::Utf8, "info, low, medium, high or critical"),
        field("mitre", strings(), "MITRE ATT&CK technique ids of the rule"),
        field("dedup_key", DataType::Utf8, "the rule id and the values of its dedup key"),
        field("first_seen", utc_timestamp(), "time of the first matching event"),
        field("last_seen", utc_timestamp(), "time of the last matching event"),
        field("count", DataType::Int64, "matching events folded into the alert so far"),
        field("account", DataType::Utf8, "AWS account of the first match"),
        field("region", DataType::Utf8, "AWS region of the first match"),
        field("principal", DataType::Utf8, "principal (ARN or name) of the first match"),
        field("source_ip", DataType::Utf8, "source IP address of the first match"),
        field("event_ids", strings(), "ids of the matching events (at most 100)"),
        field("source_keys", strings(), "keys of the log objects holding the matching events (at most 100)"),
        field("details", DataType::Utf8, "the rule's other output columns for the first match, as JSON"),
        field("run", DataType::Utf8, "what emitted it: worker, ingest, schedule or detect"),
        required_field(DATE_COLUMN, DataType::Date32, "UTC date of the first matching event; the partition column"),
    ]))
}
