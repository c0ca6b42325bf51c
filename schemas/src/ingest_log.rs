//! The `ingest_log` table: one row per object bunker looked at, whatever became of it.
//!
//! It is how a responder answers "was this file ingested, and if not, why?": committed objects with
//! their row counts, objects skipped as another log type, duplicates recognised on redelivery, and
//! bad objects with the reason. Partitioned by the UTC date of ingestion.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};

use crate::{DATE_COLUMN, field, required_field, utc_timestamp};

/// Name of the table in the lake and in SQL.
pub const TABLE_NAME: &str = "ingest_log";

/// Values of the `status` column.
pub mod status {
    /// The object's rows were committed (possibly zero rows, possibly with some records rejected).
    pub const COMMITTED: &str = "committed";
    /// The object had been committed before; nothing was added.
    pub const DUPLICATE: &str = "duplicate";
    /// The object is not a log bunker ingests (another AWS log type, a digest, a folder marker).
    pub const SKIPPED: &str = "skipped";
    /// The object could not be ingested at all; `reason` says why.
    pub const FAILED: &str = "failed";
}

/// The schema of the `ingest_log` table.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        required_field("ingested_at", utc_timestamp(), "when bunker finished with the object (UTC)"),
        field("source_bucket", DataType::Utf8, "S3 bucket of the object; empty for a local archive"),
        required_field("source_key", DataType::Utf8, "key of the object (path relative to the archive root)"),
        field(
            "format",
            DataType::Utf8,
            "what the object was classified as: cloudtrail, vpcflow, dns, cloudtrail-digest, unknown, ...",
        ),
        field("table_name", DataType::Utf8, "lake table the rows went to, if any"),
        required_field("status", DataType::Utf8, "committed, duplicate, skipped or failed"),
        field("rows", DataType::Int64, "rows committed from this object"),
        field("rejected_records", DataType::Int64, "records or lines of the object that were rejected"),
        field("bytes", DataType::Int64, "size of the object as stored (compressed)"),
        field("error_kind", DataType::Utf8, "kind of failure: gzip, too_large, malformed, io, ..."),
        field("reason", DataType::Utf8, "why the object failed or was skipped, or the first rejected records"),
        field("lake_version", DataType::Int64, "version of the data table's Delta commit holding the rows"),
        required_field(DATE_COLUMN, DataType::Date32, "UTC date of ingestion; the partition column"),
    ]))
}
