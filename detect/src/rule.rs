//! The rule file: what a detection is, as a security engineer writes it.
//!
//! A rule is one YAML file:
//!
//! ```yaml
//! id: aws-cloudtrail-stop-logging
//! title: CloudTrail logging stopped
//! description: Someone stopped a trail; what happens next is not recorded.
//! severity: critical            # info, low, medium, high, critical
//! tables: [cloudtrail]
//! mitre: [T1562.008]
//! mode: row                     # row (default): runs on every committed batch of its one table
//!                               # window: runs on a schedule over a look-back window
//! # schedule: 5m                # window rules only
//! # lookback: 1h                # window rules only
//! # materialize: [reads]        # window rules only: CTEs run once, their rows held in memory
//! dedup:
//!   key: [account, principal]   # output columns; one alert per key and window
//!   window: 1h
//! sql: |
//!   SELECT eventtime AS event_time, eventid AS event_id, recipientaccountid AS account, ...
//!   FROM cloudtrail WHERE eventsource = 'cloudtrail.amazonaws.com' AND eventname = 'StopLogging'
//! tests:
//!   - name: a trail is stopped
//!     expect: alert
//!     events: [ { raw CloudTrail record }, ... ]
//! ```
//!
//! The SQL's rows are the alerts. It must return `event_time` (a timestamp); it may return the
//! evidence columns `account`, `region`, `principal`, `source_ip`, `event_id` (or a list
//! `event_ids`), `source_key` (or a list `source_keys`); every other column lands in the alert's
//! `details`.

use std::path::Path;
use std::time::Duration;

use bunker_schemas::LogTable;
use serde::Deserialize;

use crate::{DetectError, Result};

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; no action expected.
    Info,
    /// Look when there is time.
    Low,
    /// Look today.
    Medium,
    /// Look now.
    High,
    /// Wake someone up.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads a severity name.
    pub fn parse(text: &str) -> Option<Severity> {
        [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text))
    }
}

/// When a rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A filter over new rows: runs on every committed batch. A commit holds the rows of one
    /// table, so a row rule reads exactly one.
    #[default]
    Row,
    /// Thresholds, baselines, joins: runs on a schedule over a look-back window of the lake.
    Window,
}

/// How repeated matches fold into one alert.
#[derive(Debug, Clone)]
pub struct Dedup {
    /// Output columns whose values identify "the same condition".
    pub key: Vec<String>,
    /// Matches of the same key inside one window of this length update one alert.
    pub window: Duration,
}

/// What a rule test expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// At least one alert (or exactly `count`).
    Alert,
    /// No alert.
    None,
}

/// A labelled example: raw AWS events and whether the rule must fire on them.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTest {
    /// What the example shows.
    pub name: String,
    /// Whether the rule fires.
    pub expect: Expect,
    /// With `expect: alert`, the exact number of alerts (after dedup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The table the events belong to; the rule's first table when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The `[detect.regions]` configuration the example runs under (none allowed, a week of
    /// learning, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<crate::regions::RegionConfig>,
    /// The `[detect.org]` configuration the example runs under (no trusted accounts, no expected
    /// instance types, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<crate::org::OrgConfig>,
    /// The events in the raw AWS format: CloudTrail records and Resolver query log entries as
    /// objects; VPC flow log lines as strings, the first being the header. A list among them is
    /// spliced in its place, so a background written once under a YAML anchor (`- &home [...]`)
    /// can be reused by later examples (`- *home`).
    pub events: Vec<serde_json::Value>,
}

/// The file as written; [`Rule::parse`] checks it and turns it into a [`Rule`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    title: String,
    description: String,
    severity: Severity,
    tables: Vec<String>,
    #[serde(default)]
    mitre: Vec<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    lookback: Option<String>,
    #[serde(default)]
    materialize: Vec<String>,
    dedup: DedupFile,
    sql: String,
    #[serde(default)]
    tests: Vec<RuleTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupFile {
    key: Vec<String>,
    window: String,
}

/// `events` with every nested list spliced in its place, depth first.
pub(crate) fn spliced(events: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        match event {
            serde_json::Value::Array(inner) => out.extend(spliced(inner)),
            other => out.push(other),
        }
    }
    out
}

/// A checked rule. Its SQL is planned against the table schemas by [`crate::engine::validate`].
#[derive(Debug, Clone)]
pub struct Rule {
    /// Stable identifier, lowercase with dashes.
    pub id: String,
    /// One line for a human.
    pub title: String,
    /// What it means and what to do about it.
    pub description: String,
    /// How bad it is.
    pub severity: Severity,
    /// The tables its SQL reads.
    pub tables: Vec<LogTable>,
    /// MITRE ATT&CK technique ids.
    pub mitre: Vec<String>,
    /// When it runs.
    pub mode: Mode,
    /// How often a window rule runs.
    pub schedule: Option<Duration>,
    /// How far back a window rule looks.
    pub lookback: Option<Duration>,
    /// The CTEs a window rule runs once, their rows held for every reference
    /// ([`crate::materialize`]).
    pub materialize: Vec<String>,
    /// How matches fold into alerts.
    pub dedup: Dedup,
    /// The query whose rows are alerts.
    pub sql: String,
    /// Labelled examples.
    pub tests: Vec<RuleTest>,
    /// Where it came from (a path, or `builtin:<file>`).
    pub origin: String,
}

impl Rule {
    /// Parses and checks one rule file's text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Rule> {
        let bad = |reason: String| DetectError::Rule { origin: origin.to_owned(), reason };
        let file: RuleFile = serde_yaml_ng::from_str(text).map_err(|e| bad(format!("not a valid rule file: {e}")))?;
        if file.id.is_empty() || !file.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(bad(format!("id {:?} must be lowercase letters, digits and dashes", file.id)));
        }
        if file.title.trim().is_empty() || file.description.trim().is_empty() {
            return Err(bad("title and description must not be empty".into()));
        }
        if file.tables.is_empty() {
            return Err(bad("tables must name at least one table".into()));
        }
        let tables = file
            .tables
            .iter()
            .map(|t| {
                LogTable::from_name(t)
                    .ok_or_else(|| bad(format!("unknown table {t:?}; tables are cloudtrail, vpcflow, dns")))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(twice) = tables.iter().enumerate().find(|(i, t)| tables[..*i].contains(t)).map(|(_, t)| t) {
            return Err(bad(format!("tables lists {} twice", twice.name())));
        }
        if file.mode == Mode::Row && tables.len() > 1 {
            // A row rule runs on each commit, and a commit holds the rows of one table: such a
            // rule would load, be listed, and only ever fire in `bunker detect`.
            let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
            return Err(bad(format!(
                "a `mode: row` rule runs on each commit, and a commit holds the rows of one table, so a row \
                 rule reading {} would never run live; make it `mode: window` (with a schedule and a \
                 lookback) to run it over the lake, or split it into one rule per table",
                names.join(" and ")
            )));
        }
        for technique in &file.mitre {
            let valid = technique.len() >= 5
                && technique.starts_with('T')
                && technique[1..].split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                return Err(bad(format!("{technique:?} is not a MITRE ATT&CK technique id (like T1078 or T1078.004)")));
            }
        }
        let (schedule, lookback) = match file.mode {
            Mode::Row => {
                if file.schedule.is_some() || file.lookback.is_some() {
                    return Err(bad("schedule and lookback are for `mode: window` rules".into()));
                }
                (None, None)
            }
            Mode::Window => {
                let schedule = file.schedule.as_deref().ok_or_else(|| bad("a window rule needs a schedule".into()))?;
                let lookback = file.lookback.as_deref().ok_or_else(|| bad("a window rule needs a lookback".into()))?;
                (
                    Some(parse_duration(schedule).map_err(|e| bad(format!("schedule: {e}")))?),
                    Some(parse_duration(lookback).map_err(|e| bad(format!("lookback: {e}")))?),
                )
            }
        };
        if !file.materialize.is_empty() && file.mode != Mode::Window {
            return Err(bad("materialize is for `mode: window` rules (a row rule reads one commit's rows)".into()));
        }
        if file.dedup.key.is_empty() {
            return Err(bad("dedup.key must name at least one output column".into()));
        }
        let window = parse_duration(&file.dedup.window).map_err(|e| bad(format!("dedup.window: {e}")))?;
        if file.sql.trim().is_empty() {
            return Err(bad("sql is empty".into()));
        }
        for test in &file.tests {
            if let Some(table) = &test.table
                && LogTable::from_name(table).is_none()
            {
                return Err(bad(format!("test {:?}: unknown table {table:?}", test.name)));
            }
            if test.expect == Expect::None && test.count.is_some() {
                return Err(bad(format!("test {:?}: count goes with `expect: alert`", test.name)));
            }
            if let Some(regions) = &test.regions {
                crate::regions::Regions::new(regions).map_err(|e| bad(format!("test {:?}: {e}", test.name)))?;
            }
            if let Some(org) = &test.org {
                crate::org::Org::new(org).map_err(|e| bad(format!("test {:?}: {e}", test.name)))?;
            }
        }
        let mut tests = file.tests;
        for test in &mut tests {
            test.events = spliced(std::mem::take(&mut test.events));
        }
        Ok(Rule {
            id: file.id,
            title: file.title.trim().to_owned(),
            description: file.description.trim().to_owned(),
            severity: file.severity,
            tables,
            mitre: file.mitre,
            mode: file.mode,
            schedule,
            lookback,
            materialize: file.materialize,
            dedup: Dedup { key: file.dedup.key, window },
            sql: file.sql,
            tests,
            origin: origin.to_owned(),
        })
    }

    /// How the rule runs, for `bunker rules list`: a row rule live on each commit of its table,
    /// a window rule in the worker on its schedule (and every rule in `bunker detect`).
    pub fn runs(&self) -> String {
        let tables: Vec<&str> = self.tables.iter().map(|t| t.name()).collect();
        let tables = tables.join(",");
        match (self.mode, self.schedule, self.lookback) {
            (Mode::Row, _, _) => format!("live on each commit of {tables}"),
            (Mode::Window, Some(schedule), Some(lookback)) => {
                format!("every {} over {} of {tables}", format_duration(schedule), format_duration(lookback))
            }
            // Parsing gives every window rule both; a rule built by hand may lack them.
            (Mode::Window, _, _) => format!("on a schedule over {tables}"),
        }
    }

    /// The rule as a rule file, which [`Rule::parse`] reads back to the same rule: what
    /// `bunker rules import` writes for a compiled Sigma rule.
    pub fn to_file(&self) -> String {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            id: &'a str,
            title: &'a str,
            description: &'a str,
            severity: Severity,
            tables: Vec<&'a str>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            mitre: &'a [String],
            mode: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            schedule: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            lookback: Option<String>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            materialize: &'a [String],
            dedup: OutDedup<'a>,
            sql: &'a str,
            #[serde(skip_serializing_if = "<[RuleTest]>::is_empty")]
            tests: &'a [RuleTest],
        }
        #[derive(serde::Serialize)]
        struct OutDedup<'a> {
            key: &'a [String],
            window: String,
        }
        let out = Out {
            id: &self.id,
            title: &self.title,
            description: &self.description,
            severity: self.severity,
            tables: self.tables.iter().map(|t| t.name()).collect(),
            mitre: &self.mitre,
            mode: match self.mode {
                Mode::Row => "row",
                Mode::Window => "window",
            },
            schedule: self.schedule.map(format_duration),
            lookback: self.lookback.map(format_duration),
            materialize: &self.materialize,
            dedup: OutDedup { key: &self.dedup.key, window: format_duration(self.dedup.window) },
            sql: &self.sql,
            tests: &self.tests,
        };
        let body = serde_yaml_ng::to_string(&out).expect("a rule serializes");
        let sigma = match self.id.strip_prefix("sigma-") {
            Some(id) => format!(" (Sigma rule {id})"),
            None => String::new(),
        };
        format!(
            "# compiled by `bunker rules import` from {}{sigma}; edit the Sigma rule, not this file\n{body}",
            self.origin
        )
    }

    /// Reads and checks a rule file.
    pub fn load(path: &Path) -> Result<Rule> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DetectError::Rule { origin: path.display().to_string(), reason: e.to_string() })?;
        Rule::parse(&path.display().to_string(), &text)
    }
}

/// Reads every `.yaml`/`.yml` rule file in a directory (sorted by name), as [`load_dir_reporting`]
/// does; a Sigma rule bunker cannot run is an error too.
pub fn load_dir(dir: &Path) -> Result<Vec<Rule>> {
    let (rules, mut refused) = load_dir_reporting(dir)?;
    match refused.is_empty() {
        true => Ok(rules),
        false => Err(refused.remove(0)),
    }
}

/// Reads every `.yaml`/`.yml` rule file in a directory (sorted by name): bunker rule files, and
/// Sigma rule files, compiled together ([`crate::sigma`]) so that a correlation may reference a
/// rule in another file. `<name>.tests.yaml` files are a Sigma rule's examples, not rules. A bad
/// rule file is an error; the Sigma rules bunker cannot run are returned beside the rest, each
/// with its file and reason, so the others still load.
pub fn load_dir_reporting(dir: &Path) -> Result<(Vec<Rule>, Vec<DetectError>)> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DetectError::Rule { origin: dir.display().to_string(), reason: e.to_string() })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter(|p| !p.to_string_lossy().ends_with(".tests.yaml"))
        .collect();
    paths.sort();
    let mut rules = Vec::new();
    let mut sigma = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DetectError::Rule { origin: path.display().to_string(), reason: e.to_string() })?;
        if crate::sigma::is_sigma(&text) {
            sigma.push(path.as_path());
        } else {
            rules.push(Rule::parse(&path.display().to_string(), &text)?);
        }
    }
    let (compiled, refused) = crate::sigma::load_files(&sigma);
    rules.extend(compiled);
    Ok((rules, refused))
}

/// `30s`, `10m`, `1h`, `7d`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 10m, 1h or 7d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?} is not a duration like 30s, 10m, 1h or 7d")),
    };
    if seconds == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs(seconds))
}

/// A duration as a rule file writes it: `30s`, `10m`, `1h`, `7d` (the largest unit it divides).
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id: test-rule
title: A test rule
description: Fires on ListUsers.
severity: low
tables: [cloudtrail]
mitre: [T1087.004]
dedup: { key: [account], window: 1h }
sql: SELECT eventtime AS event_time, recipientaccountid AS account FROM cloudtrail WHERE eventname = 'ListUsers'
"#;

    fn error(text: &str) -> String {
        match Rule::parse("rules/x.yaml", text) {
            Err(e) => e.to_string(),
            Ok(rule) => panic!("expected an error, got {rule:?}"),
        }
    }

    #[test]
    fn a_good_rule_parses() {
        let rule = Rule::parse("rules/x.yaml", GOOD).expect("rule");
        assert_eq!(rule.id, "test-rule");
        assert_eq!(rule.severity, Severity::Low);
        assert_eq!(rule.tables, vec![LogTable::CloudTrail]);
        assert_eq!(rule.mode, Mode::Row);
        assert_eq!(rule.dedup.window, Duration::from_secs(3600));
    }

    #[test]
    fn a_background_under_an_anchor_is_spliced_into_the_examples_that_reuse_it() {
        let text = format!(
            "{GOOD}tests:\n  - name: first\n    expect: alert\n    events:\n      - &home\n        - {{eventID: a}}\n        - {{eventID: b}}\n      - {{eventID: c}}\n  - name: again\n    expect: none\n    events: [*home]\n"
        );
        let rule = Rule::parse("rules/x.yaml", &text).expect("rule");
        let ids =
            |t: &RuleTest| t.events.iter().map(|e| e["eventID"].as_str().unwrap_or("?").to_owned()).collect::<Vec<_>>();
        assert_eq!(ids(&rule.tests[0]), ["a", "b", "c"]);
        assert_eq!(ids(&rule.tests[1]), ["a", "b"]);
    }

    #[test]
    fn bad_rule_files_name_the_file_and_the_reason() {
        assert!(error("id: [unclosed").contains("rules/x.yaml: not a valid rule file"));
        assert!(error(&GOOD.replace("severity: low\n", "")).contains("missing field `severity`"));
        assert!(error(&GOOD.replace("severity: low", "severity: scary")).contains("unknown variant `scary`"));
        assert!(error(&GOOD.replace("tables: [cloudtrail]", "tables: [elb]")).contains("unknown table \"elb\""));
        assert!(error(&GOOD.replace("id: test-rule", "id: Test Rule")).contains("lowercase"));
        assert!(error(&GOOD.replace("T1087.004", "1087")).contains("MITRE"));
        assert!(error(&GOOD.replace("window: 1h", "window: soon")).contains("dedup.window"));
        assert!(error(&format!("{GOOD}colour: red\n")).contains("unknown field `colour`"));
        assert!(error(&format!("{GOOD}schedule: 5m\n")).contains("window"));
        assert!(error(&format!("{GOOD}mode: window\n")).contains("needs a schedule"));
    }

    /// Row rules reading two tables loaded, were listed, and never ran live (a commit holds one
    /// table's rows): they fired only in `bunker detect`.
    #[test]
    fn a_row_rule_reading_two_tables_is_refused_naming_the_file() {
        let two = GOOD.replace("tables: [cloudtrail]", "tables: [cloudtrail, dns]");
        let refused = error(&two);
        assert!(refused.starts_with("rules/x.yaml: "), "{refused}");
        assert!(refused.contains("cloudtrail and dns would never run live"), "{refused}");
        assert!(refused.contains("mode: window"), "{refused}");
        // The same tables in a window rule run over the lake: that loads.
        let window = format!("{two}mode: window\nschedule: 5m\nlookback: 1h\n");
        let rule = Rule::parse("rules/x.yaml", &window).expect("a window rule may read two tables");
        assert_eq!(rule.tables, [LogTable::CloudTrail, LogTable::Dns]);
        let twice = error(&GOOD.replace("tables: [cloudtrail]", "tables: [cloudtrail, cloudtrail]"));
        assert!(twice.contains("lists cloudtrail twice"), "{twice}");
    }

    #[test]
    fn how_a_rule_runs_is_said_in_words() {
        let row = Rule::parse("rules/x.yaml", GOOD).expect("rule");
        assert_eq!(row.runs(), "live on each commit of cloudtrail");
        let window =
            format!("{}mode: window\nschedule: 5m\nlookback: 90m\n", GOOD.replace("[cloudtrail]", "[cloudtrail, dns]"));
        let window = Rule::parse("rules/x.yaml", &window).expect("rule");
        assert_eq!(window.runs(), "every 5m over 90m of cloudtrail,dns");
        for (text, seconds) in [("30s", 30), ("10m", 600), ("1h", 3600), ("7d", 7 * 86_400), ("90s", 90)] {
            assert_eq!(format_duration(Duration::from_secs(seconds)), text);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5 minutes").is_err());
    }
}
