//! Labelled attacks for a synthetic archive: each rule's first positive example, moved into the
//! archive's days and written as the objects AWS would deliver, with a label saying which rule it
//! is for and what evidence its alerts will carry.
//!
//! How data flows: a [`Rule`]'s first `expect: alert` test holds raw AWS events (CloudTrail records,
//! flow log lines under their header, Resolver query log entries). [`inject`] shifts them by a whole
//! number of days onto a day of the [`Archive`] drawn from the seed — whole days, so every
//! `date_bin` bucket and dedup window holds the same events as in the example — gives each
//! CloudTrail record a fresh `eventID` derived from the seed and the rule, and writes gzip objects
//! in the keys AWS uses (the same layouts as `bunker_ingest::synth`), one per account, region (or
//! VPC) and day. What comes back is one [`InjectedAttack`] per rule, the ground truth an end-to-end
//! test compares alerts with.
//!
//! The accounts, regions and VPCs are the example's own (`111122223333` in the built-in pack), not
//! the background's: an aggregate rule then never counts background rows with attack rows, so the
//! background cannot make an attack alert, nor an attack make the background alert.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bunker_ingest::synth::{SynthConfig, keys};
use bunker_schemas::LogTable;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::rule::{Expect, Rule, RuleTest};
use crate::{DetectError, Result};

/// Region of flow log attacks whose format has no `region` field (the default format has none).
pub const FLOW_DEFAULT_REGION: &str = "us-east-1";

const DAY_SECS: i64 = 86_400;
const ALNUM: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The archive attacks go into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// First UTC day.
    pub start: NaiveDate,
    /// Days covered; every injected event falls inside them.
    pub days: u32,
    /// Organization id in the CloudTrail keys (`o-…`), as an organization trail writes them.
    pub organization_id: String,
}

impl Archive {
    /// The archive `bunker_ingest::synth::generate` writes for `config`.
    pub fn of(config: &SynthConfig) -> Archive {
        Archive {
            start: config.start,
            days: config.days,
            organization_id: bunker_ingest::synth::organization_id(config),
        }
    }
}

/// One injected attack: which rule must alert on it, and on what evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedAttack {
    /// The rule whose example this is.
    pub rule_id: String,
    /// The example's name in the rule file.
    pub example: String,
    /// The table its events land in.
    pub table: String,
    /// Time of its first event, RFC 3339 UTC.
    pub first_event_time: String,
    /// Time of its last event.
    pub last_event_time: String,
    /// Events written (flow log rows, header excluded).
    pub events: u64,
    /// Keys of the objects written, relative to the archive root: what the alerts' `source_keys`
    /// hold.
    pub keys: Vec<String>,
    /// The CloudTrail records' `eventID`s, fresh for this attack: what the alerts' `event_ids` hold.
    /// Empty for flow and DNS attacks, whose alerts carry only their keys.
    pub event_ids: Vec<String>,
    /// Alerts the rule raises on this attack alone, when the example says (`count`); otherwise at
    /// least one.
    pub expected_alerts: Option<u64>,
}

/// Writes the first positive example of every rule in `rules` into the archive under `out`, on a
/// day drawn from `seed` (the same seed always gives the same bytes), and returns the labels in
/// the order of `rules`.
///
/// A rule without a positive example, or whose example cannot be placed (no timestamp, more days
/// than the archive has), is an error naming the rule file.
pub fn inject(out: &Path, rules: &[Rule], archive: &Archive, seed: u64) -> Result<Vec<InjectedAttack>> {
    rules.iter().map(|rule| inject_rule(out, rule, archive, seed)).collect()
}

/// Writes the labels as a pretty-printed JSON array.
pub fn write_labels(path: &Path, attacks: &[InjectedAttack]) -> Result<()> {
    let io_err = |source| DetectError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let mut text = serde_json::to_vec_pretty(attacks)?;
    text.push(b'\n');
    std::fs::write(path, text).map_err(io_err)
}

/// One object to write: its key and the records in it.
struct Object {
    key: String,
    content: Vec<u8>,
}

fn inject_rule(out: &Path, rule: &Rule, archive: &Archive, seed: u64) -> Result<InjectedAttack> {
    let bad = |reason: String| DetectError::Rule { origin: rule.origin.clone(), reason };
    let example = rule
        .tests
        .iter()
        .find(|t| t.expect == Expect::Alert)
        .ok_or_else(|| bad("no `expect: alert` example to inject".into()))?;
    let table = match &example.table {
        Some(name) => LogTable::from_name(name).ok_or_else(|| bad(format!("unknown table {name:?}")))?,
        None => rule.tables[0],
    };
    let draw = Draw { seed, rule_id: &rule.id };
    let mut events = Events::read(table, example).map_err(|e| bad(format!("example {:?}: {e}", example.name)))?;
    let times = events.times();
    let (Some(&first), Some(&last)) = (times.iter().min(), times.iter().max()) else {
        return Err(bad(format!("example {:?} has no events", example.name)));
    };
    let span_days = last.div_euclid(DAY_SECS) - first.div_euclid(DAY_SECS);
    if span_days >= i64::from(archive.days) {
        return Err(bad(format!(
            "example {:?} spans {} days, more than the archive's {}",
            example.name,
            span_days + 1,
            archive.days
        )));
    }
    // Whole days, so every date_bin bucket and dedup window holds the same events as in the example.
    let day = draw.number("day") % (i64::from(archive.days) - span_days) as u64;
    let start_day = archive.start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp().div_euclid(DAY_SECS);
    let shift = (start_day + day as i64 - first.div_euclid(DAY_SECS)) * DAY_SECS;
    events.shift(shift);
    let event_ids = events.renumber(&draw);
    let objects =
        events.objects(&draw, &archive.organization_id).map_err(|e| bad(format!("example {:?}: {e}", example.name)))?;
    for object in &objects {
        write_gzip(&out.join(&object.key), &object.content)?;
    }
    Ok(InjectedAttack {
        rule_id: rule.id.clone(),
        example: example.name.clone(),
        table: table.name().to_owned(),
        first_event_time: rfc3339(first + shift),
        last_event_time: rfc3339(last + shift),
        events: events.len() as u64,
        keys: objects.into_iter().map(|o| o.key).collect(),
        event_ids,
        expected_alerts: example.count,
    })
}

/// Deterministic draws for one rule's attack: SHA-256 of the seed, the rule id and what is drawn,
/// so attacks for different rules never share an id and adding a rule changes no other attack.
struct Draw<'a> {
    seed: u64,
    rule_id: &'a str,
}

impl Draw<'_> {
    fn bytes(&self, what: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.seed.to_le_bytes());
        hash.update(self.rule_id.as_bytes());
        hash.update([0]);
        hash.update(what.as_bytes());
        hash.finalize().into()
    }

    fn number(&self, what: &str) -> u64 {
        let bytes = self.bytes(what);
        u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]])
    }

    /// `len` (at most 32) characters of `alphabet`.
    fn text(&self, what: &str, alphabet: &[u8], len: usize) -> String {
        self.bytes(what).iter().take(len).map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()])).collect()
    }

    /// A lowercase version-4 UUID, the shape of CloudTrail's `eventID`.
    fn uuid(&self, what: &str) -> String {
        let mut bytes = self.bytes(what);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let mut out = String::with_capacity(36);
        for (i, b) in bytes[..16].iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }
}

/// An example's events, with what is needed to move them in time and file them.
enum Events {
    /// CloudTrail records and their times.
    CloudTrail(Vec<(serde_json::Map<String, Value>, i64)>),
    /// Resolver query log entries and their times.
    Dns(Vec<(serde_json::Map<String, Value>, i64)>),
    /// A flow log: the header's field names, then each row's values.
    VpcFlow { header: Vec<String>, rows: Vec<Vec<String>> },
}

impl Events {
    /// Reads an example's events; times are kept to the second, as AWS writes them.
    fn read(table: LogTable, test: &RuleTest) -> std::result::Result<Events, String> {
        let objects = |time_field: &str| {
            test.events
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    let object = event.as_object().ok_or(format!("event {i} is not an object"))?;
                    let time = object
                        .get(time_field)
                        .and_then(Value::as_str)
                        .ok_or(format!("event {i} has no {time_field}"))?;
                    let time = DateTime::parse_from_rfc3339(time)
                        .map_err(|e| format!("event {i}: {time_field} {time:?}: {e}"))?
                        .timestamp();
                    Ok((object.clone(), time))
                })
                .collect::<std::result::Result<Vec<_>, String>>()
        };
        Ok(match table {
            LogTable::CloudTrail => Events::CloudTrail(objects("eventTime")?),
            LogTable::Dns => Events::Dns(objects("query_timestamp")?),
            LogTable::VpcFlow => {
                let mut lines = test.events.iter().map(|e| e.as_str().ok_or("flow log events are text lines"));
                let header: Vec<String> =
                    lines.next().ok_or("no header line")??.split_ascii_whitespace().map(str::to_owned).collect();
                for field in ["start", "account-id"] {
                    if !header.iter().any(|f| f == field) {
                        return Err(format!("the header has no {field} field"));
                    }
                }
                let rows = lines
                    .enumerate()
                    .map(|(i, line)| {
                        let values: Vec<String> = line?.split_ascii_whitespace().map(str::to_owned).collect();
                        if values.len() != header.len() {
                            return Err(format!("row {i} has {} fields, the header {}", values.len(), header.len()));
                        }
                        Ok(values)
                    })
                    .collect::<std::result::Result<Vec<_>, String>>()?;
                let events = Events::VpcFlow { header, rows };
                if events.times().len() != events.len() {
                    return Err("every row needs a numeric start (or end)".into());
                }
                events
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Events::CloudTrail(records) | Events::Dns(records) => records.len(),
            Events::VpcFlow { rows, .. } => rows.len(),
        }
    }

    /// Each event's time (a flow row's `start`, or its `end` when `start` is absent).
    fn times(&self) -> Vec<i64> {
        match self {
            Events::CloudTrail(records) | Events::Dns(records) => records.iter().map(|(_, t)| *t).collect(),
            Events::VpcFlow { header, rows } => {
                let at = |name: &str| header.iter().position(|f| f == name);
                let (start, end) = (at("start"), at("end"));
                let value = |row: &[String], column: Option<usize>| column.and_then(|c| row[c].parse::<i64>().ok());
                rows.iter().filter_map(|row| value(row, start).or_else(|| value(row, end))).collect()
            }
        }
    }

    /// Moves every timestamp by `secs`.
    fn shift(&mut self, secs: i64) {
        match self {
            Events::CloudTrail(records) => shift_objects(records, "eventTime", secs),
            Events::Dns(records) => shift_objects(records, "query_timestamp", secs),
            Events::VpcFlow { header, rows } => {
                let columns: Vec<usize> =
                    header.iter().enumerate().filter(|(_, f)| *f == "start" || *f == "end").map(|(i, _)| i).collect();
                for row in rows {
                    for &c in &columns {
                        if let Ok(value) = row[c].parse::<i64>() {
                            row[c] = (value + secs).to_string();
                        }
                    }
                }
            }
        }
    }

    /// Gives every CloudTrail record a fresh `eventID`; returns them.
    fn renumber(&mut self, draw: &Draw<'_>) -> Vec<String> {
        let Events::CloudTrail(records) = self else { return Vec::new() };
        records
            .iter_mut()
            .enumerate()
            .map(|(i, (record, _))| {
                let id = draw.uuid(&format!("eventID {i}"));
                record.insert("eventID".into(), Value::String(id.clone()));
                id
            })
            .collect()
    }

    /// The objects AWS would deliver: one per account, region (VPC for query logs) and day, keyed
    /// as `bunker_ingest::synth` keys them.
    fn objects(&self, draw: &Draw<'_>, org: &str) -> std::result::Result<Vec<Object>, String> {
        // (account, region or VPC, day) → event indexes.
        let mut groups: BTreeMap<(String, String, i64), Vec<usize>> = BTreeMap::new();
        let times = self.times();
        let text = |object: &serde_json::Map<String, Value>, field: &str| {
            object.get(field).and_then(Value::as_str).map(str::to_owned).ok_or(format!("an event has no {field}"))
        };
        for (i, &time) in times.iter().enumerate() {
            let (account, place) = match self {
                Events::CloudTrail(records) => {
                    (text(&records[i].0, "recipientAccountId")?, text(&records[i].0, "awsRegion")?)
                }
                Events::Dns(records) => (text(&records[i].0, "account_id")?, text(&records[i].0, "vpc_id")?),
                Events::VpcFlow { header, rows } => {
                    let field = |name: &str| {
                        header.iter().position(|f| f == name).map(|c| rows[i][c].clone()).filter(|v| v != "-")
                    };
                    (
                        field("account-id").ok_or("a row has no account-id")?,
                        field("region").unwrap_or_else(|| FLOW_DEFAULT_REGION.into()),
                    )
                }
            };
            let account_id = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
            if !account_id {
                return Err(format!("{account:?} is not a 12-digit account id"));
            }
            groups.entry((account, place, time.div_euclid(DAY_SECS))).or_default().push(i);
        }
        Ok(groups
            .into_iter()
            .enumerate()
            .map(|(g, ((account, place, _), members))| {
                let time = members.iter().map(|&i| times[i]).min().unwrap_or_default();
                match self {
                    Events::CloudTrail(records) => {
                        let suffix = draw.text(&format!("key {g}"), ALNUM, 16);
                        let records: Vec<&serde_json::Map<String, Value>> =
                            members.iter().map(|&i| &records[i].0).collect();
                        Object {
                            key: keys::cloudtrail(org, &account, &place, time, &suffix),
                            content: serde_json::json!({ "Records": records }).to_string().into_bytes(),
                        }
                    }
                    Events::Dns(records) => {
                        let suffix = draw.text(&format!("key {g}"), HEX, 8);
                        let mut content = Vec::new();
                        for &i in &members {
                            content.extend(Value::Object(records[i].0.clone()).to_string().into_bytes());
                            content.push(b'\n');
                        }
                        Object { key: keys::dns(&account, &place, time, &suffix), content }
                    }
                    Events::VpcFlow { header, rows } => {
                        let suffix = draw.text(&format!("key {g}"), HEX, 8);
                        let flow_log = draw.text(&format!("flow log {account} {place}"), HEX, 17);
                        let mut content = header.join(" ");
                        content.push('\n');
                        for &i in &members {
                            content.push_str(&rows[i].join(" "));
                            content.push('\n');
                        }
                        Object {
                            key: keys::vpcflow(&account, &place, &format!("fl-{flow_log}"), time, &suffix),
                            content: content.into_bytes(),
                        }
                    }
                }
            })
            .collect())
    }
}

fn shift_objects(records: &mut [(serde_json::Map<String, Value>, i64)], field: &str, secs: i64) {
    for (record, time) in records {
        *time += secs;
        record.insert(field.into(), Value::String(rfc3339(*time)));
    }
}

/// `2025-03-03T08:00:00Z`, as CloudTrail and the Resolver write times.
fn rfc3339(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn write_gzip(path: &PathBuf, content: &[u8]) -> Result<()> {
    let io_err = |source| DetectError::Io { path: path.clone(), source };
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(content).map_err(io_err)?;
    let gz = encoder.finish().map_err(io_err)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    std::fs::write(path, gz).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io::Read as _;

    use bunker_ingest::ObjectContext;
    use bunker_ingest::classify::classify_key;
    use bunker_ingest::pipeline::parse_content;

    use super::*;
    use crate::pack::builtin;
    use crate::testing::run_example;

    fn archive() -> Archive {
        let start = NaiveDate::from_ymd_opt(2025, 6, 2).expect("date");
        Archive { start, days: 3, organization_id: "o-a1b2c3d4e5".into() }
    }

    fn gunzip(path: &Path) -> Vec<u8> {
        let bytes = std::fs::read(path).expect("read");
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut raw).expect("gunzip");
        raw
    }

    fn secs(time: &str) -> i64 {
        DateTime::parse_from_rfc3339(time).expect("RFC 3339").timestamp()
    }

    /// The times and CloudTrail event ids in the objects an attack wrote.
    fn read_back(out: &Path, attack: &InjectedAttack) -> (Vec<i64>, Vec<String>) {
        let (mut times, mut ids) = (Vec::new(), Vec::new());
        for key in &attack.keys {
            let raw = gunzip(&out.join(key));
            match attack.table.as_str() {
                "cloudtrail" => {
                    let doc: Value = serde_json::from_slice(&raw).expect("JSON");
                    for record in doc["Records"].as_array().expect("Records") {
                        times.push(secs(record["eventTime"].as_str().expect("eventTime")));
                        ids.push(record["eventID"].as_str().expect("eventID").to_owned());
                    }
                }
                "dns" => {
                    for line in String::from_utf8(raw).expect("utf8").lines() {
                        let entry: Value = serde_json::from_str(line).expect("JSON");
                        times.push(secs(entry["query_timestamp"].as_str().expect("query_timestamp")));
                    }
                }
                _ => {
                    let text = String::from_utf8(raw).expect("utf8");
                    let mut lines = text.lines();
                    let header: Vec<&str> = lines.next().expect("header").split(' ').collect();
                    let start = header.iter().position(|&f| f == "start").expect("start");
                    times.extend(lines.map(|l| l.split(' ').nth(start).expect("start").parse::<i64>().expect("secs")));
                }
            }
        }
        (times, ids)
    }

    #[test]
    fn attacks_move_by_whole_days_into_the_archive_keeping_their_relative_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = builtin().expect("pack");
        let attacks = inject(dir.path(), &rules, &archive(), 7).expect("inject");
        assert_eq!(attacks.len(), rules.len());
        let first_day = archive().start.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp();
        let archive_secs = first_day..first_day + 3 * DAY_SECS;
        let mut days = HashSet::new();
        for (rule, attack) in rules.iter().zip(&attacks) {
            assert_eq!(rule.id, attack.rule_id);
            let example = rule.tests.iter().find(|t| t.expect == Expect::Alert).expect("positive example");
            let table = LogTable::from_name(&attack.table).expect("table");
            let mut original = Events::read(table, example).expect("example").times();
            let shift = secs(&attack.first_event_time) - original.iter().min().expect("events");
            assert_eq!(shift.rem_euclid(DAY_SECS), 0, "{}: shifted by {shift} s", rule.id);
            let (mut written, _) = read_back(dir.path(), attack);
            original.iter_mut().for_each(|t| *t += shift);
            original.sort_unstable();
            written.sort_unstable();
            assert_eq!(written, original, "{}", rule.id);
            assert_eq!(attack.events, written.len() as u64);
            assert!(written.iter().all(|t| archive_secs.contains(t)), "{}: {written:?}", rule.id);
            assert_eq!(secs(&attack.last_event_time), *written.last().expect("events"));
            days.insert(attack.first_event_time[..10].to_owned());
        }
        // The seed spreads attacks over the archive rather than piling them on one day.
        assert_eq!(days.len(), 3, "{days:?}");
    }

    #[test]
    fn keys_are_classified_as_their_log_type_on_the_day_of_their_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let attacks = inject(dir.path(), &builtin().expect("pack"), &archive(), 7).expect("inject");
        for attack in &attacks {
            for key in &attack.keys {
                let class = classify_key(key);
                assert_eq!(
                    class.format.and_then(|f| f.table()).map(|t| t.name()),
                    Some(attack.table.as_str()),
                    "{key}"
                );
                // An example may span days (a region rule needs an account's history): each object
                // is on the day of its own events, inside the attack's span.
                let day = class.date.map(|d| d.to_string()).expect("a dated key");
                assert!(
                    (&attack.first_event_time[..10]..=&attack.last_event_time[..10]).contains(&day.as_str()),
                    "{key}"
                );
                assert!(dir.path().join(key).is_file(), "{key}");
                if attack.table == "cloudtrail" {
                    // An organization trail's layout, with the organization of the archive.
                    assert!(key.starts_with("AWSLogs/o-a1b2c3d4e5/") && key.contains("/CloudTrail/"), "{key}");
                }
            }
        }
    }

    #[test]
    fn every_cloudtrail_event_gets_a_fresh_unique_event_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = builtin().expect("pack");
        let attacks = inject(dir.path(), &rules, &archive(), 7).expect("inject");
        let example_ids: HashSet<&str> = rules
            .iter()
            .flat_map(|r| &r.tests)
            .flat_map(|t| &t.events)
            .filter_map(|e| e.get("eventID")?.as_str())
            .collect();
        let mut seen = HashSet::new();
        for attack in &attacks {
            let (_, mut written) = read_back(dir.path(), attack);
            let mut labelled = attack.event_ids.clone();
            // Objects are per account, region and day, so the files may hold the ids in another order.
            written.sort();
            labelled.sort();
            assert_eq!(written, labelled, "{}: the labels name the ids in the files", attack.rule_id);
            if attack.table != "cloudtrail" {
                assert!(attack.event_ids.is_empty(), "{}", attack.rule_id);
            }
            for id in &attack.event_ids {
                assert_eq!(id.len(), 36, "{id}");
                assert!(!example_ids.contains(id.as_str()), "{id} is the example's own id");
                assert!(seen.insert(id.clone()), "{id} is used twice");
            }
        }
        assert!(seen.len() > 40, "{} ids", seen.len());
    }

    #[test]
    fn the_same_seed_writes_the_same_bytes_and_another_seed_other_attacks() {
        let rules = builtin().expect("pack");
        let run = |seed: u64| {
            let dir = tempfile::tempdir().expect("tempdir");
            let attacks = inject(dir.path(), &rules, &archive(), seed).expect("inject");
            let files: Vec<(String, Vec<u8>)> = attacks
                .iter()
                .flat_map(|a| &a.keys)
                .map(|k| (k.clone(), std::fs::read(dir.path().join(k)).expect("read")))
                .collect();
            (attacks, files)
        };
        let (first, second, other) = (run(7), run(7), run(8));
        assert_eq!(first, second);
        let ids = |attacks: &[InjectedAttack]| attacks.iter().flat_map(|a| a.event_ids.clone()).collect::<HashSet<_>>();
        assert!(ids(&first.0).is_disjoint(&ids(&other.0)));
        let days = |attacks: &[InjectedAttack]| attacks.iter().map(|a| a.first_event_time.clone()).collect::<Vec<_>>();
        assert_ne!(days(&first.0), days(&other.0));
    }

    #[tokio::test]
    async fn every_injected_attack_still_makes_its_rule_alert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = builtin().expect("pack");
        let attacks = inject(dir.path(), &rules, &archive(), 7).expect("inject");
        for (rule, attack) in rules.iter().zip(&attacks) {
            let table = LogTable::from_name(&attack.table).expect("table");
            let mut batches = Vec::new();
            for key in &attack.keys {
                let ctx = ObjectContext { bucket: "", key, key_date: classify_key(key).date };
                let parsed = parse_content(table, &mut gunzip(&dir.path().join(key)), &ctx).expect("parses");
                assert!(parsed.rejected.is_empty(), "{key}: {:?}", parsed.rejected);
                batches.push(parsed.batch);
            }
            let example = rule.tests.iter().find(|t| t.expect == Expect::Alert).expect("a positive example");
            let alerts =
                run_example(rule, table, batches, example.regions.as_ref(), example.org.as_ref()).await.expect("run");
            match attack.expected_alerts {
                Some(count) => assert_eq!(alerts.len() as u64, count, "{}", rule.id),
                None => assert!(!alerts.is_empty(), "{}", rule.id),
            }
            for alert in &alerts {
                // Evidence that is not there would pass the checks below for any attack (flow and
                // DNS records have no event ids; their evidence is the objects they came from).
                assert!(!alert.source_keys.is_empty(), "{}: {alert:?}", rule.id);
                if table == LogTable::CloudTrail {
                    assert!(!alert.event_ids.is_empty(), "{}: {alert:?}", rule.id);
                }
                assert!(alert.event_ids.iter().all(|id| attack.event_ids.contains(id)), "{}", rule.id);
                assert!(alert.source_keys.iter().all(|k| attack.keys.contains(k)), "{}", rule.id);
            }
        }
    }

    #[test]
    fn examples_that_cannot_be_placed_are_errors_naming_the_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rule = builtin().expect("pack").into_iter().find(|r| r.id == "aws-root-api-call").expect("rule");
        rule.tests.retain(|t| t.expect == Expect::None);
        let err = inject(dir.path(), &[rule.clone()], &archive(), 1).expect_err("no positive example");
        assert!(err.to_string().contains("root-api-call.yaml: no `expect: alert` example"), "{err}");

        let mut long = builtin().expect("pack").into_iter().find(|r| r.id == "aws-root-api-call").expect("rule");
        let event = long.tests[0].events[0].clone();
        let mut later = event.clone();
        later["eventTime"] = Value::String("2025-03-09T09:00:00Z".into());
        long.tests[0].events = vec![event, later];
        let err = inject(dir.path(), &[long], &archive(), 1).expect_err("a week-long example in three days");
        assert!(err.to_string().contains("spans 7 days, more than the archive's 3"), "{err}");

        let mut untimed = builtin().expect("pack").into_iter().find(|r| r.id == "aws-root-api-call").expect("rule");
        untimed.tests[0].events[0].as_object_mut().expect("object").remove("eventTime");
        let err = inject(dir.path(), &[untimed], &archive(), 1).expect_err("no time");
        assert!(err.to_string().contains("event 0 has no eventTime"), "{err}");
    }
}
