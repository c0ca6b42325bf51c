//! Detections inside ingestion: the [`Detector`] that `bunker worker` and `bunker ingest` plug into
//! the pipeline (as its `LakeHook`).
//!
//! Row rules run on the rows of every commit, just before it; window rules run on the worker's
//! tick, each on its own schedule. A window rule looks at the event time of what was committed
//! since its last run, whatever its age, widened by its look-back on either side: CloudTrail
//! arrives 5–15 minutes after the event, and a backfilled or redelivered object days later, so a
//! look-back from the wall clock would never see them. Reading a span again (the look-back of one
//! run overlaps the next) folds into the alerts already raised (see [`crate::alert`]) rather than
//! raising them again. Either way the alerts go
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
use crate::store::{Windows, learn_span};
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
    windows: Windows,
    last_window_run: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The event time (first and last, in microseconds) of the rows committed to its tables since
    /// each window rule last ran, by rule id.
    committed: Mutex<HashMap<String, (i64, i64)>>,
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
        let windows = Windows::of(&rules);
        Detector {
            rules,
            tuning,
            sinks,
            run,
            reader: None,
            windows,
            last_window_run: Mutex::default(),
            committed: Mutex::default(),
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
        let recorded = record(lake, &mut *self.known.lock().await, emit, run, &self.windows).await?;
        self.sinks.send(&recorded).await?;
        let mut tally = lock(&self.tally);
        for a in &recorded {
            tally.entry(a.rule_id.clone()).or_default().alerts += 1;
            metrics::counter!("bunker_alerts_total", "rule" => a.rule_id.clone(), "severity" => a.severity.name())
                .increment(1);
        }
        Ok(recorded)
    }

    /// Notes the event time of rows about to be committed to `table`, for the window rules that
    /// read it (when this detector runs window rules).
    pub fn note_committed(&self, table: LogTable, batches: &[RecordBatch]) {
        if self.reader.is_none() || !self.rules.iter().any(|r| r.mode == Mode::Window && r.tables.contains(&table)) {
            return;
        }
        let Some((first, last)) = event_span(table, batches) else { return };
        let mut committed = lock(&self.committed);
        for rule in self.rules.iter().filter(|r| r.mode == Mode::Window && r.tables.contains(&table)) {
            let span = committed.entry(rule.id.clone()).or_insert((first, last));
            *span = (span.0.min(first), span.1.max(last));
        }
    }

    /// Runs the window rules whose schedule is due over what was committed since they last ran:
    /// from a look-back before its first event to a look-back after its last. A rule with nothing
    /// committed since does not run (the rows it would read are those it read last time), except
    /// on its first run in this process, which also looks back from `now`: rows a process stopped
    /// before it had checked them.
    pub async fn run_due_window_rules(&self, lake: &mut Lake, now: DateTime<Utc>) -> Result<usize> {
        let Some(reader) = &self.reader else { return Ok(0) };
        // The span each due rule reads, and the committed spans taken for it (given back if the
        // run fails, so the next run covers them).
        let mut spans: BTreeMap<(i64, Option<i64>), Vec<&Rule>> = BTreeMap::new();
        let mut taken: HashMap<String, (i64, i64)> = HashMap::new();
        let mut due: Vec<&Rule> = Vec::new();
        {
            let last = lock(&self.last_window_run);
            let mut committed = lock(&self.committed);
            for rule in self.rules.iter().filter(|r| r.mode == Mode::Window) {
                let every = chrono::Duration::from_std(rule.schedule.unwrap_or(DEFAULT_SCHEDULE))
                    .unwrap_or(chrono::Duration::minutes(15));
                let ran = last.get(&rule.id);
                if ran.is_some_and(|at| now - *at < every) {
                    continue;
                }
                let lookback = rule.lookback.unwrap_or(DEFAULT_LOOKBACK).as_micros() as i64;
                let fresh = committed.remove(&rule.id);
                let now_from = now.timestamp_micros() - lookback;
                let span = match (fresh, ran) {
                    (Some((first, last)), Some(_)) => (first - lookback, Some(last + lookback)),
                    (Some((first, _)), None) => ((first - lookback).min(now_from), None),
                    (None, None) => (now_from, None),
                    (None, Some(_)) => continue,
                };
                if let Some(fresh) = fresh {
                    taken.insert(rule.id.clone(), fresh);
                }
                spans.entry(span).or_default().push(rule);
                due.push(rule);
            }
        }
        if due.is_empty() {
            return Ok(0);
        }
        match self.run_spans(reader, lake, &spans).await {
            Ok(()) => {
                let mut last = lock(&self.last_window_run);
                for rule in &due {
                    last.insert(rule.id.clone(), now);
                }
                Ok(due.len())
            }
            Err(e) => {
                let mut committed = lock(&self.committed);
                for (id, (first, last)) in taken {
                    let span = committed.entry(id).or_insert((first, last));
                    *span = (span.0.min(first), span.1.max(last));
                }
                Err(e)
            }
        }
    }

    /// Runs each set of window rules over its span of event time and emits their alerts.
    async fn run_spans(
        &self,
        reader: &LakeReader,
        lake: &mut Lake,
        spans: &BTreeMap<(i64, Option<i64>), Vec<&Rule>>,
    ) -> Result<()> {
        let session = LakeSession::open_at(&reader.location, reader.storage_options.clone())
            .await
            .map_err(|e| crate::DetectError::Lake(e.to_string()))?;
        let time = |micros: i64| DateTime::from_timestamp_micros(micros).unwrap_or_default();
        // Rules reading the same span share one session of views.
        for (&(from, to), rules) in spans {
            let (from, to) = (time(from), to.map(time));
            let alerts = {
                // The alerts raised around the span, so matches read again join them.
                let mut known = self.known.lock().await;
                learn_span(lake, &mut known, from, to.unwrap_or(from.max(Utc::now())), self.windows.widest()).await?;
                run_lookback(&session, rules, self.tuning.regions(), (from, to), &*known).await?
            };
            self.emit(lake, alerts, RunKind::Schedule).await?;
        }
        Ok(())
    }
}

/// The first and last event time of rows of `table`, in microseconds.
fn event_span(table: LogTable, batches: &[RecordBatch]) -> Option<(i64, i64)> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampMicrosecondType;
    let mut span: Option<(i64, i64)> = None;
    for batch in batches {
        let Some(column) = batch.column_by_name(table.time_column()) else { continue };
        let Some(times) = column.as_primitive_opt::<TimestampMicrosecondType>() else { continue };
        if times.null_count() == times.len() {
            continue;
        }
        let (Some(first), Some(last)) = (arrow::compute::min(times), arrow::compute::max(times)) else { continue };
        span = Some(span.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
    }
    span
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
            self.note_committed(table, &batches);
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use bunker_ingest::lake::LakeConfig;
    use bunker_ingest::pipeline::{IngestOptions, NoProgress, ingest_directory};

    use super::*;
    use crate::tuning::DetectConfig;

    /// Three failed root logins in an hour, as a window rule with a one-hour look-back.
    const RULE: &str = "id: t-root-failures\ntitle: Root login failures\ndescription: Three or more.\n\
        severity: high\ntables: [cloudtrail]\nmode: window\nschedule: 5m\nlookback: 1h\n\
        dedup: { key: [account], window: 1h }\n\
        sql: |\n  SELECT max(eventtime) AS event_time, recipientaccountid AS account, array_agg(eventid) AS event_ids\n  \
        FROM cloudtrail WHERE eventname = 'ConsoleLogin' AND errormessage IS NOT NULL\n  \
        GROUP BY recipientaccountid, date_bin(INTERVAL '1 hour', eventtime) HAVING count(*) >= 3\n";

    fn failure(at: DateTime<Utc>, id: &str) -> serde_json::Value {
        serde_json::json!({
            "eventVersion": "1.08", "eventTime": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
            "awsRegion": "us-east-1", "eventID": id, "recipientAccountId": "111122223333",
            "sourceIPAddress": "198.51.100.23", "errorMessage": "Failed authentication",
            "userIdentity": {"type": "Root", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"},
        })
    }

    /// Writes the events as one CloudTrail object of the archive at `root`, keyed by their day.
    fn put_object(root: &std::path::Path, name: &str, events: &[serde_json::Value], day: DateTime<Utc>) {
        let dir = root.join(format!("AWSLogs/111122223333/CloudTrail/us-east-1/{}", day.format("%Y/%m/%d")));
        std::fs::create_dir_all(&dir).expect("archive dir");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(serde_json::json!({ "Records": events }).to_string().as_bytes()).expect("gzip");
        let file = format!("111122223333_CloudTrail_us-east-1_{}_{name}.json.gz", day.format("%Y%m%dT%H%MZ"));
        std::fs::write(dir.join(file), gz.finish().expect("gzip")).expect("object");
    }

    fn new_detector(lake: &std::path::Path) -> Arc<Detector> {
        let rules = vec![Rule::parse("rules/t.yaml", RULE).expect("rule")];
        let tuning = Tuning::new(&DetectConfig::default(), &rules).expect("tuning");
        let detector = Detector::new(rules, tuning, Sinks::empty(), RunKind::Worker)
            .with_window_rules(LakeLocation::Local(lake.to_path_buf()), HashMap::new());
        Arc::new(detector)
    }

    async fn ingest(archive: &std::path::Path, lake: &mut Lake, detector: &Arc<Detector>) {
        let options = IngestOptions { hook: Some(detector.clone() as Arc<dyn LakeHook>), ..IngestOptions::default() };
        ingest_directory(archive, lake, &options, &NoProgress).await.expect("ingest");
    }

    /// The `alerts` view's rows of the rule: (id, count).
    async fn alerts(lake: &std::path::Path) -> Vec<(String, i64)> {
        let session = LakeSession::open(lake).await.expect("session");
        let sql = "SELECT id, count FROM alerts WHERE rule_id = 't-root-failures' ORDER BY id";
        let (_, batches) = session.sql(sql).await.expect("query");
        let mut rows = Vec::new();
        for batch in batches {
            let ids = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).expect("ids");
            let ids = ids.as_any().downcast_ref::<StringArray>().expect("text").clone();
            let counts = batch.column(1).as_any().downcast_ref::<Int64Array>().expect("counts").clone();
            rows.extend((0..batch.num_rows()).map(|i| (ids.value(i).to_owned(), counts.value(i))));
        }
        rows
    }

    /// Window rules looked back from the wall clock, so CloudTrail delivered late (or backfilled)
    /// was never window-checked live. They read the event time of what was committed instead; and
    /// reading it again — the next run's look-back overlapping, another process — updates the
    /// alert under its id, without re-raising it or growing its count by what it holds already.
    #[tokio::test]
    async fn window_rules_check_late_rows_by_event_time_and_fold_what_they_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (archive, lake_dir) = (dir.path().join("archive"), dir.path().join("lake"));
        let mut lake = Lake::open(&lake_dir, LakeConfig::default()).await.expect("lake");
        let now = Utc::now();
        let late = now - chrono::Duration::hours(3);
        let minutes = |m: i64| late + chrono::Duration::minutes(m);
        let first = [failure(minutes(0), "f1"), failure(minutes(1), "f2"), failure(minutes(2), "f3")];
        put_object(&archive, "late", &first, late);
        let detector = new_detector(&lake_dir);
        ingest(&archive, &mut lake, &detector).await;
        assert_eq!(detector.run_due_window_rules(&mut lake, now).await.expect("run"), 1);
        let raised = alerts(&lake_dir).await;
        assert_eq!(raised.iter().map(|a| a.1).collect::<Vec<_>>(), [1], "events of three hours ago alert: {raised:?}");

        // Before the next schedule nothing runs; after it, a fourth failure delivered later still
        // joins the alert (its bin's event_time moved, so the run alone would make another id).
        put_object(&archive, "later", &[failure(minutes(3), "f4")], late);
        ingest(&archive, &mut lake, &detector).await;
        assert_eq!(detector.run_due_window_rules(&mut lake, now + chrono::Duration::minutes(1)).await.expect("run"), 0);
        assert_eq!(detector.run_due_window_rules(&mut lake, now + chrono::Duration::minutes(6)).await.expect("run"), 1);
        let updated = alerts(&lake_dir).await;
        assert_eq!(updated, [(raised[0].0.clone(), 1)], "one alert, under the same id");

        // With nothing committed since, a due rule does not read the same rows again.
        assert_eq!(
            detector.run_due_window_rules(&mut lake, now + chrono::Duration::minutes(12)).await.expect("run"),
            0
        );

        // Another process (nothing in memory) reads the same span again, as for an object
        // redelivered: the alert it raises is the one recorded, its count unchanged.
        let restarted = new_detector(&lake_dir);
        let mut content = serde_json::json!({ "Records": [failure(minutes(1), "f2")] }).to_string().into_bytes();
        let context = bunker_ingest::ObjectContext { bucket: "", key: "redelivered", key_date: None };
        let parsed =
            bunker_ingest::pipeline::parse_content(LogTable::CloudTrail, &mut content, &context).expect("parse");
        restarted.note_committed(LogTable::CloudTrail, &[parsed.batch]);
        assert_eq!(
            restarted.run_due_window_rules(&mut lake, now + chrono::Duration::minutes(20)).await.expect("run"),
            1
        );
        assert_eq!(alerts(&lake_dir).await, updated, "the span read again in another process");
    }
}
