//! The region baseline: the first time each account was seen acting in each region.
//!
//! "Activity in a region this account never used" is one of the strongest cheap signals of a
//! stolen credential, but answering "never" from months of CloudTrail on every commit would mean
//! scanning months of CloudTrail on every commit. So the lake keeps the answer: the lake writer
//! records, before each CloudTrail commit, every (account, region) pair it has not seen yet, or
//! has only seen later, as a row of `region_sightings` (append-only, so that several workers can
//! write it). The earliest sighting per pair is the baseline; `bunker query` registers it as the
//! `region_baseline` view, and detections read it under that name.
//!
//! Only calls made by someone count: events AWS services make on their own (`AwsServiceEvent`,
//! `useridentity.type = 'AWSService'`) happen in regions nobody chose and would hide a first use.
//! Partitioned by the UTC date of the sighting.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::{DATE_COLUMN, field, required_field, utc_timestamp};
use std::sync::Arc;

/// Name of the Delta table in the lake (and of the raw rows in SQL).
pub const TABLE_NAME: &str = "region_sightings";

/// Name of the SQL view holding the earliest sighting of each (account, region).
pub const VIEW_NAME: &str = "region_baseline";

/// The earliest row per (account, region) of [`TABLE_NAME`]: the `region_baseline` view, with
/// the columns of [`view_schema`].
pub fn earliest_sql() -> String {
    format!(
        "SELECT account, region, first_seen, first_event_id, source_key FROM (\
           SELECT *, row_number() OVER (PARTITION BY account, region ORDER BY first_seen, first_event_id) AS rank \
           FROM {TABLE_NAME}) WHERE rank = 1"
    )
}

fn view_fields() -> Vec<Field> {
    vec![
        required_field("account", DataType::Utf8, "AWS account (recipientaccountid of the event)"),
        required_field("region", DataType::Utf8, "AWS region (awsregion of the event)"),
        required_field("first_seen", utc_timestamp(), "time of the account's first event in the region"),
        field("first_event_id", DataType::Utf8, "eventid of that first event"),
        field("source_key", DataType::Utf8, "key of the log object holding that first event"),
    ]
}

/// The schema of the `region_baseline` view: one row per (account, region).
pub fn view_schema() -> SchemaRef {
    Arc::new(Schema::new(view_fields()))
}

/// The schema of the `region_sightings` table.
pub fn schema() -> SchemaRef {
    let mut fields = view_fields();
    fields.push(required_field("recorded_at", utc_timestamp(), "when this sighting was recorded (UTC)"));
    fields.push(required_field(DATE_COLUMN, DataType::Date32, "UTC date of first_seen; the partition column"));
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_is_the_table_without_its_bookkeeping() {
        let table = schema();
        let view = view_schema();
        assert_eq!(table.fields()[..view.fields().len()], view.fields()[..]);
        assert!(earliest_sql().contains(TABLE_NAME));
        for f in table.fields() {
            assert!(f.metadata().contains_key(crate::DOC_KEY), "{} has a doc", f.name());
        }
    }
}
