//! What every parser takes and returns: the object it is reading, and the rows it made of it.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::error::ArrowError;
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
    /// The `source_bucket` and `source_key` columns for `rows` rows; an error if a column would
    /// pass Arrow's 2 GiB of text (a 1 KiB key on millions of rows).
    pub fn lineage_columns(&self, rows: usize) -> Result<[ArrayRef; 2], ArrowError> {
        Ok([repeated(self.bucket, rows)?, repeated(self.key, rows)?])
    }

    /// The key date as days since the epoch (Arrow `Date32`), if the key names one.
    pub fn key_date_days(&self) -> Option<i32> {
        self.key_date.map(crate::timestamp::days_since_epoch)
    }
}

/// A text column holding `value` in each of `rows` rows, built in one pass.
fn repeated(value: &str, rows: usize) -> Result<ArrayRef, ArrowError> {
    let total = value.len().checked_mul(rows).filter(|&bytes| bytes <= i32::MAX as usize).ok_or_else(|| {
        ArrowError::ComputeError(format!("{rows} copies of a {}-byte lineage value pass 2 GiB", value.len()))
    })?;
    let mut values = Vec::with_capacity(total);
    for _ in 0..rows {
        values.extend_from_slice(value.as_bytes());
    }
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(value.len(), rows));
    Ok(Arc::new(StringArray::try_new(offsets, values.into(), None)?))
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

/// How many rejected records an object keeps with their reasons; the rest are only counted. An
/// object of millions of tiny bad records must not become millions of reasons in memory (about 70
/// bytes each, for 3 bytes of `{},` input).
pub const MAX_KEPT_REJECTIONS: usize = 100;

/// The records of one object that were skipped: every one counted, the first
/// [`MAX_KEPT_REJECTIONS`] kept with their position and reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    kept: Vec<Rejected>,
    total: u64,
}

impl Rejections {
    /// Counts a rejected record, and keeps it while there is room.
    pub fn push(&mut self, rejected: Rejected) {
        self.total += 1;
        if self.kept.len() < MAX_KEPT_REJECTIONS {
            self.kept.push(rejected);
        }
    }

    /// How many records were rejected, kept or not.
    pub fn len(&self) -> usize {
        self.total as usize
    }

    /// Whether no record was rejected.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The first rejected records, in order.
    pub fn kept(&self) -> &[Rejected] {
        &self.kept
    }

    /// The kept rejected records, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Rejected> {
        self.kept.iter()
    }

    /// The first rejected record.
    pub fn first(&self) -> Option<&Rejected> {
        self.kept.first()
    }

    /// Forgets every rejection (a parser reused for the next object).
    pub fn clear(&mut self) {
        self.kept.clear();
        self.total = 0;
    }
}

impl<'a> IntoIterator for &'a Rejections {
    type Item = &'a Rejected;
    type IntoIter = std::slice::Iter<'a, Rejected>;

    fn into_iter(self) -> Self::IntoIter {
        self.kept.iter()
    }
}

/// The rows parsed from one object.
#[derive(Debug)]
pub struct Parsed {
    /// Rows in the table's schema, lineage and date columns included. May have zero rows.
    pub batch: RecordBatch,
    /// Records that were skipped, with the reason.
    pub rejected: Rejections,
}

/// What appending one object to a parser's open group did: how many rows it added after the
/// earlier objects' rows, and the records it skipped.
#[derive(Debug)]
pub struct Appended {
    /// Rows the object added.
    pub rows: usize,
    /// Records that were skipped, with the reason.
    pub rejected: Rejections,
}

/// Cuts a group's batches back into each object's rows. `rows` are the objects' row counts in the
/// order they were appended; each object's rows lie inside one batch (see
/// `CloudTrailParser::finish_group`). Slices share the group's buffers; nothing is copied.
pub fn split_group(batches: &[RecordBatch], rows: &[usize]) -> Result<Vec<RecordBatch>, ArrowError> {
    let mismatch = || {
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        ArrowError::ComputeError(format!(
            "a group of {} objects and {total} rows cannot be cut into objects of {} rows",
            rows.len(),
            rows.iter().sum::<usize>()
        ))
    };
    let mut objects = Vec::with_capacity(rows.len());
    let (mut at, mut offset) = (0, 0);
    for &n in rows {
        loop {
            let batch = batches.get(at).ok_or_else(mismatch)?;
            if offset + n <= batch.num_rows() {
                let whole = offset == 0 && n == batch.num_rows();
                objects.push(if whole { batch.clone() } else { batch.slice(offset, n) });
                offset += n;
                break;
            }
            if offset < batch.num_rows() {
                return Err(mismatch()); // The object would span two batches.
            }
            (at, offset) = (at + 1, 0);
        }
    }
    let rest = batches.get(at).map_or(0, |b| b.num_rows() - offset)
        + batches.iter().skip(at + 1).map(RecordBatch::num_rows).sum::<usize>();
    if rest > 0 {
        return Err(mismatch());
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_count_everything_and_keep_the_first_few() {
        let mut rejections = Rejections::default();
        assert!(rejections.is_empty());
        for n in 0..1_000_000u64 {
            rejections.push(Rejected { position: Position::Record(n), reason: "no eventTime".into() });
        }
        assert_eq!(rejections.len(), 1_000_000);
        assert_eq!(rejections.kept().len(), MAX_KEPT_REJECTIONS);
        assert_eq!(rejections.first().map(|r| r.position), Some(Position::Record(0)));
        assert_eq!(
            rejections.iter().last().map(|r| r.position),
            Some(Position::Record(MAX_KEPT_REJECTIONS as u64 - 1))
        );
        rejections.clear();
        assert!(rejections.is_empty() && rejections.kept().is_empty());
    }

    fn numbered(rows: i32) -> RecordBatch {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "n",
            arrow::datatypes::DataType::Int32,
            false,
        )]));
        let column: ArrayRef = Arc::new(arrow::array::Int32Array::from_iter_values(0..rows));
        RecordBatch::try_new(schema, vec![column]).expect("batch")
    }

    #[test]
    fn a_group_is_cut_back_into_its_objects() {
        let batches = [numbered(5), numbered(3)];
        let objects = split_group(&batches, &[2, 0, 3, 0, 3, 0]).expect("cut");
        let rows: Vec<(usize, Option<i32>)> = objects
            .iter()
            .map(|b| {
                (
                    b.num_rows(),
                    b.column(0)
                        .as_any()
                        .downcast_ref::<arrow::array::Int32Array>()
                        .and_then(|a| a.iter().next().flatten()),
                )
            })
            .collect();
        assert_eq!(rows, [(2, Some(0)), (0, None), (3, Some(2)), (0, None), (3, Some(0)), (0, None)]);
        assert_eq!(objects[4], batches[1], "a whole batch is passed on as it is");
        // Row counts that do not match the batches: an error, not a panic or a wrong cut.
        for rows in [&[2, 2, 4][..], &[5, 2], &[5, 4], &[5, 3, 1], &[]] {
            assert!(split_group(&batches, rows).is_err(), "{rows:?}");
        }
        assert!(split_group(&[], &[0]).is_err());
        assert_eq!(split_group(&[numbered(0)], &[0, 0]).expect("empty objects").len(), 2);
    }
}
