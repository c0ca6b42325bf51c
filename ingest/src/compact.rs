//! Compaction: a day's files as ingestion wrote them — one small file per commit — rewritten as a
//! few large files whose rows are clustered for pruning.
//!
//! Ingestion commits every few seconds (the worker) or every 48 MiB of rows (`bunker ingest`), so
//! a month of a busy organisation is tens of thousands of small files, each holding every account
//! and every principal of its few minutes: a query for one principal opens and decodes all of
//! them. Compaction reads a day's uncompacted files, sorts their rows by a key per table — for
//! CloudTrail `useridentity.arn`, then the account, then time — and writes them back as files of
//! row groups in which each principal's rows sit together, so row-group and page statistics skip
//! nearly everything a responder's query does not want (see `bunker-query`'s pruning of struct
//! fields). The swap is one Delta commit per day that removes the old files and adds the new ones
//! with `dataChange: false`: readers see the day before or after, never half, and rows are neither
//! lost nor doubled. Commits that land meanwhile (the worker appending to the same day) are kept:
//! the compaction only removes files it read.
//!
//! The side tables — `ingest_log`, `alert_updates`, `region_sightings` — get a small file per
//! commit too, and a worker commits every few seconds for months: they are compacted the same
//! way (see [`Compactable`]). Besides what their readers pay, every file of a table costs each
//! later commit to it, as delta-rs carries every file of the table into the snapshot it makes
//! after a commit.
//!
//! What is compact already is left as it is: files compaction wrote are never read again, and a
//! day holding a single file no compaction wrote is skipped too (one file in, one file out would
//! merge nothing and leave a second copy of the day on storage until a vacuum). A day with
//! compacted files and one late file keeps the late file as ingestion wrote it, until another
//! arrives.
//!
//! Memory is bounded: a day is rewritten in groups of files holding at most
//! [`CompactOptions::memory_bytes`] of rows (each group one sorted output file), so the peak is
//! about twice that, whatever the size of the day. Removed files stay on storage, as Delta keeps
//! them for time travel, until a vacuum deletes them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{SortColumn, SortOptions, concat, interleave_record_batch, lexsort_to_indices};
use arrow::datatypes::SchemaRef;
use bunker_schemas::{DATE_COLUMN, LogTable, alerts, baseline, ingest_log};
use chrono::NaiveDate;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::protocol::DeltaOperation;
use deltalake::table::state::DeltaTableState;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use crate::datafile::{self, DataFile, Threads};
use crate::lake::{self, Lake};
use crate::{IngestError, Result};

/// File names of compacted files start with this: a compacted file is never compacted again.
pub const COMPACTED_PREFIX: &str = "compacted-";

/// What to compact and with how much memory.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only days on or after this one.
    pub since: Option<NaiveDate>,
    /// Only days on or before this one.
    pub until: Option<NaiveDate>,
    /// Rows (in memory, as Arrow) sorted into one output file at most; the peak memory of a
    /// compaction is about twice this.
    pub memory_bytes: usize,
    /// zstd level of the rewritten files: they are written once and read for months, so a
    /// stronger level than ingestion's pays.
    pub zstd_level: i32,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions { since: None, until: None, memory_bytes: 512 << 20, zstd_level: 3 }
    }
}

/// What compacting one day of one table did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCompaction {
    /// The table.
    pub table: Compactable,
    /// The day (`date` partition).
    pub date: NaiveDate,
    /// Files read and removed.
    pub files_before: usize,
    /// Files written.
    pub files_after: usize,
    /// Rows rewritten.
    pub rows: u64,
    /// Bytes of the files removed.
    pub bytes_before: u64,
    /// Bytes of the files written.
    pub bytes_after: u64,
    /// Version of the commit that swapped them.
    pub version: u64,
}

/// A table compaction rewrites: a log table, or a side table that ingestion and the detections
/// append a small file to at every commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Compactable {
    /// `cloudtrail`, `vpcflow` or `dns`.
    Log(LogTable),
    /// `ingest_log`: a row per object looked at.
    IngestLog,
    /// `alert_updates`: a row per alert update.
    AlertUpdates,
    /// `region_sightings`: a row per first use of a region by an account.
    RegionSightings,
}

impl Compactable {
    /// Every table of the lake.
    pub const ALL: [Compactable; 6] = [
        Compactable::Log(LogTable::CloudTrail),
        Compactable::Log(LogTable::VpcFlow),
        Compactable::Log(LogTable::Dns),
        Compactable::IngestLog,
        Compactable::AlertUpdates,
        Compactable::RegionSightings,
    ];

    /// The table's name in the lake and in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Compactable::Log(table) => table.name(),
            Compactable::IngestLog => ingest_log::TABLE_NAME,
            Compactable::AlertUpdates => alerts::TABLE_NAME,
            Compactable::RegionSightings => baseline::TABLE_NAME,
        }
    }

    /// The table called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Compactable> {
        Compactable::ALL.into_iter().find(|t| t.name() == name)
    }

    fn schema(self) -> SchemaRef {
        match self {
            Compactable::Log(table) => table.schema(),
            Compactable::IngestLog => ingest_log::schema(),
            Compactable::AlertUpdates => alerts::schema(),
            Compactable::RegionSightings => baseline::schema(),
        }
    }

    fn log_table(self) -> Option<LogTable> {
        match self {
            Compactable::Log(table) => Some(table),
            _ => None,
        }
    }

    /// The columns whose statistics go into the table's Delta log, as its appends write them.
    fn stats_columns(self) -> Vec<&'static str> {
        match self {
            Compactable::Log(table) => lake::stats_columns(table),
            Compactable::IngestLog => lake::LOG_STATS.to_vec(),
            Compactable::AlertUpdates => lake::ALERT_STATS.to_vec(),
            Compactable::RegionSightings => lake::SIGHTING_STATS.to_vec(),
        }
    }

    /// The columns the table's compacted rows are sorted by (a struct field as `struct.field`).
    ///
    /// For the log tables: what responders look for first, then the account, then time. What
    /// responders look for comes first, not the account as in ingestion's files: a row group's
    /// minimum and maximum are then a narrow range of principals (or addresses) that no other
    /// row group of the file overlaps. Sorted by account first, each row group spans the end of
    /// one account's principals and the start of the next's — `arn:aws:iam::1111…` to
    /// `arn:aws:sts::2222…` — a range holding most principals of both; on the benchmark lake the
    /// filter then still met 3 of its 10 million rows, against a few thousand this way. ARNs
    /// begin with their account, so each row group still covers few accounts.
    ///
    /// For the side tables, what they are looked up by: an object's key ("was it ingested?"), an
    /// alert's rule and id (every update of an alert side by side), an account's regions.
    pub fn cluster_columns(self) -> &'static [&'static str] {
        match self {
            Compactable::Log(LogTable::CloudTrail) => &["useridentity.arn", "recipientaccountid", "eventtime"],
            Compactable::Log(LogTable::VpcFlow) => &["srcaddr", "account_id", "start"],
            Compactable::Log(LogTable::Dns) => &["srcaddr", "account_id", "query_timestamp"],
            Compactable::IngestLog => &["source_key", "ingested_at"],
            Compactable::AlertUpdates => &["rule_id", "id", "emitted_at"],
            Compactable::RegionSightings => &["account", "region", "first_seen"],
        }
    }
}

impl From<LogTable> for Compactable {
    fn from(table: LogTable) -> Self {
        Compactable::Log(table)
    }
}

impl std::fmt::Display for Compactable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One file of the table as the snapshot lists it.
struct ListedFile {
    path: String,
    size: u64,
    remove: Action,
}

/// What a compaction of one table did.
#[derive(Debug, Default)]
pub struct CompactReport {
    /// The days compacted, in date order.
    pub days: Vec<DayCompaction>,
    /// The days that could not be compacted (left as they were), with the reason.
    pub failed: Vec<(NaiveDate, IngestError)>,
}

impl Lake {
    /// Compacts every day of `table` in the options' range that has two files or more no
    /// compaction wrote yet, one commit per day (a day's lone such file is left as it is). A day that fails (an unreadable file, a concurrent compaction)
    /// is left as it was and reported; the other days go on.
    pub async fn compact(&mut self, table: impl Into<Compactable>, options: &CompactOptions) -> Result<CompactReport> {
        let table = table.into();
        let mut config = self.config().clone();
        config.zstd_level = options.zstd_level;
        let props = lake::writer_properties(&config, table.log_table())?;
        let rows_per_group = config.max_row_group_rows;
        let delta = self.table_mut(table).await?;
        let (read, days) = uncompacted_days(delta, table, options)?;
        let mut report = CompactReport::default();
        for (date, files) in days {
            let started = std::time::Instant::now();
            let rewrite = DayRewrite { table, date, files, memory_bytes: options.memory_bytes, rows_per_group };
            match rewrite.run(delta, &read, &props).await {
                Ok(day) => {
                    tracing::info!(
                        table = table.name(),
                        %date,
                        files_before = day.files_before,
                        files_after = day.files_after,
                        rows = day.rows,
                        version = day.version,
                        seconds = started.elapsed().as_secs_f64(),
                        "compacted a day"
                    );
                    report.days.push(day);
                }
                Err(error) => {
                    tracing::warn!(table = table.name(), %date, %error, "day not compacted");
                    report.failed.push((date, error));
                }
            }
        }
        if !report.days.is_empty() {
            // A checkpoint of the compacted state: a reader opening the table then replays none
            // of the commits before it (on the benchmark lake, up to ninety commits of object
            // lists, most of the time it took to open). Only an optimisation, so a failure is
            // logged, not returned.
            if let Err(error) = deltalake::protocol::checkpoints::create_checkpoint(delta, None).await {
                tracing::warn!(table = table.name(), %error, "no checkpoint after compaction");
            }
        }
        Ok(report)
    }

    /// The Delta table of `table`, brought up to date.
    pub(crate) async fn table_mut(&mut self, table: Compactable) -> Result<&mut DeltaTable> {
        match table {
            Compactable::Log(log) => self.delta_mut(log).await,
            side => self.side_table_mut(side.name()).await,
        }
    }
}

/// Compacts, in every table, the days before `today` and no further back than `lookback_days`
/// — the days ingestion has finished with (late events still reach them; their files are
/// compacted on a later run). The worker runs this on a schedule. A table that fails is logged
/// and the others go on; returns the days compacted.
pub async fn compact_past_days(lake: &mut Lake, today: NaiveDate, lookback_days: u32, memory_bytes: usize) -> usize {
    let options = CompactOptions {
        since: today.checked_sub_days(chrono::Days::new(u64::from(lookback_days.max(1)))),
        until: today.pred_opt(),
        memory_bytes,
        ..CompactOptions::default()
    };
    let mut compacted = 0;
    for table in Compactable::ALL {
        match lake.compact(table, &options).await {
            Ok(report) => {
                compacted += report.days.len();
                metrics::counter!("bunker_compacted_days_total", "table" => table.name())
                    .increment(report.days.len() as u64);
                for (date, error) in report.failed {
                    tracing::warn!(table = table.name(), %date, %error, "day not compacted; tried again next time");
                    metrics::counter!("bunker_errors_total", "kind" => "compaction").increment(1);
                }
            }
            Err(error) => {
                tracing::warn!(table = table.name(), %error, "compaction failed; tried again next time");
                metrics::counter!("bunker_errors_total", "kind" => "compaction").increment(1);
            }
        }
    }
    compacted
}

/// The snapshot read, and the days in range with two files or more that no compaction wrote,
/// with those files.
fn uncompacted_days(
    delta: &DeltaTable,
    table: Compactable,
    options: &CompactOptions,
) -> Result<(DeltaTableState, BTreeMap<NaiveDate, Vec<ListedFile>>)> {
    let snapshot = delta.snapshot().map_err(|e| lake::lake_error(table.name(), e))?;
    let mut days: BTreeMap<NaiveDate, Vec<ListedFile>> = BTreeMap::new();
    for view in snapshot.log_data().iter() {
        let path = view.path().to_string();
        let name = path.rsplit('/').next().unwrap_or(&path);
        if name.starts_with(COMPACTED_PREFIX) {
            continue;
        }
        let partition = view.partition_values_map();
        let Some(Some(day)) = partition.get(DATE_COLUMN) else { continue };
        let date = NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .map_err(|e| IngestError::Config(format!("{table}: file {path} has date partition {day:?}: {e}")))?;
        if options.since.is_some_and(|since| date < since) || options.until.is_some_and(|until| date > until) {
            continue;
        }
        let size = u64::try_from(view.size()).unwrap_or(0);
        days.entry(date).or_default().push(ListedFile {
            path,
            size,
            remove: Action::Remove(view.remove_action(false)),
        });
    }
    // A day with a single file no compaction wrote is left as it is: rewriting one file as one
    // file merges nothing, and until a vacuum the old copy stays on storage beside the new one
    // (the lake's bytes for that day doubled for a change of row order only). Its file joins the
    // next compaction of the day once a second one arrives. So compacting twice is a no-op, and
    // a day ingested as one file (`bunker ingest` commits up to 48 MiB of rows at once) keeps
    // ingestion's order (date, account, time) rather than compaction's.
    days.retain(|_, files| files.len() > 1);
    for files in days.values_mut() {
        // Oldest first (ingestion's file names are random; sizes tie rarely): the order only
        // decides which files share an output file.
        files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok((snapshot.clone(), days))
}

/// One day's files to rewrite.
struct DayRewrite {
    table: Compactable,
    date: NaiveDate,
    files: Vec<ListedFile>,
    memory_bytes: usize,
    rows_per_group: usize,
}

impl DayRewrite {
    /// Rewrites the files in sorted groups and swaps them in one commit made against `read`, the
    /// snapshot they were listed from: a concurrent commit that removed one of them (another
    /// compaction) then makes this one fail instead of bringing its rows back twice, while
    /// concurrent appends are kept.
    async fn run(
        self,
        delta: &mut DeltaTable,
        read: &DeltaTableState,
        props: &parquet::file::properties::WriterProperties,
    ) -> Result<DayCompaction> {
        let DayRewrite { table, date, files, memory_bytes, rows_per_group } = self;
        let expected = file_schema(table);
        let store = delta.object_store();
        let (mut written, mut group, mut held, mut rows) = (Vec::new(), Vec::new(), 0usize, 0u64);
        for file in &files {
            let batches = read_file(&store, delta, table, file, &expected).await?;
            held += batches.iter().map(RecordBatch::get_array_memory_size).sum::<usize>();
            rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            group.extend(batches);
            if held >= memory_bytes {
                written.push(sort_and_encode(table, date, std::mem::take(&mut group), props, rows_per_group).await?);
                held = 0;
            }
        }
        if group.iter().any(|b| b.num_rows() > 0) {
            written.push(sort_and_encode(table, date, group, props, rows_per_group).await?);
        }
        let bytes_after = written.iter().map(|f| f.bytes.len() as u64).sum();
        let files_after = written.len();
        let mut actions = lake::store_files(delta, written).await?;
        actions.extend(files.iter().map(|f| f.remove.clone()));
        let removed: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let version = commit_swap(delta, table, date, read, actions, &removed, rows, memory_bytes).await?;
        Ok(DayCompaction {
            table,
            date,
            files_before: files.len(),
            files_after,
            rows,
            bytes_before: files.iter().map(|f| f.size).sum(),
            bytes_after,
            version,
        })
    }
}

/// Commits a day's swap at the next version of the table, after checking that no commit since
/// `read` (the snapshot the files were listed from) removed any of them.
///
/// delta-rs's own conflict check ignores removals marked `dataChange: false`, which is how every
/// compaction marks them, so two compactions of the same files would both land and the rows
/// would be there twice. The check is made here instead, and each attempt commits exactly at the
/// version after the one checked; an attempt whose answer was lost is recognised by its id.
#[allow(clippy::too_many_arguments)]
async fn commit_swap(
    delta: &mut DeltaTable,
    table: Compactable,
    date: NaiveDate,
    read: &DeltaTableState,
    actions: Vec<Action>,
    removed: &HashSet<&str>,
    rows: u64,
    memory_bytes: usize,
) -> Result<u64> {
    let name = table.name();
    let id = uuid::Uuid::new_v4().to_string();
    let mut checked = read.version();
    for attempt in 1..=lake::MAX_COMMIT_ATTEMPTS {
        delta.update_state().await.map_err(|e| lake::lake_error(name, e))?;
        let latest = delta.version().unwrap_or(checked);
        let log_store = delta.log_store();
        for version in checked + 1..=latest {
            let Some(bytes) = log_store.read_commit_entry(version).await.map_err(|e| lake::lake_error(name, e))? else {
                continue;
            };
            if lake::attempt_of_commit(&bytes).as_deref() == Some(id.as_str()) {
                return Ok(version); // An earlier attempt landed; its answer was lost.
            }
            if let Some(path) = removed_paths(&bytes).into_iter().find(|p| removed.contains(p.as_str())) {
                return Err(IngestError::Config(format!(
                    "{name} {date}: version {version} (another compaction) already removed {path}; \
                     this compaction is abandoned"
                )));
            }
        }
        checked = latest;
        let operation = DeltaOperation::Optimize {
            predicate: Some(format!("{DATE_COLUMN} = '{date}'")),
            target_size: i64::try_from(memory_bytes).unwrap_or(i64::MAX),
        };
        let commit = CommitProperties::default()
            .with_metadata([(
                lake::COMMIT_INFO_KEY.to_owned(),
                json!({ lake::ATTEMPT_KEY: id, "compacted": { "date": date.to_string(), "rows": rows } }),
            )])
            .with_max_retries(0);
        let snapshot = delta.snapshot().map_err(|e| lake::lake_error(name, e))?;
        let result = CommitBuilder::from(commit)
            .with_actions(actions.clone())
            .build(Some(snapshot as &dyn TableReference), delta.log_store(), operation)
            .await;
        match result {
            Ok(committed) => {
                let version = committed.version();
                delta.state = Some(committed.snapshot());
                return Ok(version);
            }
            // Another writer took the version: check the commits again and retry.
            Err(e) if lake::lost_race(&e) => {
                tracing::debug!(table = name, %date, attempt, error = %e, "compaction commit lost a race");
            }
            // The answer may be lost: the next round looks for the attempt's id.
            Err(e) if attempt < lake::MAX_COMMIT_ATTEMPTS => {
                tracing::info!(table = name, %date, attempt, error = %e, "compaction commit failed; checking the log");
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt as u64)).await;
            }
            Err(e) => return Err(lake::lake_error(name, e)),
        }
    }
    Err(IngestError::Config(format!(
        "{name} {date}: the compaction lost {} races in a row; try again",
        lake::MAX_COMMIT_ATTEMPTS
    )))
}

/// The paths a commit file removes.
fn removed_paths(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|line| {
            let action = serde_json::from_slice::<serde_json::Value>(line).ok()?;
            let path = action.pointer("/remove/path")?.as_str()?;
            // The log keeps paths percent-encoded, as the snapshot's listing does not.
            Some(percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned())
        })
        .collect()
}

/// The columns of a table's data files: the table's without its partition column.
fn file_schema(table: Compactable) -> SchemaRef {
    let schema = table.schema();
    let fields: Vec<_> = schema.fields().iter().filter(|f| f.name() != DATE_COLUMN).cloned().collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Reads one data file whole, checking it has the table's columns.
async fn read_file(
    store: &Arc<dyn deltalake::ObjectStore>,
    delta: &DeltaTable,
    table: Compactable,
    file: &ListedFile,
    expected: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let location = lake::file_location(delta.table_url(), &file.path);
    let failed = |reason: String| IngestError::LakeRead { location: location.clone(), reason };
    let path = deltalake::Path::from(file.path.as_str());
    // Ingestion's files are a few MiB: fetched whole, then decoded off the async runtime.
    let bytes = async { store.get(&path).await?.bytes().await }.await.map_err(|e| failed(e.to_string()))?;
    let expected = expected.clone();
    let decoded = tokio::task::spawn_blocking(move || -> std::result::Result<Vec<RecordBatch>, String> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| e.to_string())?
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| e.to_string())?;
        let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().map_err(|e| e.to_string())?;
        if let Some(batch) = batches.first() {
            let given = batch.schema();
            let same = given.fields().len() == expected.fields().len()
                && given
                    .fields()
                    .iter()
                    .zip(expected.fields())
                    .all(|(g, e)| g.name() == e.name() && g.data_type().equals_datatype(e.data_type()));
            if !same {
                return Err(format!("its columns are not those of {table}; the day is left as it is"));
            }
        }
        // The table's own schema (field metadata, nullability) on the rows, so that every
        // group's batches agree exactly.
        batches
            .into_iter()
            .map(|b| RecordBatch::try_new(expected.clone(), b.columns().to_vec()).map_err(|e| e.to_string()))
            .collect()
    })
    .await
    .map_err(|e| failed(e.to_string()))?;
    decoded.map_err(failed)
}

/// Sorts a group's rows by the table's cluster columns and encodes them as one file, off the
/// async runtime.
async fn sort_and_encode(
    table: Compactable,
    date: NaiveDate,
    group: Vec<RecordBatch>,
    props: &parquet::file::properties::WriterProperties,
    rows_per_group: usize,
) -> Result<DataFile> {
    let props = props.clone();
    tokio::task::spawn_blocking(move || {
        let sorted = sort_rows(table, &group, rows_per_group)?;
        drop(group);
        let mut file = datafile::encode_day(
            table.name(),
            date,
            &sorted,
            &table.stats_columns(),
            props,
            rows_per_group,
            Threads::Pool,
        )?;
        file.path = format!("{DATE_COLUMN}={date}/{COMPACTED_PREFIX}{}.zstd.parquet", uuid::Uuid::new_v4());
        file.add.path.clone_from(&file.path);
        file.add.data_change = false;
        Ok(file)
    })
    .await
    .map_err(|e| IngestError::Config(format!("compacting {table} {date}: {e}")))?
}

/// The rows of `batches` in cluster order, as batches of at most `chunk` rows. Only the sort
/// columns are gathered into one array; the rows themselves are copied once, into the output.
fn sort_rows(table: Compactable, batches: &[RecordBatch], chunk: usize) -> Result<Vec<RecordBatch>> {
    let batches: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let options = Some(SortOptions { descending: false, nulls_first: false });
    let mut keys = Vec::new();
    for dotted in table.cluster_columns() {
        let parts: Vec<ArrayRef> = batches.iter().map(|b| column_at(b, dotted)).collect::<Result<_>>()?;
        let parts: Vec<&dyn Array> = parts.iter().map(AsRef::as_ref).collect();
        keys.push(SortColumn { values: concat(&parts)?, options });
    }
    let order = lexsort_to_indices(&keys, None)?;
    drop(keys);
    // Row `i` of the concatenation is row `i - starts[b]` of batch `b`.
    let mut starts = Vec::with_capacity(batches.len());
    let mut at = 0usize;
    for batch in &batches {
        starts.push(at);
        at += batch.num_rows();
    }
    let located: Vec<(usize, usize)> = order
        .values()
        .iter()
        .map(|&i| {
            let i = i as usize;
            let b = starts.partition_point(|&s| s <= i) - 1;
            (b, i - starts[b])
        })
        .collect();
    located
        .chunks(chunk.max(1))
        .map(|rows| interleave_record_batch(&batches, rows).map_err(IngestError::from))
        .collect()
}

/// The column `dotted` (`name` or `struct.field`) of a batch.
fn column_at(batch: &RecordBatch, dotted: &str) -> Result<ArrayRef> {
    let mut parts = dotted.split('.');
    let missing = || IngestError::Config(format!("the rows have no column {dotted}"));
    let mut column = batch.column_by_name(parts.next().unwrap_or_default()).cloned().ok_or_else(missing)?;
    for part in parts {
        column = column.as_struct_opt().and_then(|s| s.column_by_name(part)).cloned().ok_or_else(missing)?;
    }
    Ok(column)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::StringArray;
    use arrow::compute::cast;
    use arrow::datatypes::DataType;

    use super::*;
    use crate::lake::LakeConfig;
    use crate::pipeline::{IngestOptions, NoProgress, ingest_directory};
    use crate::synth::{SynthConfig, generate};

    /// A lake of a generated archive (two days, every table) committed in small pieces, so each
    /// day has many files, as a worker's lake has.
    async fn small_commit_lake(archive: &std::path::Path, lake_dir: &std::path::Path, seed: u64) -> Lake {
        let config = SynthConfig { days: 2, accounts: 4, ..SynthConfig::new(6_000, seed) };
        generate(archive, &config).expect("archive");
        let mut lake = Lake::open(lake_dir, LakeConfig { max_row_group_rows: 1_000, ..LakeConfig::default() })
            .await
            .expect("lake");
        let options = IngestOptions { commit_bytes: 256 << 10, chunk_bytes: 64 << 10, ..IngestOptions::default() };
        ingest_directory(archive, &mut lake, &options, &NoProgress).await.expect("ingest");
        lake
    }

    /// Every row of a table, read from the files its current snapshot lists, with the file
    /// names, keyed by date.
    async fn table_rows(
        lake: &mut Lake,
        table: impl Into<Compactable>,
    ) -> BTreeMap<NaiveDate, Vec<(String, Vec<RecordBatch>)>> {
        let table = table.into();
        let delta = lake.table_mut(table).await.expect("table");
        let snapshot = delta.snapshot().expect("snapshot").clone();
        let store = delta.object_store();
        let mut days: BTreeMap<NaiveDate, Vec<(String, Vec<RecordBatch>)>> = BTreeMap::new();
        for view in snapshot.log_data().iter() {
            let path = view.path().to_string();
            let day = view.partition_values_map()[DATE_COLUMN].clone().expect("date");
            let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d").expect("date");
            let file = ListedFile {
                path: path.clone(),
                size: u64::try_from(view.size()).expect("size"),
                remove: Action::Remove(view.remove_action(false)),
            };
            let batches = read_file(&store, delta, table, &file, &file_schema(table)).await.expect("read");
            days.entry(date).or_default().push((path, batches));
        }
        days
    }

    /// Each row as text (every column), sorted: equal for two sets of batches exactly when they
    /// hold the same rows the same number of times.
    fn row_texts(batches: &[RecordBatch]) -> Vec<String> {
        let mut rows = Vec::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                let text: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, row).expect("text"))
                    .collect();
                rows.push(text.join("|"));
            }
        }
        rows.sort();
        rows
    }

    fn sort_key_texts(table: Compactable, batch: &RecordBatch) -> Vec<Vec<Option<String>>> {
        let columns: Vec<StringArray> = table
            .cluster_columns()
            .iter()
            .map(|c| {
                let column = column_at(batch, c).expect("cluster column");
                // Timestamps and text compare in the same order as their UTC text.
                cast(&column, &DataType::Utf8).expect("as text").as_string::<i32>().clone()
            })
            .collect();
        (0..batch.num_rows())
            .map(|row| columns.iter().map(|c| c.is_valid(row).then(|| c.value(row).to_owned())).collect())
            .collect()
    }

    /// Updates of the alerts `ids` of rule `rule`, first seen on `date` and emitted at `minute`
    /// (minutes after the epoch, also their count), as the detections append them.
    fn alert_updates(rule: &str, ids: &[&str], date: NaiveDate, minute: i64) -> RecordBatch {
        use arrow::array::{Date32Array, Int64Array, TimestampMicrosecondArray, new_null_array};
        use arrow::datatypes::Date32Type;
        let schema = alerts::schema();
        let n = ids.len();
        let columns = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match (field.name().as_str(), field.data_type()) {
                    ("emitted_at", DataType::Timestamp(_, zone)) => Arc::new(
                        TimestampMicrosecondArray::from(vec![minute * 60_000_000; n]).with_timezone_opt(zone.clone()),
                    ),
                    ("id", _) => Arc::new(StringArray::from(ids.to_vec())),
                    ("rule_id", _) => Arc::new(StringArray::from(vec![rule; n])),
                    ("count", _) => Arc::new(Int64Array::from(vec![minute; n])),
                    (DATE_COLUMN, _) => Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(date); n])),
                    (_, data_type) => new_null_array(data_type, n),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).expect("alert rows")
    }

    /// Compaction rewrites each day's many files as few, keeps exactly the rows they held (none
    /// lost, none doubled), orders every file by the table's cluster columns, marks the swap as
    /// no data change, is a no-op the second time, and leaves the exactly-once ledger working —
    /// in the log tables and in the side tables alike.
    #[tokio::test]
    async fn compaction_keeps_every_row_and_clusters_each_file() {
        let (archive, lake_dir) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let mut lake = small_commit_lake(archive.path(), lake_dir.path(), 7).await;
        // Redeliveries: `ingest_log` rows of duplicates, a file per run (a worker writes one
        // per commit).
        for _ in 0..2 {
            ingest_directory(archive.path(), &mut lake, &IngestOptions::default(), &NoProgress).await.expect("again");
        }
        // Alert updates on two days, as commits of row rules append them: the same alerts again
        // and again, with others.
        let days: Vec<NaiveDate> = table_rows(&mut lake, LogTable::CloudTrail).await.into_keys().collect();
        for (minute, (rule, ids)) in
            [("b-rule", &["b1", "b2"][..]), ("a-rule", &["a1"]), ("b-rule", &["b2", "b3"]), ("a-rule", &["a1", "a2"])]
                .into_iter()
                .enumerate()
        {
            for (n, date) in days.iter().enumerate() {
                let batch = alert_updates(rule, ids, *date, (minute * 10 + n) as i64);
                lake.append_alerts(batch).await.expect("alerts");
            }
        }
        // Small groups: a day becomes several sorted files.
        let options = CompactOptions { memory_bytes: 4 << 20, ..CompactOptions::default() };
        for table in Compactable::ALL {
            let before = table_rows(&mut lake, table).await;
            assert!(!before.is_empty(), "{table}: rows to begin with");
            assert!(
                before.values().any(|files| files.len() > 2),
                "{table}: many files on some day to begin with: {:?}",
                before.values().map(Vec::len).collect::<Vec<_>>()
            );
            let report = lake.compact(table, &options).await.expect("compact");
            assert!(report.failed.is_empty(), "{table}: {:?}", report.failed);
            let many = before.values().filter(|files| files.len() > 1).count();
            assert_eq!(report.days.len(), many, "{table}: every day of many files compacted");
            let after = table_rows(&mut lake, table).await;
            for (date, files) in &after {
                let old = &before[date];
                if old.len() == 1 {
                    assert_eq!(files[0].0, old[0].0, "{table} {date}: a lone file is left as it is");
                    continue;
                }
                assert!(files.len() < old.len(), "{table} {date}: {} files -> {}", old.len(), files.len());
                assert!(files.iter().all(|(path, _)| path.contains(&format!("/{COMPACTED_PREFIX}"))));
                let old_rows: Vec<RecordBatch> = old.iter().flat_map(|(_, b)| b.clone()).collect();
                let new_rows: Vec<RecordBatch> = files.iter().flat_map(|(_, b)| b.clone()).collect();
                assert_eq!(row_texts(&old_rows), row_texts(&new_rows), "{table} {date}: the same rows");
                let day = report.days.iter().find(|d| d.date == *date).expect("reported");
                assert_eq!(day.rows as usize, new_rows.iter().map(RecordBatch::num_rows).sum::<usize>());
                assert_eq!((day.files_before, day.files_after), (old.len(), files.len()));
                for (path, batches) in files {
                    let keys: Vec<_> = batches.iter().flat_map(|b| sort_key_texts(table, b)).collect();
                    // `None` (null) sorts last, as the compaction puts nulls.
                    let ordered = keys.windows(2).all(|w| {
                        w[0].iter()
                            .zip(&w[1])
                            .map(|(a, b)| match (a, b) {
                                (Some(a), Some(b)) => a.cmp(b),
                                (None, None) => std::cmp::Ordering::Equal,
                                (None, Some(_)) => std::cmp::Ordering::Greater,
                                (Some(_), None) => std::cmp::Ordering::Less,
                            })
                            .find(|o| o.is_ne())
                            .is_none_or(std::cmp::Ordering::is_lt)
                    });
                    assert!(ordered, "{table}: {path} is not in cluster order");
                }
            }
            // The commit says it changed no data.
            let delta = lake.table_mut(table).await.expect("table");
            let version = delta.version().expect("version");
            let entry = delta.log_store().read_commit_entry(version).await.expect("read").expect("commit");
            let text = String::from_utf8(entry.to_vec()).expect("utf-8");
            assert!(text.contains("\"OPTIMIZE\"") && !text.contains("\"dataChange\":true"), "{text}");
            // And a checkpoint of the compacted state, so readers replay none of the commits.
            let pointer = lake_dir.path().join(table.name()).join("_delta_log").join("_last_checkpoint");
            let pointer: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&pointer).expect("_last_checkpoint")).expect("json");
            assert_eq!(pointer["version"].as_u64(), Some(version), "{pointer}");
            let again = lake.compact(table, &options).await.expect("compact again");
            assert!(again.days.is_empty() && again.failed.is_empty(), "{table}: nothing left to compact");
        }
        // Ingesting the same archive again still adds nothing: the ledger is the commit history,
        // which compaction only extends.
        let counts = |days: &BTreeMap<NaiveDate, Vec<(String, Vec<RecordBatch>)>>| -> usize {
            days.values().flatten().flat_map(|(_, b)| b).map(RecordBatch::num_rows).sum()
        };
        let before = counts(&table_rows(&mut lake, LogTable::CloudTrail).await);
        ingest_directory(archive.path(), &mut lake, &IngestOptions::default(), &NoProgress).await.expect("again");
        assert_eq!(counts(&table_rows(&mut lake, LogTable::CloudTrail).await), before);
    }

    /// Every file under a table's folder with its size: what is on storage, referenced or not.
    fn files_on_disk(lake_dir: &std::path::Path, table: Compactable) -> BTreeMap<String, u64> {
        crate::test_support::table_files(&lake_dir.join(table.name()))
    }

    /// Regression: `bunker compact` rewrote days that were a single file already, one file in,
    /// one out, leaving a second copy of the day on storage. A lake ingested in one commit per
    /// day is left as it is, and a second compaction of a compacted lake commits nothing and
    /// writes no file.
    #[tokio::test]
    async fn compact_leaves_single_file_days_and_a_compacted_lake_as_they_are() {
        let (archive, lake_dir) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let config = SynthConfig { days: 2, accounts: 4, ..SynthConfig::new(2_000, 21) };
        generate(archive.path(), &config).expect("archive");
        let mut lake = Lake::open(lake_dir.path(), LakeConfig::default()).await.expect("lake");
        ingest_directory(archive.path(), &mut lake, &IngestOptions::default(), &NoProgress).await.expect("ingest");
        let options = CompactOptions::default();
        for table in [Compactable::Log(LogTable::CloudTrail), Compactable::Log(LogTable::VpcFlow)] {
            let days = table_rows(&mut lake, table).await;
            assert!(days.len() == 2 && days.values().all(|f| f.len() == 1), "{table}: one file a day");
            let version = lake.table_mut(table).await.expect("table").version();
            let on_disk = files_on_disk(lake_dir.path(), table);
            let report = lake.compact(table, &options).await.expect("compact");
            assert!(report.days.is_empty() && report.failed.is_empty(), "{table}: {:?}", report.days);
            assert_eq!(lake.table_mut(table).await.expect("table").version(), version, "{table}: no commit");
            assert_eq!(files_on_disk(lake_dir.path(), table), on_disk, "{table}: no file written");
        }

        // A compacted lake: the second run commits nothing and writes nothing.
        let (archive, lake_dir) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let mut lake = small_commit_lake(archive.path(), lake_dir.path(), 23).await;
        for table in Compactable::ALL {
            let first = lake.compact(table, &options).await.expect("compact");
            assert!(first.failed.is_empty(), "{table}: {:?}", first.failed);
            let version = lake.table_mut(table).await.expect("table").version();
            let on_disk = files_on_disk(lake_dir.path(), table);
            let log = std::fs::read_dir(lake_dir.path().join(table.name()).join("_delta_log")).expect("log").count();
            let second = lake.compact(table, &options).await.expect("compact again");
            assert!(second.days.is_empty() && second.failed.is_empty(), "{table}: {:?}", second.days);
            assert_eq!(lake.table_mut(table).await.expect("table").version(), version, "{table}: no commit");
            assert_eq!(files_on_disk(lake_dir.path(), table), on_disk, "{table}: no data file written");
            let log_now =
                std::fs::read_dir(lake_dir.path().join(table.name()).join("_delta_log")).expect("log").count();
            assert_eq!(log_now, log, "{table}: nothing added to the log (no checkpoint either)");
        }
    }

    /// The worker's scheduled run compacts the finished days only: not `today`, nor days before
    /// the look-back.
    #[tokio::test]
    async fn scheduled_runs_compact_finished_days_only() {
        let (archive, lake_dir) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let mut lake = small_commit_lake(archive.path(), lake_dir.path(), 13).await;
        let days: Vec<NaiveDate> = table_rows(&mut lake, LogTable::Dns).await.into_keys().collect();
        let [first, second] = days[..] else { panic!("two days: {days:?}") };
        let compacted_days = |days: &BTreeMap<NaiveDate, Vec<(String, Vec<RecordBatch>)>>| -> Vec<NaiveDate> {
            days.iter()
                .filter(|(_, files)| files.iter().all(|(path, _)| path.contains(COMPACTED_PREFIX)))
                .map(|(d, _)| *d)
                .collect()
        };
        // The days of every table in a range that the scheduled run compacts (a side table's
        // days need not be the log tables': `ingest_log`'s is the day of ingestion).
        async fn days_between(lake: &mut Lake, from: NaiveDate, to: NaiveDate) -> usize {
            let mut days = 0;
            for table in Compactable::ALL {
                // Days of one file are left as they are.
                days += table_rows(lake, table)
                    .await
                    .into_iter()
                    .filter(|(d, files)| from <= *d && *d <= to && files.len() > 1)
                    .count();
            }
            days
        }
        // "Today" is the second day: the first is finished.
        let expected = days_between(&mut lake, first - chrono::Days::new(6), first).await;
        assert!(expected >= LogTable::ALL.len());
        assert_eq!(compact_past_days(&mut lake, second, 7, 4 << 20).await, expected);
        for table in LogTable::ALL {
            assert_eq!(compacted_days(&table_rows(&mut lake, table).await), [first], "{table}");
        }
        // Two days later, with a look-back of one day, the second day is not reached yet... and
        // with two it is.
        let later = second.succ_opt().and_then(|d| d.succ_opt()).expect("date");
        assert_eq!(compact_past_days(&mut lake, later, 1, 4 << 20).await, 0);
        let expected = days_between(&mut lake, second, second).await;
        assert_eq!(compact_past_days(&mut lake, later, 2, 4 << 20).await, expected);
        assert_eq!(compacted_days(&table_rows(&mut lake, LogTable::CloudTrail).await), [first, second]);
    }

    /// Rows appended to a day while it is being compacted stay; a second compaction of the same
    /// files, racing the first, fails and brings nothing back twice; a file that cannot be read
    /// fails its day, named, and the other days are compacted.
    #[tokio::test]
    async fn concurrent_appends_stay_racing_compactions_fail_and_bad_files_are_named() {
        let (archive, lake_dir) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let mut lake = small_commit_lake(archive.path(), lake_dir.path(), 11).await;
        let table = Compactable::Log(LogTable::CloudTrail);
        let count = |days: &BTreeMap<NaiveDate, Vec<(String, Vec<RecordBatch>)>>| -> HashMap<NaiveDate, usize> {
            days.iter()
                .map(|(d, files)| (*d, files.iter().flat_map(|(_, b)| b).map(RecordBatch::num_rows).sum()))
                .collect()
        };
        let options = CompactOptions { memory_bytes: 4 << 20, ..CompactOptions::default() };
        let props = lake::writer_properties(lake.config(), table.log_table()).expect("props");
        let (read, days) =
            uncompacted_days(lake.table_mut(table).await.expect("table"), table, &options).expect("list");
        let (date, files) = days.into_iter().next().expect("a day");
        let stale_files: Vec<ListedFile> =
            files.iter().map(|f| ListedFile { path: f.path.clone(), size: f.size, remove: f.remove.clone() }).collect();

        // Another archive's rows land on the same days after the listing.
        let more = tempfile::tempdir().expect("tmp");
        let extra = SynthConfig { days: 2, accounts: 4, ..SynthConfig::new(1_000, 12) };
        generate(more.path(), &extra).expect("archive");
        ingest_directory(more.path(), &mut lake, &IngestOptions::default(), &NoProgress).await.expect("ingest");
        let with_appends = count(&table_rows(&mut lake, table).await);

        let rewrite = DayRewrite { table, date, files, memory_bytes: options.memory_bytes, rows_per_group: 1_000 };
        let delta = lake.table_mut(table).await.expect("table");
        rewrite.run(delta, &read, &props).await.expect("compaction over concurrent appends");
        assert_eq!(count(&table_rows(&mut lake, table).await), with_appends, "appended rows kept, none doubled");

        let racing =
            DayRewrite { table, date, files: stale_files, memory_bytes: options.memory_bytes, rows_per_group: 1_000 };
        let delta = lake.table_mut(table).await.expect("table");
        let raced = racing.run(delta, &read, &props).await;
        assert!(raced.is_err(), "a compaction of files already compacted must fail");
        assert_eq!(count(&table_rows(&mut lake, table).await), with_appends, "nothing brought back twice");

        // Break one uncompacted file of the other day.
        let (read, days) =
            uncompacted_days(lake.table_mut(table).await.expect("table"), table, &options).expect("list");
        drop(read);
        let broken_day = *days.keys().find(|d| **d != date).expect("the other day");
        let broken = &days[&broken_day][0].path;
        let on_disk = lake_dir.path().join(table.name()).join(broken);
        std::fs::write(&on_disk, b"PAR1 this is not parquet PAR1").expect("break");
        let report = lake.compact(table, &options).await.expect("compact");
        assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
        let (day, error) = &report.failed[0];
        assert_eq!(*day, broken_day);
        let message = error.to_string();
        assert!(message.contains(broken.as_str()) && message.starts_with("reading "), "{message}");
        // The day compacted before holds its compacted files and the one file the second ingest
        // appended: a lone late file waits for another, so nothing of that day is rewritten.
        let (_, left) =
            uncompacted_days(lake.table_mut(table).await.expect("table"), table, &CompactOptions::default())
                .expect("list");
        assert!(!left.contains_key(&date), "{:?}", left.keys());
        assert_eq!(
            report.days.iter().map(|d| d.date).collect::<Vec<_>>(),
            Vec::<NaiveDate>::new(),
            "{:?}",
            report.days
        );
    }
}
