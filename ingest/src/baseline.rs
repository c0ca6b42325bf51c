//! Keeping the region baseline (see [`bunker_schemas::baseline`]): which regions each account
//! has acted in, and since when.
//!
//! [`Sightings`] is the baseline in memory — a few rows per account — folded from CloudTrail
//! batches with [`Sightings::observe`], which returns what changed: those rows are what the lake
//! writer appends to `region_sightings` before the commit that holds their events. A detection
//! sees the baseline as it would be with the batch it is looking at ([`Sightings::to_batch`] after
//! observing it), so "the first event of this account in this region" is the same question live
//! and over history.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Date32Array, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use bunker_schemas::baseline;
use deltalake::DeltaTable;
use deltalake::datafusion::prelude::SessionContext;

use crate::timestamp::micros_to_days;
use crate::{IngestError, Result};

/// The earliest sighting of one (account, region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// Microseconds since the epoch (UTC) of the first event.
    pub first_seen: i64,
    /// Its `eventid`.
    pub event_id: Option<String>,
    /// The key of the object holding it.
    pub source_key: Option<String>,
}

impl Sighting {
    /// Whether this sighting is earlier than `other` (ties broken by event id, as the view does).
    fn precedes(&self, other: &Sighting) -> bool {
        (self.first_seen, &self.event_id) < (other.first_seen, &other.event_id)
    }
}

/// The (account, region) pair a sighting is of.
pub type Pair = (String, String);

/// The region baseline in memory.
#[derive(Debug, Clone, Default)]
pub struct Sightings {
    // Nested by account then region so that a row can be looked up by its `&str`s: most rows are
    // of pairs already known, and must cost no allocation.
    earliest: HashMap<String, HashMap<String, Sighting>>,
}

impl Sightings {
    /// Reads the baseline from the `region_sightings` table (empty if it has no commit yet).
    pub async fn load(table: &DeltaTable) -> Result<Sightings> {
        let mut sightings = Sightings::default();
        if table.version().is_none() {
            return Ok(sightings);
        }
        let failed = |reason: String| IngestError::Lake {
            table: baseline::TABLE_NAME.to_owned(),
            source: Box::new(deltalake::DeltaTableError::Generic(reason)),
        };
        // A forged log entry must not make the worker read a file outside the table.
        let snapshot = table.snapshot().map_err(|e| failed(e.to_string()))?;
        for file in snapshot.log_data() {
            bunker_schemas::location::check_data_file_path(&file.path())
                .map_err(|reason| failed(format!("{reason}; the Delta log names a file outside the table")))?;
        }
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).map_err(|e| failed(e.to_string()))?;
        let provider = table.table_provider().await.map_err(|e| failed(e.to_string()))?;
        ctx.register_table(baseline::TABLE_NAME, provider).map_err(|e| failed(e.to_string()))?;
        let frame = ctx.sql(&baseline::earliest_sql()).await.map_err(|e| failed(e.to_string()))?;
        for batch in frame.collect().await.map_err(|e| failed(e.to_string()))? {
            let text = |name: &str| -> Result<StringArray> { strings(&batch, name) };
            let (account, region, event_id, key) =
                (text("account")?, text("region")?, text("first_event_id")?, text("source_key")?);
            let first = micros(&batch, "first_seen")?;
            for row in 0..batch.num_rows() {
                if account.is_null(row) || region.is_null(row) || first.is_null(row) {
                    continue;
                }
                let sighting = Sighting {
                    first_seen: first.value(row),
                    event_id: value(&event_id, row),
                    source_key: value(&key, row),
                };
                sightings.note(account.value(row), region.value(row), sighting);
            }
        }
        Ok(sightings)
    }

    /// The number of (account, region) pairs known.
    pub fn len(&self) -> usize {
        self.earliest.values().map(HashMap::len).sum()
    }

    /// Whether no pair is known.
    pub fn is_empty(&self) -> bool {
        self.earliest.is_empty()
    }

    /// The earliest sighting of a pair, if any.
    pub fn get(&self, account: &str, region: &str) -> Option<&Sighting> {
        self.earliest.get(account).and_then(|regions| regions.get(region))
    }

    /// Folds the events of CloudTrail batches into the baseline; returns the pairs that are new or
    /// now start earlier, with their new first sighting.
    pub fn observe(&mut self, batches: &[RecordBatch]) -> Result<Vec<(Pair, Sighting)>> {
        let mut changed: HashMap<Pair, Sighting> = HashMap::new();
        for batch in batches {
            let text = |name: &str| -> Result<StringArray> { strings(batch, name) };
            let (account, region, event_id, key, event_type) = (
                text("recipientaccountid")?,
                text("awsregion")?,
                text("eventid")?,
                text("source_key")?,
                text("eventtype")?,
            );
            let identity_type = identity_type(batch)?;
            let time = micros(batch, "eventtime")?;
            // The rows of one log object share an account and a region: the pair's first sighting
            // is looked up once per run of rows of the same pair, not once per row.
            let mut last: Option<(&str, &str, i64)> = None;
            for row in 0..batch.num_rows() {
                if account.is_null(row) || region.is_null(row) || time.is_null(row) {
                    continue;
                }
                let by_aws = (!event_type.is_null(row) && event_type.value(row) == "AwsServiceEvent")
                    || identity_type.as_ref().is_some_and(|t| !t.is_null(row) && t.value(row) == "AWSService");
                if by_aws || account.value(row).is_empty() || region.value(row).is_empty() {
                    continue;
                }
                let (account, region) = (account.value(row), region.value(row));
                if let Some((a, r, first)) = last
                    && (a, r) == (account, region)
                    && first < time.value(row)
                {
                    continue;
                }
                if let Some(known) = self.get(account, region)
                    && known.first_seen < time.value(row)
                {
                    last = Some((account, region, known.first_seen));
                    continue;
                }
                let sighting = Sighting {
                    first_seen: time.value(row),
                    event_id: value(&event_id, row),
                    source_key: value(&key, row),
                };
                if self.note(account, region, sighting.clone()) {
                    changed.insert((account.to_owned(), region.to_owned()), sighting);
                }
                last = self.get(account, region).map(|known| (account, region, known.first_seen));
            }
        }
        let mut changed: Vec<(Pair, Sighting)> = changed.into_iter().collect();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(changed)
    }

    /// Folds in the changes [`Sightings::observe`] found in some rows against an older state of
    /// this baseline; returns those that are still new or earlier here. The same as observing the
    /// rows again, for a baseline that has since only gained earlier sightings: a pair the rows did
    /// not change before cannot change it now.
    pub fn fold(&mut self, changed: Vec<(Pair, Sighting)>) -> Vec<(Pair, Sighting)> {
        changed
            .into_iter()
            .filter(|((account, region), sighting)| self.note(account, region, sighting.clone()))
            .collect()
    }

    /// Keeps `sighting` if it is the pair's first or an earlier one; says whether it did.
    fn note(&mut self, account: &str, region: &str, sighting: Sighting) -> bool {
        if self.get(account, region).is_some_and(|known| !sighting.precedes(known)) {
            return false;
        }
        self.earliest.entry(account.to_owned()).or_default().insert(region.to_owned(), sighting);
        true
    }

    /// The baseline as rows of the `region_baseline` view.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let mut rows: Vec<(Pair, &Sighting)> = self
            .earliest
            .iter()
            .flat_map(|(account, regions)| regions.iter().map(|(region, s)| ((account.clone(), region.clone()), s)))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let rows: Vec<(&Pair, &Sighting)> = rows.iter().map(|(p, s)| (p, *s)).collect();
        view_batch(&rows)
    }

    /// Rows of the `region_sightings` table for these changes, recorded at `now`.
    pub fn sightings_batch(changes: &[(Pair, Sighting)], now: chrono::DateTime<chrono::Utc>) -> Result<RecordBatch> {
        let rows: Vec<(&Pair, &Sighting)> = changes.iter().map(|(p, s)| (p, s)).collect();
        let view = view_batch(&rows)?;
        let n = rows.len();
        let mut columns = view.columns().to_vec();
        columns.push(Arc::new(TimestampMicrosecondArray::from(vec![now.timestamp_micros(); n]).with_timezone("UTC")));
        columns.push(Arc::new(Date32Array::from_iter_values(rows.iter().map(|(_, s)| micros_to_days(s.first_seen)))));
        Ok(RecordBatch::try_new(baseline::schema(), columns)?)
    }
}

fn view_batch(rows: &[(&Pair, &Sighting)]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|(p, _)| Some(p.0.as_str())).collect::<StringArray>()),
        Arc::new(rows.iter().map(|(p, _)| Some(p.1.as_str())).collect::<StringArray>()),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|(_, s)| s.first_seen)).with_timezone("UTC"),
        ),
        Arc::new(rows.iter().map(|(_, s)| s.event_id.as_deref()).collect::<StringArray>()),
        Arc::new(rows.iter().map(|(_, s)| s.source_key.as_deref()).collect::<StringArray>()),
    ];
    Ok(RecordBatch::try_new(baseline::view_schema(), columns)?)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| IngestError::Config(format!("the region baseline needs a {name} column")))
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let utf8 = cast(column(batch, name)?, &DataType::Utf8)?;
    Ok(utf8.as_any().downcast_ref::<StringArray>().cloned().unwrap_or_else(|| StringArray::new_null(batch.num_rows())))
}

fn micros(batch: &RecordBatch, name: &str) -> Result<TimestampMicrosecondArray> {
    let as_micros = cast(column(batch, name)?, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(as_micros
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .cloned()
        .unwrap_or_else(|| TimestampMicrosecondArray::new_null(batch.num_rows())))
}

/// `useridentity.type`, if the batch has it.
fn identity_type(batch: &RecordBatch) -> Result<Option<StringArray>> {
    let Some(identity) = batch.column_by_name("useridentity") else { return Ok(None) };
    let Some(identity) = identity.as_any().downcast_ref::<StructArray>() else { return Ok(None) };
    let Some(kind) = identity.column_by_name("type") else { return Ok(None) };
    let utf8 = cast(kind, &DataType::Utf8)?;
    // A null identity makes its type null too, whatever the child array holds.
    let utf8 = match identity.nulls() {
        Some(nulls) => {
            let merged = arrow::buffer::NullBuffer::union(Some(nulls), utf8.nulls());
            arrow::array::make_array(utf8.to_data().into_builder().nulls(merged).build()?)
        }
        None => utf8,
    };
    Ok(utf8.as_any().downcast_ref::<StringArray>().cloned())
}

fn value(array: &StringArray, row: usize) -> Option<String> {
    (!array.is_null(row)).then(|| array.value(row).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectContext;
    use crate::pipeline::parse_content;
    use bunker_schemas::LogTable;

    fn batch(records: &str) -> RecordBatch {
        let mut content = format!("{{\"Records\":[{records}]}}").into_bytes();
        let ctx = ObjectContext { bucket: "", key: "AWSLogs/1/CloudTrail/x.json", key_date: None };
        let parsed = parse_content(LogTable::CloudTrail, &mut content, &ctx).expect("parses");
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        parsed.batch
    }

    fn event(id: &str, time: &str, account: &str, region: &str, who: &str) -> String {
        format!(
            r#"{{"eventVersion":"1.08","eventTime":"{time}","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","eventType":"AwsApiCall","awsRegion":"{region}","eventID":"{id}","recipientAccountId":"{account}","userIdentity":{{"type":"{who}"}}}}"#
        )
    }

    #[test]
    fn only_new_or_earlier_pairs_change_the_baseline() {
        let mut sightings = Sightings::default();
        let first = batch(
            &[
                event("a", "2025-03-02T10:00:00Z", "1", "us-east-1", "IAMUser"),
                event("b", "2025-03-01T10:00:00Z", "1", "us-east-1", "IAMUser"),
                event("c", "2025-03-02T11:00:00Z", "1", "eu-west-1", "AssumedRole"),
            ]
            .join(","),
        );
        let changed = sightings.observe(std::slice::from_ref(&first)).expect("observe");
        let ids: Vec<_> = changed.iter().map(|(p, s)| (p.1.as_str(), s.event_id.as_deref())).collect();
        assert_eq!(ids, [("eu-west-1", Some("c")), ("us-east-1", Some("b"))]);
        assert_eq!(sightings.observe(&[first]).expect("again"), [], "the same events change nothing");

        let later = batch(
            &[
                event("d", "2025-03-05T10:00:00Z", "1", "us-east-1", "IAMUser"),
                event("e", "2025-02-01T10:00:00Z", "1", "eu-west-1", "IAMUser"),
            ]
            .join(","),
        );
        let changed = sightings.observe(&[later]).expect("observe");
        assert_eq!(changed.len(), 1, "only the earlier eu-west-1 event: {changed:?}");
        assert_eq!(sightings.get("1", "eu-west-1").and_then(|s| s.event_id.as_deref()), Some("e"));
        let rows = sightings.to_batch().expect("rows");
        assert_eq!(rows.num_rows(), 2);
        assert_eq!(rows.schema(), baseline::view_schema());
        let table = Sightings::sightings_batch(&changed, chrono::Utc::now()).expect("rows");
        assert_eq!(table.schema(), baseline::schema());
    }

    #[test]
    fn folding_the_changes_of_rows_equals_observing_them_again() {
        let rows = batch(
            &[
                event("a", "2025-03-02T10:00:00Z", "1", "us-east-1", "IAMUser"),
                event("b", "2025-03-03T10:00:00Z", "1", "eu-west-1", "IAMUser"),
                event("c", "2025-03-04T10:00:00Z", "2", "eu-west-1", "IAMUser"),
                event("d", "2025-03-04T09:00:00Z", "2", "eu-west-1", "IAMUser"),
            ]
            .join(","),
        );
        let changed = Sightings::default().observe(std::slice::from_ref(&rows)).expect("observe");
        assert_eq!(changed.len(), 3);
        // Meanwhile another worker saw account 1 in eu-west-1 earlier, and account 2 there later.
        let mut newer = Sightings::default();
        let theirs = [
            event("x", "2025-03-01T00:00:00Z", "1", "eu-west-1", "IAMUser"),
            event("y", "2025-03-05T00:00:00Z", "2", "eu-west-1", "IAMUser"),
        ];
        newer.observe(&[batch(&theirs.join(","))]).expect("observe");
        let (mut folded, mut observed) = (newer.clone(), newer);
        let by_folding = folded.fold(changed);
        assert_eq!(by_folding, observed.observe(&[rows]).expect("observe"));
        let ids: Vec<_> = by_folding.iter().map(|(p, s)| (p.0.as_str(), p.1.as_str(), s.event_id.as_deref())).collect();
        assert_eq!(ids, [("1", "us-east-1", Some("a")), ("2", "eu-west-1", Some("d"))]);
        assert_eq!(folded.to_batch().expect("rows"), observed.to_batch().expect("rows"));
    }

    #[test]
    fn aws_acting_on_its_own_is_not_a_use_of_the_region() {
        let mut sightings = Sightings::default();
        let service = batch(&[
            event("a", "2025-03-02T10:00:00Z", "1", "ap-east-1", "AWSService"),
            r#"{"eventVersion":"1.08","eventTime":"2025-03-02T10:00:00Z","eventSource":"kms.amazonaws.com","eventName":"RotateKey","eventType":"AwsServiceEvent","awsRegion":"ap-east-1","eventID":"b","recipientAccountId":"1"}"#.to_owned(),
        ]
        .join(","));
        assert_eq!(sightings.observe(&[service]).expect("observe"), []);
        assert!(sightings.is_empty());
    }

    #[test]
    fn a_batch_without_cloudtrail_columns_is_an_error() {
        let other = RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new("x", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["y"]))],
        )
        .expect("batch");
        let error = Sightings::default().observe(&[other]).expect_err("not cloudtrail");
        assert!(error.to_string().contains("recipientaccountid"), "{error}");
    }
}
