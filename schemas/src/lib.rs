//! The Arrow schema of every bunker table, with a short doc per column.
//!
//! This crate is the single place where the shape of the lake is written down: the parsers in
//! `bunker-ingest` build record batches that match these schemas column for column, the lake writer
//! creates Delta tables from them, and `bunker schema <table>` prints them. It does no I/O.
//!
//! Column names follow the Athena tables AWS documents for each log type, all lowercase, so that
//! queries copied from AWS documentation run with little or no change.
#![deny(missing_docs)]

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub mod alerts;
pub mod baseline;
pub mod cloudtrail;
pub mod dns;
pub mod ingest_log;
pub mod location;
pub mod vpcflow;

/// Field-metadata key under which each column's one-line doc is kept.
pub const DOC_KEY: &str = "doc";

/// Version of the table layouts; bumped whenever a column is added, renamed or retyped.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the partition column every data table carries: the UTC date of the event.
pub const DATE_COLUMN: &str = "date";
/// Name of the lineage column holding the bucket of the source object (empty for a local archive).
pub const SOURCE_BUCKET_COLUMN: &str = "source_bucket";
/// Name of the lineage column holding the key (path inside the archive) of the source object.
pub const SOURCE_KEY_COLUMN: &str = "source_key";

/// A nullable column with its doc attached as field metadata.
pub fn field(name: &str, data_type: DataType, doc: &str) -> Field {
    Field::new(name, data_type, true).with_metadata([(DOC_KEY.to_owned(), doc.to_owned())].into())
}

/// A column that is never null, with its doc.
pub fn required_field(name: &str, data_type: DataType, doc: &str) -> Field {
    Field::new(name, data_type, false).with_metadata([(DOC_KEY.to_owned(), doc.to_owned())].into())
}

/// The timestamp type of every time column: microseconds since the epoch, in UTC.
///
/// Microseconds because that is the precision Delta Lake's `timestamp` type stores.
pub fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns every data table ends with: where the row came from, and its date partition.
pub fn lineage_fields() -> Vec<Field> {
    vec![
        field(
            SOURCE_BUCKET_COLUMN,
            DataType::Utf8,
            "S3 bucket of the source log object; empty when ingested from a local directory",
        ),
        required_field(
            SOURCE_KEY_COLUMN,
            DataType::Utf8,
            "key of the source log object (path relative to the archive root)",
        ),
        required_field(DATE_COLUMN, DataType::Date32, "UTC date of the event; the partition column"),
    ]
}

/// The doc of a column, as attached by [`field`].
pub fn doc_of(field: &Field) -> &str {
    field.metadata().get(DOC_KEY).map(String::as_str).unwrap_or("")
}

/// The tables of the lake that hold parsed log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogTable {
    /// CloudTrail management, data and Insights events.
    CloudTrail,
    /// VPC (and transit gateway) flow log records.
    VpcFlow,
    /// Route 53 Resolver query log records.
    Dns,
}

impl LogTable {
    /// Every log table, in a stable order.
    pub const ALL: [LogTable; 3] = [LogTable::CloudTrail, LogTable::VpcFlow, LogTable::Dns];

    /// The table's name in the lake and in SQL.
    pub const fn name(self) -> &'static str {
        match self {
            LogTable::CloudTrail => "cloudtrail",
            LogTable::VpcFlow => "vpcflow",
            LogTable::Dns => "dns",
        }
    }

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        match self {
            LogTable::CloudTrail => cloudtrail::schema(),
            LogTable::VpcFlow => vpcflow::schema(),
            LogTable::Dns => dns::schema(),
        }
    }

    /// The table for a name as written in SQL or on the command line.
    pub fn from_name(name: &str) -> Option<LogTable> {
        LogTable::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The column holding the event time, used to sort rows inside files.
    pub const fn time_column(self) -> &'static str {
        match self {
            LogTable::CloudTrail => "eventtime",
            LogTable::VpcFlow => "start",
            LogTable::Dns => "query_timestamp",
        }
    }

    /// The column holding the AWS account, the second sort key inside files.
    pub const fn account_column(self) -> &'static str {
        match self {
            LogTable::CloudTrail => "recipientaccountid",
            LogTable::VpcFlow => "account_id",
            LogTable::Dns => "account_id",
        }
    }
}

impl std::fmt::Display for LogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds a schema from a table's own columns followed by the lineage columns.
pub(crate) fn with_lineage(columns: Vec<Field>) -> SchemaRef {
    let mut fields = columns;
    fields.extend(lineage_fields());
    Arc::new(Schema::new(fields))
}

/// Renders a schema as an indented list of `name  type  doc` lines, nested fields included.
pub fn describe(schema: &Schema) -> String {
    fn walk(out: &mut String, field: &Field, depth: usize) {
        let ty = match field.data_type() {
            DataType::Struct(_) => "struct".to_owned(),
            DataType::List(inner) if matches!(inner.data_type(), DataType::Struct(_)) => "list<struct>".to_owned(),
            DataType::List(inner) => format!("list<{}>", inner.data_type()),
            other => other.to_string(),
        };
        let name = format!("{}{}", "  ".repeat(depth), field.name());
        out.push_str(&format!("{name:<36} {ty:<28} {}\n", doc_of(field)));
        match field.data_type() {
            DataType::Struct(children) => {
                children.iter().for_each(|c| walk(out, c, depth + 1));
            }
            DataType::List(inner) => {
                if let DataType::Struct(children) = inner.data_type() {
                    children.iter().for_each(|c| walk(out, c, depth + 1));
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for f in schema.fields() {
        walk(&mut out, f, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_has_a_doc_and_a_lowercase_name() {
        for table in LogTable::ALL {
            fn check(table: LogTable, f: &Field) {
                assert!(!doc_of(f).is_empty(), "{table}.{} has no doc", f.name());
                assert_eq!(f.name().to_lowercase(), *f.name(), "{table}.{} is not lowercase", f.name());
                if let DataType::Struct(children) = f.data_type() {
                    children.iter().for_each(|c| check(table, c));
                }
            }
            table.schema().fields().iter().for_each(|f| check(table, f));
        }
    }

    #[test]
    fn every_data_table_ends_with_lineage_and_date() {
        for table in LogTable::ALL {
            let schema = table.schema();
            let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(&names[names.len() - 3..], [SOURCE_BUCKET_COLUMN, SOURCE_KEY_COLUMN, DATE_COLUMN]);
            schema.field_with_name(table.time_column()).expect("time column");
            schema.field_with_name(table.account_column()).expect("account column");
        }
    }
}
