//! The `alerts` lake table as the detections see it: alerts in, folded with what the table already
//! holds for the same ids, appended as new rows.
//!
//! The table is append-only (see `bunker_schemas::alerts`): an update is a new row with the
//! alert's whole state, and the newest row per id wins. Before appending, the current state of each
//! id is read back and folded in, so that an alert whose condition recurs over many batches — or
//! many workers — keeps one growing count instead of restarting at every batch.
//!
//! Folding tolerates seeing the same rows twice, which happens by design: detections run before
//! the data commit, so a crash in between means the same rows come round again. Counts grow only by
//! events the alert's evidence does not hold yet.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Date32Array, Int64Array, ListArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use bunker_ingest::lake::{AddedFile, Lake};
use bunker_schemas::alerts;
use chrono::{DateTime, NaiveDate, Utc};
use deltalake::DeltaTable;
use deltalake::logstore::object_store::ObjectStoreExt as _;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::alert::{Alert, MAX_EVIDENCE, Recorded};
use crate::{DetectError, Result};

/// What ran the rules, recorded with every alert row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Row rules inside `bunker worker`.
    Worker,
    /// Row rules inside `bunker ingest`.
    Ingest,
    /// Window rules on the worker's schedule.
    Schedule,
    /// `bunker detect` over history.
    Detect,
}

impl RunKind {
    /// The name written to the `run` column.
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Worker => "worker",
            RunKind::Ingest => "ingest",
            RunKind::Schedule => "schedule",
            RunKind::Detect => "detect",
        }
    }

    /// How a fresh result combines with the stored state of the same alert.
    ///
    /// Row rules see each event once (new rows only), so their counts add up. Window rules and
    /// history runs recount their whole look-back each time, so the larger count is the truth.
    fn adds_counts(self) -> bool {
        matches!(self, RunKind::Worker | RunKind::Ingest)
    }
}

/// The stored state of one alert, as far as folding needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Time of the first matching event.
    pub first_seen: DateTime<Utc>,
    /// Time of the last matching event.
    pub last_seen: DateTime<Utc>,
    /// Matching events so far.
    pub count: u64,
    /// Evidence: event ids.
    pub event_ids: Vec<String>,
    /// Evidence: source object keys.
    pub source_keys: Vec<String>,
}

/// Folds the stored state of an alert into a fresh result for the same id.
pub fn fold(fresh: &mut Alert, stored: &Stored, run: RunKind) {
    let known: BTreeSet<&str> = stored.event_ids.iter().map(String::as_str).collect();
    let new_events = fresh.event_ids.iter().filter(|id| !known.contains(id.as_str())).count() as u64;
    fresh.count = if !run.adds_counts() {
        fresh.count.max(stored.count)
    } else if fresh.event_ids.len() as u64 != fresh.count || stored.event_ids.len() >= MAX_EVIDENCE {
        // Without an id per event (or past the evidence cap) repeats cannot be told apart: add.
        stored.count + fresh.count
    } else {
        // Rows seen again (a batch retried after a crash) add nothing.
        stored.count + new_events.min(fresh.count)
    };
    fresh.count = fresh.count.max(stored.count);
    fresh.first_seen = fresh.first_seen.min(stored.first_seen);
    fresh.last_seen = fresh.last_seen.max(stored.last_seen);
    fresh.event_ids = merge_capped(&stored.event_ids, &fresh.event_ids);
    fresh.source_keys = merge_capped(&stored.source_keys, &fresh.source_keys);
}

fn merge_capped(stored: &[String], fresh: &[String]) -> Vec<String> {
    let mut merged = stored.to_vec();
    for value in fresh {
        if merged.len() >= MAX_EVIDENCE {
            break;
        }
        if !merged.contains(value) {
            merged.push(value.clone());
        }
    }
    merged
}

/// The alert ids the `alerts` table holds, learnt one data file at a time: each file's `id` column
/// is read once per process (files never change; new ones are read as they appear). Knowing that
/// an id was never stored, without reading every file of its days again for every batch, is what
/// keeps recording alerts cheap as the table grows.
///
/// Each id also remembers the files holding its rows, so that reading an alert's state back
/// reads those few files and nothing else. Going through SQL instead (a table provider built from
/// the whole log, a plan, a window function) cost 50–170 ms per commit that re-raised an alert.
///
/// The files this process appended are not even read: it holds the states it wrote to them
/// (up to [`HELD_BYTES`]; past that the oldest are forgotten and read back when needed). A worker
/// re-raising the same alerts commit after commit read back its own last write every time —
/// about a third of what recording alerts cost ingestion.
#[derive(Debug)]
pub struct KnownIds {
    /// The files learnt, by the number the ids refer to them with.
    files: Vec<KnownFile>,
    read: HashSet<String>,
    ids: HashMap<String, Vec<u32>>,
    /// The span (first and last match, in microseconds) of each alert, by dedup key and id: a
    /// match of the same key that fits in it joins it (see [`crate::alert::RecordedAlerts`]).
    spans: HashMap<String, HashMap<String, (i64, i64)>>,
    /// The files whose states are held, oldest first, and the bytes those states take.
    held: std::collections::VecDeque<u32>,
    held_bytes: usize,
    /// At most this many bytes of states are held.
    held_limit: usize,
}

impl Default for KnownIds {
    fn default() -> Self {
        KnownIds {
            files: Vec::new(),
            read: HashSet::new(),
            ids: HashMap::new(),
            spans: HashMap::new(),
            held: Default::default(),
            held_bytes: 0,
            held_limit: HELD_BYTES,
        }
    }
}

/// How many bytes of alert states written by this process are kept to save reading them back.
const HELD_BYTES: usize = 16 << 20;

/// One data file of the `alerts` table.
#[derive(Debug)]
struct KnownFile {
    path: deltalake::Path,
    /// Its date partition.
    date: Option<NaiveDate>,
    /// The state of each alert in it (its `emitted_at` and what folding needs), when this
    /// process wrote the file and still holds them.
    states: Option<HashMap<String, (i64, Stored)>>,
    /// The table no longer lists it: a compaction rewrote its rows into a file that is learnt
    /// like any other. Its held states stay right; the file itself is not read again (a vacuum
    /// may have deleted it).
    gone: bool,
}

impl KnownIds {
    /// Whether the table held `id` when last learnt from.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Adds a file: the alerts in it (id, dedup key, first and last match in microseconds).
    fn add(
        &mut self,
        path: deltalake::Path,
        date: Option<NaiveDate>,
        alerts: impl Iterator<Item = (String, String, i64, i64)>,
    ) -> u32 {
        let number = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
        for (id, key, first, last) in alerts {
            self.note_span(key, &id, first, last);
            let files = self.ids.entry(id).or_default();
            if files.last() != Some(&number) {
                files.push(number);
            }
        }
        self.read.insert(path.to_string());
        self.files.push(KnownFile { path, date, states: None, gone: false });
        number
    }

    /// Widens the recorded span of an alert: its updates only ever move its first match earlier
    /// and its last later.
    fn note_span(&mut self, key: String, id: &str, first: i64, last: i64) {
        let spans = self.spans.entry(key).or_default();
        match spans.get_mut(id) {
            Some(span) => *span = (span.0.min(first), span.1.max(last)),
            None => {
                spans.insert(id.to_owned(), (first, last));
            }
        }
    }

    /// Reads the ids of the files of `table` (already checked to stay inside it) in the date
    /// partitions from `from` to `to` that were not read yet.
    async fn learn(&mut self, table: &DeltaTable, from: NaiveDate, to: NaiveDate) -> Result<()> {
        let snapshot = table.snapshot().map_err(lake_error)?;
        let in_range = |date: Option<NaiveDate>| date.is_none_or(|date| from <= date && date <= to);
        let listed: Vec<(deltalake::Path, Option<NaiveDate>)> = snapshot
            .log_data()
            .into_iter()
            .map(|file| {
                let date = file.partition_values_map().remove(bunker_schemas::DATE_COLUMN).flatten();
                (file.object_store_path(), date.and_then(|d| d.parse::<NaiveDate>().ok()))
            })
            .filter(|(_, date)| in_range(*date))
            .collect();
        let present: HashSet<&str> = listed.iter().map(|(path, _)| path.as_ref()).collect();
        for file in self.files.iter_mut().filter(|f| !f.gone && in_range(f.date)) {
            file.gone = !present.contains(file.path.as_ref());
        }
        let unread: Vec<(deltalake::Path, Option<NaiveDate>)> =
            listed.iter().filter(|(path, _)| !self.read.contains(path.as_ref())).cloned().collect();
        for (path, date) in unread {
            let mut alerts = Vec::new();
            let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
            for batch in read_columns(table, &path, &["id", "dedup_key", "first_seen", "last_seen"]).await? {
                let column = |i: usize, to: &DataType| -> Result<ArrayRef> { Ok(cast(batch.column(i), to)?) };
                let ids = downcast::<StringArray>(&column(0, &DataType::Utf8)?)?;
                let keys = downcast::<StringArray>(&column(1, &DataType::Utf8)?)?;
                let first = downcast::<TimestampMicrosecondArray>(&column(2, &micros)?)?;
                let last = downcast::<TimestampMicrosecondArray>(&column(3, &micros)?)?;
                for row in (0..batch.num_rows()).filter(|&row| !ids.is_null(row)) {
                    let key = if keys.is_null(row) { String::new() } else { keys.value(row).to_owned() };
                    alerts.push((ids.value(row).to_owned(), key, first.value(row), last.value(row)));
                }
            }
            self.add(path, date, alerts.into_iter());
        }
        Ok(())
    }

    /// Remembers the files of an append of `alerts` (rows emitted at `emitted_at`, in
    /// microseconds) and holds the states written to them: each alert is in the file of the day it
    /// was first seen, as `alerts_batch` partitions them.
    fn wrote(&mut self, files: Vec<AddedFile>, alerts: &[Alert], emitted_at: i64) {
        for file in files {
            let in_file: Vec<&Alert> =
                alerts.iter().filter(|a| file.date.is_none_or(|date| a.first_seen.date_naive() == date)).collect();
            let spans = in_file.iter().map(|a| {
                (a.id.clone(), a.dedup_key.clone(), a.first_seen.timestamp_micros(), a.last_seen.timestamp_micros())
            });
            let number = self.add(file.path, file.date, spans);
            let mut states = HashMap::with_capacity(in_file.len());
            for alert in in_file {
                let micros =
                    |t: DateTime<Utc>| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or_default();
                let state = Stored {
                    first_seen: micros(alert.first_seen),
                    last_seen: micros(alert.last_seen),
                    count: alert.count,
                    event_ids: alert.event_ids.clone(),
                    source_keys: alert.source_keys.clone(),
                };
                // The newest row per id wins, as when the file is read back.
                match states.entry(alert.id.clone()) {
                    std::collections::hash_map::Entry::Occupied(mut held) => {
                        let (_, old): &(i64, Stored) = held.get();
                        if state.count > old.count {
                            held.insert((emitted_at, state));
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert((emitted_at, state));
                    }
                }
            }
            if let Some(known) = self.files.get_mut(number as usize) {
                self.held_bytes += states.iter().map(|(id, (_, s))| held_size(id, s)).sum::<usize>();
                known.states = Some(states);
                self.held.push_back(number);
            }
        }
        while self.held_bytes > self.held_limit
            && let Some(oldest) = self.held.pop_front()
        {
            if let Some(states) = self.files.get_mut(oldest as usize).and_then(|f| f.states.take()) {
                self.held_bytes -= states.iter().map(|(id, (_, s))| held_size(id, s)).sum::<usize>();
            }
        }
    }

    /// The files holding rows of any of `ids`, in the date partitions from `from` to `to`.
    fn files_of<'a>(&self, ids: impl Iterator<Item = &'a str>, from: NaiveDate, to: NaiveDate) -> Vec<&KnownFile> {
        let numbers: BTreeSet<u32> = ids.filter_map(|id| self.ids.get(id)).flatten().copied().collect();
        numbers
            .into_iter()
            .filter_map(|n| self.files.get(n as usize))
            .filter(|file| file.date.is_none_or(|date| from <= date && date <= to))
            .filter(|file| !file.gone || file.states.is_some())
            .collect()
    }
}

impl crate::alert::RecordedAlerts for KnownIds {
    fn recorded(&self, dedup_key: &str) -> Vec<Recorded> {
        let Some(spans) = self.spans.get(dedup_key) else { return Vec::new() };
        spans
            .iter()
            .map(|(id, &(first, last))| Recorded { id: id.clone(), first_seen: first, last_seen: last })
            .collect()
    }
}

/// The dedup window of each rule: how far apart matches of one alert may be.
#[derive(Debug, Clone)]
pub struct Windows {
    by_rule: HashMap<String, Duration>,
    widest: Duration,
}

impl Windows {
    /// The windows of these rules.
    pub fn of(rules: &[crate::rule::Rule]) -> Windows {
        let by_rule: HashMap<String, Duration> = rules.iter().map(|r| (r.id.clone(), r.dedup.window)).collect();
        let widest = by_rule.values().copied().max().unwrap_or(Duration::from_secs(3600));
        Windows { by_rule, widest }
    }

    /// The same window for every rule.
    pub fn uniform(window: Duration) -> Windows {
        Windows { by_rule: HashMap::new(), widest: window }
    }

    /// The window of a rule (the widest for a rule not known).
    pub fn of_rule(&self, rule_id: &str) -> Duration {
        self.by_rule.get(rule_id).copied().unwrap_or(self.widest)
    }

    /// The widest window.
    pub fn widest(&self) -> Duration {
        self.widest
    }
}

/// Roughly the memory one held state takes.
fn held_size(id: &str, state: &Stored) -> usize {
    let strings = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
    id.len() + 128 + strings(&state.event_ids) + strings(&state.source_keys)
}

/// The columns `names` of one data file of `table`, read straight from its Parquet.
async fn read_columns(table: &DeltaTable, path: &deltalake::Path, names: &[&str]) -> Result<Vec<RecordBatch>> {
    let unreadable = |reason: String| DetectError::Lake(format!("{}: {path}: {reason}", alerts::TABLE_NAME));
    let bytes = table.object_store().get(path).await.map_err(|e| unreadable(e.to_string()))?;
    let bytes = bytes.bytes().await.map_err(|e| unreadable(e.to_string()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| unreadable(e.to_string()))?;
    let roots = names
        .iter()
        .map(|name| builder.schema().index_of(name).map_err(|_| unreadable(format!("no {name} column"))))
        .collect::<Result<Vec<usize>>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).build().map_err(|e| unreadable(e.to_string()))?;
    let mut batches = Vec::new();
    for batch in reader {
        // The projection keeps the file's column order: put the columns in the order asked for.
        let batch = batch?;
        let order = names
            .iter()
            .map(|name| batch.schema().index_of(name).map_err(|_| unreadable(format!("no {name} column"))))
            .collect::<Result<Vec<usize>>>()?;
        batches.push(batch.project(&order)?);
    }
    Ok(batches)
}

/// Reads the stored state of these alert ids, looking only at the partitions they can be in:
/// an alert's rows all fall inside one dedup window, so its first match is at most `widest_window`
/// before the fresh result's first match. An alert's state is its newest row (the latest
/// `emitted_at`, then the largest count), as in the `alerts` view.
pub async fn stored_state(
    lake: &Lake,
    known: &mut KnownIds,
    fresh: &[Alert],
    widest_window: Duration,
) -> Result<HashMap<String, Stored>> {
    match learn_around(lake, known, fresh, widest_window).await? {
        Some(table) => read_states(&table, known, fresh, widest_window).await,
        None => Ok(HashMap::new()),
    }
}

/// Learns the alerts the table holds that matches from `from` to `to` can join (see
/// [`crate::alert::RecordedAlerts`]): those first seen up to `widest_window` around the span.
pub async fn learn_span(
    lake: &Lake,
    known: &mut KnownIds,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    widest_window: Duration,
) -> Result<()> {
    let mut table = lake.alerts_table().clone();
    table.update_state().await.map_err(lake_error)?;
    if table.version().is_none() {
        return Ok(());
    }
    bunker_query::check_table_files(alerts::TABLE_NAME, &table).map_err(|e| DetectError::Lake(e.to_string()))?;
    let window = chrono::Duration::from_std(widest_window).unwrap_or(chrono::Duration::days(1));
    known.learn(&table, (from - window).date_naive(), (to + window).date_naive()).await
}

/// The days an alert fitting with one of `fresh` can be stored under: an alert spans less than
/// its window, so it was first seen at most a window before or after one of them.
fn days_around(fresh: &[Alert], widest_window: Duration) -> (NaiveDate, NaiveDate) {
    let window = chrono::Duration::from_std(widest_window).unwrap_or(chrono::Duration::days(1));
    (
        (fresh.iter().map(|a| a.first_seen).min().unwrap_or_default() - window).date_naive(),
        (fresh.iter().map(|a| a.last_seen).max().unwrap_or_default() + window).date_naive(),
    )
}

/// Learns the files of the days alerts like `fresh` can be stored under, as the table is now;
/// `None` when the table has no version yet.
async fn learn_around(
    lake: &Lake,
    known: &mut KnownIds,
    fresh: &[Alert],
    widest_window: Duration,
) -> Result<Option<DeltaTable>> {
    if fresh.is_empty() {
        return Ok(None);
    }
    let mut table = lake.alerts_table().clone();
    // Other workers append too: read the table as it is now, not as this process last wrote it.
    table.update_state().await.map_err(lake_error)?;
    if table.version().is_none() {
        return Ok(None);
    }
    bunker_query::check_table_files(alerts::TABLE_NAME, &table).map_err(|e| DetectError::Lake(e.to_string()))?;
    let (from, to) = days_around(fresh, widest_window);
    known.learn(&table, from, to).await?;
    Ok(Some(table))
}

/// The newest stored state of each of `fresh` the table holds (its files learnt already).
async fn read_states(
    table: &DeltaTable,
    known: &KnownIds,
    fresh: &[Alert],
    widest_window: Duration,
) -> Result<HashMap<String, Stored>> {
    let (from, to) = days_around(fresh, widest_window);
    // Most results are of alerts never stored before: only the files of the others are read.
    let wanted: HashSet<&str> = fresh.iter().map(|a| a.id.as_str()).filter(|id| known.contains(id)).collect();
    let mut newest: HashMap<String, (i64, Stored)> = HashMap::new();
    // The newest row per id wins: the latest `emitted_at`, then the largest count.
    let mut keep = |id: &str, at: i64, state: Stored| {
        if newest.get(id).is_none_or(|(a, s)| (*a, s.count) < (at, state.count)) {
            newest.insert(id.to_owned(), (at, state));
        }
    };
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let strings = DataType::List(list_item());
    let names = ["id", "emitted_at", "first_seen", "last_seen", "count", "event_ids", "source_keys"];
    for file in known.files_of(wanted.iter().copied(), from, to) {
        if let Some(states) = &file.states {
            for (id, (at, state)) in states.iter().filter(|(id, _)| wanted.contains(id.as_str())) {
                keep(id, *at, state.clone());
            }
            continue;
        }
        for batch in read_columns(table, &file.path, &names).await? {
            let column = |i: usize, to: &DataType| -> Result<ArrayRef> { Ok(cast(batch.column(i), to)?) };
            let id = downcast::<StringArray>(&column(0, &DataType::Utf8)?)?;
            let emitted = downcast::<TimestampMicrosecondArray>(&column(1, &micros)?)?;
            let first = downcast::<TimestampMicrosecondArray>(&column(2, &micros)?)?;
            let last = downcast::<TimestampMicrosecondArray>(&column(3, &micros)?)?;
            let count = downcast::<Int64Array>(&column(4, &DataType::Int64)?)?;
            let events = downcast::<ListArray>(&column(5, &strings)?)?;
            let keys = downcast::<ListArray>(&column(6, &strings)?)?;
            for row in 0..batch.num_rows() {
                if id.is_null(row) || !wanted.contains(id.value(row)) {
                    continue;
                }
                let time =
                    |a: &TimestampMicrosecondArray| DateTime::from_timestamp_micros(a.value(row)).unwrap_or_default();
                let state = Stored {
                    first_seen: time(&first),
                    last_seen: time(&last),
                    count: count.value(row).max(0) as u64,
                    event_ids: list_values(&events, row),
                    source_keys: list_values(&keys, row),
                };
                keep(id.value(row), emitted.value(row), state);
            }
        }
    }
    Ok(newest.into_iter().map(|(id, (_, state))| (id, state)).collect())
}

/// Folds fresh alerts with their stored state and appends the results to the `alerts` table;
/// returns them as folded (what the sinks get).
///
/// A fresh alert under an id the table does not hold, which fits inside an alert the table holds
/// for the same dedup key (together they span less than the rule's window), is that alert: it
/// takes its id. That is the same burst read from another start — a look-back beginning inside it,
/// a late object, the next commit of a burst of row matches — and must update the alert, not
/// raise another.
pub async fn record(
    lake: &mut Lake,
    known: &mut KnownIds,
    mut fresh: Vec<Alert>,
    run: RunKind,
    windows: &Windows,
) -> Result<Vec<Alert>> {
    if fresh.is_empty() {
        return Ok(fresh);
    }
    let started = std::time::Instant::now();
    let table = learn_around(lake, known, &fresh, windows.widest()).await?;
    join_recorded(known, &mut fresh, windows);
    let stored = match &table {
        Some(table) => read_states(table, known, &fresh, windows.widest()).await?,
        None => HashMap::new(),
    };
    let read_in = started.elapsed();
    for alert in &mut fresh {
        if let Some(state) = stored.get(&alert.id) {
            fold(alert, state, run);
        }
    }
    let emitted_at = Utc::now();
    let batch = alerts_batch(&fresh, emitted_at, run)?;
    let files = lake.append_alerts(batch).await.map_err(|e| DetectError::Lake(e.to_string()))?;
    known.wrote(files, &fresh, emitted_at.timestamp_micros());
    tracing::debug!(alerts = fresh.len(), stored = stored.len(), ?read_in, total = ?started.elapsed(), "alerts recorded");
    Ok(fresh)
}

/// Gives each fresh alert under a new id that fits in a recorded alert of its dedup key that
/// alert's id (see [`record`]). In time order, each alert widening the span it joined, so two
/// fresh alerts never join one recorded alert together beyond its window.
fn join_recorded(known: &KnownIds, fresh: &mut [Alert], windows: &Windows) {
    use crate::alert::RecordedAlerts as _;
    let taken: HashSet<String> = fresh.iter().map(|a| a.id.clone()).collect();
    let mut order: Vec<usize> = (0..fresh.len()).collect();
    order.sort_by_key(|&i| (fresh[i].first_seen, fresh[i].id.clone()));
    // Spans widened by the fresh alerts joined so far, by id.
    let mut widened: HashMap<String, (i64, i64)> = HashMap::new();
    for i in order {
        let alert = &fresh[i];
        if known.contains(&alert.id) {
            continue;
        }
        let window = (windows.of_rule(&alert.rule_id).as_micros() as i64).max(1);
        let (first, last) = (alert.first_seen.timestamp_micros(), alert.last_seen.timestamp_micros());
        let joined = known
            .recorded(&alert.dedup_key)
            .into_iter()
            .filter(|r| !taken.contains(&r.id))
            .map(|r| {
                let span = widened.get(&r.id).copied().unwrap_or((r.first_seen, r.last_seen));
                (r.id, span)
            })
            .filter(|(_, (f, l))| l.max(&last) - f.min(&first) < window)
            .min_by(|a, b| (a.1.0, &a.0).cmp(&(b.1.0, &b.0)));
        if let Some((id, (f, l))) = joined {
            widened.insert(id.clone(), (f.min(first), l.max(last)));
            fresh[i].id = id;
        }
    }
}

/// Alerts as rows of the `alerts` table.
pub fn alerts_batch(alerts: &[Alert], emitted_at: DateTime<Utc>, run: RunKind) -> Result<RecordBatch> {
    let n = alerts.len();
    let text =
        |f: &dyn Fn(&Alert) -> Option<String>| -> ArrayRef { Arc::new(alerts.iter().map(f).collect::<StringArray>()) };
    let time = |f: &dyn Fn(&Alert) -> i64| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(alerts.iter().map(f).collect::<Vec<_>>()).with_timezone("UTC"))
    };
    let list = |f: &dyn Fn(&Alert) -> &[String]| -> ArrayRef {
        let mut builder = ListBuilder::new(StringBuilder::new()).with_field(list_item());
        for alert in alerts {
            for value in f(alert) {
                builder.values().append_value(value);
            }
            builder.append(true);
        }
        Arc::new(builder.finish())
    };
    let details = |a: &Alert| serde_json::to_string(&a.details).ok();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(vec![emitted_at.timestamp_micros(); n]).with_timezone("UTC")),
        text(&|a| Some(a.id.clone())),
        text(&|a| Some(a.rule_id.clone())),
        text(&|a| Some(a.title.clone())),
        text(&|a| Some(a.severity.name().to_owned())),
        list(&|a| &a.mitre),
        text(&|a| Some(a.dedup_key.clone())),
        time(&|a| a.first_seen.timestamp_micros()),
        time(&|a| a.last_seen.timestamp_micros()),
        Arc::new(alerts.iter().map(|a| Some(a.count as i64)).collect::<Int64Array>()),
        text(&|a| a.account.clone()),
        text(&|a| a.region.clone()),
        text(&|a| a.principal.clone()),
        text(&|a| a.source_ip.clone()),
        list(&|a| &a.event_ids),
        list(&|a| &a.source_keys),
        text(&details),
        text(&|_| Some(run.name().to_owned())),
        Arc::new(Date32Array::from(
            alerts
                .iter()
                .map(|a| bunker_ingest::timestamp::micros_to_days(a.first_seen.timestamp_micros()))
                .collect::<Vec<_>>(),
        )),
    ];
    Ok(RecordBatch::try_new(alerts::schema(), columns)?)
}

fn list_item() -> Arc<arrow::datatypes::Field> {
    match alerts::schema().field_with_name("event_ids").map(|f| f.data_type().clone()) {
        Ok(DataType::List(item)) => item,
        _ => Arc::new(arrow::datatypes::Field::new("element", DataType::Utf8, true)),
    }
}

fn list_values(list: &ListArray, row: usize) -> Vec<String> {
    if list.is_null(row) {
        return Vec::new();
    }
    let values = list.value(row);
    values
        .as_any()
        .downcast_ref::<StringArray>()
        .map(|strings| strings.iter().flatten().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The concrete array behind a column that was cast to `T`'s type just before.
fn downcast<T: Array + Clone + 'static>(array: &ArrayRef) -> Result<T> {
    array.as_any().downcast_ref::<T>().cloned().ok_or_else(|| {
        DetectError::Lake(format!("{}: a column is not {}", alerts::TABLE_NAME, std::any::type_name::<T>()))
    })
}

fn lake_error(e: deltalake::DeltaTableError) -> DetectError {
    DetectError::Lake(format!("{}: {e}", alerts::TABLE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Severity;
    use bunker_ingest::lake::LakeConfig;

    fn alert(id: &str, minute: u32, events: &[&str]) -> Alert {
        let at = |m: u32| DateTime::parse_from_rfc3339(&format!("2025-03-03T10:{m:02}:00Z")).expect("time").to_utc();
        Alert {
            id: id.into(),
            rule_id: "r".into(),
            title: "T".into(),
            description: "D".into(),
            severity: Severity::High,
            mitre: vec!["T1078".into()],
            dedup_key: format!("r|account={id}"),
            first_seen: at(minute),
            last_seen: at(minute + events.len() as u32),
            count: events.len() as u64,
            account: Some("111122223333".into()),
            region: None,
            principal: None,
            source_ip: None,
            event_ids: events.iter().map(|e| e.to_string()).collect(),
            source_keys: vec!["k".into()],
            details: serde_json::Map::new(),
        }
    }

    #[test]
    fn row_runs_add_new_events_only_and_window_runs_keep_the_larger_count() {
        let stored = Stored {
            first_seen: alert("a", 10, &[]).first_seen,
            last_seen: alert("a", 12, &[]).first_seen,
            count: 2,
            event_ids: vec!["e1".into(), "e2".into()],
            source_keys: vec!["k".into()],
        };
        let mut fresh = alert("a", 20, &["e3", "e4"]);
        fold(&mut fresh, &stored, RunKind::Worker);
        assert_eq!((fresh.count, fresh.event_ids.len()), (4, 4));
        assert_eq!(fresh.first_seen, stored.first_seen);
        // The same rows again (a retried batch) add nothing.
        let mut again = alert("a", 10, &["e1", "e2"]);
        fold(&mut again, &stored, RunKind::Ingest);
        assert_eq!(again.count, 2);
        // A window rule recounting its look-back: the larger count, not the sum.
        let mut recount = alert("a", 10, &["e1", "e2", "e3"]);
        fold(&mut recount, &stored, RunKind::Schedule);
        assert_eq!(recount.count, 3);
    }

    #[tokio::test]
    async fn recorded_alerts_fold_with_what_the_table_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = Lake::open(dir.path(), LakeConfig::default()).await.expect("lake");
        let window = Duration::from_secs(3600);
        let mut known = KnownIds::default();
        let first = record(
            &mut lake,
            &mut known,
            vec![alert("aa01", 10, &["e1", "e2"])],
            RunKind::Worker,
            &Windows::uniform(window),
        )
        .await
        .expect("record");
        assert_eq!(first[0].count, 2);
        record_second(&mut lake, &mut known, window).await;
        // Another process (no memory of the above) reads the same state back.
        let reopened = Lake::open(dir.path(), LakeConfig::default()).await.expect("lake");
        let stored =
            stored_state(&reopened, &mut KnownIds::default(), &[alert("aa01", 50, &[])], window).await.expect("state");
        assert_eq!(stored["aa01"].count, 3);
        assert_eq!(stored["aa01"].first_seen, alert("x", 10, &[]).first_seen);
        // The view keeps the newest state per alert.
        let session = bunker_query::LakeSession::open(dir.path()).await.expect("session");
        let (_, batches) = session.sql("SELECT id, count FROM alerts ORDER BY id").await.expect("query");
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 2);
        let (_, updates) = session.sql("SELECT count(*) FROM alert_updates").await.expect("query");
        let n = updates[0].column(0).as_any().downcast_ref::<Int64Array>().expect("count").value(0);
        assert_eq!(n, 3);
    }

    /// Records `aa01` again with one new event and a new `bb02`, after `aa01` was recorded with
    /// two events from minute 10: `aa01` must come out folded with that first state.
    async fn record_second(lake: &mut Lake, known: &mut KnownIds, window: Duration) {
        let fresh = vec![alert("aa01", 30, &["e2", "e3"]), alert("bb02", 5, &["x"])];
        let second = record(lake, known, fresh, RunKind::Worker, &Windows::uniform(window)).await.expect("record");
        assert_eq!(second.iter().map(|a| (a.id.as_str(), a.count)).collect::<Vec<_>>(), [("aa01", 3), ("bb02", 1)]);
        assert_eq!(second[0].event_ids, ["e1", "e2", "e3"]);
        assert_eq!(second[0].first_seen, alert("x", 10, &[]).first_seen);
    }

    /// The alert files under the lake's `alert_updates` table.
    fn alert_files(lake: &std::path::Path) -> Vec<std::path::PathBuf> {
        let days = std::fs::read_dir(lake.join(alerts::TABLE_NAME)).expect("table folder");
        let days = days.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("date="));
        days.flat_map(|day| std::fs::read_dir(day.path()).expect("day folder").filter_map(|e| e.ok()))
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect()
    }

    /// A process re-raising an alert folds it with the state it wrote last, from memory: its own
    /// files are not read back (here they are gone from disk, and recording still folds right).
    /// Past the limit on what is held, the oldest states are read back from their files again.
    #[tokio::test]
    async fn states_this_process_wrote_are_not_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = Lake::open(dir.path(), LakeConfig::default()).await.expect("lake");
        let window = Duration::from_secs(3600);
        let mut known = KnownIds::default();
        record(
            &mut lake,
            &mut known,
            vec![alert("aa01", 10, &["e1", "e2"])],
            RunKind::Worker,
            &Windows::uniform(window),
        )
        .await
        .expect("record");
        let written = alert_files(dir.path());
        assert_eq!(written.len(), 1, "{written:?}");
        std::fs::remove_file(&written[0]).expect("remove");
        record_second(&mut lake, &mut known, window).await;
        // Another process has only the files: the one removed cannot be read.
        let fresh = stored_state(&lake, &mut KnownIds::default(), &[alert("aa01", 50, &[])], window).await;
        assert!(fresh.is_err(), "{fresh:?}");

        // Holding nothing, the same process reads its own last write back from the file.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = Lake::open(dir.path(), LakeConfig::default()).await.expect("lake");
        let mut known = KnownIds { held_limit: 0, ..KnownIds::default() };
        record(
            &mut lake,
            &mut known,
            vec![alert("aa01", 10, &["e1", "e2"])],
            RunKind::Worker,
            &Windows::uniform(window),
        )
        .await
        .expect("record");
        assert!(known.held.is_empty() && known.held_bytes == 0);
        let again =
            record(&mut lake, &mut known, vec![alert("aa01", 30, &["e3"])], RunKind::Worker, &Windows::uniform(window))
                .await
                .expect("record");
        assert_eq!(again[0].count, 3);
        std::fs::remove_file(&alert_files(dir.path())[0]).expect("remove");
        let lost =
            record(&mut lake, &mut known, vec![alert("aa01", 40, &["e4"])], RunKind::Worker, &Windows::uniform(window))
                .await;
        assert!(lost.is_err(), "a state not held is read from its file: {lost:?}");
    }

    /// After a compaction of `alert_updates` (the worker's scheduled pass), the files it replaced
    /// may be deleted by a vacuum: a process that learnt them reads the compacted file instead,
    /// and folds exactly as before — with or without the states it wrote held in memory.
    #[tokio::test]
    async fn compacted_alert_files_fold_the_same() {
        use bunker_ingest::compact::{CompactOptions, Compactable};
        let window = Duration::from_secs(3600);
        for held_limit in [HELD_BYTES, 0] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut lake = Lake::open(dir.path(), LakeConfig::default()).await.expect("lake");
            let mut known = KnownIds { held_limit, ..KnownIds::default() };
            record(
                &mut lake,
                &mut known,
                vec![alert("aa01", 10, &["e1", "e2"])],
                RunKind::Worker,
                &Windows::uniform(window),
            )
            .await
            .expect("record");
            record_second(&mut lake, &mut known, window).await;
            let written = alert_files(dir.path());
            assert_eq!(written.len(), 2, "{written:?}");

            let report = lake.compact(Compactable::AlertUpdates, &CompactOptions::default()).await.expect("compact");
            assert_eq!(report.days.iter().map(|d| (d.files_before, d.files_after)).collect::<Vec<_>>(), [(2, 1)]);
            for file in written {
                std::fs::remove_file(file).expect("vacuum");
            }
            let again = record(
                &mut lake,
                &mut known,
                vec![alert("aa01", 40, &["e3", "e4"])],
                RunKind::Worker,
                &Windows::uniform(window),
            )
            .await
            .expect("record after the compaction");
            assert_eq!((again[0].count, again[0].event_ids.len()), (4, 4), "held_limit {held_limit}");
            let stored =
                stored_state(&lake, &mut KnownIds::default(), &[alert("bb02", 50, &[])], window).await.expect("state");
            assert_eq!(stored["bb02"].count, 1, "held_limit {held_limit}");
        }
    }
}
