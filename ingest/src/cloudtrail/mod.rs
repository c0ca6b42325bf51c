//! The CloudTrail parser: the bytes of one (decompressed) CloudTrail object in, one Arrow batch in
//! the `cloudtrail` table's schema out.
//!
//! Input shapes accepted:
//! - a log file as AWS delivers it, `{"Records":[...]}`, pretty or compact, other root fields ignored;
//! - a file holding one event object (documentation examples, exports);
//! - JSON lines, one event (or one `{"Records":[...]}`) per line, as log shippers write them; a bad
//!   line is rejected on its own and the rest are kept.
//!
//! The object is parsed in place by simd-json into a tape, and the tape is walked straight into Arrow
//! builders: no value trees, no per-record structs. Fixed fields go to typed columns; free-form fields
//! are re-serialised as compact JSON text. Nothing in a record is dropped silently: keys the parser
//! does not know (shipper wrapper fields, new AWS fields), and values of the wrong type for a typed
//! column, go to `additionalfields` under their dotted path.
//!
//! A record without a usable `eventTime` (or `@timestamp`, its name in some shippers) is rejected
//! and reported in [`Parsed::rejected`]; an object that is not CloudTrail at all is an
//! [`IngestError::Malformed`].

mod columns;
mod json_text;
mod pieces;

use std::sync::Arc;

use arrow::array::{Array, ArrayBuilder, ArrayRef, Date32Array, RecordBatch, StringBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use simd_json::{ErrorType, Node, StaticNode, Tape};

use crate::classify::LogFormat;
use crate::error::{IngestError, Result};
use crate::parsed::{Appended, ObjectContext, Parsed, Position, Rejected, Rejections};
use crate::timestamp::{micros_to_days, parse_rfc3339_micros};
use columns::{Column, Kind, RECORD, Sizing, StructColumn};
use json_text::{elements, entries, type_name, write_escaped, write_static, write_value};

/// Keys of which at least one marks a root object without `Records` as a single CloudTrail event
/// (rather than, say, a digest file or an API response).
const EVENT_MARKERS: [&str; 8] =
    ["eventTime", "@timestamp", "eventName", "eventSource", "eventVersion", "eventID", "userIdentity", "eventType"];

/// The name some log shippers give the event time; used when `eventTime` is absent.
const SHIPPER_TIMESTAMP: &str = "@timestamp";

/// Position of `eventTime` in [`RECORD`] (checked by a test).
const EVENT_TIME_SLOT: usize = 2;

/// Objects larger than this release simd-json's buffers afterwards instead of keeping them (kept
/// per parser thread; see [`crate::tape::RETAINED_TAPE_NODES`] for why not more).
const RETAINED_BUFFER_BYTES: usize = 16 << 20;

/// Documents larger than this are parsed a piece of records at a time (see [`pieces`]).
const PIECEWISE_FROM_BYTES: usize = 4 << 20;

/// About how many bytes of records each piece holds.
const PIECE_BYTES: usize = 1 << 20;

/// A group is finished before the next object once it holds this much content: its text columns
/// stay far from Arrow's 2 GiB per array, so that only an object that is huge on its own can
/// pass it.
const GROUP_CONTENT_BYTES: usize = 64 << 20;

/// How long a value may be when quoted in a rejection reason.
const PREVIEW_CHARS: usize = 80;

/// Parses CloudTrail objects into record batches of the `cloudtrail` table.
///
/// Keep one per worker thread and call [`CloudTrailParser::parse`] for each object: simd-json's
/// buffers, the tape and the text scratch buffers are reused from one object to the next.
///
/// Several objects can also share one set of column buffers ([`CloudTrailParser::append`] each,
/// then [`CloudTrailParser::finish_group`]). A log file holds a few dozen events, and finishing,
/// sizing and freeing some sixty Arrow arrays per object cost more than parsing its records
/// into them; a group pays that once.
pub struct CloudTrailParser {
    schema: SchemaRef,
    buffers: simd_json::Buffers,
    /// Kept empty between calls; only its allocation is reused.
    tape: Tape<'static>,
    record: StructColumn,
    additional_fields: StringBuilder,
    additional_sizing: Sizing,
    dates: Vec<i32>,
    /// The lineage columns of the rows so far, each object's bucket and key once per row.
    source_bucket: StringBuilder,
    source_key: StringBuilder,
    /// Content bytes appended since the column buffers were last finished.
    open_bytes: usize,
    /// How many records the caller is about to append (the next object's included), if it knows.
    expected_records: usize,
    /// Finished parts of the open group, each holding whole objects.
    sealed: Vec<RecordBatch>,
    rejected: Rejections,
    scratch: Scratch,
    /// A piece of a large document, as a JSON array of its records.
    piece: Vec<u8>,
    /// Documents larger than this are parsed piece by piece, pieces of about `piece_bytes`.
    piecewise_from: usize,
    piece_bytes: usize,
}

impl std::fmt::Debug for CloudTrailParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudTrailParser").finish_non_exhaustive()
    }
}

impl Default for CloudTrailParser {
    fn default() -> Self {
        Self::new()
    }
}

/// Text buffers reused for every value and record.
#[derive(Debug, Default)]
struct Scratch {
    /// The text of the value being appended (numbers, JSON text).
    text: String,
    /// `,"path":value` for every unrecognised field of the current record.
    extras: String,
    /// Set when a text column would outgrow Arrow's 2 GiB of 32-bit offsets; fails the object.
    overflow: bool,
}

/// Where a value sits in its record, as a chain of keys; written out only when a value has to go to
/// `additionalfields`, so the common path pays nothing for it.
#[derive(Debug, Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    key: &'a str,
    /// Set for list items: `resources[2]`.
    index: Option<usize>,
}

impl Path<'_> {
    fn write(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.write(out);
            out.push('.');
        }
        write_escaped(self.key, out);
        if let Some(index) = self.index {
            out.push('[');
            out.push_str(itoa_usize(index, &mut [0; 20]));
            out.push(']');
        }
    }
}

/// Decimal text of `n` without going through `fmt`.
fn itoa_usize(mut n: usize, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("?")
}

/// How rejected records are located: by index in `Records`, or by line in a JSON-lines object.
#[derive(Debug, Clone, Copy)]
enum Locator {
    /// The whole object is one JSON document.
    Document,
    /// The document is line `n` (1-based) of a JSON-lines object.
    Line(u64),
}

impl Locator {
    fn position(self, record: usize) -> Position {
        match self {
            Locator::Document => Position::Record(record as u64),
            Locator::Line(n) => Position::Line(n),
        }
    }
}

impl CloudTrailParser {
    /// A parser with empty buffers.
    pub fn new() -> Self {
        CloudTrailParser {
            schema: bunker_schemas::cloudtrail::schema(),
            buffers: simd_json::Buffers::default(),
            tape: Tape(Vec::new()),
            record: StructColumn::new(&RECORD),
            additional_fields: StringBuilder::new(),
            additional_sizing: Sizing::default(),
            dates: Vec::new(),
            source_bucket: StringBuilder::new(),
            source_key: StringBuilder::new(),
            open_bytes: 0,
            expected_records: 0,
            sealed: Vec::new(),
            rejected: Rejections::default(),
            scratch: Scratch::default(),
            piece: Vec::new(),
            piecewise_from: PIECEWISE_FROM_BYTES,
            piece_bytes: PIECE_BYTES,
        }
    }

    /// Parses one CloudTrail object (already decompressed) into rows of the `cloudtrail` table.
    ///
    /// `data` is parsed in place (simd-json unescapes strings where they lie), so its content is
    /// unspecified afterwards. Records that cannot become rows are listed in [`Parsed::rejected`];
    /// an object that is not CloudTrail at all is an [`IngestError::Malformed`] naming `ctx.key`.
    /// Not to be called while a group is open (objects appended and not finished).
    pub fn parse(&mut self, data: &mut [u8], ctx: &ObjectContext<'_>) -> Result<Parsed> {
        if !self.dates.is_empty() || !self.sealed.is_empty() {
            return Err(IngestError::Config("a CloudTrail parser was asked to parse with a group open".into()));
        }
        let appended = self.append(data, ctx)?;
        let mut batches = self.finish_group()?;
        let batch = match batches.pop() {
            Some(batch) if batches.is_empty() => batch,
            Some(last) => {
                batches.push(last);
                arrow::compute::concat_batches(&self.schema, &batches)?
            }
            None => RecordBatch::new_empty(self.schema.clone()),
        };
        Ok(Parsed { batch, rejected: appended.rejected })
    }

    /// Says that about `records` records are about to be appended to the open group (the next
    /// object's included), so that the column buffers are sized for all of them when they start
    /// empty, instead of doubling (and copying) as they fill. Without it they are sized for the
    /// next object alone.
    pub fn expect_records(&mut self, records: usize) {
        self.expected_records = records;
    }

    /// Parses one object (as [`CloudTrailParser::parse`] does) and appends its rows to the open
    /// group, after those of the objects appended before it. An object that fails leaves nothing
    /// in the group; the rows of the objects before it are kept.
    pub fn append(&mut self, data: &mut [u8], ctx: &ObjectContext<'_>) -> Result<Appended> {
        if !self.dates.is_empty() && self.open_bytes.saturating_add(data.len()) > GROUP_CONTENT_BYTES {
            self.seal()?;
        }
        let start = self.dates.len();
        let content_bytes = data.len();
        let outcome = self.parse_body(data, start);
        // simd-json's buffers grow to the largest object seen; one huge object must not pin them.
        if content_bytes > RETAINED_BUFFER_BYTES {
            self.buffers = simd_json::Buffers::default();
        }
        let outcome = outcome.and_then(|()| {
            if self.scratch.overflow {
                Err("holds more text than one Arrow batch can (2 GiB per column)".to_owned())
            } else {
                self.append_lineage(ctx, self.dates.len() - start)
            }
        });
        self.expected_records = 0;
        match outcome {
            Ok(()) => {
                self.open_bytes += content_bytes;
                Ok(Appended { rows: self.dates.len() - start, rejected: std::mem::take(&mut self.rejected) })
            }
            Err(reason) => {
                self.drop_rows_from(start)?;
                Err(IngestError::Malformed { key: ctx.key.into(), format: LogFormat::CloudTrail, reason })
            }
        }
    }

    /// Finishes the open group: the rows of every object appended since the last call, in the
    /// order they were appended, in one or more batches (one unless an object failed after rows of
    /// its own were in the buffers, or the group grew past 64 MiB of content). No object's
    /// rows are split between two batches. There is always at least one batch, maybe of no rows.
    pub fn finish_group(&mut self) -> Result<Vec<RecordBatch>> {
        let open = self.finish_rows(self.dates.len())?;
        let mut batches = std::mem::take(&mut self.sealed);
        if open.num_rows() > 0 || batches.is_empty() {
            batches.push(open);
        }
        self.open_bytes = 0;
        self.expected_records = 0;
        Ok(batches)
    }

    /// Forgets every row of the open group. For a caller that gives up on a group halfway (a
    /// panic unwinding through it), so that the parser does not hand those rows to the next.
    pub fn discard_group(&mut self) {
        self.clear_open_rows();
        self.sealed.clear();
        self.rejected.clear();
        self.scratch.overflow = false;
        self.expected_records = 0;
    }

    /// Empties the column buffers (the group's finished parts stay).
    fn clear_open_rows(&mut self) {
        self.record.clear();
        self.additional_fields = StringBuilder::new();
        self.dates.clear();
        self.source_bucket = StringBuilder::new();
        self.source_key = StringBuilder::new();
        self.open_bytes = 0;
    }

    /// Parses `data` into the column buffers; `Err` is the reason the whole object is malformed.
    /// Rows before `first_row` are earlier objects' of the group.
    fn parse_body(&mut self, data: &mut [u8], first_row: usize) -> Result<(), String> {
        // A UTF-8 byte-order mark is legal at the start of a text file but not JSON.
        let start = if data.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        let body = trim_mut(data.get_mut(start..).unwrap_or_default());
        if body.is_empty() {
            return Err("the object is empty".to_owned());
        }
        crate::tape::check_tape_budget(body)?;
        let body_len = body.len();
        if is_json_lines(body) {
            self.reserve(memchr::memchr_iter(b'\n', body).count() + 1, body_len);
            self.parse_lines(body)
        } else {
            if body_len > self.piecewise_from
                && let Some(split) = pieces::split(body, self.piece_bytes)
            {
                if self.parse_pieces(body, &split) {
                    return Ok(());
                }
                // A piece that was not JSON left rows behind: the whole document is parsed again,
                // and says why it is not JSON exactly as it would have.
                self.drop_rows_from(first_row).map_err(|e| e.to_string())?;
            }
            let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
            let outcome = match simd_json::fill_tape(body, &mut self.buffers, &mut tape) {
                Ok(()) => {
                    self.reserve(record_count(&tape.0), body_len);
                    self.push_document(&tape.0, Locator::Document)
                }
                Err(e) => Err(not_json_reason(&e)),
            };
            self.tape = crate::tape::trim(tape.reset());
            outcome
        }
    }

    /// Appends the records of a large document piece by piece; `false` when a piece or another
    /// value of the root is not JSON (or not what the scan found), leaving rows to be dropped.
    fn parse_pieces(&mut self, body: &[u8], split: &pieces::Split) -> bool {
        let mut spare = std::mem::replace(&mut self.tape, Tape(Vec::new()));
        let mut piece = std::mem::take(&mut self.piece);
        let mut ok = true;
        // The other values of the root are not kept, but a document that is not JSON anywhere is
        // malformed as a whole, as when it is parsed in one go.
        for other in &split.others {
            piece.clear();
            piece.extend_from_slice(body.get(other.clone()).unwrap_or_default());
            let mut tape = spare.reset();
            ok = simd_json::fill_tape(&mut piece, &mut self.buffers, &mut tape).is_ok();
            spare = tape.reset();
            if !ok {
                break;
            }
        }
        if ok {
            self.reserve(split.records(), body.len());
        }
        let mut first = 0usize;
        for run in &split.pieces {
            if !ok {
                break;
            }
            piece.clear();
            piece.push(b'[');
            piece.extend_from_slice(body.get(run.range.clone()).unwrap_or_default());
            piece.push(b']');
            let mut tape = spare.reset();
            ok = simd_json::fill_tape(&mut piece, &mut self.buffers, &mut tape).is_ok()
                && matches!(tape.0.first(), Some(Node::Array { len, .. }) if *len == run.records);
            if ok {
                let nodes = &tape.0;
                for (n, record) in elements(nodes, 0).enumerate() {
                    let outcome = match nodes.get(record) {
                        Some(Node::Object { .. }) => self.push_record(nodes, record),
                        _ => Err(format!("the record is {}, not an object", type_name(nodes, record))),
                    };
                    if let Err(reason) = outcome {
                        self.rejected.push(Rejected { position: Locator::Document.position(first + n), reason });
                    }
                }
            }
            first += run.records;
            spare = tape.reset();
        }
        self.tape = crate::tape::trim(spare);
        // One huge record makes a huge piece: its buffer is not kept.
        if piece.capacity() <= 4 * self.piece_bytes {
            self.piece = piece;
        }
        ok
    }

    /// Sizes the (empty) column buffers for an object of about `records` records in `body_len`
    /// bytes. The records are counted as if each took at least [`MIN_SIZED_RECORD_BYTES`]: an
    /// object of millions of `{}` must not reserve what millions of real events would need.
    ///
    /// When they are empty (a group starting), they are sized for the records the caller expects
    /// to append, if more, up to what fits in a group.
    fn reserve(&mut self, records: usize, body_len: usize) {
        let records = records.min(body_len / MIN_SIZED_RECORD_BYTES + 1);
        let expected = self.expected_records.min(GROUP_CONTENT_BYTES / MIN_SIZED_RECORD_BYTES);
        let records = if self.dates.is_empty() { records.max(expected) } else { records };
        self.record.reserve(records);
        if self.additional_fields.is_empty() {
            let sizing = self.additional_sizing;
            self.additional_fields = StringBuilder::with_capacity(sizing.items(records), sizing.bytes(records));
        }
        self.dates.reserve(records);
    }

    /// One JSON document per line; bad lines are rejected one by one.
    fn parse_lines(&mut self, body: &mut [u8]) -> Result<(), String> {
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        // Lines that held CloudTrail (a Records file or an event, even one rejected for its time).
        let mut cloudtrail_lines = 0usize;
        let mut first_error = None;
        let mut outcome = Ok(());
        for (n, line) in body.split_mut(|&b| b == b'\n').enumerate() {
            let line_number = n as u64 + 1;
            let line = trim_mut(line);
            if line.is_empty() {
                continue;
            }
            let reason = match simd_json::fill_tape(line, &mut self.buffers, &mut tape) {
                Ok(()) => match self.push_document(&tape.0, Locator::Line(line_number)) {
                    Ok(()) => {
                        cloudtrail_lines += 1;
                        continue;
                    }
                    Err(reason) => reason,
                },
                Err(e) if matches!(e.error(), ErrorType::InvalidUtf8) => {
                    // Bytes that are not text mean the object is not a log at all, not one bad line.
                    outcome = Err(format!("line {line_number} is not valid UTF-8 text"));
                    break;
                }
                Err(e) => not_json_reason(&e),
            };
            first_error.get_or_insert_with(|| format!("line {line_number}: {reason}"));
            self.rejected.push(Rejected { position: Position::Line(line_number), reason });
        }
        self.tape = crate::tape::trim(tape.reset());
        outcome?;
        match first_error {
            // Every line bad: this is not a CloudTrail JSON-lines object at all.
            Some(reason) if cloudtrail_lines == 0 => Err(format!("no line is a CloudTrail event; {reason}")),
            _ => Ok(()),
        }
    }

    /// Appends the records of one JSON document; `Err` is why the document is not CloudTrail.
    fn push_document(&mut self, nodes: &[Node<'_>], locator: Locator) -> Result<(), String> {
        match nodes.first() {
            Some(Node::Object { .. }) => {}
            Some(Node::Array { .. }) => {
                return Err(r#"a JSON array, where {"Records":[...]} or one event object was expected"#.to_owned());
            }
            _ => return Err(format!("{}, not a JSON object", type_name(nodes, 0))),
        }
        if let Some((_, records)) = entries(nodes, 0).find(|(key, _)| *key == "Records") {
            if !matches!(nodes.get(records), Some(Node::Array { .. })) {
                return Err(format!(r#""Records" is {}, not an array"#, type_name(nodes, records)));
            }
            for (n, record) in elements(nodes, records).enumerate() {
                let outcome = match nodes.get(record) {
                    Some(Node::Object { .. }) => self.push_record(nodes, record),
                    _ => Err(format!("the record is {}, not an object", type_name(nodes, record))),
                };
                if let Err(reason) = outcome {
                    self.rejected.push(Rejected { position: locator.position(n), reason });
                }
            }
            return Ok(());
        }
        if entries(nodes, 0).any(|(key, _)| EVENT_MARKERS.contains(&key)) {
            if let Err(reason) = self.push_record(nodes, 0) {
                self.rejected.push(Rejected { position: locator.position(0), reason });
            }
            return Ok(());
        }
        let mut keys = String::new();
        for (n, (key, _)) in entries(nodes, 0).enumerate() {
            if n == 8 {
                keys.push_str(", ...");
                break;
            }
            if n > 0 {
                keys.push_str(", ");
            }
            keys.push_str(preview(key));
        }
        Err(if keys.is_empty() {
            r#"no "Records" array, and an empty object is not a CloudTrail event"#.to_owned()
        } else {
            format!(r#"no "Records" array, and not a CloudTrail event (its keys are: {keys})"#)
        })
    }

    /// Appends one record (the object at `at`) as a row, or says why it cannot be one.
    ///
    /// Everything that can reject the record is checked before the first value is appended, so a
    /// rejected record leaves no partial row behind.
    fn push_record(&mut self, nodes: &[Node<'_>], at: usize) -> Result<(), String> {
        self.scratch.extras.clear();
        let shipper_time = scan_keys(&mut self.record, nodes, at, None, &mut self.scratch, true);
        let event_time = self.record.slots.get(EVENT_TIME_SLOT).copied().flatten();
        let micros = match (event_time, shipper_time) {
            (Some(value), _) if !is_null(nodes, value) => {
                let micros = parse_time(nodes, value, "eventTime")?;
                if let Some(shipper) = shipper_time {
                    // Both present: eventTime is authoritative, the shipper's copy is kept as found.
                    record_extra(
                        &mut self.scratch,
                        nodes,
                        shipper,
                        &Path { parent: None, key: SHIPPER_TIMESTAMP, index: None },
                    );
                }
                micros
            }
            (_, Some(value)) => parse_time(nodes, value, SHIPPER_TIMESTAMP)?,
            (Some(_), None) => return Err("eventTime is null".to_owned()),
            (None, None) => return Err("no eventTime (or @timestamp) field".to_owned()),
        };
        emit_children(&mut self.record, nodes, None, &mut self.scratch, micros);
        let extras = &self.scratch.extras;
        if let Some(body) = extras.strip_prefix(',') {
            self.scratch.text.clear();
            self.scratch.text.push('{');
            self.scratch.text.push_str(body);
            self.scratch.text.push('}');
            append_text(&mut self.additional_fields, &self.scratch.text, &mut self.scratch.overflow);
        } else {
            self.additional_fields.append_null();
        }
        self.dates.push(micros_to_days(micros));
        Ok(())
    }

    /// Appends the lineage of an object's `rows` rows, or says why they cannot hold it (a long key
    /// on millions of rows would pass Arrow's 2 GiB of text).
    fn append_lineage(&mut self, ctx: &ObjectContext<'_>, rows: usize) -> Result<(), String> {
        let lineage = [(&mut self.source_bucket, ctx.bucket), (&mut self.source_key, ctx.key)];
        for (builder, value) in &lineage {
            let bytes = value.len().checked_mul(rows).and_then(|b| b.checked_add(builder.values_slice().len()));
            if bytes.is_none_or(|bytes| bytes > i32::MAX as usize) {
                return Err(format!("{rows} copies of a {}-byte lineage value pass 2 GiB", value.len()));
            }
        }
        for (builder, value) in lineage {
            if builder.is_empty() {
                let expected = rows.max(self.expected_records.min(GROUP_CONTENT_BYTES / MIN_SIZED_RECORD_BYTES));
                *builder = StringBuilder::with_capacity(expected, expected.saturating_mul(value.len()));
            }
            for _ in 0..rows {
                builder.append_value(value);
            }
        }
        Ok(())
    }

    /// Finishes the open rows into a part of the group, to make room for more.
    fn seal(&mut self) -> Result<(), ArrowError> {
        let part = self.finish_rows(self.dates.len())?;
        if part.num_rows() > 0 {
            self.sealed.push(part);
        }
        self.open_bytes = 0;
        Ok(())
    }

    /// Drops the rows from `start` on (what a failed object left), keeping those before it.
    fn drop_rows_from(&mut self, start: usize) -> Result<(), ArrowError> {
        self.rejected.clear();
        self.scratch.overflow = false;
        if self.dates.len() == start {
            return Ok(());
        }
        if start == 0 {
            self.clear_open_rows();
            return Ok(());
        }
        // Arrow builders cannot be cut back: the earlier objects' rows become a finished part of
        // the group, and the failed object's are sliced off.
        let part = self.finish_rows(start)?;
        self.sealed.push(part);
        self.open_bytes = 0;
        Ok(())
    }

    /// Assembles the first `keep` rows of the column buffers into a batch, and leaves the buffers
    /// empty. The lineage buffers must hold exactly `keep` rows.
    fn finish_rows(&mut self, keep: usize) -> Result<RecordBatch, ArrowError> {
        let rows = self.dates.len();
        let fields = self.schema.fields();
        let record_fields = fields.get(..RECORD.fields.len()).unwrap_or_default();
        let mut columns = self.record.finish_children(record_fields, rows)?;
        self.additional_sizing.learn(rows, self.additional_fields.len(), self.additional_fields.values_slice().len());
        columns.push(Arc::new(self.additional_fields.finish()) as ArrayRef);
        if keep < rows {
            columns = columns.iter().map(|c| c.slice(0, keep)).collect();
        }
        let lineage = [Arc::new(self.source_bucket.finish()) as ArrayRef, Arc::new(self.source_key.finish())];
        if lineage.iter().any(|l| l.len() != keep) {
            return Err(ArrowError::ComputeError(format!(
                "the CloudTrail parser has lineage for {} rows where {keep} are kept",
                lineage[1].len()
            )));
        }
        columns.extend(lineage);
        let mut dates = std::mem::take(&mut self.dates);
        dates.truncate(keep);
        columns.push(Arc::new(Date32Array::from(dates)));
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// Records the tape index of each known key of the object at `at` in `column.slots`; unknown keys go
/// to `additionalfields`. At the record's root, returns the `@timestamp` value, which is an unknown
/// key only if it ends up not being used as the event time.
fn scan_keys(
    column: &mut StructColumn,
    nodes: &[Node<'_>],
    at: usize,
    parent: Option<&Path<'_>>,
    scratch: &mut Scratch,
    root: bool,
) -> Option<usize> {
    column.slots.fill(None);
    let layout = column.layout;
    let mut hint = 0;
    let mut shipper_time = None;
    for (key, value) in entries(nodes, at) {
        match layout.find(key, hint) {
            Some(i) => {
                hint = i + 1;
                if let Some(previous) = column.slots.get_mut(i).and_then(|slot| slot.replace(value)) {
                    // A repeated key: the last one fills the column, the earlier one is kept aside.
                    record_extra(scratch, nodes, previous, &Path { parent, key, index: None });
                }
            }
            None if root && key == SHIPPER_TIMESTAMP && shipper_time.is_none() => shipper_time = Some(value),
            None => record_extra(scratch, nodes, value, &Path { parent, key, index: None }),
        }
    }
    shipper_time
}

/// Appends one value per child of `column` from the slots [`scan_keys`] filled.
fn emit_children(
    column: &mut StructColumn,
    nodes: &[Node<'_>],
    parent: Option<&Path<'_>>,
    scratch: &mut Scratch,
    event_time: i64,
) {
    let layout = column.layout;
    for ((child, field), at) in column.children.iter_mut().zip(layout.fields).zip(column.slots.iter().copied()) {
        let path = Path { parent, key: field.key, index: None };
        append_value(child, field.kind, nodes, at, &path, scratch, event_time);
    }
}

/// Appends the value at `at` (or null when absent) to `column`, stored as `kind` says.
fn append_value(
    column: &mut Column,
    kind: Kind,
    nodes: &[Node<'_>],
    at: Option<usize>,
    path: &Path<'_>,
    scratch: &mut Scratch,
    event_time: i64,
) {
    if let (Kind::EventTime, Column::Time(builder)) = (kind, &mut *column) {
        // Validated before the row started; may come from `@timestamp`, so not from this slot.
        builder.append_value(event_time);
        return;
    }
    let Some((at, node)) = at.and_then(|at| nodes.get(at).map(|node| (at, node))) else {
        column.append_null();
        return;
    };
    if matches!(node, Node::Static(StaticNode::Null)) {
        column.append_null();
        return;
    }
    match (kind, column) {
        (Kind::Text, Column::Text(builder)) => match node {
            Node::String(s) => append_text(builder, s, &mut scratch.overflow),
            Node::Static(value) => {
                scratch.text.clear();
                write_static(value, &mut scratch.text);
                append_text(builder, &scratch.text, &mut scratch.overflow);
            }
            _ => {
                scratch.text.clear();
                write_value(nodes, at, &mut scratch.text);
                append_text(builder, &scratch.text, &mut scratch.overflow);
            }
        },
        (Kind::Json, Column::Text(builder)) => {
            scratch.text.clear();
            write_value(nodes, at, &mut scratch.text);
            append_text(builder, &scratch.text, &mut scratch.overflow);
        }
        (Kind::Bool, Column::Bool(builder)) => match node {
            Node::Static(StaticNode::Bool(b)) => builder.append_value(*b),
            Node::String("true") => builder.append_value(true),
            Node::String("false") => builder.append_value(false),
            _ => {
                builder.append_null();
                record_extra(scratch, nodes, at, path);
            }
        },
        (Kind::Time, Column::Time(builder)) => match node {
            Node::String(s) if let Some(micros) = parse_rfc3339_micros(s) => builder.append_value(micros),
            _ => {
                builder.append_null();
                record_extra(scratch, nodes, at, path);
            }
        },
        (Kind::Struct(_), Column::Struct(child)) => {
            if matches!(node, Node::Object { .. }) {
                child.validity.append_non_null();
                scan_keys(child, nodes, at, Some(path), scratch, false);
                emit_children(child, nodes, Some(path), scratch, event_time);
            } else {
                child.append_null();
                record_extra(scratch, nodes, at, path);
            }
        }
        (Kind::List(_), Column::List(list)) => {
            if !matches!(node, Node::Array { .. }) {
                list.append_null();
                record_extra(scratch, nodes, at, path);
                return;
            }
            let mut items = 0usize;
            for (n, element) in elements(nodes, at).enumerate() {
                let item_path = Path { parent: path.parent, key: path.key, index: Some(n) };
                if matches!(nodes.get(element), Some(Node::Object { .. })) {
                    list.items.validity.append_non_null();
                    scan_keys(&mut list.items, nodes, element, Some(&item_path), scratch, false);
                    emit_children(&mut list.items, nodes, Some(&item_path), scratch, event_time);
                } else {
                    // Keep the item (as null) so that item indexes still match the source.
                    list.items.append_null();
                    if !is_null(nodes, element) {
                        record_extra(scratch, nodes, element, &item_path);
                    }
                }
                items += 1;
            }
            let start = list.offsets.last().copied().unwrap_or(0);
            let end = i32::try_from(items).ok().and_then(|items| start.checked_add(items));
            match end {
                Some(end) => list.offsets.push(end),
                None => {
                    scratch.overflow = true;
                    list.offsets.push(start);
                }
            }
            list.validity.append_non_null();
        }
        // Unreachable: every column is built from its kind. Stay total rather than panic.
        (_, column) => column.append_null(),
    }
}

/// Appends `,"<path>":<value>` to the record's unrecognised fields.
fn record_extra(scratch: &mut Scratch, nodes: &[Node<'_>], at: usize, path: &Path<'_>) {
    scratch.extras.push_str(",\"");
    path.write(&mut scratch.extras);
    scratch.extras.push_str("\":");
    write_value(nodes, at, &mut scratch.extras);
}

/// The smallest record size buffers are reserved for; real CloudTrail events are 600 bytes and up.
const MIN_SIZED_RECORD_BYTES: usize = 512;

/// How many records a parsed document holds: the length of its `Records` array, or one event.
fn record_count(nodes: &[Node<'_>]) -> usize {
    if !matches!(nodes.first(), Some(Node::Object { .. })) {
        return 0;
    }
    match entries(nodes, 0).find(|(key, _)| *key == "Records").and_then(|(_, at)| nodes.get(at)) {
        Some(Node::Array { len, .. }) => *len,
        _ => 1,
    }
}

/// Appends `text`, unless the column would pass Arrow's 32-bit offset limit (which panics): then a
/// null, and the object fails with a reason instead.
fn append_text(builder: &mut StringBuilder, text: &str, overflow: &mut bool) {
    if builder.values_slice().len().saturating_add(text.len()) > i32::MAX as usize {
        *overflow = true;
        builder.append_null();
    } else {
        builder.append_value(text);
    }
}

/// The event time in microseconds, or why the value at `at` is not one.
fn parse_time(nodes: &[Node<'_>], at: usize, name: &str) -> Result<i64, String> {
    if let Some(Node::String(s)) = nodes.get(at)
        && let Some(micros) = parse_rfc3339_micros(s)
    {
        return Ok(micros);
    }
    let mut text = String::new();
    write_value(nodes, at, &mut text);
    Err(format!("{name} {} is not an RFC 3339 timestamp", preview(&text)))
}

fn is_null(nodes: &[Node<'_>], at: usize) -> bool {
    matches!(nodes.get(at), Some(Node::Static(StaticNode::Null)))
}

/// At most [`PREVIEW_CHARS`] characters of `s`, cut on a character boundary.
fn preview(s: &str) -> &str {
    match s.char_indices().nth(PREVIEW_CHARS) {
        Some((end, _)) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

/// The reason an object (or line) is not JSON, in words.
fn not_json_reason(e: &simd_json::Error) -> String {
    match e.error() {
        ErrorType::InvalidUtf8 => "not valid UTF-8 text".to_owned(),
        ErrorType::DepthLimitExceeded => "JSON nested deeper than 1024 levels".to_owned(),
        _ => format!("not JSON: {e}"),
    }
}

/// Whether the object is JSON lines rather than one document: its first line is a whole object on its
/// own and more content follows. A pretty-printed document's first line never closes its object.
fn is_json_lines(body: &[u8]) -> bool {
    let Some(newline) = memchr::memchr(b'\n', body) else {
        return false;
    };
    let (first, rest) = body.split_at(newline);
    let first = first.trim_ascii();
    first.first() == Some(&b'{') && first.last() == Some(&b'}') && rest.iter().any(|b| !b.is_ascii_whitespace())
}

/// `bytes` without leading and trailing ASCII whitespace.
fn trim_mut(bytes: &mut [u8]) -> &mut [u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    bytes.get_mut(start..end.max(start)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
