//! VPC and transit-gateway flow logs: from the text AWS writes to rows of the `vpcflow` table.
//!
//! Data enters as one whole decompressed object (`&[u8]`) and leaves as one [`Parsed`]: a record
//! batch in [`bunker_schemas::vpcflow::schema`] plus the lines that could not be used. The parser is
//! synchronous and does no I/O.
//!
//! A flow-log file is lines of space-separated fields, `-` meaning "no value". Which field is where
//! is said by a header line ([`FlowLogHeader`]) of hyphenated field names, which AWS writes first in
//! every file it delivers to S3 and which may appear again further down (files concatenated by a
//! shipper); each header governs the lines after it. Lines with no header before them (exported
//! from CloudWatch, or cut out of a file) follow AWS's documented field order truncated to their
//! field count, which for 14 fields is the default version 2 format, or the default
//! transit-gateway format when the fourth field is a transit gateway ID. A line wrapped by a log
//! shipper as `{"message":"..."}` is unwrapped first.
//!
//! Salvage what can be salvaged: a line with the wrong number of fields or a value that is not what
//! its field holds (a port of `abc` or 70000) becomes a [`Rejected`] naming the line and the field,
//! and the rest of the file is still read. A header naming a field bunker does not know is not
//! fatal either: that field's values are skipped and the header line is reported as a [`Rejected`]
//! naming the unknown field. Only an object that is not text at all is an error for the whole
//! object ([`IngestError::Malformed`]).

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use bunker_schemas::vpcflow::{self, COLUMNS, DOCUMENTED_ORDER_LEN, FlowColumn, FlowValueKind, TGW_DEFAULT_FORMAT};

use crate::classify::LogFormat;
use crate::error::{IngestError, Result};
use crate::parsed::{ObjectContext, Parsed, Position, Rejected, Rejections};
use crate::timestamp::{micros_to_days, seconds_to_micros};

/// The field order of a flow-log file, as given by its header line (or by AWS's defaults).
///
/// Each position maps to a column of the `vpcflow` table, or to nothing when the header names a
/// field this version of bunker does not know (its values are skipped, not misfiled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLogHeader {
    /// For each field position, the index in [`COLUMNS`] it fills; `None` when it is skipped.
    columns: Vec<Option<usize>>,
    /// Field names as written, for messages; only kept for headers read from a file.
    names: Vec<String>,
}

impl FlowLogHeader {
    /// Reads a header line such as `version account-id interface-id srcaddr ...`.
    ///
    /// Returns `None` when the line is not a header: a header is made only of field-name-shaped
    /// words (`[a-z][a-z0-9-]*`, `_` accepted for `-`), at least one of which is a field bunker
    /// knows, and names at most [`MAX_HEADER_FIELDS`] fields. Data values never pass these tests: a
    /// line always has a number, an address, an upper-case status or `-` among its fields, and no
    /// value is spelled like a field name.
    pub fn parse(line: &str) -> Option<FlowLogHeader> {
        let words = || line.split([' ', '\t']).filter(|w| !w.is_empty());
        // Checked before anything is allocated: this runs on every data line that starts with a letter.
        // The cap comes first: a hostile "header" of millions of words would otherwise cost a
        // `String` per word (tens of bytes per two input bytes) and quadratic time in the
        // repeated-field check below.
        if words().take(MAX_HEADER_FIELDS + 1).count() > MAX_HEADER_FIELDS
            || !words().all(is_field_name)
            || !words().any(|w| lookup_column(w).is_some())
        {
            return None;
        }
        let mut columns: Vec<Option<usize>> = Vec::new();
        let mut names = Vec::new();
        for word in words() {
            // A field named twice would give one column two values; keep the first, skip the rest.
            let column = lookup_column(word).filter(|c| !columns.contains(&Some(*c)));
            columns.push(column);
            names.push(word.to_owned());
        }
        Some(FlowLogHeader { columns, names })
    }

    /// AWS's default VPC format (version 2, 14 fields).
    pub fn default_format() -> FlowLogHeader {
        Self::documented_order(14)
    }

    /// The first `fields` fields of AWS's documented VPC field order (at most
    /// [`DOCUMENTED_ORDER_LEN`]).
    pub fn documented_order(fields: usize) -> FlowLogHeader {
        let n = fields.min(DOCUMENTED_ORDER_LEN);
        FlowLogHeader { columns: (0..n).map(Some).collect(), names: Vec::new() }
    }

    /// AWS's default transit-gateway format (36 fields).
    pub fn transit_gateway_default() -> FlowLogHeader {
        FlowLogHeader {
            columns: TGW_DEFAULT_FORMAT.iter().map(|name| vpcflow::column_index(name)).collect(),
            names: Vec::new(),
        }
    }

    /// Number of fields a line under this header has.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the header names no field at all (never true of a parsed header).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The column each field position fills, `None` where the field is skipped.
    pub fn columns(&self) -> impl Iterator<Item = Option<&'static FlowColumn>> + '_ {
        self.columns.iter().map(|c| c.map(|i| &COLUMNS[i]))
    }

    /// The fields of a parsed header that are skipped, as `(1-based position, name as written)`:
    /// names bunker does not know, and repeats of a field already named.
    pub fn skipped_fields(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.columns
            .iter()
            .zip(&self.names)
            .enumerate()
            .filter(|(_, (c, _))| c.is_none())
            .map(|(i, (_, name))| (i + 1, name.as_str()))
    }
}

/// The most fields a header line may name. AWS's formats have at most [`COLUMNS`]`.len()` fields;
/// the margin leaves room for fields AWS adds later. A longer line of field-name-shaped words is
/// read as a data line, and rejected as one.
pub const MAX_HEADER_FIELDS: usize = 4 * COLUMNS.len();

/// How many skipped header fields a rejection names; the rest are counted.
const QUOTED_SKIPPED_FIELDS: usize = 8;

fn is_field_name(word: &str) -> bool {
    let b = word.as_bytes();
    b.first().is_some_and(u8::is_ascii_lowercase)
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

fn lookup_column(word: &str) -> Option<usize> {
    if word.contains('_') { vpcflow::column_index(&word.replace('_', "-")) } else { vpcflow::column_index(word) }
}

/// Indices in [`COLUMNS`] of `start` and `end`, which give a row its date partition.
const START: usize = 10;
const END: usize = 11;

/// How the text of a field becomes a value, with the range a value must be in.
#[derive(Debug, Clone, Copy)]
enum Decode {
    Text,
    Integer { max: i64 },
    Seconds,
}

impl Decode {
    fn of(column: &FlowColumn) -> Decode {
        match (column.kind, column.name) {
            (FlowValueKind::Text, _) => Decode::Text,
            (FlowValueKind::Int32, "srcport" | "dstport") => Decode::Integer { max: 65_535 },
            (FlowValueKind::Int32, "protocol") => Decode::Integer { max: 255 },
            (FlowValueKind::Int32, _) => Decode::Integer { max: i64::from(i32::MAX) },
            (FlowValueKind::Int64, _) => Decode::Integer { max: i64::MAX },
            (FlowValueKind::EpochSeconds, _) => Decode::Seconds,
        }
    }
}

/// One decoded field of the line being read; text is a byte range of the line, so nothing is
/// copied until it goes into a builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Null,
    Text(usize, usize),
    Integer(i64),
}

/// Reads flow-log objects into `vpcflow` record batches.
///
/// Holds scratch buffers that are reused from line to line and object to object; one parser per
/// worker thread.
#[derive(Debug)]
pub struct FlowLogParser {
    schema: SchemaRef,
    decode: Vec<Decode>,
    documented: FlowLogHeader,
    transit_gateway: FlowLogHeader,
    spans: Vec<(usize, usize)>,
    cells: Vec<Cell>,
    unwrapped: String,
}

impl Default for FlowLogParser {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowLogParser {
    /// A parser for the current `vpcflow` schema.
    pub fn new() -> FlowLogParser {
        FlowLogParser {
            schema: vpcflow::schema(),
            decode: COLUMNS.iter().map(Decode::of).collect(),
            documented: FlowLogHeader::documented_order(DOCUMENTED_ORDER_LEN),
            transit_gateway: FlowLogHeader::transit_gateway_default(),
            spans: Vec::with_capacity(64),
            cells: vec![Cell::Null; COLUMNS.len()],
            unwrapped: String::new(),
        }
    }

    /// Parses one whole decompressed flow-log object.
    ///
    /// Every line becomes a row or a [`Rejected`]; an empty object gives zero rows. The only error
    /// is [`IngestError::Malformed`] for an object that is not text (binary, non-UTF-8 or still
    /// gzip-compressed), or [`IngestError::Arrow`] for a bug of ours.
    pub fn parse(&mut self, data: &[u8], ctx: &ObjectContext<'_>) -> Result<Parsed> {
        check_is_text(data, ctx)?;
        // Flow-log lines are 60 to 400 bytes; a low guess only costs a builder reallocation.
        let mut rows = FlowRows::with_capacity(data.len() / 128 + 1);
        let mut rejected = Rejections::default();
        let mut header: Option<FlowLogHeader> = None;
        let key_date = ctx.key_date_days();

        for (index, raw) in lines(data).enumerate() {
            let line_number = index as u64 + 1;
            let mut reject = |reason: String| rejected.push(Rejected { position: Position::Line(line_number), reason });
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let Ok(line) = std::str::from_utf8(raw) else {
                reject("line is not UTF-8 text".to_owned());
                continue;
            };
            let line = line.trim_start();
            let text = if line.starts_with('{') {
                match unwrap_message(line) {
                    Some(message) => {
                        self.unwrapped.clear();
                        self.unwrapped.push_str(&message);
                        self.unwrapped.as_str()
                    }
                    None => {
                        reject(format!(
                            "line starts with `{{` but is not a {{\"message\": \"...\"}} wrapper: {}",
                            quote(line)
                        ));
                        continue;
                    }
                }
            } else {
                line
            };

            if let Some(new_header) = FlowLogHeader::parse(text) {
                // Name a few skipped fields, each cut short, and count the rest: the reason must not
                // grow with the line (a header of 1,000 unknown words, or one 50 MB word).
                let mut skipped: Vec<String> = new_header
                    .skipped_fields()
                    .take(QUOTED_SKIPPED_FIELDS)
                    .map(|(pos, name)| format!("{} (field {pos})", quote(name)))
                    .collect();
                let more = new_header.skipped_fields().count().saturating_sub(skipped.len());
                if more > 0 {
                    skipped.push(format!("and {more} more"));
                }
                if !skipped.is_empty() {
                    reject(format!(
                        "header names fields bunker does not know or names twice: {}; their values are skipped, the other fields are ingested",
                        skipped.join(", ")
                    ));
                }
                header = Some(new_header);
                continue;
            }

            split_fields(text, &mut self.spans);
            let layout = match &header {
                Some(h) => {
                    if self.spans.len() != h.len() {
                        reject(format!("{} fields, but the header names {}", self.spans.len(), h.len()));
                        continue;
                    }
                    h
                }
                None => {
                    let is_tgw = self.spans.get(3).is_some_and(|&(s, e)| text[s..e].starts_with("tgw-"));
                    let default = if is_tgw { &self.transit_gateway } else { &self.documented };
                    if self.spans.len() > default.len() {
                        reject(format!(
                            "{} fields and no header line: without a header at most {} fields can be placed ({})",
                            self.spans.len(),
                            default.len(),
                            if is_tgw { "transit gateway default format" } else { "AWS's documented VPC field order" },
                        ));
                        continue;
                    }
                    default
                }
            };

            match decode_line(text, &self.spans, layout, &self.decode, &mut self.cells) {
                Ok(()) => {}
                Err(reason) => {
                    reject(reason);
                    continue;
                }
            }
            let day_of = |column: usize| match self.cells[column] {
                Cell::Integer(micros) => Some(micros_to_days(micros)),
                _ => None,
            };
            let Some(date) = day_of(START).or_else(|| day_of(END)).or(key_date) else {
                reject("no start or end time, and the object key names no date".to_owned());
                continue;
            };
            rows.append(text, &self.cells, date);
        }

        let batch = rows.finish(&self.schema, ctx)?;
        Ok(Parsed { batch, rejected })
    }
}

/// Fails for an object whose first non-blank line is not text: a binary or still-compressed object
/// is not a flow log with bad lines, it is the wrong object.
fn check_is_text(data: &[u8], ctx: &ObjectContext<'_>) -> Result<()> {
    let malformed =
        |reason: String| IngestError::Malformed { key: ctx.key.to_owned(), format: LogFormat::VpcFlow, reason };
    if data.starts_with(&[0x1f, 0x8b]) {
        return Err(malformed("object is still gzip-compressed".to_owned()));
    }
    let Some((index, first)) = lines(data).enumerate().find(|(_, l)| !l.iter().all(|b| b.is_ascii_whitespace())) else {
        return Ok(());
    };
    let line = index + 1;
    match std::str::from_utf8(first) {
        Err(e) => Err(malformed(format!("line {line} is not UTF-8 text (invalid byte at offset {})", e.valid_up_to()))),
        Ok(s) if s.bytes().any(|b| b.is_ascii_control() && !matches!(b, b'\t' | b'\r')) => {
            Err(malformed(format!("line {line} holds binary control bytes; this is not a text log")))
        }
        Ok(_) => Ok(()),
    }
}

/// The lines of an object, without their `\n`; a final line without one is included.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = if data.is_empty() { None } else { Some(data) };
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b'\n', current) {
            Some(i) => {
                rest = Some(&current[i + 1..]).filter(|r| !r.is_empty());
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Byte ranges of the fields of a line; fields are separated by runs of spaces or tabs (AWS's own
/// documentation has a sample with a doubled space).
fn split_fields(text: &str, spans: &mut Vec<(usize, usize)>) {
    spans.clear();
    let mut start = 0;
    for sep in memchr::memchr2_iter(b' ', b'\t', text.as_bytes()) {
        if sep > start {
            spans.push((start, sep));
        }
        start = sep + 1;
    }
    if text.len() > start {
        spans.push((start, text.len()));
    }
}

/// Fills `cells` from one line; on a bad value, says which field and why, and the line is dropped.
fn decode_line(
    text: &str,
    spans: &[(usize, usize)],
    layout: &FlowLogHeader,
    decode: &[Decode],
    cells: &mut [Cell],
) -> std::result::Result<(), String> {
    cells.fill(Cell::Null);
    for (&(start, end), column) in spans.iter().zip(&layout.columns) {
        let Some(column) = *column else { continue };
        let value = &text[start..end];
        if value == "-" {
            continue;
        }
        let field = || COLUMNS[column].aws_name;
        cells[column] = match decode[column] {
            Decode::Text => Cell::Text(start, end),
            Decode::Integer { max } => match parse_unsigned(value) {
                Some(n) if n <= max => Cell::Integer(n),
                Some(_) => return Err(format!("{}: {} is out of range (0 to {max})", field(), quote(value))),
                None => return Err(format!("{}: {} is not a whole number", field(), quote(value))),
            },
            Decode::Seconds => match parse_unsigned(value).and_then(seconds_to_micros) {
                Some(micros) => Cell::Integer(micros),
                None => return Err(format!("{}: {} is not a time in seconds since the epoch", field(), quote(value))),
            },
        };
    }
    Ok(())
}

/// A non-negative decimal number straight from its digits (flow logs never sign their numbers);
/// `None` if it is not one or does not fit an `i64`.
fn parse_unsigned(value: &str) -> Option<i64> {
    if value.is_empty() {
        return None;
    }
    value.bytes().try_fold(0i64, |acc, b| {
        if b.is_ascii_digit() { acc.checked_mul(10)?.checked_add(i64::from(b - b'0')) } else { None }
    })
}

/// The flow-log line inside a shipper's `{"message": "..."}` wrapper.
fn unwrap_message(line: &str) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Wrapped<'a> {
        #[serde(borrow)]
        message: Cow<'a, str>,
    }
    serde_json::from_str::<Wrapped<'_>>(line).ok().map(|w| w.message)
}

/// A value quoted for a message, cut short so that a 50 MB line does not become a 50 MB reason.
pub(crate) fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 60;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("`{}...` ({} bytes)", &value[..cut], value.len()),
        None => format!("`{value}`"),
    }
}

/// Column builders for the rows of one object, in [`COLUMNS`] order.
struct FlowRows {
    columns: Vec<ColumnBuilder>,
    date: Date32Builder,
    len: usize,
}

enum ColumnBuilder {
    Text(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Time(TimestampMicrosecondBuilder),
}

impl FlowRows {
    fn with_capacity(rows: usize) -> FlowRows {
        let columns = COLUMNS
            .iter()
            .map(|c| match c.kind {
                FlowValueKind::Text => ColumnBuilder::Text(StringBuilder::with_capacity(rows, rows * 8)),
                FlowValueKind::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(rows)),
                FlowValueKind::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
                FlowValueKind::EpochSeconds => {
                    ColumnBuilder::Time(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
                }
            })
            .collect();
        FlowRows { columns, date: Date32Builder::with_capacity(rows), len: 0 }
    }

    fn append(&mut self, text: &str, cells: &[Cell], date: i32) {
        for (builder, cell) in self.columns.iter_mut().zip(cells) {
            // Integers only ever land in integer cells (see `Decode::of`), so the narrowing is in range.
            match (builder, *cell) {
                (ColumnBuilder::Text(b), Cell::Text(s, e)) => b.append_value(&text[s..e]),
                (ColumnBuilder::Int32(b), Cell::Integer(n)) => b.append_option(i32::try_from(n).ok()),
                (ColumnBuilder::Int64(b), Cell::Integer(n)) => b.append_value(n),
                (ColumnBuilder::Time(b), Cell::Integer(n)) => b.append_value(n),
                (ColumnBuilder::Text(b), _) => b.append_null(),
                (ColumnBuilder::Int32(b), _) => b.append_null(),
                (ColumnBuilder::Int64(b), _) => b.append_null(),
                (ColumnBuilder::Time(b), _) => b.append_null(),
            }
        }
        self.date.append_value(date);
        self.len += 1;
    }

    fn finish(mut self, schema: &SchemaRef, ctx: &ObjectContext<'_>) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    ColumnBuilder::Text(b) => Arc::new(b.finish()),
                    ColumnBuilder::Int32(b) => Arc::new(b.finish()),
                    ColumnBuilder::Int64(b) => Arc::new(b.finish()),
                    ColumnBuilder::Time(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        arrays.extend(ctx.lineage_columns(self.len)?);
        arrays.push(Arc::new(self.date.finish()));
        Ok(RecordBatch::try_new(schema.clone(), arrays)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::compute::cast;
    use arrow::datatypes::DataType;
    use chrono::NaiveDate;

    use super::*;
    use crate::test_support::{noise, real_samples_dir};

    const KEY: &str = "AWSLogs/111122223333/vpcflowlogs/eu-west-1/2024/05/01/111122223333_vpcflowlogs_eu-west-1_fl-0a1b2c3d_20240501T0000Z_5e6f7a8b.log.gz";

    fn ctx() -> ObjectContext<'static> {
        ObjectContext { bucket: "archive", key: KEY, key_date: NaiveDate::from_ymd_opt(2024, 5, 1) }
    }

    fn parse_with(data: &[u8], ctx: &ObjectContext<'_>) -> Parsed {
        FlowLogParser::new().parse(data, ctx).expect("a text object parses")
    }

    fn parse(data: &str) -> Parsed {
        parse_with(data.as_bytes(), &ctx())
    }

    /// A text column as owned values, nulls as `None`.
    pub(crate) fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let column = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
        let column = column.as_any().downcast_ref::<StringArray>().unwrap_or_else(|| panic!("{name} is not text"));
        column.iter().map(|v| v.map(str::to_owned)).collect()
    }

    /// An integer, timestamp or date column as `i64`s, nulls as `None`.
    pub(crate) fn numbers(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
        let column = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
        let column = match column.data_type() {
            DataType::Date32 => cast(column, &DataType::Int32).and_then(|c| cast(&c, &DataType::Int64)),
            _ => cast(column, &DataType::Int64),
        }
        .expect("numeric column");
        let column = column.as_any().downcast_ref::<Int64Array>().expect("cast to i64");
        column.iter().collect()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn day(y: i32, m: u32, d: u32) -> Option<i64> {
        NaiveDate::from_ymd_opt(y, m, d).map(|d| i64::from(crate::timestamp::days_since_epoch(d)))
    }

    fn reasons(parsed: &Parsed) -> Vec<(u64, &str)> {
        parsed
            .rejected
            .iter()
            .map(|r| match r.position {
                Position::Line(n) | Position::Record(n) => (n, r.reason.as_str()),
            })
            .collect()
    }

    #[test]
    fn start_and_end_indices_name_those_columns() {
        assert_eq!(COLUMNS[START].name, "start");
        assert_eq!(COLUMNS[END].name, "end");
    }

    #[test]
    fn default_format_lines_without_header() {
        // (line, srcaddr, dstport, packets, action, log_status)
        type Case =
            (&'static str, Option<&'static str>, Option<i64>, Option<i64>, Option<&'static str>, Option<&'static str>);
        let cases: [Case; 4] = [
            (
                "2 111122223333 eni-0a1b2c3d4e5f60718 198.51.100.7 10.1.2.3 51522 443 6 12 5320 1714521600 1714521660 ACCEPT OK",
                Some("198.51.100.7"),
                Some(443),
                Some(12),
                Some("ACCEPT"),
                Some("OK"),
            ),
            (
                "2 111122223333 eni-0a1b2c3d4e5f60718 203.0.113.40 10.1.2.3 0 0 1 3 252 1714521600 1714521660 REJECT OK",
                Some("203.0.113.40"),
                Some(0),
                Some(3),
                Some("REJECT"),
                Some("OK"),
            ),
            (
                "2 111122223333 eni-0a1b2c3d4e5f60718 - - - - - - - 1714521600 1714521660 - NODATA",
                None,
                None,
                None,
                None,
                Some("NODATA"),
            ),
            (
                "2 111122223333 eni-0a1b2c3d4e5f60718 2001:db8:10::25 2001:db8:20::9 40022 22 6 31 6611 1714521600 1714521660 ACCEPT OK",
                Some("2001:db8:10::25"),
                Some(22),
                Some(31),
                Some("ACCEPT"),
                Some("OK"),
            ),
        ];
        for (line, srcaddr, dstport, packets, action, log_status) in cases {
            let parsed = parse(line);
            assert!(parsed.rejected.is_empty(), "{line}: {:?}", parsed.rejected);
            let b = &parsed.batch;
            assert_eq!(b.num_rows(), 1, "{line}");
            assert_eq!(texts(b, "srcaddr"), [srcaddr.map(str::to_owned)], "{line}");
            assert_eq!(numbers(b, "dstport"), [dstport], "{line}");
            assert_eq!(numbers(b, "packets"), [packets], "{line}");
            assert_eq!(texts(b, "action"), [action.map(str::to_owned)], "{line}");
            assert_eq!(texts(b, "log_status"), [log_status.map(str::to_owned)], "{line}");
            assert_eq!(numbers(b, "version"), [Some(2)]);
            assert_eq!(texts(b, "account_id"), [s("111122223333")]);
            assert_eq!(numbers(b, "start"), [Some(1_714_521_600_000_000)]);
            assert_eq!(numbers(b, "end"), [Some(1_714_521_660_000_000)]);
            assert_eq!(numbers(b, "date"), [day(2024, 5, 1)]);
            assert_eq!(texts(b, "vpc_id"), [None], "fields the format lacks are null");
            assert_eq!(texts(b, "source_key"), [s(KEY)]);
            assert_eq!(texts(b, "source_bucket"), [s("archive")]);
        }
    }

    #[test]
    fn header_decides_the_field_order_and_may_change_mid_file() {
        let data = "\
version srcaddr dstaddr srcport dstport protocol start end action log-status flow-direction pkt-dst-aws-service
5 10.4.0.12 52.94.0.1 33412 443 6 1714608000 1714608059 ACCEPT OK egress DYNAMODB
version dstport srcport account-id start log-status
3 8080 61000 444455556666 1714694400 OK
";
        let parsed = parse(data);
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        let b = &parsed.batch;
        assert_eq!(numbers(b, "version"), [Some(5), Some(3)]);
        assert_eq!(texts(b, "srcaddr"), [s("10.4.0.12"), None]);
        assert_eq!(numbers(b, "srcport"), [Some(33412), Some(61000)]);
        assert_eq!(numbers(b, "dstport"), [Some(443), Some(8080)]);
        assert_eq!(texts(b, "flow_direction"), [s("egress"), None]);
        assert_eq!(texts(b, "pkt_dst_aws_service"), [s("DYNAMODB"), None]);
        assert_eq!(texts(b, "account_id"), [None, s("444455556666")]);
        assert_eq!(numbers(b, "end"), [Some(1_714_608_059_000_000), None]);
        assert_eq!(numbers(b, "date"), [day(2024, 5, 2), day(2024, 5, 3)]);
    }

    #[test]
    fn runs_of_spaces_and_crlf_separate_fields() {
        let data = "2 111122223333 eni-0a1b2c3d4e5f60718 10.0.0.5 10.0.0.6 5001  43418 6 14 967 1714521600 1714521660 ACCEPT OK\r\n";
        let parsed = parse(data);
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        assert_eq!(numbers(&parsed.batch, "dstport"), [Some(43418)]);
        assert_eq!(texts(&parsed.batch, "log_status"), [s("OK")]);
    }

    #[test]
    fn headerless_long_lines_follow_the_documented_order() {
        let ecs = "3 111122223333 eni-0aa - - 55001 443 6 9 1200 1714521600 1714521630 ACCEPT OK - - - - - - - - - - - - - egress - \
                   arn:aws:ecs:eu-west-1:111122223333:cluster/payments payments - - 0b1c2d3e 4f5a6b7c checkout \
                   arn:aws:ecs:eu-west-1:111122223333:task-definition/checkout:4 arn:aws:ecs:eu-west-1:111122223333:task/payments/9d8e7f 9d8e7f";
        let v8 = format!("{ecs} BPA");
        let too_long = format!("{v8} 1");
        let parsed = parse(&format!("{ecs}\n{v8}\n{too_long}\n"));
        let b = &parsed.batch;
        assert_eq!(b.num_rows(), 2);
        assert_eq!(texts(b, "flow_direction"), [s("egress"), s("egress")]);
        assert_eq!(texts(b, "ecs_cluster_name"), [s("payments"), s("payments")]);
        assert_eq!(texts(b, "ecs_container_instance_arn"), [None, None]);
        assert_eq!(texts(b, "ecs_task_id"), [s("9d8e7f"), s("9d8e7f")]);
        assert_eq!(texts(b, "reject_reason"), [None, s("BPA")]);
        let rejected = reasons(&parsed);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 3);
        assert!(rejected[0].1.contains("41 fields and no header"), "{}", rejected[0].1);
    }

    #[test]
    fn headerless_transit_gateway_lines_follow_the_tgw_default_format() {
        let line = "6 TransitGatewayAttachment 111122223333 tgw-0f1e2d3c4b5a69788 tgw-attach-0a1b2c3d4e5f6a7b8 \
                    111122223333 444455556666 vpc-0a1a1a1a vpc-0b2b2b2b subnet-0c3c3c3c subnet-0d4d4d4d eni-0e5e5e5e eni-0f6f6f6f \
                    euw1-az1 euw1-az2 tgw-attach-0123456789abcdef0 10.1.0.5 10.2.0.9 49152 5432 6 10 1480 1714521600 1714521660 OK \
                    IPv4 0 2 0 0 18 eu-west-1 ingress - -";
        let parsed = parse(line);
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        let b = &parsed.batch;
        assert_eq!(numbers(b, "version"), [Some(6)]);
        assert_eq!(texts(b, "resource_type"), [s("TransitGatewayAttachment")]);
        assert_eq!(texts(b, "tgw_id"), [s("tgw-0f1e2d3c4b5a69788")]);
        assert_eq!(texts(b, "tgw_dst_vpc_account_id"), [s("444455556666")]);
        assert_eq!(texts(b, "tgw_pair_attachment_id"), [s("tgw-attach-0123456789abcdef0")]);
        assert_eq!(numbers(b, "dstport"), [Some(5432)]);
        assert_eq!(numbers(b, "packets_lost_blackhole"), [Some(2)]);
        assert_eq!(numbers(b, "tcp_flags"), [Some(18)]);
        assert_eq!(texts(b, "region"), [s("eu-west-1")]);
        assert_eq!(texts(b, "interface_id"), [None]);
    }

    #[test]
    fn shipper_wrapped_line_is_unwrapped() {
        let data = r#"{"message":"2 111122223333 eni-0a1b2c3d4e5f60718 - - - - - - - 1714521600 1714521660 - SKIPDATA"}
{"msg":"not what we expect"}
"#;
        let parsed = parse(data);
        assert_eq!(texts(&parsed.batch, "log_status"), [s("SKIPDATA")]);
        assert_eq!(texts(&parsed.batch, "interface_id"), [s("eni-0a1b2c3d4e5f60718")]);
        let rejected = reasons(&parsed);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 2);
        assert!(rejected[0].1.contains("wrapper"), "{}", rejected[0].1);
    }

    #[test]
    fn unknown_header_field_is_skipped_and_reported() {
        let data = "\
version account-id flow-colour srcaddr dstaddr start end log-status
7 111122223333 teal 10.0.0.1 10.0.0.2 1714521600 1714521660 OK
";
        let parsed = parse(data);
        let b = &parsed.batch;
        assert_eq!(b.num_rows(), 1);
        assert_eq!(texts(b, "srcaddr"), [s("10.0.0.1")], "fields after the unknown one keep their place");
        assert_eq!(texts(b, "account_id"), [s("111122223333")]);
        let rejected = reasons(&parsed);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 1, "reported at the header line");
        assert!(rejected[0].1.contains("`flow-colour` (field 3)"), "{}", rejected[0].1);
    }

    /// Regression: a header-like line of 200,000 unknown words and then 200,000 repeats of one
    /// known field took quadratic time (each repeat scanned every field before it; ~7 s for a
    /// 400 KB line in the fuzz build), held a `String` per word, and was rejected with a reason
    /// eight times as long as the line. Now such a line is not a header, and reasons stay short.
    #[test]
    fn a_header_of_too_many_fields_is_cheap_and_its_reason_short() {
        let mut data = String::from("version");
        data.push_str(&" a".repeat(200_000));
        data.push_str(&" srcaddr".repeat(200_000));
        data.push('\n');
        data.push_str("2 111122223333 eni-0a1b2c3d4e5f60718 - - - - - - - 1714521600 1714521660 - NODATA\n");
        let started = std::time::Instant::now();
        let parsed = parse(&data);
        // A generous bound: linear work on 1.4 MB takes milliseconds; the quadratic check took minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
        assert_eq!(parsed.batch.num_rows(), 1, "the next line is still read with the default format");
        let rejected = reasons(&parsed);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 1);
        assert!(rejected[0].1.starts_with("400001 fields and no header line"), "{}", rejected[0].1);

        // Below the cap it is a header, and its rejection names a few skipped fields, not all.
        let unknown: Vec<String> = (0..200).map(|i| format!("future-field-{i}")).collect();
        let long_name = "x".repeat(10_000);
        let data = format!("version {long_name} {}\n3 - {}\n", unknown.join(" "), vec!["v"; 200].join(" "));
        let parsed = parse(&data);
        assert_eq!(numbers(&parsed.batch, "version"), [Some(3)]);
        let rejected = reasons(&parsed);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].1.len() < 1000, "reason is {} bytes", rejected[0].1.len());
        assert!(rejected[0].1.contains("(field 2), `future-field-0` (field 3)"), "{}", rejected[0].1);
        assert!(rejected[0].1.contains("and 193 more"), "{}", rejected[0].1);
    }

    #[test]
    fn header_detection() {
        // (line, is a header)
        let cases = [
            ("version account-id interface-id srcaddr", true),
            ("srcaddr dstaddr", true),
            ("log_status srcport", true),
            ("version brand-new-field", true),
            ("brand-new-field other-new-field", false),
            ("2 111122223333 eni-0a1b2c3d4e5f60718 - - - - - - - 1714521600 1714521660 - NODATA", false),
            ("vpc-0a1b2c3d subnet-0a1b2c3d i-0a1b2c3d eni-0a1b2c3d 111122223333 IPv4", false),
            ("ingress us-east-1 use1-az5", false),
            ("Version Srcaddr", false),
        ];
        for (line, is_header) in cases {
            assert_eq!(FlowLogHeader::parse(line).is_some(), is_header, "{line}");
        }
        let header = FlowLogHeader::parse("srcaddr srcaddr dstaddr").expect("header");
        assert_eq!(header.skipped_fields().collect::<Vec<_>>(), [(2, "srcaddr")], "a repeated field is skipped");
    }

    #[test]
    fn wrong_field_counts_are_rejected_and_the_rest_is_kept() {
        let data = "\
version srcaddr dstaddr srcport dstport start end
3 10.0.0.1 10.0.0.2 1000 2000 1714521600 1714521660
3 10.0.0.1 10.0.0.2 1000 1714521600 1714521660
3 10.0.0.1 10.0.0.2 1000 2000 1714521600 1714521660 extra
3 10.0.0.3 10.0.0.4 1001 2001 1714521600 1714521660
";
        let parsed = parse(data);
        assert_eq!(texts(&parsed.batch, "srcaddr"), [s("10.0.0.1"), s("10.0.0.3")]);
        assert_eq!(
            reasons(&parsed),
            [(3, "6 fields, but the header names 7"), (4, "8 fields, but the header names 7")]
        );
    }

    #[test]
    fn bad_values_are_rejected_naming_the_field() {
        let good = ["3", "10.0.0.1", "10.0.0.2", "1000", "2000", "6", "40", "1714521600", "1714521660"];
        let header = "version srcaddr dstaddr srcport dstport protocol packets start end";
        // (field position, bad value, expected reason)
        let cases = [
            (3, "abc", "srcport: `abc` is not a whole number"),
            (3, "70000", "srcport: `70000` is out of range (0 to 65535)"),
            (4, "-5", "dstport: `-5` is not a whole number"),
            (5, "300", "protocol: `300` is out of range (0 to 255)"),
            (0, "2147483648", "version: `2147483648` is out of range (0 to 2147483647)"),
            (6, "99999999999999999999", "packets: `99999999999999999999` is not a whole number"),
            (7, "yesterday", "start: `yesterday` is not a time in seconds since the epoch"),
            (8, "9999999999999999999", "end: `9999999999999999999` is not a time in seconds since the epoch"),
        ];
        for (position, value, expected) in cases {
            let mut bad = good;
            bad[position] = value;
            let data = format!("{header}\n{}\n{}\n", bad.join(" "), good.join(" "));
            let parsed = parse(&data);
            assert_eq!(reasons(&parsed), [(2, expected)], "{value}");
            assert_eq!(parsed.batch.num_rows(), 1, "the good line after the bad one is kept");
        }
    }

    #[test]
    fn date_comes_from_start_then_end_then_the_key() {
        let header = "version interface-id start end log-status";
        // (start, end, key date, expected date or rejection)
        let may_1 = NaiveDate::from_ymd_opt(2024, 5, 1);
        let cases = [
            ("1714694399", "1714694460", may_1, day(2024, 5, 2)),
            ("-", "1714694460", may_1, day(2024, 5, 3)),
            ("-", "-", may_1, day(2024, 5, 1)),
            ("-", "-", None, None),
        ];
        for (start, end, key_date, expected) in cases {
            let data = format!("{header}\n3 eni-0a {start} {end} NODATA\n");
            let ctx = ObjectContext { bucket: "", key: "flows.log", key_date };
            let parsed = parse_with(data.as_bytes(), &ctx);
            match expected {
                Some(_) => assert_eq!(numbers(&parsed.batch, "date"), [expected], "{start} {end}"),
                None => {
                    assert_eq!(parsed.batch.num_rows(), 0);
                    assert_eq!(reasons(&parsed), [(2, "no start or end time, and the object key names no date")]);
                }
            }
        }
    }

    #[test]
    fn objects_that_are_not_text_are_malformed() {
        let random = noise(0x9e37_79b9_7f4a_7c15, 4096);
        // (name, bytes, phrase in the reason)
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("non-UTF-8 header", b"version srcaddr \xff\xfe dstaddr\n".to_vec(), "not UTF-8"),
            ("binary", b"\x00\x01\x02\x03 version".to_vec(), "binary"),
            ("gzip", vec![0x1f, 0x8b, 0x08, 0x00, 0x00], "gzip"),
            ("random bytes", random, "line 1"),
        ];
        for (name, bytes, phrase) in cases {
            match FlowLogParser::new().parse(&bytes, &ctx()) {
                Err(e @ IngestError::Malformed { .. }) => {
                    assert!(e.to_string().contains(phrase), "{name}: {e}");
                    assert!(e.to_string().contains(KEY), "{name}: the error names the object");
                }
                other => panic!("{name}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn empty_and_blank_objects_have_no_rows() {
        for data in ["", "\n", "  \n\r\n\n"] {
            let parsed = parse(data);
            assert_eq!(parsed.batch.num_rows(), 0, "{data:?}");
            assert!(parsed.rejected.is_empty(), "{data:?}");
            assert_eq!(parsed.batch.schema(), vpcflow::schema());
        }
    }

    #[test]
    fn a_bad_line_after_a_good_header_is_rejected_not_fatal() {
        let data = b"version srcaddr start\n3 10.0.0.1 1714521600\n3 \xff\xff 1714521600\n3 10.0.0.2 1714521600\n";
        let parsed = parse_with(data, &ctx());
        assert_eq!(texts(&parsed.batch, "srcaddr"), [s("10.0.0.1"), s("10.0.0.2")]);
        assert_eq!(reasons(&parsed), [(3, "line is not UTF-8 text")]);
    }

    #[test]
    fn a_50_mb_line_is_rejected_with_a_short_reason() {
        let good = "2 111122223333 eni-0a 10.0.0.1 10.0.0.2 1 2 6 1 1 1714521600 1714521660 ACCEPT OK";
        let mut data = String::with_capacity(50 * 1024 * 1024 + 200);
        data.push_str(good);
        data.push('\n');
        data.extend(std::iter::repeat_n('7', 50 * 1024 * 1024));
        data.push('\n');
        data.push_str(good);
        let parsed = parse(&data);
        assert_eq!(parsed.batch.num_rows(), 2);
        let rejected = reasons(&parsed);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 2);
        assert!(rejected[0].1.len() < 200, "reason is {} bytes", rejected[0].1.len());
        assert!(rejected[0].1.starts_with("version: "), "{}", rejected[0].1);
    }

    #[test]
    fn real_samples_parse_without_rejections() {
        let root = real_samples_dir();
        let docs = "awsdocs-vpc/extracted/flow-logs-records-examples__block";
        let elastic = "elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-";
        // (files concatenated into one object — a header file first where the rows need it —, rows)
        let cases: Vec<(Vec<String>, usize)> = vec![
            (vec![format!("{docs}00.log")], 1),
            (vec![format!("{docs}01.log")], 1),
            (vec![format!("{docs}02.log")], 1),
            (vec![format!("{docs}03.log")], 1),
            (vec![format!("{docs}04.log")], 1),
            (vec![format!("{docs}05.log")], 1),
            (vec![format!("{docs}06.log")], 1),
            (vec![format!("{docs}07.log")], 0),
            (vec![format!("{docs}07.log"), format!("{docs}08.log")], 4),
            (vec![format!("{docs}07.log"), format!("{docs}09.log")], 2),
            (vec![format!("{docs}07.log"), format!("{docs}10.log")], 2),
            (vec![format!("{docs}16.log")], 0),
            (vec![format!("{docs}16.log"), format!("{docs}18.log")], 1),
            (vec![format!("{docs}16.log"), format!("{docs}19.log")], 1),
            (vec![format!("{docs}20.log")], 0),
            (vec![format!("{docs}20.log"), format!("{docs}21.log")], 2),
            (vec![format!("{elastic}ecs-samples.log")], 10),
            (vec![format!("{elastic}extra-samples.log")], 7),
            (vec![format!("{elastic}tcp-flag-sequence.log")], 3),
            (vec![format!("{elastic}tgw-samples.log")], 10),
            (vec![format!("{elastic}v5-all-fields.log")], 1),
            (vec![format!("{elastic}v8-samples.log")], 1),
            (vec![format!("{elastic}with-message-field.log")], 1),
            (vec!["grafana-loki/tools/lambda-promtail/testdata/vpcflowlog.log.gz".to_owned()], 3),
        ];
        let mut parser = FlowLogParser::new();
        for (files, rows) in cases {
            let mut data = Vec::new();
            for file in &files {
                let path = root.join(file);
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if file.ends_with(".gz") {
                    use std::io::Read as _;
                    flate2::read::MultiGzDecoder::new(bytes.as_slice()).read_to_end(&mut data).expect("gunzip");
                } else {
                    data.extend_from_slice(&bytes);
                    if !data.ends_with(b"\n") {
                        data.push(b'\n');
                    }
                }
            }
            let parsed = parser.parse(&data, &ctx()).unwrap_or_else(|e| panic!("{files:?}: {e}"));
            assert!(parsed.rejected.is_empty(), "{files:?}: {:?}", parsed.rejected);
            assert_eq!(parsed.batch.num_rows(), rows, "{files:?}");
        }
    }

    #[test]
    fn real_sample_values_land_in_the_right_columns() {
        let root = real_samples_dir();
        let tgw = std::fs::read(
            root.join("elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-tgw-samples.log"),
        )
        .expect("tgw sample");
        let parsed = FlowLogParser::new().parse(&tgw, &ctx()).expect("tgw parses");
        let b = &parsed.batch;
        assert_eq!(texts(b, "tgw_id")[0], s("tgw-0a12bc34de56f7890"));
        assert_eq!(texts(b, "dstaddr")[0], s("2a02:cf40::"));
        assert_eq!(numbers(b, "srcport")[0], Some(39464));
        assert_eq!(texts(b, "log_status")[0], s("SKIPDATA"));
        assert_eq!(texts(b, "flow_direction")[0], s("ingress"));
    }
}
