//! Sigma correlation rules as window rules: `event_count` (how many matching events), and
//! `value_count` (how many distinct values of a field), per `group-by` value within a
//! `timespan`, and `temporal` (every referenced rule matched, in any order, within it).
//!
//! The windows slide, as the specification asks: each matching event closes a window of
//! `timespan` ending at it, and an alert is raised where that window satisfies the condition,
//! one per group per `timespan` after dedup. `event_count` counts with a window function;
//! `value_count` and `temporal` join the matching events of a group with those before them in
//! the window (matching events are few, so the join is small). `gte`/`gt`/`eq` conditions only:
//! "fewer than N" is a window in which events are missing, which rows over the lake cannot show.
//! `temporal_ordered`, the metric types (`value_sum`, `value_avg`, `value_percentile`) and
//! references across tables are refused with the reason.

use std::time::Duration;

use bunker_schemas::LogTable;
use serde_yaml_ng::{Mapping, Value};

use super::{Compiled, Document, evidence, evidence_names, fields, meta, output_name};
use crate::Result;
use crate::rule::{Dedup, Mode, Rule, parse_duration};

fn section(document: &Document) -> Option<&Mapping> {
    document.map.get("correlation").and_then(Value::as_mapping)
}

/// The ids or names of the rules a correlation references.
pub(super) fn references(document: &Document) -> Vec<String> {
    match section(document).and_then(|c| c.get("rules")) {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Sequence(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Whether the referenced rules also run alone (`generate: true`, in the correlation section or
/// at the top level, where the schema and pySigma each put it).
pub(super) fn generates(document: &Document) -> bool {
    let flag = |map: Option<&Mapping>| map.and_then(|m| m.get("generate")).and_then(Value::as_bool);
    flag(section(document)).or(flag(Some(&document.map))).unwrap_or(false)
}

/// A window rule for the correlation `document` over the compiled rules it references.
pub(super) fn compile(document: &Document, inputs: &[(&Document, &Result<Compiled>)]) -> Result<Rule> {
    let refuse = |reason: String| document.refuse(reason);
    let meta = meta(document)?;
    let section = section(document).ok_or_else(|| refuse("correlation must be a map".into()))?;
    let text = |key: &str| section.get(key).and_then(Value::as_str);
    let kind = text("type").ok_or_else(|| refuse("correlation has no type".into()))?;
    if inputs.is_empty() {
        return Err(refuse("correlation references no rules".into()));
    }
    let mut rules = Vec::new();
    for (input, compiled) in inputs {
        match compiled {
            Ok(compiled) => rules.push((*input, compiled)),
            Err(e) => return Err(refuse(format!("a referenced rule cannot be compiled: {e}"))),
        }
    }
    let table = rules[0].1.table;
    if rules.iter().any(|(_, c)| c.table != table) {
        return Err(refuse("references rules over different tables; bunker correlates events of one table".into()));
    }
    let timespan = text("timespan").ok_or_else(|| refuse("correlation has no timespan".into()))?;
    let timespan = parse_duration(timespan).map_err(|e| refuse(format!("timespan: {e}")))?;
    let group_by: Vec<String> = match section.get("group-by") {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| refuse("group-by lists a field that is not text".into()))
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(refuse("group-by must be a list of fields".into())),
    };
    let aliases = section.get("aliases").and_then(Value::as_mapping);
    let (op, threshold, field) = condition(section, kind).map_err(refuse)?;

    // Each referenced rule's matching events, with the group fields (through aliases) and the
    // counted field read the same way for every rule.
    let time = time_column(table);
    let mut selects = Vec::new();
    for (at, (input, compiled)) in rules.iter().enumerate() {
        let name = input.text("name").or(input.text("id")).unwrap_or_default();
        let mut columns = vec![format!("{} AS sigma_rule", at)];
        for group in &group_by {
            let field = aliases
                .and_then(|a| a.get(group.as_str()))
                .and_then(Value::as_mapping)
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .unwrap_or(group);
            let column = fields::resolve(table, field).map_err(|e| refuse(format!("group-by: {e}")))?;
            columns.push(format!("{} AS g_{}", column.text(), output_name(group)));
        }
        if let Some(field) = &field {
            let column = fields::resolve(table, field).map_err(|e| refuse(format!("field: {e}")))?;
            columns.push(format!("{} AS sigma_value", column.text()));
        }
        selects.push(format!(
            "SELECT {}, {time} AS sigma_time, {}\n  FROM {}\n  WHERE {}",
            evidence(table),
            columns.join(", "),
            table.name(),
            compiled.predicate
        ));
    }
    let groups: Vec<String> = group_by.iter().map(|g| format!("g_{}", output_name(g))).collect();
    let span = format!("INTERVAL '{} seconds'", timespan.as_secs());
    let partition = if groups.is_empty() { String::new() } else { format!("PARTITION BY {} ", groups.join(", ")) };
    let shown: String = groups.iter().map(|g| format!(", {g} AS {}", g.trim_start_matches("g_"))).collect();
    let names = evidence_names(table);
    let sql = match kind {
        "event_count" => format!(
            "WITH matched AS (\n  {}\n),\ncounted AS (\n  SELECT *, count(*) OVER ({partition}ORDER BY sigma_time RANGE BETWEEN {span} PRECEDING AND CURRENT ROW) AS events\n  FROM matched\n)\nSELECT {}{shown}, events\nFROM counted WHERE events {op} {threshold}\n",
            selects.join("\n  UNION ALL\n  "),
            names.join(", ")
        ),
        "value_count" | "temporal" => {
            // Each matching event's window (the timespan before it) lies inside its home bin: bins
            // twice the timespan wide start every timespan, and an event's home bin is the one
            // starting one timespan before its own boundary. Bins that hold too few values cannot
            // hold a window that does, so only the events whose home bin passes are joined, and
            // only with the events of that bin: exact, and bounded by the bins, not the groups.
            let value = if kind == "value_count" { "sigma_value" } else { "sigma_rule" };
            let name = if kind == "value_count" { "distinct_values" } else { "rules_matched" };
            let bin_op = if op == ">" { ">" } else { ">=" };
            // Parenthesised: the SQL parser binds `IS NOT DISTINCT FROM` looser than `AND`.
            let same = |x: &str, y: &str| -> String {
                groups.iter().map(|g| format!(" AND ({y}.{g} IS NOT DISTINCT FROM {x}.{g})")).collect()
            };
            let group_list: String = groups.iter().map(|g| format!("{g}, ")).collect();
            let keys: Vec<String> =
                names.iter().map(|c| format!("a.{c}")).chain(groups.iter().map(|g| format!("a.{g}"))).collect();
            let evidence: Vec<String> = names.iter().map(|c| format!("a.{c}")).collect();
            let ids = if names.contains(&"event_id") { ", array_agg(DISTINCT b.event_id) AS event_ids" } else { "" };
            let shown: String = groups.iter().map(|g| format!(", a.{g} AS {}", g.trim_start_matches("g_"))).collect();
            format!(
                "WITH matched AS (\n  {selects}\n),\n\
                 binned AS (SELECT *, date_bin({span}, sigma_time) - {span} AS sigma_home FROM matched),\n\
                 spread AS (\n  SELECT *, sigma_home AS sigma_bin FROM binned\n  UNION ALL\n  SELECT *, sigma_home + {span} AS sigma_bin FROM binned\n),\n\
                 candidates AS (\n  SELECT {group_list}sigma_bin FROM spread GROUP BY {group_list}sigma_bin\n  HAVING count(DISTINCT {value}) {bin_op} {threshold}\n)\n\
                 SELECT {evidence}{shown}, count(DISTINCT b.{value}) AS {name}{ids}\n\
                 FROM binned a\n\
                 JOIN candidates c ON c.sigma_bin = a.sigma_home{same_c}\n\
                 JOIN spread b ON b.sigma_bin = a.sigma_home{same_b}\n  AND b.sigma_time BETWEEN a.sigma_time - {span} AND a.sigma_time\n\
                 GROUP BY {keys}\n\
                 HAVING count(DISTINCT b.{value}) {op} {threshold}\n",
                selects = selects.join("\n  UNION ALL\n  "),
                evidence = evidence.join(", "),
                keys = keys.join(", "),
                same_c = same("a", "c"),
                same_b = same("a", "b"),
            )
        }
        other => unreachable!("condition() refuses {other}"),
    };
    let mut key: Vec<String> = groups.iter().map(|g| g.trim_start_matches("g_").to_owned()).collect();
    if key.is_empty() {
        key.push("account".into());
    }
    Ok(Rule {
        id: meta.id,
        title: meta.title,
        description: meta.description,
        severity: meta.severity,
        tables: vec![table],
        mitre: meta.mitre,
        mode: Mode::Window,
        schedule: Some(timespan.min(Duration::from_secs(300))),
        lookback: Some(timespan * 2),
        // The matching events are read by several parts of the query: read the lake for them once.
        materialize: if kind == "event_count" { Vec::new() } else { vec!["matched".to_owned()] },
        dedup: Dedup { key, window: timespan },
        sql,
        tests: document.tests.clone(),
        origin: document.origin.clone(),
    })
}

fn time_column(table: LogTable) -> &'static str {
    match table {
        LogTable::CloudTrail => "eventtime",
        LogTable::VpcFlow => "start",
        LogTable::Dns => "query_timestamp",
    }
}

/// The condition's operator and threshold, and the field `value_count` counts.
fn condition(section: &Mapping, kind: &str) -> std::result::Result<(&'static str, u64, Option<String>), String> {
    match kind {
        "event_count" | "value_count" | "temporal" => {}
        "temporal_ordered" => {
            return Err("temporal_ordered needs the events in order, which bunker's window rules do not check; \
                        use temporal"
                .into());
        }
        other => {
            return Err(format!(
                "correlation type {other:?} is not one bunker runs (event_count, value_count, temporal)"
            ));
        }
    }
    let condition = section.get("condition").and_then(Value::as_mapping);
    let field = condition.and_then(|c| c.get("field")).and_then(Value::as_str).map(str::to_owned);
    if kind == "value_count" && field.is_none() {
        return Err("value_count needs condition.field, the field whose distinct values it counts".into());
    }
    let Some(condition) = condition else {
        if kind == "temporal" {
            // Every referenced rule, by the specification's default.
            let rules = match section.get("rules") {
                Some(Value::Sequence(items)) => items.len() as u64,
                _ => 1,
            };
            return Ok((">=", rules, None));
        }
        return Err("correlation has no condition".into());
    };
    let mut found = None;
    for (key, value) in condition {
        let key = key.as_str().unwrap_or_default();
        let op = match key {
            "field" => continue,
            "gt" => ">",
            "gte" => ">=",
            "eq" => "=",
            "lt" | "lte" | "neq" => {
                return Err(format!(
                    "condition {key} asks for windows with few events, which rows over the lake cannot show"
                ));
            }
            other => return Err(format!("condition has unknown operator {other:?}")),
        };
        let number = value.as_u64().ok_or_else(|| format!("condition {key} must be a whole number"))?;
        if found.replace((op, number)).is_some() {
            return Err("condition has more than one operator; bunker takes one of gt, gte, eq".into());
        }
    }
    let (op, number) = found.ok_or("condition has no operator (gt, gte or eq)")?;
    Ok((op, number, field))
}
