//! Route 53 Resolver query logs: from the JSON lines AWS writes to rows of the `dns` table.
//!
//! Data enters as one whole decompressed object (`&[u8]`, one JSON record per line) and leaves as
//! one [`Parsed`] in [`bunker_schemas::dns::schema`]. The parser is synchronous and does no I/O.
//!
//! Each line is copied into a reusable scratch buffer and parsed in place by simd-json into a
//! reused tape; values are read straight off the tape into Arrow builders, so no JSON value tree
//! and no per-field `String` is built for a record. Keys the table has no column for are written,
//! with their JSON values, into the `additionalfields` JSON object (`srcids` children as
//! `srcids.<key>`), so a field AWS adds later is kept rather than dropped.
//!
//! Salvage what can be salvaged: a line that is not a JSON object, or whose `query_timestamp` is
//! missing or not a time, or whose `srcport` is not a port, becomes a [`Rejected`] with the line
//! number and the reason; empty lines are skipped. The whole object is
//! [`IngestError::Malformed`] only when nothing in it looks like a query log: no row came out and
//! no line was a JSON object with a single Resolver query log key (a CloudTrail file or a binary
//! object classified here by mistake).

use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, ListArray, RecordBatch, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{FieldRef, SchemaRef};
use bunker_schemas::dns;
use simd_json::prelude::{TypedScalarValue, ValueAsScalar, Writable};
use simd_json::tape::{Object, Tape, Value};

use crate::classify::LogFormat;
use crate::error::{IngestError, Result};
use crate::parsed::{ObjectContext, Parsed, Position, Rejected, Rejections};
use crate::timestamp::{micros_to_days, parse_rfc3339_micros};
use crate::vpcflow::quote;

/// The text columns, in the order they are read into [`Record::text`].
const TEXT_KEYS: [&str; 14] = [
    "version",
    "account_id",
    "region",
    "vpc_id",
    "query_name",
    "query_type",
    "query_class",
    "rcode",
    "srcaddr",
    "transport",
    "firewall_rule_action",
    "firewall_rule_group_id",
    "firewall_domain_list_id",
    "firewall_protection",
];

/// Keys of the `srcids` object, in the order of its struct children.
const SRCIDS_KEYS: [&str; 3] = ["instance", "resolver_endpoint", "resolver_network_interface"];

/// Keys of an `answers` entry (AWS writes them capitalised: `Rdata`, `Type`, `Class`), in the
/// order of its struct children.
const ANSWER_KEYS: [&str; 3] = ["rdata", "type", "class"];

/// Reads Resolver query log objects into `dns` record batches.
///
/// Holds the scratch line, simd-json's buffers and the tape, reused from line to line and object to
/// object; one parser per worker thread.
pub struct DnsLogParser {
    schema: SchemaRef,
    answers_item: FieldRef,
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Tape<'static>,
}

impl std::fmt::Debug for DnsLogParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsLogParser").field("scratch_capacity", &self.scratch.capacity()).finish_non_exhaustive()
    }
}

impl Default for DnsLogParser {
    fn default() -> Self {
        Self::new()
    }
}

impl DnsLogParser {
    /// A parser for the current `dns` schema.
    pub fn new() -> DnsLogParser {
        DnsLogParser {
            schema: dns::schema(),
            answers_item: Arc::new(dns::answers_item()),
            scratch: Vec::with_capacity(4096),
            buffers: simd_json::Buffers::new(4096),
            tape: Tape::null(),
        }
    }

    /// Parses one whole decompressed query log object.
    ///
    /// Every non-empty line becomes a row or a [`Rejected`]. Errors: [`IngestError::Malformed`]
    /// when nothing in the object looks like a Resolver query log (see the module doc), and
    /// [`IngestError::Arrow`] for a bug of ours.
    pub fn parse(&mut self, data: &[u8], ctx: &ObjectContext<'_>) -> Result<Parsed> {
        let malformed =
            |reason: String| IngestError::Malformed { key: ctx.key.to_owned(), format: LogFormat::Dns, reason };
        if data.starts_with(&[0x1f, 0x8b]) {
            return Err(malformed("object is still gzip-compressed".to_owned()));
        }
        // Resolver records are 300 to 600 bytes; a low guess only costs a builder reallocation.
        let mut rows = DnsRows::with_capacity(data.len() / 400 + 1);
        let mut rejected = Rejections::default();
        let mut looks_like_dns = false;

        for (index, raw) in data.split(|&b| b == b'\n').enumerate() {
            let line_number = index as u64 + 1;
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            self.scratch.clear();
            self.scratch.extend_from_slice(raw);
            // The tape keeps its allocation from line to line; `reset` only rebinds its lifetime to
            // this line's scratch copy, which simd-json unescapes strings into.
            if let Err(reason) = crate::tape::check_tape_budget(raw) {
                rejected.push(Rejected { position: Position::Line(line_number), reason });
                continue;
            }
            let mut tape = std::mem::replace(&mut self.tape, Tape::null()).reset();
            let outcome = match simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape) {
                Err(e) => Err(format!("not JSON: {}", quote(&e.to_string()))),
                Ok(()) => match tape.as_value().as_object() {
                    None => Err("not a JSON object".to_owned()),
                    Some(object) => {
                        looks_like_dns |= object.keys().any(is_known_key);
                        Record::read(&object).map(|record| rows.append(&record))
                    }
                },
            };
            self.tape = tape.reset();
            if let Err(reason) = outcome {
                rejected.push(Rejected { position: Position::Line(line_number), reason });
            }
        }

        if rows.len == 0
            && !looks_like_dns
            && let Some(first) = rejected.first()
        {
            return Err(malformed(format!(
                "no line is a Route 53 Resolver query log record ({} lines; {}: {})",
                rejected.len(),
                first.position,
                first.reason
            )));
        }
        // One long line must not keep its scratch copy and tape for the life of the thread.
        self.tape = crate::tape::trim(std::mem::replace(&mut self.tape, Tape::null()));
        if self.scratch.capacity() > crate::tape::RETAINED_TAPE_NODES {
            self.scratch = Vec::with_capacity(4096);
        }
        let batch = rows.finish(&self.schema, &self.answers_item, ctx)?;
        Ok(Parsed { batch, rejected })
    }
}

fn is_known_key(key: &str) -> bool {
    TEXT_KEYS.contains(&key) || matches!(key, "query_timestamp" | "srcport" | "answers" | "srcids")
}

/// One record read off the tape and checked, ready to append; nothing is appended until the whole
/// record is known to be good, so a rejected line leaves no half row behind.
struct Record<'t, 'i> {
    text: [Option<Value<'t, 'i>>; TEXT_KEYS.len()],
    query_timestamp_micros: i64,
    srcport: Option<i32>,
    answers: Option<simd_json::tape::Array<'t, 'i>>,
    srcids: Option<Object<'t, 'i>>,
    /// The unknown keys and their values, as a JSON object's text; empty when there are none.
    additional: String,
}

impl<'t, 'i> Record<'t, 'i> {
    fn read(object: &Object<'t, 'i>) -> std::result::Result<Record<'t, 'i>, String> {
        let mut text = [None; TEXT_KEYS.len()];
        let mut timestamp = None;
        let mut srcport = None;
        let mut answers = None;
        let mut srcids = None;
        let mut additional = String::new();
        for (key, value) in object.iter() {
            match key {
                "query_timestamp" => timestamp = Some(value),
                "srcport" => srcport = Some(value),
                "answers" => answers = Some(value),
                "srcids" => srcids = Some(value),
                _ => match TEXT_KEYS.iter().position(|k| *k == key) {
                    Some(i) => text[i] = Some(value),
                    None => push_additional(&mut additional, key, "", value),
                },
            }
        }

        let query_timestamp_micros = match timestamp {
            None => return Err("no query_timestamp".to_owned()),
            Some(v) => match v.as_str() {
                Some(s) => {
                    parse_rfc3339_micros(s).ok_or_else(|| format!("query_timestamp {} is not a time", quote(s)))?
                }
                None => return Err(format!("query_timestamp is {}, not a time", quote(&v.encode()))),
            },
        };
        let srcport = match srcport {
            None => None,
            Some(v) => read_port(v)?,
        };
        let answers = match answers {
            None => None,
            Some(v) if v.is_null() => None,
            Some(v) => {
                let array = v.as_array().ok_or_else(|| format!("answers is {}, not a list", quote(&v.encode())))?;
                if let Some(bad) = array.iter().find(|a| a.as_object().is_none()) {
                    return Err(format!("answers holds {}, not an answer object", quote(&bad.encode())));
                }
                Some(array)
            }
        };
        let srcids = match srcids {
            None => None,
            Some(v) if v.is_null() => None,
            Some(v) => {
                let object = v.as_object().ok_or_else(|| format!("srcids is {}, not an object", quote(&v.encode())))?;
                for (key, value) in object.iter().filter(|(k, _)| !SRCIDS_KEYS.contains(k)) {
                    push_additional(&mut additional, key, "srcids.", value);
                }
                Some(object)
            }
        };
        if !additional.is_empty() {
            additional.push('}');
        }
        Ok(Record { text, query_timestamp_micros, srcport, answers, srcids, additional })
    }
}

/// `srcport` as AWS writes it (a string, `"48701"`) or as a number; `-` and `""` are no port.
fn read_port(value: Value<'_, '_>) -> std::result::Result<Option<i32>, String> {
    let bad = || Err(format!("srcport {} is not a port (0 to 65535)", quote(&value.encode())));
    if value.is_null() {
        return Ok(None);
    }
    let number = match value.as_str() {
        Some("" | "-") => return Ok(None),
        Some(s) => s.parse::<u32>().ok().map(i64::from),
        None => value.as_i64(),
    };
    match number {
        Some(n @ 0..=65_535) => Ok(i32::try_from(n).ok()),
        _ => bad(),
    }
}

/// Adds `"<prefix><key>": <value>` to the JSON object text being built in `out`.
fn push_additional(out: &mut String, key: &str, prefix: &str, value: Value<'_, '_>) {
    out.push(if out.is_empty() { '{' } else { ',' });
    let name = format!("{prefix}{key}");
    // serde_json escapes the key exactly as JSON requires; this runs only for unknown keys.
    out.push_str(&serde_json::to_string(&name).unwrap_or_else(|_| "\"\"".to_owned()));
    out.push(':');
    out.push_str(&value.encode());
}

/// Appends a text value: strings as they are, other scalars as their JSON text, so that a type
/// AWS changes does not lose the value.
fn append_text(builder: &mut StringBuilder, value: Option<Value<'_, '_>>) {
    match value {
        None => builder.append_null(),
        Some(v) if v.is_null() => builder.append_null(),
        Some(v) => match v.as_str() {
            Some(s) => builder.append_value(s),
            None => builder.append_value(v.encode()),
        },
    }
}

/// Column builders for the rows of one object.
struct DnsRows {
    text: Vec<StringBuilder>,
    query_timestamp: TimestampMicrosecondBuilder,
    srcport: Int32Builder,
    answer_children: [StringBuilder; 3],
    answer_offsets: Vec<i32>,
    answer_validity: NullBufferBuilder,
    srcids_children: [StringBuilder; 3],
    srcids_validity: NullBufferBuilder,
    additional: StringBuilder,
    date: Date32Builder,
    len: usize,
}

impl DnsRows {
    fn with_capacity(rows: usize) -> DnsRows {
        let strings = || StringBuilder::with_capacity(rows, rows * 16);
        let mut answer_offsets = Vec::with_capacity(rows + 1);
        answer_offsets.push(0);
        DnsRows {
            text: TEXT_KEYS.iter().map(|_| strings()).collect(),
            query_timestamp: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            srcport: Int32Builder::with_capacity(rows),
            answer_children: [strings(), strings(), strings()],
            answer_offsets,
            answer_validity: NullBufferBuilder::new(rows),
            srcids_children: [strings(), strings(), strings()],
            srcids_validity: NullBufferBuilder::new(rows),
            additional: StringBuilder::new(),
            date: Date32Builder::with_capacity(rows),
            len: 0,
        }
    }

    fn append(&mut self, record: &Record<'_, '_>) {
        for (builder, value) in self.text.iter_mut().zip(record.text) {
            append_text(builder, value);
        }
        self.query_timestamp.append_value(record.query_timestamp_micros);
        self.srcport.append_option(record.srcport);

        let mut entries = 0;
        if let Some(answers) = &record.answers {
            for answer in answers.iter().filter_map(|a| a.as_object()) {
                for (builder, name) in self.answer_children.iter_mut().zip(ANSWER_KEYS) {
                    let value = answer.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
                    append_text(builder, value);
                }
                entries += 1;
            }
        }
        let last = self.answer_offsets.last().copied().unwrap_or(0);
        self.answer_offsets.push(last + entries);
        self.answer_validity.append(record.answers.is_some());

        for (builder, name) in self.srcids_children.iter_mut().zip(SRCIDS_KEYS) {
            append_text(builder, record.srcids.as_ref().and_then(|o| o.get(name)));
        }
        self.srcids_validity.append(record.srcids.is_some());

        if record.additional.is_empty() {
            self.additional.append_null();
        } else {
            self.additional.append_value(&record.additional);
        }
        self.date.append_value(micros_to_days(record.query_timestamp_micros));
        self.len += 1;
    }

    fn finish(mut self, schema: &SchemaRef, answers_item: &FieldRef, ctx: &ObjectContext<'_>) -> Result<RecordBatch> {
        let mut text = self.text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut next_text = || text.next().ok_or_else(|| arrow::error::ArrowError::SchemaError("text columns".into()));

        let answer_children: Vec<ArrayRef> =
            self.answer_children.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let answer_structs = StructArray::try_new(dns::answer_fields(), answer_children, None)?;
        let answers = ListArray::try_new(
            answers_item.clone(),
            OffsetBuffer::new(std::mem::take(&mut self.answer_offsets).into()),
            Arc::new(answer_structs),
            self.answer_validity.finish(),
        )?;
        let srcids_children: Vec<ArrayRef> =
            self.srcids_children.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let srcids = StructArray::try_new(dns::srcids_fields(), srcids_children, self.srcids_validity.finish())?;

        // Schema order: version account_id region vpc_id query_timestamp query_name query_type
        // query_class rcode answers srcaddr srcport transport srcids firewall_* additionalfields.
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for _ in 0..4 {
            columns.push(next_text()?);
        }
        columns.push(Arc::new(self.query_timestamp.finish()));
        for _ in 0..4 {
            columns.push(next_text()?);
        }
        columns.push(Arc::new(answers));
        columns.push(next_text()?);
        columns.push(Arc::new(self.srcport.finish()));
        columns.push(next_text()?);
        columns.push(Arc::new(srcids));
        for _ in 0..4 {
            columns.push(next_text()?);
        }
        columns.push(Arc::new(self.additional.finish()));
        columns.extend(ctx.lineage_columns(self.len)?);
        columns.push(Arc::new(self.date.finish()));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use chrono::NaiveDate;

    use super::*;
    use crate::test_support::{noise, real_samples_dir};
    use crate::vpcflow::tests::{numbers, texts};

    const KEY: &str = "AWSLogs/111122223333/vpcdnsquerylogs/vpc-0a1b2c3d/2024/05/01/vpc-0a1b2c3d_vpcdnsquerylogs_111122223333_20240501T1205Z_3f9a.log.gz";

    fn ctx() -> ObjectContext<'static> {
        ObjectContext { bucket: "archive", key: KEY, key_date: NaiveDate::from_ymd_opt(2024, 5, 1) }
    }

    fn parse(data: &str) -> Parsed {
        DnsLogParser::new().parse(data.as_bytes(), &ctx()).expect("parses")
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
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

    /// The `answers` of each row as `(rdata, type, class)` tuples; `None` for a null list.
    type Answer = (Option<String>, Option<String>, Option<String>);

    fn answers(batch: &RecordBatch) -> Vec<Option<Vec<Answer>>> {
        let list = batch.column_by_name("answers").expect("answers").as_list::<i32>();
        (0..list.len())
            .map(|row| {
                list.is_valid(row).then(|| {
                    let entries = list.value(row);
                    let entries = entries.as_struct();
                    let child = |i: usize| entries.column(i).as_string::<i32>().clone();
                    let (rdata, ty, class) = (child(0), child(1), child(2));
                    (0..entries.len())
                        .map(|j| {
                            let get = |a: &arrow::array::StringArray| a.is_valid(j).then(|| a.value(j).to_owned());
                            (get(&rdata), get(&ty), get(&class))
                        })
                        .collect()
                })
            })
            .collect()
    }

    /// One `srcids` child of each row; `None` when `srcids` itself is null.
    fn srcids(batch: &RecordBatch, child: &str) -> Vec<Option<Option<String>>> {
        let srcids = batch.column_by_name("srcids").expect("srcids").as_struct();
        let values = srcids.column_by_name(child).expect("child").as_string::<i32>();
        (0..srcids.len())
            .map(|i| srcids.is_valid(i).then(|| values.is_valid(i).then(|| values.value(i).to_owned())))
            .collect()
    }

    const NXDOMAIN: &str = r#"{"version":"1.100000","account_id":"111122223333","region":"eu-west-1","vpc_id":"vpc-0a1b2c3d","query_timestamp":"2024-05-01T12:05:09Z","query_name":"nothing-here.example.net.","query_type":"AAAA","query_class":"IN","rcode":"NXDOMAIN","answers":[],"srcaddr":"10.20.30.40","srcport":"53011","transport":"UDP","srcids":{"instance":"i-0123456789abcdef0"}}"#;
    const CNAME_CHAIN: &str = r#"{"version":"1.100000","account_id":"111122223333","region":"eu-west-1","vpc_id":"vpc-0a1b2c3d","query_timestamp":"2024-05-01T23:59:59.5Z","query_name":"www.example.org.","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[{"Rdata":"edge.example.org.","Type":"CNAME","Class":"IN"},{"Rdata":"192.0.2.80","Type":"A","Class":"IN"}],"srcaddr":"2001:db8:5::17","srcport":41000,"transport":"TCP","srcids":{"resolver_endpoint":"rslvr-in-0a1b2c3d4e5f","resolver_network_interface":"rni-0a1b2c3d4e5f"}}"#;
    const FIREWALL_BLOCK: &str = r#"{"srcaddr":"10.20.30.41","vpc_id":"vpc-0a1b2c3d","answers":[{"Rdata":"198.51.100.66","Type":"A","Class":"IN"}],"firewall_rule_group_id":"rslvr-frg-0f0e0d0c0b0a0908","firewall_rule_action":"BLOCK","query_name":"c2.bad.example.","firewall_domain_list_id":"rslvr-fdl-0102030405060708","firewall_protection":"DGA","query_class":"IN","srcids":{"instance":"i-0fedcba987654321f"},"rcode":"NOERROR","query_type":"A","transport":"UDP","version":"1.100000","account_id":"111122223333","srcport":"5353","query_timestamp":"2024-05-02T00:00:01Z","region":"eu-west-1"}"#;

    #[test]
    fn records_become_rows_with_their_values() {
        let parsed = parse(&format!("{NXDOMAIN}\n{CNAME_CHAIN}\n\n{FIREWALL_BLOCK}\n"));
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        let b = &parsed.batch;
        assert_eq!(b.schema(), dns::schema());
        assert_eq!(
            texts(b, "query_name"),
            [s("nothing-here.example.net."), s("www.example.org."), s("c2.bad.example.")]
        );
        assert_eq!(texts(b, "rcode"), [s("NXDOMAIN"), s("NOERROR"), s("NOERROR")]);
        assert_eq!(texts(b, "version"), [s("1.100000"), s("1.100000"), s("1.100000")]);
        assert_eq!(texts(b, "srcaddr"), [s("10.20.30.40"), s("2001:db8:5::17"), s("10.20.30.41")]);
        assert_eq!(numbers(b, "srcport"), [Some(53011), Some(41000), Some(5353)], "string or number");
        assert_eq!(
            numbers(b, "query_timestamp"),
            [Some(1_714_565_109_000_000), Some(1_714_607_999_500_000), Some(1_714_608_001_000_000)]
        );
        let may = |d| NaiveDate::from_ymd_opt(2024, 5, d).map(|d| i64::from(crate::timestamp::days_since_epoch(d)));
        assert_eq!(numbers(b, "date"), [may(1), may(1), may(2)]);
        assert_eq!(
            answers(b),
            [
                Some(vec![]),
                Some(vec![(s("edge.example.org."), s("CNAME"), s("IN")), (s("192.0.2.80"), s("A"), s("IN")),]),
                Some(vec![(s("198.51.100.66"), s("A"), s("IN"))]),
            ]
        );
        assert_eq!(srcids(b, "instance"), [Some(s("i-0123456789abcdef0")), Some(None), Some(s("i-0fedcba987654321f"))]);
        assert_eq!(srcids(b, "resolver_endpoint"), [Some(None), Some(s("rslvr-in-0a1b2c3d4e5f")), Some(None)]);
        assert_eq!(texts(b, "firewall_rule_action"), [None, None, s("BLOCK")]);
        assert_eq!(texts(b, "firewall_rule_group_id"), [None, None, s("rslvr-frg-0f0e0d0c0b0a0908")]);
        assert_eq!(texts(b, "firewall_domain_list_id"), [None, None, s("rslvr-fdl-0102030405060708")]);
        assert_eq!(texts(b, "firewall_protection"), [None, None, s("DGA")]);
        assert_eq!(texts(b, "additionalfields"), [None, None, None]);
        assert_eq!(texts(b, "source_key"), [s(KEY), s(KEY), s(KEY)]);
    }

    #[test]
    fn unknown_keys_are_kept_in_additionalfields() {
        let line = r#"{"query_timestamp":"2024-05-01T00:00:00Z","query_name":"a.example.","edns_client_subnet":"203.0.113.0/24","query_response_ms":12,"srcids":{"instance":"i-0a","future_id":"x-1"},"answers":null}"#;
        let parsed = parse(line);
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        let extra = texts(&parsed.batch, "additionalfields")[0].clone().expect("additional fields");
        let extra: serde_json::Value = serde_json::from_str(&extra).expect("valid JSON");
        assert_eq!(
            extra,
            serde_json::json!({"edns_client_subnet": "203.0.113.0/24", "query_response_ms": 12, "srcids.future_id": "x-1"})
        );
        assert_eq!(answers(&parsed.batch), [None], "a null answers list stays null");
        assert_eq!(srcids(&parsed.batch, "instance"), [Some(s("i-0a"))]);
    }

    #[test]
    fn bad_lines_are_rejected_and_the_rest_is_kept() {
        // (line, reason)
        let cases = [
            ("this is not json", "not JSON"),
            ("[1,2,3]", "not a JSON object"),
            (r#"{"query_name":"a.example."}"#, "no query_timestamp"),
            (r#"{"query_timestamp":"last tuesday"}"#, "query_timestamp `last tuesday` is not a time"),
            (r#"{"query_timestamp":1714521600}"#, "query_timestamp is `1714521600`, not a time"),
            (r#"{"query_timestamp":"2024-05-01T00:00:00Z","srcport":"http"}"#, "srcport `\"http\"` is not a port"),
            (r#"{"query_timestamp":"2024-05-01T00:00:00Z","srcport":70000}"#, "srcport `70000` is not a port"),
            (r#"{"query_timestamp":"2024-05-01T00:00:00Z","answers":"none"}"#, "answers is `\"none\"`, not a list"),
            (r#"{"query_timestamp":"2024-05-01T00:00:00Z","answers":[1]}"#, "answers holds `1`"),
            (r#"{"query_timestamp":"2024-05-01T00:00:00Z","srcids":[]}"#, "srcids is `[]`, not an object"),
            (r#"{"query_timestamp":"2024-05-01T00:00:00Z","query_name":"trunc"#, "not JSON"),
        ];
        for (bad, reason) in cases {
            let parsed = parse(&format!("{NXDOMAIN}\n{bad}\n{CNAME_CHAIN}"));
            assert_eq!(parsed.batch.num_rows(), 2, "{bad}");
            let rejected = reasons(&parsed);
            assert_eq!(rejected.len(), 1, "{bad}");
            assert_eq!(rejected[0].0, 2, "{bad}");
            assert!(rejected[0].1.contains(reason), "{bad}: {}", rejected[0].1);
        }
    }

    #[test]
    fn objects_with_nothing_like_a_query_log_are_malformed() {
        let random = noise(0x2545_f491_4f6c_dd1d, 4096);
        // (name, bytes, phrase in the reason)
        let cases: [(&str, Vec<u8>, &str); 5] = [
            ("plain text", b"hello\nworld\n".to_vec(), "line 1: not JSON"),
            ("cloudtrail", br#"{"Records":[{"eventName":"ListBuckets"}]}"#.to_vec(), "no query_timestamp"),
            ("non-UTF-8", b"{\"query_name\":\"\xff\xfe\"}\n".to_vec(), "not JSON"),
            ("random bytes", random, "not JSON"),
            ("gzip", vec![0x1f, 0x8b, 0x08, 0x00], "gzip"),
        ];
        for (name, bytes, phrase) in cases {
            match DnsLogParser::new().parse(&bytes, &ctx()) {
                Err(e @ IngestError::Malformed { .. }) => {
                    assert!(e.to_string().contains(phrase), "{name}: {e}");
                    assert!(e.to_string().contains(KEY), "{name}: the error names the object");
                }
                other => panic!("{name}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_query_log_whose_every_line_is_bad_is_not_malformed() {
        // The keys say this is a query log; its records are just unusable, which is per-line news.
        let parsed = parse("{\"query_name\":\"a.example.\",\"query_timestamp\":\"soon\"}\nnot json\n");
        assert_eq!(parsed.batch.num_rows(), 0);
        assert_eq!(reasons(&parsed).len(), 2);
    }

    #[test]
    fn empty_and_blank_objects_have_no_rows() {
        for data in ["", "\n", " \r\n\n"] {
            let parsed = parse(data);
            assert_eq!(parsed.batch.num_rows(), 0, "{data:?}");
            assert!(parsed.rejected.is_empty(), "{data:?}");
        }
    }

    #[test]
    fn a_50_mb_line_is_read_and_a_50_mb_non_json_line_is_rejected_briefly() {
        let long_name = "a".repeat(50 * 1024 * 1024);
        let huge = format!(r#"{{"query_timestamp":"2024-05-01T00:00:00Z","query_name":"{long_name}"}}"#);
        let garbage = "x".repeat(50 * 1024 * 1024);
        let parsed = parse(&format!("{huge}\n{garbage}\n{NXDOMAIN}"));
        assert_eq!(parsed.batch.num_rows(), 2);
        assert_eq!(texts(&parsed.batch, "query_name")[0].as_ref().map(String::len), Some(long_name.len()));
        let rejected = reasons(&parsed);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 2);
        assert!(rejected[0].1.len() < 200, "reason is {} bytes", rejected[0].1.len());
    }

    #[test]
    fn millions_of_tiny_lines_and_a_line_of_tiny_values() {
        // Two million lines that are JSON but no record: counted, a few kept, nothing kept per line.
        let data = format!("{NXDOMAIN}\n{}", "{}\n".repeat(2_000_000));
        let parsed = parse(&data);
        assert_eq!(parsed.batch.num_rows(), 1);
        assert_eq!(parsed.rejected.len(), 2_000_000);
        assert_eq!(parsed.rejected.kept().len(), crate::parsed::MAX_KEPT_REJECTIONS);
        // One line of tiny values whose tape would take 12 times its size: rejected unparsed.
        let values = crate::tape::UNCOUNTED_BYTES / 2 + 1;
        let line = format!(r#"{{"query_timestamp":"2024-05-01T00:00:00Z","answers":[{}]}}"#, "1,".repeat(values) + "1");
        let parsed = parse(&format!("{line}\n{NXDOMAIN}\n"));
        assert_eq!(parsed.batch.num_rows(), 1);
        let rejected = reasons(&parsed);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].1.contains("JSON values"), "{}", rejected[0].1);
    }

    #[test]
    fn real_samples_parse_without_rejections() {
        let root = real_samples_dir();
        // (file, rows)
        let cases = [(
            "elastic-integrations/packages/aws/data_stream/route53_resolver_logs/_dev/test/pipeline/test-route53.log",
            34,
        )];
        let mut parser = DnsLogParser::new();
        for (file, rows) in cases {
            let path = root.join(file);
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let parsed = parser.parse(&data, &ctx()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(parsed.rejected.is_empty(), "{file}: {:?}", parsed.rejected);
            assert_eq!(parsed.batch.num_rows(), rows, "{file}");
            let b = &parsed.batch;
            assert_eq!(texts(b, "additionalfields").iter().flatten().count(), 0, "{file}: every key is known");
            assert_eq!(texts(b, "firewall_rule_action").iter().flatten().collect::<Vec<_>>(), ["BLOCK"]);
            assert_eq!(srcids(b, "instance").iter().flatten().flatten().count(), 5, "{file}");
            assert!(answers(b).iter().flatten().any(|a| a.iter().any(|(_, t, _)| t.as_deref() == Some("CNAME"))));
        }
    }
}
