//! `bunker rules test`: every rule's labelled examples, through the real parser and the real SQL.
//!
//! A test's events are raw AWS records. They are written out as the object AWS would deliver
//! (a CloudTrail `{"Records":[...]}` file, Resolver JSON lines, flow-log text lines), parsed by the
//! same parser ingestion uses, and the rule runs over the resulting rows exactly as it does over a
//! committed batch — so a rule that passes its tests matches what the lake really holds.

use arrow::array::RecordBatch;
use bunker_ingest::ObjectContext;
use bunker_ingest::baseline::Sightings;
use bunker_ingest::pipeline::parse_content;
use bunker_schemas::LogTable;

use crate::alert::Alert;
use crate::engine::run_on_batches;
use crate::org::{Org, OrgConfig};
use crate::regions::{RegionConfig, Regions};
use crate::rule::{Expect, Mode, Rule, RuleTest};
use crate::{DetectError, Result};

/// The outcome of one example.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// The rule.
    pub rule_id: String,
    /// The example's name.
    pub name: String,
    /// Whether it behaved as labelled.
    pub passed: bool,
    /// What happened, for a failure.
    pub message: String,
}

/// Runs every example of every rule.
pub async fn run_tests(rules: &[Rule]) -> Result<Vec<TestOutcome>> {
    let mut outcomes = Vec::new();
    for rule in rules {
        for test in &rule.tests {
            outcomes.push(run_test(rule, test).await?);
        }
    }
    Ok(outcomes)
}

async fn run_test(rule: &Rule, test: &RuleTest) -> Result<TestOutcome> {
    let table = match &test.table {
        Some(name) => LogTable::from_name(name).unwrap_or(rule.tables[0]),
        None => rule.tables[0],
    };
    let mut content = raw_object(table, &test.events).map_err(|reason| DetectError::Rule {
        origin: rule.origin.clone(),
        reason: format!("test {:?}: {reason}", test.name),
    })?;
    let key = format!("rule-tests/{}/{}", rule.id, test.name.replace(' ', "-"));
    let ctx = ObjectContext { bucket: "", key: &key, key_date: None };
    let parsed = parse_content(table, &mut content, &ctx).map_err(|e| DetectError::Rule {
        origin: rule.origin.clone(),
        reason: format!("test {:?}: the events do not parse: {e}", test.name),
    })?;
    let mut problems: Vec<String> = parsed.rejected.iter().map(|r| format!("{}: {}", r.position, r.reason)).collect();
    let alerts = run_example(rule, table, vec![parsed.batch], test.regions.as_ref(), test.org.as_ref()).await?;
    let got = alerts.len() as u64;
    let passed = match (test.expect, test.count) {
        (Expect::None, _) => got == 0,
        (Expect::Alert, Some(count)) => got == count,
        (Expect::Alert, None) => got > 0,
    };
    if !passed {
        let want = match (test.expect, test.count) {
            (Expect::None, _) => "no alert".to_owned(),
            (Expect::Alert, Some(n)) => format!("{n} alerts"),
            (Expect::Alert, None) => "an alert".to_owned(),
        };
        problems.insert(0, format!("expected {want}, got {got}"));
    } else if !problems.is_empty() {
        problems.insert(0, "passed, but some events were rejected by the parser".into());
    }
    Ok(TestOutcome {
        rule_id: rule.id.clone(),
        name: test.name.clone(),
        passed: passed && parsed.rejected.is_empty(),
        message: problems.join("; "),
    })
}

/// Runs a rule over the rows of an example as if they were all a lake held, under the example's
/// region configuration: a window rule as if its look-back window held exactly these rows, a rule
/// about regions against the baseline these rows alone make.
pub async fn run_example(
    rule: &Rule,
    table: LogTable,
    batches: Vec<RecordBatch>,
    regions: Option<&RegionConfig>,
    org: Option<&OrgConfig>,
) -> Result<Vec<Alert>> {
    let mut as_row = rule.clone();
    as_row.mode = Mode::Row;
    as_row.tables = vec![table];
    let regions = match regions {
        Some(config) => Regions::new(config)?,
        None => Regions::default(),
    };
    let regions = match org {
        Some(config) => regions.with_org(Org::new(config)?),
        None => regions,
    };
    let baseline = if table == LogTable::CloudTrail {
        let mut sightings = Sightings::default();
        sightings.observe(&batches).map_err(|e| DetectError::Lake(e.to_string()))?;
        Some(sightings.to_batch().map_err(|e| DetectError::Lake(e.to_string()))?)
    } else {
        None
    };
    run_on_batches(std::slice::from_ref(&as_row), table, batches, &regions, baseline).await
}

/// The object AWS would deliver holding these events.
pub(crate) fn raw_object(table: LogTable, events: &[serde_json::Value]) -> std::result::Result<Vec<u8>, String> {
    match table {
        LogTable::CloudTrail => Ok(serde_json::json!({ "Records": events }).to_string().into_bytes()),
        LogTable::Dns => {
            let mut out = Vec::new();
            for event in events {
                out.extend(serde_json::to_vec(event).map_err(|e| e.to_string())?);
                out.push(b'\n');
            }
            Ok(out)
        }
        LogTable::VpcFlow => {
            let mut out = String::new();
            for event in events {
                let line = event.as_str().ok_or("flow log events are text lines, the first one the header")?;
                out.push_str(line);
                out.push('\n');
            }
            Ok(out.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = r#"
id: list-users
title: ListUsers
description: Fires on ListUsers.
severity: low
tables: [cloudtrail]
mitre: [T1087.004]
dedup: { key: [account], window: 1h }
sql: SELECT eventtime AS event_time, recipientaccountid AS account, eventid AS event_id FROM cloudtrail WHERE eventname = 'ListUsers'
tests:
  - name: fires and is labelled so
    expect: alert
    count: 1
    events: [{eventTime: "2025-03-03T09:00:00Z", eventSource: iam.amazonaws.com, eventName: ListUsers, eventID: e1, recipientAccountId: "1"}]
  - name: fires but is labelled silent
    expect: none
    events: [{eventTime: "2025-03-03T09:00:00Z", eventSource: iam.amazonaws.com, eventName: ListUsers, eventID: e2, recipientAccountId: "1"}]
  - name: two matches in one window are one alert, not two
    expect: alert
    count: 2
    events:
      - {eventTime: "2025-03-03T09:00:00Z", eventSource: iam.amazonaws.com, eventName: ListUsers, eventID: e3, recipientAccountId: "1"}
      - {eventTime: "2025-03-03T09:10:00Z", eventSource: iam.amazonaws.com, eventName: ListUsers, eventID: e4, recipientAccountId: "1"}
  - name: an event the parser rejects
    expect: none
    events: [{eventTime: "not a time", eventName: ListUsers, eventID: e5}]
"#;

    #[tokio::test]
    async fn mislabelled_examples_fail() {
        let rule = Rule::parse("rules/list-users.yaml", RULE).expect("rule");
        let outcomes = run_tests(&[rule]).await.expect("run");
        let passed: Vec<bool> = outcomes.iter().map(|o| o.passed).collect();
        assert_eq!(passed, [true, false, false, false], "{outcomes:?}");
        assert!(outcomes[1].message.contains("expected no alert, got 1"), "{}", outcomes[1].message);
        assert!(outcomes[2].message.contains("expected 2 alerts, got 1"), "{}", outcomes[2].message);
        assert!(outcomes[3].message.contains("rejected"), "{}", outcomes[3].message);
    }
}
