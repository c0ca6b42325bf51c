//! What the fuzz targets share: the object every input is read as, and the invariants a parser's
//! answer must keep whatever the input — beyond "it did not panic".
//!
//! Each target feeds the fuzzer's bytes to one parser the way `ingest::pipeline::parse_content`
//! does, then hands the outcome to [`check_outcome`]. A broken invariant panics, which libFuzzer
//! reports as a crash with the input that caused it.

use std::sync::OnceLock;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Date32Type, Int32Type, Int64Type, SchemaRef, TimestampMicrosecondType};
use bunker_ingest::classify::classify_key;
use bunker_ingest::timestamp::micros_to_days;
use bunker_ingest::{IngestError, LogFormat, ObjectContext, Parsed, Position, Result};
use bunker_schemas::{DATE_COLUMN, LogTable, SOURCE_BUCKET_COLUMN, SOURCE_KEY_COLUMN};

/// The bucket every fuzz input comes from.
pub const BUCKET: &str = "fuzz-archive";

/// Object keys in AWS's layouts, so that the key date (used by flow logs without times) is set as
/// in production.
pub const CLOUDTRAIL_KEY: &str =
    "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T1205Z_abc.json.gz";
/// See [`CLOUDTRAIL_KEY`].
pub const VPCFLOW_KEY: &str = "AWSLogs/111122223333/vpcflowlogs/eu-west-1/2024/05/01/111122223333_vpcflowlogs_eu-west-1_fl-0a1b2c3d_20240501T0000Z_5e6f7a8b.log.gz";
/// See [`CLOUDTRAIL_KEY`].
pub const DNS_KEY: &str = "AWSLogs/111122223333/vpcdnsquerylogs/vpc-0a1b2c3d/2024/05/01/vpc-0a1b2c3d_vpcdnsquerylogs_111122223333_20240501T1205Z_3f9a.log.gz";

/// The longest reason a rejection or a malformed object may give. Reasons quote the input (cut to
/// a preview), they never copy it: a reason as long as a hostile line would be kept in memory and
/// written to the ingest log.
pub const MAX_REASON_BYTES: usize = 4096;

/// The object context for `key`, with the key date the pipeline would derive from it.
pub fn context(key: &'static str) -> ObjectContext<'static> {
    ObjectContext { bucket: BUCKET, key, key_date: classify_key(key).date }
}

/// The free-form CloudTrail columns the parser writes as JSON text (dotted paths into structs).
const CLOUDTRAIL_JSON_COLUMNS: [&str; 8] = [
    "requestparameters",
    "responseelements",
    "additionaleventdata",
    "serviceeventdetails",
    "edgedevicedetails",
    "insightdetails",
    "additionalfields",
    "useridentity.sessioncontext.webidfederationdata.attributes",
];

/// Checks a parser's whole answer for `input`, read as an object of `table` under `ctx`.
pub fn check_outcome(table: LogTable, input: &[u8], outcome: &Result<Parsed>, ctx: &ObjectContext<'_>) {
    match outcome {
        Ok(parsed) => {
            check_batch(table, &parsed.batch, ctx);
            check_rejected(table, input, parsed);
        }
        // A parser's only error for bad input is `Malformed`, naming the object and its format;
        // anything else (`Arrow`) is a bug of ours.
        Err(IngestError::Malformed { key, format, reason }) => {
            assert_eq!(key, ctx.key, "a malformed object is named by its key");
            let expected = match table {
                LogTable::CloudTrail => LogFormat::CloudTrail,
                LogTable::VpcFlow => LogFormat::VpcFlow,
                LogTable::Dns => LogFormat::Dns,
            };
            assert_eq!(*format, expected);
            check_reason(reason);
        }
        Err(other) => panic!("parser failed with an error that is not bad input: {other}"),
    }
}

/// Two answers for the same object are the same: rows, rejections, or error message.
pub fn assert_same_outcome(first: &Result<Parsed>, second: &Result<Parsed>) {
    match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.batch, b.batch, "same object, different rows");
            assert_eq!(a.rejected, b.rejected, "same object, different rejections");
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("same object, different outcomes: {:?} / {:?}", a.as_ref().err(), b.as_ref().err()),
    }
}

fn check_reason(reason: &str) {
    assert!(!reason.is_empty(), "an empty reason");
    assert!(reason.len() <= MAX_REASON_BYTES, "a reason of {} bytes: {}...", reason.len(), preview(reason));
}

fn preview(s: &str) -> &str {
    let end = s.char_indices().nth(200).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// The batch is what the lake expects: the table's schema, valid Arrow data all the way down,
/// lineage on every row, and a partition date that agrees with the row's time.
fn check_batch(table: LogTable, batch: &RecordBatch, ctx: &ObjectContext<'_>) {
    // Built once per table: a schema with its column docs is hundreds of allocations.
    static SCHEMAS: [OnceLock<SchemaRef>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = LogTable::ALL.iter().position(|t| *t == table).unwrap_or_default();
    let schema = SCHEMAS[slot].get_or_init(|| table.schema());
    assert_eq!(batch.schema().as_ref(), schema.as_ref(), "the batch is not in the {} schema", table.name());
    for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
        if let Err(e) = column.to_data().validate_full() {
            panic!("column {} is not valid Arrow data: {e}", field.name());
        }
    }
    let rows = batch.num_rows();
    for (name, expected) in [(SOURCE_BUCKET_COLUMN, ctx.bucket), (SOURCE_KEY_COLUMN, ctx.key)] {
        let column = column(batch, name).as_string::<i32>();
        assert_eq!(column.null_count(), 0, "{name} has nulls");
        assert!(column.iter().all(|v| v == Some(expected)), "{name} is not {expected:?} on every row");
    }
    let dates = column(batch, DATE_COLUMN).as_primitive::<Date32Type>();
    assert_eq!(dates.null_count(), 0, "rows without a date");

    match table {
        LogTable::CloudTrail | LogTable::Dns => {
            let times = column(batch, table.time_column()).as_primitive::<TimestampMicrosecondType>();
            assert_eq!(times.null_count(), 0, "rows without a {}", table.time_column());
            for row in 0..rows {
                assert_eq!(
                    dates.value(row),
                    micros_to_days(times.value(row)),
                    "row {row}: date is not the event's day"
                );
            }
        }
        LogTable::VpcFlow => {
            let start = column(batch, "start").as_primitive::<TimestampMicrosecondType>();
            let end = column(batch, "end").as_primitive::<TimestampMicrosecondType>();
            let key_date = ctx.key_date_days();
            for row in 0..rows {
                let day = |times: &arrow::array::TimestampMicrosecondArray| {
                    times.is_valid(row).then(|| micros_to_days(times.value(row)))
                };
                let expected = day(start).or_else(|| day(end)).or(key_date);
                assert_eq!(Some(dates.value(row)), expected, "row {row}: date is not from start, end or the key");
            }
            check_flow_ranges(batch);
        }
    }

    let json_columns: &[&str] = match table {
        LogTable::CloudTrail => &CLOUDTRAIL_JSON_COLUMNS,
        LogTable::Dns => &["additionalfields"],
        LogTable::VpcFlow => &[],
    };
    for name in json_columns {
        let column = column(batch, name);
        for text in column.as_string::<i32>().iter().flatten() {
            check_json_text(name, text);
        }
    }
}

/// Numbers a flow-log field cannot hold never reach a row: they reject the line instead.
fn check_flow_ranges(batch: &RecordBatch) {
    for (name, max) in [("srcport", 65_535), ("dstport", 65_535), ("protocol", 255)] {
        let values = column(batch, name).as_primitive::<Int32Type>();
        assert!(values.iter().flatten().all(|v| (0..=max).contains(&v)), "{name} out of 0..={max}");
    }
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let negative = match column.data_type() {
            DataType::Int32 => column.as_primitive::<Int32Type>().iter().flatten().any(|v| v < 0),
            DataType::Int64 => column.as_primitive::<Int64Type>().iter().flatten().any(|v| v < 0),
            _ => false,
        };
        assert!(!negative, "{} holds a negative number; flow logs have none", field.name());
    }
}

/// JSON-text columns hold valid JSON (serde_json as the independent judge).
fn check_json_text(name: &str, text: &str) {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        // serde_json stops at 128 levels of nesting; simd-json, which read the input, at 1024.
        if e.to_string().contains("recursion limit exceeded") {
            return;
        }
        panic!("{name} is not valid JSON ({e}): {}", preview(text));
    }
}

/// Rejections point inside the object, in order, with a short reason; and rows plus rejections
/// account for the object's lines where each line is one record.
fn check_rejected(table: LogTable, input: &[u8], parsed: &Parsed) {
    let lines = input.split(|&b| b == b'\n').count() as u64;
    let record_lines = input.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
    let mut previous: Option<Position> = None;
    for rejected in &parsed.rejected {
        check_reason(&rejected.reason);
        match rejected.position {
            Position::Line(n) => assert!((1..=lines).contains(&n), "line {n} of an object of {lines} lines"),
            Position::Record(_) => assert_eq!(table, LogTable::CloudTrail, "only CloudTrail counts records"),
        }
        match (rejected.position, previous) {
            // CloudTrail JSON lines: a line holding a Records array can reject several records.
            (Position::Line(n), Some(Position::Line(p))) if table == LogTable::CloudTrail => {
                assert!(n >= p, "rejections out of order: line {n} after line {p}")
            }
            (Position::Line(n), Some(Position::Line(p))) => assert!(n > p, "rejections out of order: {n} after {p}"),
            (Position::Record(n), Some(Position::Record(p))) => assert!(n > p, "records out of order: {n} after {p}"),
            (_, None) => {}
            (a, Some(b)) => panic!("one object rejected by line and by record index: {a} after {b}"),
        }
        previous = Some(rejected.position);
    }
    let rows = parsed.batch.num_rows();
    let rejected = parsed.rejected.len();
    match table {
        // Every non-blank line is a row or a rejection.
        LogTable::Dns => assert_eq!(rows + rejected, record_lines, "{rows} rows + {rejected} rejected"),
        // The same, except header lines, which are neither (or a rejection naming unknown fields).
        LogTable::VpcFlow => assert!(rows + rejected <= record_lines, "{rows} rows + {rejected} rejected"),
        LogTable::CloudTrail => {}
    }
}

/// The column `name` (a dotted path walks into structs); panics if the schema has no such column.
fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or_default();
    let mut current = batch.column_by_name(first).unwrap_or_else(|| panic!("no column {first}"));
    for part in parts {
        let parent: &StructArray = current.as_struct();
        current = parent.column_by_name(part).unwrap_or_else(|| panic!("no column {name}"));
    }
    current
}

/// Parses `input` with a fresh parser, checks the answer, then parses `reference` with the same
/// parser and checks that it gives what a fresh parser gives (`expected`).
///
/// The pipeline keeps one parser per thread and reuses its buffers from object to object, so
/// nothing a hostile object leaves behind may change the rows of the next one. A fresh parser per
/// input keeps every crash reproducible from its input alone.
pub fn check_parser<P>(
    table: LogTable,
    ctx: &ObjectContext<'_>,
    input: &[u8],
    reference: &[u8],
    expected: &OnceLock<Result<Parsed>>,
    new: impl Fn() -> P,
    parse: impl Fn(&mut P, &[u8], &ObjectContext<'_>) -> Result<Parsed>,
) {
    let expected = expected.get_or_init(|| parse(&mut new(), reference, ctx));
    assert!(expected.is_ok(), "the reference object does not parse: {:?}", expected.as_ref().err());
    let mut parser = new();
    let outcome = parse(&mut parser, input, ctx);
    check_outcome(table, input, &outcome, ctx);
    let next = parse(&mut parser, reference, ctx);
    assert_same_outcome(&next, expected);
}
