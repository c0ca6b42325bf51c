//! Sigma rules as bunker rules: a Sigma file (SigmaHQ's format, one or more YAML documents) is
//! compiled to the same SQL rule a hand-written one is, so live detection, history, dedup,
//! suppressions, shadow mode, sinks and `rules test` treat both alike.
//!
//! A detection rule (`logsource` + `detection`) becomes a row rule over the table its logsource
//! names ([`fields::table_of`]) whose SQL is the detection's predicate ([`detection`]) under
//! the evidence columns every rule returns. A correlation rule (`event_count`, `value_count`,
//! `temporal`) becomes a window rule over the rules it references ([`correlation`]); those are
//! then not run alone unless it says `generate: true`. Metadata carries over: `id` (the bunker
//! id is `sigma-<id>`), `title`, `description` with `falsepositives` and `status`, `level` as
//! the severity, and `attack.tNNNN` tags as MITRE ids. A rule bunker cannot run as Sigma means
//! it is refused with the file, the rule and the reason ([`crate::DetectError::Sigma`]).
//!
//! Sigma files carry no examples; a file `<name>.tests.yaml` beside `<name>.yml` holds the
//! `tests:` of its last rule (the correlation, in a file of rules and a correlation over them) in
//! the rule-file format, which `bunker rules test` runs.

mod condition;
mod correlation;
mod detection;
mod fields;
mod pattern;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bunker_schemas::LogTable;
use serde_yaml_ng::{Mapping, Value};

use crate::rule::{Dedup, Mode, Rule, RuleTest, Severity};
use crate::{DetectError, Result};

/// How long one alert gathers the repeats of a Sigma detection's match: Sigma says nothing, and
/// an hour per principal and API call is what the built-in pack uses for one-event rules.
const DEDUP_WINDOW: Duration = Duration::from_secs(3600);

/// Whether `text` is a Sigma rule file rather than a bunker rule file: a document with a
/// `detection` or a `correlation` section.
pub fn is_sigma(text: &str) -> bool {
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        // After a syntax error the deserializer may keep yielding the same error: stop there.
        let Ok(value) = <Value as serde::Deserialize>::deserialize(document) else {
            return false;
        };
        if value.as_mapping().is_some_and(|map| map.contains_key("detection") || map.contains_key("correlation")) {
            return true;
        }
    }
    false
}

/// One Sigma document as read, before it is compiled.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    /// The file it came from.
    pub origin: String,
    /// Its YAML.
    pub map: Mapping,
    /// The examples of its file's `.tests.yaml`, for the file's last document.
    pub tests: Vec<RuleTest>,
}

impl Document {
    fn text(&self, key: &str) -> Option<&str> {
        self.map.get(key).and_then(Value::as_str)
    }

    /// The rule's `id`, `name` or `title`, to name it in errors.
    pub fn label(&self) -> String {
        self.text("title").or(self.text("id")).or(self.text("name")).unwrap_or("(untitled)").to_owned()
    }

    fn refuse(&self, reason: impl Into<String>) -> DetectError {
        DetectError::Sigma { origin: self.origin.clone(), rule: self.label(), reason: reason.into() }
    }
}

/// Reads the documents of one Sigma file; `tests` are the examples of its `.tests.yaml`.
fn documents(origin: &str, text: &str, tests: Vec<RuleTest>) -> Result<Vec<Document>> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|e| DetectError::Rule { origin: origin.to_owned(), reason: format!("not valid YAML: {e}") })?;
        match value {
            Value::Mapping(map) => documents.push(Document { origin: origin.to_owned(), map, tests: Vec::new() }),
            Value::Null => {}
            _ => {
                return Err(DetectError::Rule {
                    origin: origin.to_owned(),
                    reason: "a document is not a YAML map".into(),
                });
            }
        }
    }
    // The file's last rule: in a file of rules and the correlation over them, the correlation.
    if let Some(last) = documents.last_mut() {
        last.tests = tests;
    }
    Ok(documents)
}

/// Compiles one Sigma file's text; `origin` names it in errors.
pub fn parse(origin: &str, text: &str) -> Result<Vec<Rule>> {
    compile(documents(origin, text, Vec::new())?)
}

/// The examples in the `.tests.yaml` beside a Sigma file, if there is one.
fn sidecar_tests(path: &Path) -> Result<Vec<RuleTest>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TestsFile {
        tests: Vec<RuleTest>,
    }
    let sidecar = path.with_extension("tests.yaml");
    let Ok(text) = std::fs::read_to_string(&sidecar) else {
        return Ok(Vec::new());
    };
    let origin = sidecar.display().to_string();
    let file: TestsFile = serde_yaml_ng::from_str(&text)
        .map_err(|e| DetectError::Rule { origin: origin.clone(), reason: format!("not a valid tests file: {e}") })?;
    let mut tests = file.tests;
    for test in &mut tests {
        test.events = crate::rule::spliced(std::mem::take(&mut test.events));
    }
    Ok(tests)
}

/// Reads the Sigma files `paths` (with their `.tests.yaml` examples) and compiles them together,
/// so a correlation may reference a rule in another file: the rules that compile, and one error
/// for each file or rule that does not.
pub fn load_files(paths: &[&Path]) -> (Vec<Rule>, Vec<DetectError>) {
    let mut all = Vec::new();
    let mut refused = Vec::new();
    for path in paths {
        let origin = path.display().to_string();
        let read = std::fs::read_to_string(path)
            .map_err(|e| DetectError::Rule { origin: origin.clone(), reason: e.to_string() });
        match read.and_then(|text| documents(&origin, &text, sidecar_tests(path)?)) {
            Ok(documents) => all.extend(documents),
            Err(e) => refused.push(e),
        }
    }
    let mut rules = Vec::new();
    for result in compile_each(all) {
        match result {
            Ok(rule) => rules.push(rule),
            Err(e) => refused.push(e),
        }
    }
    (rules, refused)
}

/// What `bunker rules import` makes of a folder: the rules it compiled, and the refusals.
#[derive(Debug, Default)]
pub struct Import {
    /// The compiled rules.
    pub rules: Vec<Rule>,
    /// One error per rule or file that could not be compiled.
    pub refused: Vec<DetectError>,
}

/// Compiles every `.yml`/`.yaml` Sigma file under `dir` (recursively, sorted), keeping what
/// compiles and recording every refusal; a file that is not a Sigma rule is skipped.
pub fn import_dir(dir: &Path) -> Result<Import> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    paths.sort();
    let mut import = Import::default();
    let mut documents_all = Vec::new();
    for path in &paths {
        let origin = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                import.refused.push(DetectError::Rule { origin, reason: e.to_string() });
                continue;
            }
        };
        if !is_sigma(&text) {
            continue;
        }
        match sidecar_tests(path).and_then(|tests| documents(&origin, &text, tests)) {
            Ok(documents) => documents_all.extend(documents),
            Err(e) => import.refused.push(e),
        }
    }
    for result in compile_each(documents_all) {
        match result {
            Ok(rule) => import.rules.push(rule),
            Err(e) => import.refused.push(e),
        }
    }
    Ok(import)
}

fn collect(dir: &Path, paths: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DetectError::Rule { origin: dir.display().to_string(), reason: e.to_string() })?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, paths)?;
        } else if path.extension().is_some_and(|x| x == "yml" || x == "yaml")
            && !path.to_string_lossy().ends_with(".tests.yaml")
        {
            paths.push(path);
        }
    }
    Ok(())
}

/// Compiles documents together; the first refusal is the error.
fn compile(documents: Vec<Document>) -> Result<Vec<Rule>> {
    compile_each(documents).into_iter().collect()
}

/// Compiles documents together, one result per rule to run.
fn compile_each(documents: Vec<Document>) -> Vec<Result<Rule>> {
    let (correlations, detections): (Vec<_>, Vec<_>) =
        documents.into_iter().partition(|d| d.map.contains_key("correlation"));
    let compiled: Vec<(Document, Result<Compiled>)> = detections
        .into_iter()
        .map(|document| {
            let compiled = compile_detection(&document);
            (document, compiled)
        })
        .collect();
    let mut by_reference: HashMap<String, usize> = HashMap::new();
    for (at, (document, _)) in compiled.iter().enumerate() {
        for key in ["id", "name"] {
            if let Some(reference) = document.text(key) {
                by_reference.insert(reference.to_owned(), at);
            }
        }
    }
    let mut quiet = vec![false; compiled.len()];
    let mut results = Vec::new();
    for document in &correlations {
        let referenced = correlation::references(document);
        let mut inputs = Vec::new();
        let mut missing = None;
        for reference in &referenced {
            match by_reference.get(reference) {
                Some(&at) => inputs.push((&compiled[at].0, &compiled[at].1)),
                None => missing = Some(reference.clone()),
            }
        }
        let result =
            match missing {
                Some(reference) => Err(document
                    .refuse(format!("references rule {reference:?}, which is not among the rules loaded with it"))),
                None => correlation::compile(document, &inputs),
            };
        if !correlation::generates(document) {
            for reference in &referenced {
                if let Some(&at) = by_reference.get(reference) {
                    quiet[at] = true;
                }
            }
        }
        results.push(result);
    }
    let mut rules: Vec<Result<Rule>> = compiled
        .into_iter()
        .zip(quiet)
        .filter(|(_, quiet)| !quiet)
        .map(|((document, compiled), _)| compiled.map(|c| c.into_rule(&document)))
        .collect();
    rules.extend(results);
    rules
}

/// A detection document compiled: its table, predicate and metadata.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub table: LogTable,
    pub predicate: String,
    pub meta: Meta,
    /// The `fields` the rule asks to show, as SQL with their output names.
    pub shown: Vec<(String, String)>,
}

/// The metadata every Sigma document carries over.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub id: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub mitre: Vec<String>,
}

pub(crate) fn meta(document: &Document) -> Result<Meta> {
    let title = document
        .text("title")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| document.refuse("has no title"))?;
    let sigma_id =
        document.text("id").or(document.text("name")).ok_or_else(|| document.refuse("has neither an id nor a name"))?;
    let slug: String =
        sigma_id.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let slug = slug.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    if slug.is_empty() {
        return Err(document.refuse(format!("id {sigma_id:?} has no letters or digits")));
    }
    let severity = match document.text("level").map(str::to_ascii_lowercase).as_deref() {
        None | Some("medium") => Severity::Medium,
        Some("informational") => Severity::Info,
        Some("low") => Severity::Low,
        Some("high") => Severity::High,
        Some("critical") => Severity::Critical,
        Some(other) => return Err(document.refuse(format!("level {other:?} is not a Sigma level"))),
    };
    let mut mitre = Vec::new();
    if let Some(Value::Sequence(tags)) = document.map.get("tags") {
        for tag in tags.iter().filter_map(Value::as_str) {
            let Some(technique) = tag.to_ascii_lowercase().strip_prefix("attack.t").map(str::to_owned) else {
                continue;
            };
            let valid = technique.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if valid && !mitre.contains(&format!("T{technique}")) {
                mitre.push(format!("T{}", technique.to_ascii_uppercase()));
            }
        }
    }
    let mut description = document.text("description").map(str::trim).unwrap_or(title).to_owned();
    if let Some(Value::Sequence(items)) = document.map.get("falsepositives") {
        let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
        if !items.is_empty() {
            description.push_str(&format!(" False positives: {}.", items.join("; ")));
        }
    }
    let status = document.text("status").unwrap_or("unknown");
    description.push_str(&format!(" (Sigma rule {sigma_id}, status {status}.)"));
    Ok(Meta { id: format!("sigma-{slug}"), title: title.to_owned(), description, severity, mitre })
}

fn compile_detection(document: &Document) -> Result<Compiled> {
    let meta = meta(document)?;
    let logsource =
        document.map.get("logsource").and_then(Value::as_mapping).ok_or_else(|| document.refuse("has no logsource"))?;
    let get = |key: &str| logsource.get(key).and_then(Value::as_str);
    let table = fields::table_of(get("product"), get("service"), get("category")).map_err(|e| document.refuse(e))?;
    let detection =
        document.map.get("detection").and_then(Value::as_mapping).ok_or_else(|| document.refuse("has no detection"))?;
    let predicate = detection::predicate(detection, table).map_err(|e| document.refuse(e))?;
    let mut shown = Vec::new();
    if let Some(Value::Sequence(names)) = document.map.get("fields") {
        for name in names.iter().filter_map(Value::as_str) {
            // `fields` only says what to show; one bunker does not have is left out, not refused.
            if let Ok(column) = fields::resolve(table, name) {
                shown.push((column.sql, output_name(name)));
            }
        }
    }
    Ok(Compiled { table, predicate, meta, shown })
}

/// A Sigma field name as an output column: lowercase, dots as underscores.
pub(crate) fn output_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// The evidence columns of a table's row, as every rule returns them.
pub(crate) fn evidence(table: LogTable) -> &'static str {
    match table {
        LogTable::CloudTrail => {
            "eventtime AS event_time, eventid AS event_id, recipientaccountid AS account, awsregion AS region, \
             useridentity.arn AS principal, sourceipaddress AS source_ip, source_key, eventsource AS event_source, \
             eventname AS event_name, errorcode AS error_code"
        }
        LogTable::VpcFlow => {
            "start AS event_time, account_id AS account, region, srcaddr AS source_ip, source_key, dstaddr AS \
             destination_ip, dstport AS destination_port, action"
        }
        LogTable::Dns => {
            "query_timestamp AS event_time, account_id AS account, region, srcaddr AS source_ip, source_key, \
             query_name, query_type, rcode"
        }
    }
}

/// The names of the columns [`evidence`] returns.
pub(crate) fn evidence_names(table: LogTable) -> Vec<&'static str> {
    evidence(table).split(", ").map(|column| column.rsplit(" AS ").next().unwrap_or(column).trim()).collect()
}

/// The dedup key of a one-event Sigma rule over `table`.
fn dedup_key(table: LogTable) -> Vec<String> {
    let key: &[&str] = match table {
        LogTable::CloudTrail => &["account", "principal", "event_name"],
        LogTable::VpcFlow => &["account", "source_ip", "destination_ip"],
        LogTable::Dns => &["account", "source_ip", "query_name"],
    };
    key.iter().map(|k| k.to_string()).collect()
}

impl Compiled {
    fn into_rule(self, document: &Document) -> Rule {
        let shown: String = self.shown.iter().map(|(sql, name)| format!(", {sql} AS {name}")).collect();
        let sql =
            format!("SELECT {}{shown}\nFROM {}\nWHERE {}\n", evidence(self.table), self.table.name(), self.predicate);
        Rule {
            id: self.meta.id,
            title: self.meta.title,
            description: self.meta.description,
            severity: self.meta.severity,
            tables: vec![self.table],
            mitre: self.meta.mitre,
            mode: Mode::Row,
            schedule: None,
            lookback: None,
            materialize: Vec::new(),
            dedup: Dedup { key: dedup_key(self.table), window: DEDUP_WINDOW },
            sql,
            tests: document.tests.clone(),
            origin: document.origin.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_tests;

    fn corpus() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sigma")
    }

    /// bunker's own Sigma rules (in `detect/sigma/`, each with a `.tests.yaml`) compile, plan, and
    /// behave as their examples say: detections with failed and denied calls, and the three
    /// correlation types.
    #[tokio::test]
    async fn the_sigma_corpus_compiles_and_passes_its_examples() {
        let rules = crate::rule::load_dir(&corpus()).expect("the corpus compiles");
        crate::engine::validate(&rules).await.expect("the compiled rules plan");
        // The four rules the correlations read do not run alone: 6 detections and 3 correlations.
        assert_eq!(rules.len(), 9, "{:?}", rules.iter().map(|r| &r.id).collect::<Vec<_>>());
        assert_eq!(rules.iter().filter(|r| r.mode == Mode::Window).count(), 3);
        let outcomes = run_tests(&rules).await.expect("examples run");
        let failures: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| format!("{} / {}: {}", o.rule_id, o.name, o.message))
            .collect();
        assert!(failures.is_empty(), "failing examples:\n{}", failures.join("\n"));
        assert!(outcomes.len() >= 30, "{} examples", outcomes.len());
        assert!(rules.iter().all(|r| !r.tests.is_empty()), "every rule has examples");
    }

    #[test]
    fn metadata_carries_over() {
        let rules = parse("x.yml", &std::fs::read_to_string(corpus().join("trail-tampering.yml")).expect("read"))
            .expect("rule");
        let rule = &rules[0];
        assert_eq!(rule.id, "sigma-5f0c1a2e-7d41-4c3b-9a55-2b8e6f1d0c01");
        assert_eq!(rule.severity, Severity::High);
        assert_eq!(rule.mitre, ["T1562.008"]);
        assert!(
            rule.description.contains("False positives: a trail being retired by its owners."),
            "{}",
            rule.description
        );
        assert!(rule.description.contains("status test"), "{}", rule.description);
        assert_eq!(rule.origin, "x.yml");
        assert_eq!(rule.tables, [LogTable::CloudTrail]);
    }

    #[test]
    fn a_compiled_rule_written_out_reads_back_the_same() {
        let rules = crate::rule::load_dir(&corpus()).expect("corpus");
        for rule in &rules {
            let again = Rule::parse(&rule.origin, &rule.to_file()).expect("the written file parses");
            assert_eq!(
                (&again.id, &again.sql, again.mode, again.severity),
                (&rule.id, &rule.sql, rule.mode, rule.severity)
            );
            assert_eq!((&again.dedup.key, again.dedup.window), (&rule.dedup.key, rule.dedup.window));
            assert_eq!((again.schedule, again.lookback), (rule.schedule, rule.lookback));
            assert_eq!(again.tests.len(), rule.tests.len());
        }
    }

    fn refusal(text: &str) -> String {
        match parse("rules/bad.yml", text) {
            Err(e) => e.to_string(),
            Ok(rules) => panic!("expected a refusal, got {:?}", rules.iter().map(|r| &r.sql).collect::<Vec<_>>()),
        }
    }

    const HEAD: &str =
        "title: T\nid: 00000000-0000-0000-0000-000000000001\nlogsource:\n  product: aws\n  service: cloudtrail\n";

    #[test]
    fn refusals_name_the_file_the_rule_and_the_reason() {
        let err = refusal(&format!("{HEAD}detection:\n  s:\n    status: x\n  condition: s\n"));
        assert!(err.starts_with("rules/bad.yml: Sigma rule \"T\": "), "{err}");
        assert!(err.contains("\"status\" is not in the cloudtrail table"), "{err}");
        let err =
            refusal("title: W\nid: a\nlogsource:\n  product: windows\ndetection:\n  s:\n    x: 1\n  condition: s\n");
        assert!(err.contains("Sigma rule \"W\"") && err.contains("windows"), "{err}");
        let err = refusal(&format!("{HEAD}detection:\n  s:\n    eventName: x\n  condition: s | count() > 5\n"));
        assert!(err.contains("correlation rule"), "{err}");
        let err = refusal(&format!("{HEAD}level: severe\ndetection:\n  s:\n    eventName: x\n  condition: s\n"));
        assert!(err.contains("level \"severe\""), "{err}");
        let err = refusal(
            "title: C\nid: c\ncorrelation:\n  type: event_count\n  rules: [nowhere]\n  timespan: 5m\n  condition: {gte: 3}\n",
        );
        assert!(err.contains("\"nowhere\""), "{err}");
        let base = format!("{HEAD}name: base\ndetection:\n  s:\n    eventName: x\n  condition: s\n---\n");
        let correlation =
            |body: &str| format!("{base}title: C\nid: c\ncorrelation:\n  rules: [base]\n  timespan: 5m\n{body}");
        assert!(refusal(&correlation("  type: temporal_ordered\n")).contains("temporal_ordered"));
        assert!(refusal(&correlation("  type: value_sum\n  condition: {gt: 1, field: x}\n")).contains("value_sum"));
        assert!(refusal(&correlation("  type: event_count\n  condition: {lt: 3}\n")).contains("lt"));
        assert!(refusal(&correlation("  type: value_count\n  condition: {gt: 3}\n")).contains("condition.field"));
        assert!(
            refusal(&correlation("  type: event_count\n  group-by: [colour]\n  condition: {gt: 3}\n"))
                .contains("colour")
        );
        assert!(refusal("title: [unclosed\n").contains("rules/bad.yml"));
    }

    #[test]
    fn sigma_files_are_told_from_bunker_rule_files() {
        assert!(is_sigma(&format!("{HEAD}detection:\n  s:\n    eventName: x\n  condition: s\n")));
        assert!(is_sigma("title: a\n---\ntitle: C\ncorrelation:\n  type: event_count\n"));
        assert!(!is_sigma("id: x\ntitle: T\nsql: SELECT 1\n"));
        assert!(!is_sigma("not: [valid"));
    }

    #[test]
    fn import_keeps_what_compiles_and_lists_what_it_refuses() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("good.yml"),
            format!("{HEAD}detection:\n  s:\n    eventName: x\n  condition: s\n"),
        )
        .expect("w");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        std::fs::write(
            dir.path().join("sub/bad.yml"),
            format!("{HEAD}detection:\n  s:\n    colour: red\n  condition: s\n"),
        )
        .expect("w");
        std::fs::write(dir.path().join("notes.yaml"), "just: notes\n").expect("w");
        let import = import_dir(dir.path()).expect("import");
        assert_eq!(import.rules.len(), 1);
        assert_eq!(import.refused.len(), 1);
        let refused = import.refused[0].to_string();
        assert!(refused.contains("sub/bad.yml") && refused.contains("\"colour\""), "{refused}");
    }
}

/// Every condition form and modifier against real events: each case is a detection, an event
/// (merged into a CloudTrail record) and whether the compiled rule must match it, run through
/// the real parser like any rule example.
#[cfg(test)]
mod against_events {
    use super::*;
    use crate::rule::Expect;
    use crate::testing::run_tests;

    fn record(extra: serde_json::Value) -> serde_json::Value {
        let mut event = serde_json::json!({
            "eventVersion": "1.08", "eventTime": "2025-06-01T10:00:00Z", "eventSource": "iam.amazonaws.com",
            "eventName": "CreateAccessKey", "awsRegion": "us-east-1", "eventID": "case",
            "recipientAccountId": "210987654321", "sourceIPAddress": "192.0.2.10",
            "userAgent": "aws-cli/2.15 Python/3.11",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::210987654321:user/Dana", "userName": "Dana",
                             "accountId": "210987654321"},
            "requestParameters": {"userName": "dana", "tags": [{"key": "team", "value": "50%_off"}], "count": 7,
                                  "path": "C:\\Windows\\*star", "b64": "c2lnbWEgcnVsZXM="}
        });
        for (key, value) in extra.as_object().expect("an object") {
            event[key] = value.clone();
        }
        event
    }

    /// (detection, extra event fields, must match)
    fn cases() -> Vec<(&'static str, serde_json::Value, bool)> {
        use serde_json::json;
        let none = json!({});
        vec![
            // Plain values: whole-value and case-insensitive, `|cased` not.
            ("s: {eventName: createaccesskey}", none.clone(), true),
            ("s: {eventName: CreateAccess}", none.clone(), false),
            ("s: {eventName|cased: createaccesskey}", none.clone(), false),
            ("s: {eventName|cased: CreateAccessKey}", none.clone(), true),
            // Wildcards and escapes.
            ("s: {eventName: 'Create*Key'}", none.clone(), true),
            ("s: {eventName: 'Create?ccessKey'}", none.clone(), true),
            ("s: {eventName: 'Create?Key'}", none.clone(), false),
            (r"s: {requestParameters.path: 'C:\Windows\\\*star'}", none.clone(), true),
            (r"s: {requestParameters.path: 'C:\Windows\\*'}", none.clone(), true),
            (r"s: {requestParameters.path: 'C:\Windows\\\*'}", none.clone(), false),
            // `%` and `_` in a value are characters, not LIKE wildcards.
            ("s: {requestParameters.tags.value|contains: '50%_'}", none.clone(), true),
            ("s: {requestParameters.tags.value|contains: '50%x'}", none.clone(), false),
            ("s: {requestParameters.tags.value|startswith: '5_%'}", none.clone(), false),
            // Modifiers.
            ("s: {userAgent|contains: PYTHON}", none.clone(), true),
            ("s: {userAgent|startswith: aws-cli}", none.clone(), true),
            ("s: {userAgent|endswith: aws-cli}", none.clone(), false),
            ("s: {userAgent|contains|all: [cli, python]}", none.clone(), true),
            ("s: {userAgent|contains|all: [cli, ruby]}", none.clone(), false),
            ("s: {userAgent|contains: [ruby, cli]}", none.clone(), true),
            ("s: {userIdentity.arn|re: ':user/[A-Z]'}", none.clone(), true),
            ("s: {userIdentity.arn|re: ':user/[a-z]'}", none.clone(), false),
            ("s: {userIdentity.arn|re|i: ':user/[a-z]'}", none.clone(), true),
            ("s: {sourceIPAddress|cidr: 192.0.2.0/24}", none.clone(), true),
            ("s: {sourceIPAddress|cidr: [10.0.0.0/8, '2001:db8::/32']}", none.clone(), false),
            ("s: {errorCode|exists: false}", none.clone(), true),
            ("s: {errorCode|exists: true}", json!({"errorCode": "AccessDenied"}), true),
            ("s: {userIdentity.userName|fieldref: requestParameters.userName}", none.clone(), true),
            ("s: {userIdentity.userName|fieldref|cased: requestParameters.userName}", none.clone(), false),
            ("s: {requestParameters.count|gte: 7}", none.clone(), true),
            ("s: {requestParameters.count|gt: 7}", none.clone(), false),
            ("s: {eventTime|hour: 10}", none.clone(), true),
            ("s: {requestParameters.b64|base64: sigma rules}", none.clone(), true),
            ("s: {requestParameters.b64|base64offset|contains: rules}", none.clone(), true),
            ("s: {errorCode|neq: AccessDenied}", json!({"errorCode": "Throttling"}), true),
            ("s: {errorCode|neq: AccessDenied}", json!({"errorCode": "AccessDenied"}), false),
            // Null, empty and missing fields.
            ("s: {errorCode: null}", none.clone(), true),
            ("s: {errorCode: null}", json!({"errorCode": "AccessDenied"}), false),
            ("s: {errorMessage: ''}", json!({"errorMessage": ""}), true),
            ("s: {errorMessage: ''}", none.clone(), false),
            // Conditions: a `not` on a missing field keeps the event, as SIEMs do.
            (
                "s: {eventName: CreateAccessKey}\n  f: {errorCode: AccessDenied}\n  condition: s and not f",
                none.clone(),
                true,
            ),
            (
                "s: {eventName: CreateAccessKey}\n  f: {errorCode: AccessDenied}\n  condition: s and not f",
                json!({"errorCode": "AccessDenied"}),
                false,
            ),
            ("a: {eventName: X}\n  b: {userAgent|contains: cli}\n  condition: a or b", none.clone(), true),
            ("a: {eventName: X}\n  b: {userAgent|contains: cli}\n  condition: all of them", none.clone(), false),
            ("sel_a: {eventName: X}\n  sel_b: {userAgent|contains: cli}\n  condition: 1 of sel_*", none.clone(), true),
            // `and` binds tighter than `or`; parentheses change it.
            (
                "a: {eventName: CreateAccessKey}\n  b: {eventName: Y}\n  c: {userAgent|contains: ruby}\n  condition: a or b and c",
                none.clone(),
                true,
            ),
            (
                "a: {eventName: CreateAccessKey}\n  b: {eventName: Y}\n  c: {userAgent|contains: ruby}\n  condition: (a or b) and c",
                none.clone(),
                false,
            ),
            (
                "a: {eventName: CreateAccessKey}\n  c: {userAgent|contains: ruby}\n  condition: not a or not c",
                none.clone(),
                true,
            ),
            ("s:\n    - eventName: X\n    - userIdentity.type: iamuser\n  condition: s", none.clone(), true),
        ]
    }

    #[tokio::test]
    async fn each_condition_form_and_modifier_matches_as_the_specification_says() {
        let mut rules = Vec::new();
        for (at, (detection, extra, matches)) in cases().into_iter().enumerate() {
            let detection = if detection.contains("condition:") {
                detection.to_owned()
            } else {
                format!("{detection}\n  condition: s")
            };
            let text = format!(
                "title: case {at}\nid: case-{at}\nlogsource: {{product: aws, service: cloudtrail}}\ndetection:\n  {detection}\n"
            );
            let mut rule =
                parse("cases.yml", &text).unwrap_or_else(|e| panic!("case {at} ({detection}): {e}")).remove(0);
            rule.tests = vec![RuleTest {
                name: format!("{detection} on {extra}"),
                expect: if matches { Expect::Alert } else { Expect::None },
                count: None,
                table: None,
                regions: None,
                org: None,
                events: vec![record(extra)],
            }];
            rules.push(rule);
        }
        crate::engine::validate(&rules).await.expect("every case plans");
        let outcomes = run_tests(&rules).await.expect("cases run");
        let failures: Vec<String> =
            outcomes.iter().filter(|o| !o.passed).map(|o| format!("{}: {}", o.name, o.message)).collect();
        assert!(failures.is_empty(), "cases that do not match as they should:\n{}", failures.join("\n"));
        assert_eq!(outcomes.len(), cases().len());
    }
}
