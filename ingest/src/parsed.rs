//! What every parser takes and returns: the object it is reading, and the rows it made of it.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use chrono::NaiveDate;

/// The object a parser is reading: where it came from, for lineage columns and error messages.
#[derive(Debug, Clone, Copy)]
pub struct ObjectContext<'a> {
    /// Bucket of the object; empty for a local archive.
    pub bucket: &'a str,
    /// Key of the object (relative path inside a local archive).
    pub key: &'a str,
    /// The date the key's layout names (`.../YYYY/MM/DD/...`), used for rows with no time of their own.
    pub key_date: Option<NaiveDate>,
}

impl ObjectContext<'_> {
    /// The `source_bucket` and `source_key` columns for `rows` rows.
    pub fn lineage_columns(&self, rows: usize) -> [ArrayRef; 2] {
        [
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(self.bucket, rows))),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(self.key, rows))),
        ]
    }

    /// The key date as days since the epoch (Arrow `Date32`), if the key names one.
    pub fn key_date_days(&self) -> Option<i32> {
        self.key_date.map(crate::timestamp::days_since_epoch)
    }
}

/// Where in an object a rejected record was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line number (flow and DNS logs, JSON-lines CloudTrail).
    Line(u64),
    /// 0-based index in the `Records` array (CloudTrail).
    Record(u64),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Record(n) => write!(f, "record {n}"),
        }
    }
}

/// One record the parser could not turn into a row; the rest of the object is still ingested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Where the record was.
    pub position: Position,
    /// Why it was rejected.
    pub reason: String,
}

/// The rows parsed from one object.
#[derive(Debug)]
pub struct Parsed {
    /// Rows in the table's schema, lineage and date columns included. May have zero rows.
    pub batch: RecordBatch,
    /// Records that were skipped, with the reason.
    pub rejected: Vec<Rejected>,
}
