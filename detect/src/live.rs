//! Detections inside ingestion: the [`Detector`] that `bunker worker` and `bunker ingest` plug into
//! the pipeline (as its `LakeHook`).
//!
//! Row rules run on the rows of every commit, just before it; window rules run on the worker's
//! tick, each on its own schedule over its own look-back of the lake. Either way the alerts go
//! through tuning (suppressions, shadow mode), are folded into the `alerts` table, and then reach
//! the sinks — all before the commit, so before the SQS messages are deleted. A failure anywhere
//! fails the commit, and the messages come back: alerts are delivered at least once, under ids
//! that stay the same.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use arrow::array::RecordBatch;
use bunker_ingest::IngestError;
use bunker_ingest::lake::Lake;
use bunker_ingest::pipeline::LakeHook;
use bunker_query::LakeSession;
use bunker_schemas::LogTable;
use bunker_schemas::location::LakeLocation;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::Result;
use crate::alert::Alert;
use crate::engine::{reads_baseline, row_rules, run_lookback};
use crate::rows::RowRunner;
use crate::rule::{Mode, Rule};
use crate::sink::Sinks;
use crate::store::{KnownIds, RunKind, record};
use crate::tuning::Tuning;

/// How often a window rule without a `schedule` runs.
const DEFAULT_SCHEDULE: Duration = Duration::from_secs(15 * 60);
/// How far back a window rule without a `lookback` looks.
const DEFAULT_LOOKBACK: Duration = Duration::from_secs(60 * 60);

/// What one rule did in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Alert updates recorded and sent.
    pub alerts: u64,
    /// Alerts of a rule in shadow mode: counted, not sent.
    pub shadow: u64,
    /// Alerts dropped by a suppression.
    pub suppressed: u64,
}

/// The lake a detector reads for window rules.
#[derive(Debug, Clone)]
struct LakeReader {
    location: LakeLocation,
    storage_options: HashMap<String, String>,
}

/// Runs rules as rows are committed and on a schedule, and emits their alerts.
#[derive(Debug)]
pub struct Detector {
    rules: Vec<Rule>,
    tuning: Tuning,
    sinks: Sinks,
    run: RunKind,
    reader: Option<LakeReader>,
    widest_window: Duration,
    last_window_run: Mutex<HashMap<String, DateTime<Utc>>>,
    tally: Mutex<BTreeMap<String, Tally>>,
    /// The alert ids the `alerts` table holds, as far as this process has read it.
    known: tokio::sync::Mutex<KnownIds>,
    /// The row rules of each table, planned on the table's first commit.
    runners: tokio::sync::Mutex<HashMap<LogTable, RowRunner>>,
}

impl Detector {
    /// A detector for `rules` (the disabled ones are dropped here), emitting through `sinks`.
    /// `run` says what is running it (recorded with each alert).
    pub fn new(rules: Vec<Rule>, tuning: Tuning, sinks: Sinks, run: RunKind) -> Detector {
        let rules = tuning.enabled(rules);
        let widest_window = rules.iter().map(|r| r.dedup.window).max().unwrap_or(Duration::from_secs(3600));
        Detector {
            rules,
            tuning,
            sinks,
            run,
            reader: None,
            widest_window,
            last_window_run: Mutex::default(),
            tally: Mutex::default(),
            known: tokio::sync::Mutex::default(),
            runners: tokio::sync::Mutex::default(),
        }
    }

    /// Also runs the window rules, on the worker's tick, over this lake.
    pub fn with_window_rules(mut self, location: LakeLocation, storage_options: HashMap<String, String>) -> Detector {
        self.reader = Some(LakeReader { location, storage_options });
        self
    }

    /// What each rule did so far, by rule id.
    pub fn tally(&self) -> BTreeMap<String, Tally> {
        lock(&self.tally).clone()
    }

    /// The tuning it applies (and the region configuration it holds).
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// The rules that run (the disabled ones left out).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Applies the tuning: returns the alerts to emit, and counts the shadowed and suppressed.
    pub fn triage(&self, alerts: Vec<Alert>) -> Vec<Alert> {
        let triage = self.tuning.triage(alerts);
        let mut tally = lock(&self.tally);
        for a in &triage.shadow {
            tally.entry(a.rule_id.clone()).or_default().shadow += 1;
        }
        for a in &triage.suppressed {
            tally.entry(a.rule_id.clone()).or_default().suppressed += 1;
        }
        triage.emit
    }

    /// Triages alerts, records the emitted ones in the `alerts` table, then sends them.
    pub async fn emit(&self, lake: &mut Lake, alerts: Vec<Alert>, run: RunKind) -> Result<Vec<Alert>> {
        if alerts.is_empty() {
            return Ok(alerts);
        }
        let emit = self.triage(alerts);
        let recorded = record(lake, &mut *self.known.lock().await, emit, run, self.widest_window).await?;
        self.sinks.send(&recorded).await?;
        let mut tally = lock(&self.tally);
        for a in &recorded {
            tally.entry(a.rule_id.clone()).or_default().alerts += 1;
            metrics::counter!("bunker_alerts_total", "rule" => a.rule_id.clone(), "severity" => a.severity.name())
                .increment(1);
        }
        Ok(recorded)
    }

    /// Runs the window rules whose schedule is due, each over its look-back.
    pub async fn run_due_window_rules(&self, lake: &mut Lake, now: DateTime<Utc>) -> Result<usize> {
        let Some(reader) = &self.reader else { return Ok(0) };
        let due: Vec<&Rule> = {
            let last = lock(&self.last_window_run);
            self.rules
                .iter()
                .filter(|r| r.mode == Mode::Window)
                .filter(|r| {
                    let every = chrono::Duration::from_std(r.schedule.unwrap_or(DEFAULT_SCHEDULE))
                        .unwrap_or(chrono::Duration::minutes(15));
                    last.get(&r.id).is_none_or(|at| now - *at >= every)
                })
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        let session = LakeSession::open_at(&reader.location, reader.storage_options.clone())
            .await
            .map_err(|e| crate::DetectError::Lake(e.to_string()))?;
        // Rules that look back equally far share one session of views.
        let mut by_lookback: BTreeMap<Duration, Vec<&Rule>> = BTreeMap::new();
        for rule in &due {
            by_lookback.entry(rule.lookback.unwrap_or(DEFAULT_LOOKBACK)).or_default().push(rule);
        }
        for (lookback, rules) in by_lookback {
            let from = now - chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::hours(1));
            let alerts = run_lookback(&session, &rules, self.tuning.regions(), from).await?;
            self.emit(lake, alerts, RunKind::Schedule).await?;
        }
        let mut last = lock(&self.last_window_run);
        for rule in &due {
            last.insert(rule.id.clone(), now);
        }
        Ok(due.len())
    }
}

impl LakeHook for Detector {
    fn before_commit<'a>(
        &'a self,
        lake: &'a mut Lake,
        table: LogTable,
        batches: Vec<RecordBatch>,
    ) -> BoxFuture<'a, bunker_ingest::Result<()>> {
        Box::pin(async move {
            let hook_error =
                |e: crate::DetectError| IngestError::Hook { table: table.name().to_owned(), reason: e.to_string() };
            let rules = row_rules(&self.rules, table);
            if rules.is_empty() {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            // Only rules about regions need the baseline, and only CloudTrail keeps one.
            let baseline = if table == LogTable::CloudTrail && rules.iter().any(|r| reads_baseline(r)) {
                Some(lake.region_baseline_with(&batches).await?)
            } else {
                None
            };
            let baseline_in = started.elapsed();
            let alerts = {
                let mut runners = self.runners.lock().await;
                let runner = match runners.entry(table) {
                    std::collections::hash_map::Entry::Occupied(planned) => planned.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => slot
                        .insert(RowRunner::new(&self.rules, table, self.tuning.regions()).await.map_err(hook_error)?),
                };
                runner.run(batches, baseline).await.map_err(hook_error)?
            };
            let ran_in = started.elapsed();
            let found = alerts.len();
            self.emit(lake, alerts, self.run).await.map_err(hook_error)?;
            tracing::debug!(%table, rows, found, ?baseline_in, ?ran_in, total = ?started.elapsed(), "row rules ran");
            Ok(())
        })
    }

    fn tick<'a>(&'a self, lake: &'a mut Lake) -> BoxFuture<'a, bunker_ingest::Result<()>> {
        Box::pin(async move {
            self.run_due_window_rules(lake, Utc::now())
                .await
                .map(|_| ())
                .map_err(|e| IngestError::Hook { table: "(window rules)".into(), reason: e.to_string() })
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked: take them as they are.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
