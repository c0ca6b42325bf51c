//! The lake: a Delta Lake table per log table, plus the `ingest_log` table, under one root.
//!
//! Rows enter as [`PendingObject`]s — the batch parsed from one source object — and leave as one
//! atomic Delta commit per flush whose `commitInfo` lists every object it contains (under the
//! `bunker` key), each by where it was read and by what it is: name, size and SHA-256 (see
//! [`crate::ledger`]). That list is the ledger behind the exactly-once promise: before committing, the
//! table is brought up to date, objects some earlier commit already holds are dropped, and the
//! commit is attempted at exactly the next version; if another writer got there first, the
//! ledger is refreshed and the commit is tried again. So an object redelivered, re-ingested, or
//! raced by a second writer adds zero rows.
//!
//! Every commit attempt also carries a fresh id. When the answer to a commit is lost — the store
//! applied the write, then the connection broke or a 500 came back — the retry finds the version
//! taken, or the call fails outright; the id in the commit that took the version tells whether it
//! was this very attempt, which then succeeded. Without it, the objects of a commit that landed
//! would be recorded as duplicates of themselves (their `committed` lineage lost), and a blind
//! append (`ingest_log`, `alert_updates`, `region_sightings`) would be written twice.
//!
//! Inside a commit, rows are sorted by date, account and time, so that Parquet row-group
//! statistics prune on time and account; files are zstd-compressed Parquet, partitioned by `date`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::make_comparator;
use arrow::array::{ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use bunker_schemas::location::LakeLocation;
use bunker_schemas::{DATE_COLUMN, LogTable, SCHEMA_VERSION, alerts, baseline, ingest_log};
use deltalake::kernel::Action;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference, TransactionError};
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::parquet::arrow::ArrowSchemaConverter;
use deltalake::parquet::basic::Type as PhysicalType;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::DeltaOperation;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError, TableProperty};
use serde_json::json;
use url::Url;

use crate::baseline::Sightings;
use crate::classify::{LogFormat, ObjectRef};
use crate::datafile::{self, DataFile, Threads};
use crate::ledger::{Ledger, Replaced, identity_record};
use crate::timestamp::micros_to_days;
use crate::{IngestError, Result};

/// Key of the `commitInfo` entry in which bunker records what a commit contains.
pub(crate) const COMMIT_INFO_KEY: &str = "bunker";

/// Key, inside [`COMMIT_INFO_KEY`], of the id of the commit attempt (written as `"attempt"`).
pub(crate) const ATTEMPT_KEY: &str = "attempt";

/// Commits between two checkpoints of a table's Delta log.
const CHECKPOINT_INTERVAL: &str = "10";

/// How many times a commit is re-attempted after losing a race with another writer.
pub(crate) const MAX_COMMIT_ATTEMPTS: usize = 20;

/// How the lake writes its files.
#[derive(Debug, Clone)]
pub struct LakeConfig {
    /// zstd level of the Parquet files (1 is fast; compaction can recompress harder later).
    pub zstd_level: i32,
    /// Rows per Parquet row group: small enough that time and account statistics prune well.
    pub max_row_group_rows: usize,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self { zstd_level: 1, max_row_group_rows: 128 * 1024 }
    }
}

/// The rows parsed from one source object, waiting to be committed.
#[derive(Debug)]
pub struct PendingObject {
    /// The object the rows came from.
    pub object: ObjectRef,
    /// Its rows, in the table's schema. May be empty.
    pub batch: RecordBatch,
}

/// What a commit did.
#[derive(Debug, Default, Clone)]
pub struct CommitOutcome {
    /// Version of the Delta commit, if anything was committed.
    pub version: Option<u64>,
    /// Rows committed.
    pub rows: u64,
    /// Ids of the objects the commit contains.
    pub committed: Vec<String>,
    /// Ids of the objects dropped because an earlier commit already holds them.
    pub duplicates: Vec<String>,
    /// Ids of committed objects whose name an earlier commit holds with other bytes (a replaced
    /// or altered log file), with what that commit holds.
    pub replaced: Vec<(String, Replaced)>,
}

/// One row of the `ingest_log` table.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The object.
    pub object: ObjectRef,
    /// What it was classified as.
    pub format: LogFormat,
    /// The table its rows went to.
    pub table: Option<LogTable>,
    /// One of [`ingest_log::status`].
    pub status: &'static str,
    /// Rows committed.
    pub rows: u64,
    /// Records or lines rejected.
    pub rejected_records: u64,
    /// Kind of failure, for failed objects.
    pub error_kind: Option<&'static str>,
    /// Why it failed or was skipped, or the first rejected records.
    pub reason: Option<String>,
    /// Version of the data commit holding its rows.
    pub lake_version: Option<u64>,
}

/// One Delta table of log rows, with the ledger of objects it holds.
#[derive(Debug)]
struct LakeTable {
    table: LogTable,
    delta: DeltaTable,
    /// Every object some commit of this table contains, with the version of that commit.
    ledger: Ledger,
    /// The newest version whose commit has been read into `committed`.
    ledger_version: Option<u64>,
}

/// The lake under one root: the three log tables and `ingest_log`.
#[derive(Debug)]
pub struct Lake {
    root: Url,
    config: LakeConfig,
    tables: BTreeMap<LogTable, LakeTable>,
    log: DeltaTable,
    alerts: DeltaTable,
    sightings: DeltaTable,
    baseline: Sightings,
    /// The baseline as [`Lake::region_baseline_with`] last folded rows into it: the commit of
    /// those rows, which follows, records the same changes without folding them again.
    folded: Option<Folded>,
}

/// CloudTrail rows folded into the baseline, and what that made of it.
#[derive(Debug)]
struct Folded {
    /// The rows (sharing their arrays with the batches given).
    batches: Vec<RecordBatch>,
    /// The baseline with them.
    view: Sightings,
    /// The pairs they changed.
    changed: Vec<(crate::baseline::Pair, crate::baseline::Sighting)>,
}

impl Folded {
    /// Whether `batches` are the very rows folded (the same arrays, empty batches aside).
    fn holds(&self, batches: &[RecordBatch]) -> bool {
        let some = |b: &&RecordBatch| b.num_rows() > 0;
        let (mut mine, mut theirs) = (self.batches.iter().filter(some), batches.iter().filter(some));
        loop {
            match (mine.next(), theirs.next()) {
                (None, None) => return true,
                (Some(a), Some(b))
                    if a.num_rows() == b.num_rows()
                        && a.num_columns() == b.num_columns()
                        && a.columns().iter().zip(b.columns()).all(|(x, y)| Arc::ptr_eq(x, y)) => {}
                _ => return false,
            }
        }
    }
}

impl Lake {
    /// Opens the lake at a local directory, creating the directory and any missing table.
    pub async fn open(location: &Path, config: LakeConfig) -> Result<Lake> {
        Lake::open_at(&LakeLocation::Local(location.to_owned()), HashMap::new(), config).await
    }

    /// Opens the lake at a local directory or an S3 prefix, creating any missing table.
    /// `storage_options` reach the object store (see [`LakeLocation::storage_options`]).
    pub async fn open_at(
        location: &LakeLocation,
        storage_options: HashMap<String, String>,
        config: LakeConfig,
    ) -> Result<Lake> {
        let root = match location {
            LakeLocation::Local(path) => local_root_url(path)?,
            LakeLocation::S3(url) => url.clone(),
        };
        let attempts = if root.scheme() == "file" { 1 } else { OPEN_ATTEMPTS };
        let (root, storage_options) = (&root, &storage_options);
        // The six tables are opened (or created) at once: on S3 each is a few round trips.
        let data_tables = futures::future::try_join_all(LogTable::ALL.into_iter().map(|table| {
            retrying(table.name(), attempts, move || async move {
                let stats = stats_columns(table);
                let delta = open_or_create(root, storage_options, table.name(), table.schema(), &stats).await?;
                let mut lake_table = LakeTable { table, delta, ledger: Ledger::default(), ledger_version: None };
                lake_table.read_ledger().await?;
                Ok(lake_table)
            })
        }));
        let open = |name: &'static str, schema: fn() -> arrow::datatypes::SchemaRef, stats: &'static [&'static str]| {
            retrying(name, attempts, move || open_or_create(root, storage_options, name, schema(), stats))
        };
        let sightings = retrying(baseline::TABLE_NAME, attempts, move || async move {
            let sightings =
                open_or_create(root, storage_options, baseline::TABLE_NAME, baseline::schema(), SIGHTING_STATS).await?;
            let baseline = Sightings::load(&sightings).await?;
            Ok((sightings, baseline))
        });
        let (data_tables, log, alerts, (sightings, baseline)) = futures::try_join!(
            data_tables,
            open(ingest_log::TABLE_NAME, ingest_log::schema, LOG_STATS),
            open(alerts::TABLE_NAME, alerts::schema, ALERT_STATS),
            sightings
        )?;
        let tables: BTreeMap<LogTable, LakeTable> = data_tables.into_iter().map(|t| (t.table, t)).collect();
        let root = root.clone();
        Ok(Lake { root, config, tables, log, alerts, sightings, baseline, folded: None })
    }

    /// How the lake writes its files.
    pub fn config(&self) -> &LakeConfig {
        &self.config
    }

    /// The Delta table of `table`, brought up to date (ledger included).
    pub(crate) async fn delta_mut(&mut self, table: LogTable) -> Result<&mut DeltaTable> {
        let lake_table = self.tables.get_mut(&table).ok_or_else(|| IngestError::Config(format!("no table {table}")))?;
        lake_table.refresh().await?;
        Ok(&mut lake_table.delta)
    }

    /// A side table (`ingest_log`, `alert_updates` or `region_sightings`) by name, brought up to
    /// date with other writers' commits.
    pub(crate) async fn side_table_mut(&mut self, name: &str) -> Result<&mut DeltaTable> {
        let table = match name {
            ingest_log::TABLE_NAME => &mut self.log,
            alerts::TABLE_NAME => &mut self.alerts,
            baseline::TABLE_NAME => &mut self.sightings,
            other => return Err(IngestError::Config(format!("no side table {other}"))),
        };
        table.update_state().await.map_err(|e| lake_error(name, e))?;
        Ok(table)
    }

    /// The URL of the lake's root.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Where the lake is, as an operator writes it: a directory path, or an `s3://` URL.
    pub fn location(&self) -> String {
        display_url(&self.root)
    }

    /// The version of the commit that holds this object's rows, if some commit does (as of the
    /// last refresh; see [`Ledger::holds`] for what an object not read yet can be recognised by).
    /// A redelivered object's `ingest_log` row points there, so its lineage is whole even when the
    /// row its commit should have logged was lost to a crash in between.
    pub fn committed_version(&self, object: &ObjectRef) -> Option<u64> {
        self.tables.values().find_map(|t| t.ledger.holds(object))
    }

    /// The objects every table holds, as of the last refresh: for drivers that decide for many
    /// objects at once, off the async runtime.
    pub fn ledger(&self) -> Ledger {
        let mut all = Ledger::default();
        for table in self.tables.values() {
            all.merge(&table.ledger);
        }
        all
    }

    /// Brings every table's ledger up to date with commits made by other writers.
    pub async fn refresh(&mut self) -> Result<()> {
        for table in self.tables.values_mut() {
            table.refresh().await?;
        }
        Ok(())
    }

    /// Commits the rows of these objects to `table` in one atomic commit, leaving out objects the
    /// table already holds: [`Lake::prepare_commit`], then [`Lake::finish_commit`].
    pub async fn commit(&mut self, table: LogTable, objects: Vec<PendingObject>) -> Result<CommitOutcome> {
        let prepared = self.prepare_commit(table, objects).await?;
        self.finish_commit(prepared).await
    }

    /// Begins a commit of these objects' rows to `table`: finds which objects the table does not
    /// hold yet and starts encoding their rows into data files, off the async runtime. Nothing is
    /// visible to readers until [`Lake::finish_commit`]; in between the lake is free for other
    /// work on those rows (the detections' hook), which then runs while the files are encoded.
    pub async fn prepare_commit(&mut self, table: LogTable, objects: Vec<PendingObject>) -> Result<PreparedCommit> {
        let props = writer_properties(&self.config, Some(table))?;
        let rows_per_group = self.config.max_row_group_rows;
        let lake_table = self.tables.get_mut(&table).ok_or_else(|| IngestError::Config(format!("no table {table}")))?;
        lake_table.prepare(objects, CommitOutcome::default(), props, rows_per_group).await
    }

    /// Makes a prepared commit: stores its files and commits them, in one Delta commit, and retries
    /// on a fresh snapshot (leaving out objects another writer committed meanwhile) when another
    /// writer's commit came first.
    ///
    /// Before CloudTrail rows are committed, the (account, region) pairs they use for the first
    /// time are recorded in the region baseline — before, so that a crash in between leaves a
    /// sighting without its rows (written again, harmlessly, when the rows come back) rather than
    /// rows whose sighting is lost for good.
    pub async fn finish_commit(&mut self, prepared: PreparedCommit) -> Result<CommitOutcome> {
        let table = prepared.table;
        if table == LogTable::CloudTrail {
            self.record_sightings(&prepared.fresh_batches()).await?;
        }
        let config = &self.config;
        let lake_table = self.tables.get_mut(&table).ok_or_else(|| IngestError::Config(format!("no table {table}")))?;
        let mut prepared = prepared;
        for _attempt in 0..MAX_COMMIT_ATTEMPTS {
            match lake_table.attempt(prepared).await? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::LostRace { objects, outcome } => {
                    let props = writer_properties(config, Some(table))?;
                    prepared = lake_table.prepare(objects, outcome, props, config.max_row_group_rows).await?;
                }
            }
        }
        Err(IngestError::Lake {
            table: table.name().to_owned(),
            source: Box::new(DeltaTableError::Generic(format!(
                "gave up after {MAX_COMMIT_ATTEMPTS} attempts lost to concurrent writers"
            ))),
        })
    }

    /// Appends rows to the `ingest_log` table.
    pub async fn append_log(&mut self, entries: &[LogEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let batch = log_batch(entries, chrono::Utc::now())?;
        let props = writer_properties(&self.config, None)?;
        append(&mut self.log, ingest_log::TABLE_NAME, batch, props, LOG_STATS).await?;
        Ok(())
    }

    /// Appends rows (in the [`alerts::schema`]) to the `alert_updates` table, in one commit.
    /// Returns the files added — one per date partition of the rows — so that the caller can
    /// remember what they hold instead of reading them back.
    pub async fn append_alerts(&mut self, batch: RecordBatch) -> Result<Vec<AddedFile>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let props = writer_properties(&self.config, None)?;
        append(&mut self.alerts, alerts::TABLE_NAME, batch, props, ALERT_STATS).await
    }

    /// The `alert_updates` table as of its last write here (callers refresh it to see others').
    pub fn alerts_table(&self) -> &DeltaTable {
        &self.alerts
    }

    /// The region baseline as it would be with these CloudTrail rows: what a detection looking at
    /// them sees as `region_baseline`.
    ///
    /// A pair this process has not seen may have been recorded by another worker: then the
    /// baseline is read again from the lake first, so the first use of a region is first once.
    pub async fn region_baseline_with(&mut self, batches: &[RecordBatch]) -> Result<RecordBatch> {
        self.folded = None;
        let mut view = self.baseline.clone();
        let mut changed = view.observe(batches)?;
        if changed.iter().any(|((account, region), _)| self.baseline.get(account, region).is_none()) {
            self.sightings.update_state().await.map_err(|e| lake_error(baseline::TABLE_NAME, e))?;
            self.baseline = Sightings::load(&self.sightings).await?;
            view = self.baseline.clone();
            // The lake's baseline holds this process's sightings and perhaps earlier ones: the
            // rows' changes are folded into it, not the rows observed again.
            changed = view.fold(changed);
        }
        let rows = view.to_batch()?;
        self.folded = Some(Folded { batches: batches.to_vec(), view, changed });
        Ok(rows)
    }

    /// Appends the sightings these CloudTrail rows add to the region baseline.
    async fn record_sightings(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let (updated, changed) = match self.folded.take() {
            Some(folded) if folded.holds(batches) => (folded.view, folded.changed),
            _ => {
                let mut updated = self.baseline.clone();
                let changed = updated.observe(batches)?;
                (updated, changed)
            }
        };
        if changed.is_empty() {
            return Ok(());
        }
        let rows = Sightings::sightings_batch(&changed, chrono::Utc::now())?;
        let props = writer_properties(&self.config, None)?;
        append(&mut self.sightings, baseline::TABLE_NAME, rows, props, SIGHTING_STATS).await?;
        self.baseline = updated;
        Ok(())
    }

    /// The Delta version of a table as of its last refresh (which every commit begins with), if it
    /// has any commit.
    pub fn version(&self, table: LogTable) -> Option<u64> {
        self.tables.get(&table).and_then(|t| t.delta.version())
    }
}

impl LakeTable {
    /// Reads the commits this table has that the ledger has not seen yet.
    async fn read_ledger(&mut self) -> Result<()> {
        let Some(latest) = self.delta.version() else { return Ok(()) };
        let log_store = self.delta.log_store();
        let first = self.ledger_version.map_or(0, |v| v + 1);
        for version in first..=latest {
            let entry = log_store.read_commit_entry(version).await.map_err(|e| lake_error(self.table.name(), e))?;
            // A commit file can be missing only if the log was cleaned up, which the tables are
            // created to prevent; the data is still there, only its lineage record is not.
            let Some(bytes) = entry else { continue };
            self.ledger.read_commit(&bytes, COMMIT_INFO_KEY, version);
        }
        self.ledger_version = Some(latest);
        Ok(())
    }

    async fn refresh(&mut self) -> Result<()> {
        self.delta.update_state().await.map_err(|e| lake_error(self.table.name(), e))?;
        self.read_ledger().await
    }

    /// Refreshes the ledger, sets aside the objects the table already holds (into `outcome`), and
    /// starts encoding the rest.
    async fn prepare(
        &mut self,
        objects: Vec<PendingObject>,
        mut outcome: CommitOutcome,
        props: WriterProperties,
        rows_per_group: usize,
    ) -> Result<PreparedCommit> {
        let started = std::time::Instant::now();
        self.refresh().await?;
        let (fresh, dups): (Vec<_>, Vec<_>) = objects.into_iter().partition(|p| self.ledger.holds(&p.object).is_none());
        outcome.duplicates.extend(dups.iter().map(|p| p.object.id()));
        // Within one flush the same object may also appear twice (a message delivered twice, or
        // two copies of it under one archive root).
        let mut seen = Ledger::default();
        let (fresh, repeated): (Vec<_>, Vec<_>) = fresh.into_iter().partition(|p| {
            let first = seen.holds(&p.object).is_none();
            seen.record(&p.object, 0);
            first
        });
        outcome.duplicates.extend(repeated.iter().map(|p| p.object.id()));
        for p in &fresh {
            if let Some(earlier) = self.ledger.replaced(&p.object)
                && !outcome.replaced.iter().any(|(id, _)| *id == p.object.id())
            {
                outcome.replaced.push((p.object.id(), earlier));
            }
        }
        let rows: usize = fresh.iter().map(|p| p.batch.num_rows()).sum();
        let encoding = if rows == 0 {
            None
        } else {
            let runs = ordered_runs(self.table, &fresh)?;
            let table = self.table;
            Some(on_pool(move || encode_files(table, &runs, props, rows_per_group)))
        };
        Ok(PreparedCommit { table: self.table, outcome, fresh, rows, encoding, started })
    }

    /// Stores a prepared commit's files and commits them at the snapshot the preparation read.
    async fn attempt(&mut self, prepared: PreparedCommit) -> Result<Attempt> {
        let PreparedCommit { table: _, mut outcome, fresh, rows, encoding, started } = prepared;
        let ids: Vec<String> = fresh.iter().map(|p| p.object.id()).collect();
        let identities: Vec<serde_json::Value> = fresh.iter().map(|p| identity_record(&p.object)).collect();
        let Some(encoding) = encoding else {
            // Nothing to write (no object, or only empty ones); re-reading an empty object later
            // adds nothing either.
            outcome.committed = ids;
            return Ok(Attempt::Done(outcome));
        };
        let files = match encoding.await {
            Ok(Ok(files)) => files?,
            Ok(Err(_)) => return Err(IngestError::Config("the parquet encoder panicked".into())),
            Err(_) => return Err(IngestError::Config("the parquet encoder stopped without an answer".into())),
        };
        let encoded_in = started.elapsed();
        // Files of a commit that then fails or loses a race stay behind unreferenced: readers
        // only see files the log adds, and a Delta VACUUM removes them.
        let adds = store_files(&self.delta, files).await?;
        let stored_in = started.elapsed();
        let attempt = uuid::Uuid::new_v4().to_string();
        let metadata = json!({
            "objects": ids,
            "identities": identities,
            "rows": rows,
            "schema_version": SCHEMA_VERSION,
            "attempt": attempt,
        });
        let properties = CommitProperties::default()
            .with_metadata([(COMMIT_INFO_KEY.to_owned(), metadata)])
            // Zero retries: a concurrent commit may hold some of our objects, so instead of
            // letting delta-rs rebase a blind append we refresh the ledger and filter again.
            .with_max_retries(0);
        let snapshot = self.delta.snapshot().map_err(|e| lake_error(self.table.name(), e))?;
        let read_version = snapshot.version();
        let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        let result = CommitBuilder::from(properties)
            .with_actions(adds)
            .build(Some(snapshot as &dyn TableReference), self.delta.log_store(), operation)
            .await;
        let version = match result {
            Ok(commit) => commit.version,
            Err(e) => match landed(&mut self.delta, read_version, &attempt).await {
                Some(version) => {
                    tracing::info!(table = %self.table, version, error = %e, "the commit landed although its answer was lost");
                    metrics::counter!("bunker_lake_commits_recovered_total", "table" => self.table.name()).increment(1);
                    version
                }
                None if lost_race(&e) => {
                    tracing::info!(table = %self.table, "another writer committed first; re-checking the ledger");
                    return Ok(Attempt::LostRace { objects: fresh, outcome });
                }
                None => return Err(lake_error(self.table.name(), e)),
            },
        };
        tracing::debug!(table = %self.table, rows, objects = ids.len(), ?encoded_in, ?stored_in, total = ?started.elapsed(), "committed");
        // Freeing a commit's worth of Arrow buffers takes a few milliseconds that the next
        // commit need not wait for.
        for p in &fresh {
            self.ledger.record(&p.object, version);
        }
        rayon::spawn(move || drop(fresh));
        // `self.delta` is not reloaded here: every commit begins with a refresh, which reads
        // this version along with any others (on S3, one listing less per commit).
        // The next refresh reads this commit again along with any others that landed
        // meanwhile; adding our ids twice is harmless.
        outcome.version = Some(version);
        outcome.rows = rows as u64;
        outcome.committed = ids;
        Ok(Attempt::Done(outcome))
    }
}

/// A commit begun by [`Lake::prepare_commit`]: the objects the table does not hold yet, their
/// data files being encoded.
#[derive(Debug)]
pub struct PreparedCommit {
    table: LogTable,
    /// What the commit has done so far (objects set aside as duplicates).
    outcome: CommitOutcome,
    /// The objects to commit.
    fresh: Vec<PendingObject>,
    rows: usize,
    /// The files of their rows; `None` when there are no rows.
    encoding: Option<Pooled<Result<Vec<DataFile>>>>,
    started: std::time::Instant,
}

impl PreparedCommit {
    /// The rows the commit adds (one batch per object; objects the table holds left out).
    pub fn fresh_batches(&self) -> Vec<RecordBatch> {
        self.fresh.iter().filter(|p| p.batch.num_rows() > 0).map(|p| p.batch.clone()).collect()
    }
}

/// How one attempt at a commit ended.
enum Attempt {
    Done(CommitOutcome),
    /// Another writer's commit came first: these objects are to be tried again.
    LostRace {
        objects: Vec<PendingObject>,
        outcome: CommitOutcome,
    },
}

/// Tries to open a table of an S3 lake this often before giving up, pausing 0.5 s, then twice as
/// long each time (7.5 s in all).
const OPEN_ATTEMPTS: u32 = 5;

/// Runs `open` until it succeeds, at most `attempts` times.
///
/// Opening a table reads its log: a listing and a few small objects. The object store retries a
/// request that fails, but not a response body that breaks off, and one such read fails the whole
/// open — which would stop a worker at start-up over a transient fault. A table that cannot be
/// opened at all (no access, no bucket) still fails, a few seconds later.
async fn retrying<T, F, Fut>(name: &str, attempts: u32, mut open: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut pause = std::time::Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match open().await {
            Ok(opened) => return Ok(opened),
            Err(error) if attempt < attempts => {
                tracing::warn!(table = name, error = %error, attempt, "opening the table failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The data-skipping columns of the tables bunker appends to (their `add` actions carry these
/// columns' statistics, as the tables' configuration says).
pub(crate) const LOG_STATS: &[&str] = &["ingested_at", "source_key", "status"];
pub(crate) const ALERT_STATS: &[&str] = &["first_seen", "id", "rule_id", "account", "emitted_at"];
pub(crate) const SIGHTING_STATS: &[&str] = &["account", "region", "first_seen"];

/// A blind append to a table that several writers append to (`ingest_log`, `alert_updates`,
/// `region_sightings`).
///
/// Such appends never conflict in principle, but delta-rs refuses to rebase over some concurrent
/// commits ("metadata changed since last commit"). The rows of these tables are whole records
/// (a log entry, an alert's state under its stable id), so committing them again on a fresh
/// snapshot is always right.
///
/// The files are encoded and stored here, once, as the data commits' are, and only the commit is
/// retried: delta-rs's writer planned a DataFusion write for every append (a few rows, once or
/// twice per data commit), a good share of what the row rules cost ingestion. Each attempt
/// carries an id and is made without delta-rs's own retries: a commit whose answer was lost is
/// then recognised as landed instead of being made a second time.
async fn append(
    table: &mut DeltaTable,
    name: &str,
    batch: RecordBatch,
    props: WriterProperties,
    stats: &[&str],
) -> Result<Vec<AddedFile>> {
    let started = std::time::Instant::now();
    check_append_schema(table, name, &batch)?;
    let files = datafile::encode_rows(name, &batch, stats, props)?;
    let encoded_in = started.elapsed();
    let adds = store_files(table, files).await?;
    let stored_in = started.elapsed();
    let added: Vec<AddedFile> = adds
        .iter()
        .filter_map(|action| match action {
            Action::Add(add) => Some(AddedFile::of(add)),
            _ => None,
        })
        .collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let id = uuid::Uuid::new_v4().to_string();
        let commit = CommitProperties::default()
            .with_metadata([(COMMIT_INFO_KEY.to_owned(), json!({ "attempt": id }))])
            .with_max_retries(0);
        let snapshot = table.snapshot().map_err(|e| lake_error(name, e))?;
        let read_version = snapshot.version();
        let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        let result = CommitBuilder::from(commit)
            .with_actions(adds.clone())
            .build(Some(snapshot as &dyn TableReference), table.log_store(), operation)
            .await;
        let error = match result {
            Ok(committed) => {
                // The state after the commit, which delta-rs has just brought up to it: the next
                // append starts from there instead of reading the log again.
                table.state = Some(committed.snapshot());
                tracing::debug!(table = name, rows = batch.num_rows(), ?encoded_in, ?stored_in, total = ?started.elapsed(), "appended");
                return Ok(added);
            }
            Err(e) => e,
        };
        if let Some(version) = landed(table, read_version, &id).await {
            tracing::info!(table = name, version, error = %error, "the append landed although its answer was lost");
            metrics::counter!("bunker_lake_commits_recovered_total", "table" => name.to_owned()).increment(1);
            return Ok(added);
        }
        match error {
            e if lost_race(&e) || matches!(e, DeltaTableError::Transaction { .. }) => {
                if attempt >= MAX_COMMIT_ATTEMPTS {
                    return Err(lake_error(name, e));
                }
                tracing::info!(table = name, error = %e, attempt, "append lost a race; retrying on a fresh snapshot");
                table.update_state().await.map_err(|e| lake_error(name, e))?;
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64)).await;
            }
            e => return Err(lake_error(name, e)),
        }
    }
}

/// A data file an append added to a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedFile {
    /// Its path under the table root, as the table's snapshot names it
    /// (`LogicalFileView::object_store_path`).
    pub path: deltalake::Path,
    /// Its date partition.
    pub date: Option<chrono::NaiveDate>,
}

impl AddedFile {
    fn of(add: &deltalake::kernel::Add) -> AddedFile {
        let date = add.partition_values.get(DATE_COLUMN).cloned().flatten().and_then(|d| d.parse().ok());
        // As the snapshot turns a file's path into an object-store path.
        let path = deltalake::Path::parse(&add.path).unwrap_or_else(|_| deltalake::Path::from(add.path.as_str()));
        AddedFile { path, date }
    }
}

/// Stores encoded data files under the table; returns the actions that add them.
pub(crate) async fn store_files(table: &DeltaTable, files: Vec<DataFile>) -> Result<Vec<Action>> {
    let store = table.object_store();
    let mut adds = Vec::with_capacity(files.len());
    for file in files {
        let path = deltalake::Path::from(file.path.as_str());
        // Not `lake_error`: delta-rs calls every store error "Failed to read delta log object",
        // which sends an operator with a full disk looking in the wrong place.
        store.put(&path, file.bytes.into()).await.map_err(|source| IngestError::LakeWrite {
            location: file_location(table.table_url(), &file.path),
            source: Box::new(source),
        })?;
        adds.push(Action::Add(file.add));
    }
    Ok(adds)
}

/// Refuses rows that are not of the table's schema (names and types; the table's partition
/// column included): delta-rs's writer checked this, and a file of other columns would be
/// misread by every reader.
fn check_append_schema(table: &DeltaTable, name: &str, batch: &RecordBatch) -> Result<()> {
    let snapshot = table.snapshot().map_err(|e| lake_error(name, e))?;
    let expected = snapshot.snapshot().arrow_schema();
    let given = batch.schema_ref().fields();
    let same = given.len() == expected.fields().len()
        && given
            .iter()
            .all(|g| expected.field_with_name(g.name()).is_ok_and(|e| g.data_type().equals_datatype(e.data_type())));
    if same {
        Ok(())
    } else {
        Err(IngestError::Config(format!("rows appended to {name} do not have its columns: {}", batch.schema())))
    }
}

/// The version at which the commit attempt `id` landed, if it did, among the versions after
/// `read_version` (the one it was made on). Brings `table` up to date.
///
/// The storage that just failed the commit may fail this look too, so it is tried a few times;
/// `None` when the log still cannot be read — the caller then handles the commit's own error.
async fn landed(table: &mut DeltaTable, read_version: u64, id: &str) -> Option<u64> {
    for pause_ms in [0, 250, 500, 1000, 2000, 4000] {
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        match find_attempt(table, read_version, id).await {
            Ok(found) => return found,
            Err(error) => tracing::debug!(error = %error, "could not read the log to see whether a commit landed"),
        }
    }
    None
}

async fn find_attempt(table: &mut DeltaTable, read_version: u64, id: &str) -> Result<Option<u64>, DeltaTableError> {
    table.update_state().await?;
    let Some(latest) = table.version() else { return Ok(None) };
    let log_store = table.log_store();
    for version in read_version + 1..=latest {
        let Some(bytes) = log_store.read_commit_entry(version).await? else { continue };
        if attempt_of_commit(&bytes).as_deref() == Some(id) {
            return Ok(Some(version));
        }
    }
    Ok(None)
}

/// The attempt id a commit file carries under `commitInfo.bunker.attempt`.
pub(crate) fn attempt_of_commit(bytes: &[u8]) -> Option<String> {
    bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).find_map(|line| {
        let action = serde_json::from_slice::<serde_json::Value>(line).ok()?;
        action.pointer(&format!("/commitInfo/{COMMIT_INFO_KEY}/{ATTEMPT_KEY}"))?.as_str().map(str::to_owned)
    })
}

/// Whether a failed commit lost a race with another writer (and is worth retrying).
pub(crate) fn lost_race(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction { source: TransactionError::MaxCommitAttempts(_) }
            | DeltaTableError::Transaction { source: TransactionError::VersionAlreadyExists(_) }
    )
}

/// The objects' rows in date, account and time order, as a sequence of batches.
///
/// Rows are not gathered into one sorted batch: that copy cost a third of the commit. Instead each
/// object's rows are put in order on their own (AWS writes one account's events per object, mostly
/// in time order, so this rarely moves anything), and the objects are ordered by their first row.
/// Inside a file, rows then come in runs per account, and time within a run advances object by
/// object — which is what row-group statistics need to prune on time and account.
fn ordered_runs(table: LogTable, objects: &[PendingObject]) -> Result<Vec<RecordBatch>> {
    let mut keyed = Vec::with_capacity(objects.len());
    for object in objects {
        // Cloning a batch only clones the Arcs of its columns.
        let batch = object.batch.clone();
        if batch.num_rows() == 0 {
            continue;
        }
        let keys = sort_keys(table, &batch)?;
        let order = lexsort_to_indices(&keys, None)?;
        let in_order = order.values().iter().enumerate().all(|(i, &v)| v as usize == i);
        let (batch, keys) = if in_order {
            (batch, keys)
        } else {
            let sorted = take_record_batch(&batch, &order)?;
            let keys = sort_keys(table, &sorted)?;
            (sorted, keys)
        };
        // Only the key columns of the first row: slicing the whole batch would recount the
        // nulls of every column.
        let first = keys.map(|key| SortColumn { values: key.values.slice(0, 1), options: key.options });
        keyed.push((first, batch));
    }
    let compare_first_rows = |a: &[SortColumn], b: &[SortColumn]| -> Result<std::cmp::Ordering> {
        for (x, y) in a.iter().zip(b) {
            let cmp = make_comparator(x.values.as_ref(), y.values.as_ref(), x.options.unwrap_or_default())?;
            let ordering = cmp(0, 0);
            if ordering.is_ne() {
                return Ok(ordering);
            }
        }
        Ok(std::cmp::Ordering::Equal)
    };
    // Compare first rows; a comparison error cannot happen for same-typed columns, so treat it as equal.
    keyed.sort_by(|(a, _), (b, _)| compare_first_rows(a, b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(keyed.into_iter().map(|(_, batch)| batch).collect())
}

/// The answer of work sent to [`on_pool`]: `Err` if it panicked.
type Pooled<T> = tokio::sync::oneshot::Receiver<std::thread::Result<T>>;

/// Runs a commit's CPU work on the rayon pool, whose few threads also parse, rather than on one of
/// tokio's blocking threads. The reason is memory: mimalloc returns the pages a thread freed only
/// when that thread allocates again, so a blocking thread that encoded a commit and then sat idle
/// kept that commit's worth of memory, and tokio keeps many of them: ~190 MiB of the peak over a
/// 25M-row archive, ~100 MiB over 1M CloudTrail events. The pool's threads never sit idle for long
/// during an ingest.
fn on_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Pooled<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        // A panic here must fail the commit, as it did on a blocking thread, not abort the process.
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
    });
    rx
}

/// Encodes ordered rows into one data file per day (the columns of each file are encoded in
/// parallel on the rayon pool). Blocking: the caller runs it off the async runtime.
fn encode_files(
    table: LogTable,
    runs: &[RecordBatch],
    props: WriterProperties,
    rows_per_group: usize,
) -> Result<Vec<DataFile>> {
    let stats = stats_columns(table);
    datafile::runs_by_day(runs)?
        .into_iter()
        .map(|(date, day)| {
            datafile::encode_day(table.name(), date, &day, &stats, props.clone(), rows_per_group, Threads::Pool)
        })
        .collect()
}

/// The date, account and time columns of a batch, as sort keys.
fn sort_keys(table: LogTable, batch: &RecordBatch) -> Result<[SortColumn; 3]> {
    let column = |name: &str| -> Result<ArrayRef> {
        batch.column_by_name(name).cloned().ok_or_else(|| IngestError::Config(format!("{table} has no column {name}")))
    };
    let options = Some(SortOptions { descending: false, nulls_first: false });
    Ok([
        SortColumn { values: column(DATE_COLUMN)?, options },
        SortColumn { values: column(table.account_column())?, options },
        SortColumn { values: column(table.time_column())?, options },
    ])
}

pub(crate) fn writer_properties(config: &LakeConfig, table: Option<LogTable>) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(config.zstd_level).map_err(|e| IngestError::Config(format!("zstd level: {e}")))?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(config.max_row_group_rows));
    let path = |dotted: &str| ColumnPath::new(dotted.split('.').map(str::to_owned).collect());
    for column in table.map(unique_columns).unwrap_or_default() {
        builder = builder.set_column_dictionary_enabled(path(column), false);
    }
    for column in table.map(free_text_columns).unwrap_or_default() {
        // Nobody prunes on the min/max of a JSON document, and comparing kilobyte-long strings
        // for every page is a visible share of encoding time.
        builder = builder.set_column_statistics_enabled(path(column), EnabledStatistics::None);
    }
    if table == Some(LogTable::CloudTrail) {
        // CloudTrail has some sixty text columns. Their minimum and maximum cost a string
        // comparison per value (a tenth of encoding), yet over a row group of random ids, ARNs of
        // many sessions or TLS details they span nearly everything and prune nothing. Only the
        // columns that analysts filter on, and that repeat within an account's run of rows, keep them.
        let descriptor = ArrowSchemaConverter::new()
            .convert(&LogTable::CloudTrail.schema())
            .map_err(|e| IngestError::Config(format!("cloudtrail parquet schema: {e}")))?;
        for column in descriptor.columns() {
            let dotted = column.path().string();
            if column.physical_type() == PhysicalType::BYTE_ARRAY && !CLOUDTRAIL_STATISTICS.contains(&dotted.as_str()) {
                builder = builder.set_column_statistics_enabled(column.path().clone(), EnabledStatistics::None);
            }
        }
    }
    Ok(builder.build())
}

/// The CloudTrail text columns that keep Parquet statistics: the data-skipping columns and the
/// identity and outcome fields responders filter on.
const CLOUDTRAIL_STATISTICS: &[&str] = &[
    "recipientaccountid",
    "eventname",
    "eventsource",
    "awsregion",
    "sourceipaddress",
    "eventtype",
    "errorcode",
    "useridentity.type",
    "useridentity.arn",
    "useridentity.principalid",
    "useridentity.accountid",
    "useridentity.accesskeyid",
    "useridentity.username",
];

/// Columns holding long free-form text (JSON documents, user agents).
fn free_text_columns(table: LogTable) -> &'static [&'static str] {
    match table {
        LogTable::CloudTrail => &[
            "requestparameters",
            "responseelements",
            "additionaleventdata",
            "serviceeventdetails",
            "additionalfields",
            "edgedevicedetails",
            "insightdetails",
            "useragent",
            "errormessage",
        ],
        LogTable::VpcFlow => &[],
        LogTable::Dns => &["additionalfields"],
    }
}

/// Columns whose values are (nearly) all different: a dictionary never pays for itself there, and
/// building one before falling back to plain encoding is a good share of the encoding time.
fn unique_columns(table: LogTable) -> &'static [&'static str] {
    match table {
        LogTable::CloudTrail => &[
            "eventtime",
            "eventid",
            "requestid",
            "sharedeventid",
            "requestparameters",
            "responseelements",
            "additionaleventdata",
            "serviceeventdetails",
            "additionalfields",
            "useridentity.sessioncontext.attributes.creationdate",
            "useridentity.accesskeyid",
        ],
        LogTable::VpcFlow => &["start", "end", "bytes", "packets", "srcport"],
        LogTable::Dns => &["query_timestamp", "srcport"],
    }
}

/// Columns whose min/max go into the Delta log for file skipping: time, account, and what
/// responders filter on most. (By default Delta only indexes the first 32 leaf columns, and the
/// `useridentity` struct alone has more.)
pub(crate) fn stats_columns(table: LogTable) -> Vec<&'static str> {
    let mut columns = vec![table.time_column(), table.account_column()];
    columns.extend(match table {
        LogTable::CloudTrail => &["eventname", "eventsource", "awsregion", "sourceipaddress"][..],
        LogTable::VpcFlow => &["srcaddr", "dstaddr", "dstport", "action", "interface_id"][..],
        LogTable::Dns => &["query_name", "srcaddr", "rcode", "vpc_id"][..],
    });
    columns
}

/// Opens the Delta table `name` under the root, creating it from `schema` if it does not exist.
async fn open_or_create(
    root: &Url,
    storage_options: &HashMap<String, String>,
    name: &str,
    schema: arrow::datatypes::SchemaRef,
    stats: &[&str],
) -> Result<DeltaTable> {
    let url = root.join(&format!("{name}/")).map_err(|e| IngestError::Config(format!("table url: {e}")))?;
    if let Ok(dir) = url.to_file_path() {
        std::fs::create_dir_all(&dir).map_err(|source| IngestError::Io { path: dir, source })?;
    }
    let table = DeltaTable::try_from_url_with_storage_options(url.clone(), storage_options.clone())
        .await
        .map_err(|e| lake_error(name, e))?;
    if table.version().is_some() {
        return Ok(table);
    }
    let kernel_schema: StructType = schema.as_ref().try_into_kernel().map_err(|e| lake_error(name, e.into()))?;
    let created = table
        .create()
        .with_table_name(name)
        .with_columns(kernel_schema.fields().cloned())
        .with_partition_columns([DATE_COLUMN])
        .with_configuration_property(TableProperty::DataSkippingStatsColumns, Some(stats.join(",")))
        // The commit history is the ledger of which objects the table holds: never expire it.
        .with_configuration_property(TableProperty::EnableExpiredLogCleanup, Some("false"))
        // A reader opening a table replays the commits since its last checkpoint: every ten
        // commits (Delta's own default; delta-rs's is a hundred), so opening stays quick for a
        // worker committing every few seconds.
        .with_configuration_property(TableProperty::CheckpointInterval, Some(CHECKPOINT_INTERVAL))
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(table) => Ok(table),
        // Another writer created the table at the same moment (both saw none, theirs landed
        // first): open theirs.
        Err(e) => match DeltaTable::try_from_url_with_storage_options(url, storage_options.clone()).await {
            Ok(table) if table.version().is_some() => Ok(table),
            _ => Err(lake_error(name, e)),
        },
    }
}

fn local_root_url(location: &Path) -> Result<Url> {
    std::fs::create_dir_all(location).map_err(|source| IngestError::Io { path: location.to_owned(), source })?;
    let absolute =
        std::fs::canonicalize(location).map_err(|source| IngestError::Io { path: location.to_owned(), source })?;
    Url::from_directory_path(&absolute)
        .map_err(|()| IngestError::Config(format!("{} is not a usable lake path", absolute.display())))
}

/// A local path for a `file://` URL, the URL itself otherwise.
fn display_url(url: &Url) -> String {
    match url.to_file_path() {
        Ok(path) if url.scheme() == "file" => path.display().to_string(),
        _ => url.to_string(),
    }
}

/// Where a table's file (`path` relative to the table) is, for error messages.
pub(crate) fn file_location(table: &Url, path: &str) -> String {
    // Joined onto a URL without a trailing slash, the path would replace the table's own name.
    let mut base = table.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    match base.join(path) {
        Ok(url) => display_url(&url),
        Err(_) => format!("{}/{path}", display_url(table).trim_end_matches('/')),
    }
}

pub(crate) fn lake_error(table: &str, source: DeltaTableError) -> IngestError {
    IngestError::Lake { table: table.to_owned(), source: Box::new(source) }
}

fn log_batch(entries: &[LogEntry], now: chrono::DateTime<chrono::Utc>) -> Result<RecordBatch> {
    let n = entries.len();
    let strings = |f: &dyn Fn(&LogEntry) -> Option<String>| -> ArrayRef {
        Arc::new(entries.iter().map(f).collect::<StringArray>())
    };
    let ints =
        |f: &dyn Fn(&LogEntry) -> Option<i64>| -> ArrayRef { Arc::new(entries.iter().map(f).collect::<Int64Array>()) };
    let micros = now.timestamp_micros();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(vec![micros; n]).with_timezone("UTC")),
        strings(&|e| Some(e.object.bucket.clone())),
        strings(&|e| Some(e.object.key.clone())),
        strings(&|e| Some(e.format.name().to_owned())),
        strings(&|e| e.table.map(|t| t.name().to_owned())),
        strings(&|e| Some(e.status.to_owned())),
        ints(&|e| Some(e.rows as i64)),
        ints(&|e| Some(e.rejected_records as i64)),
        ints(&|e| Some(e.object.size as i64)),
        strings(&|e| e.error_kind.map(str::to_owned)),
        strings(&|e| e.reason.clone()),
        ints(&|e| e.lake_version.map(|v| v as i64)),
        Arc::new(Date32Array::from(vec![micros_to_days(micros); n])),
    ];
    Ok(RecordBatch::try_new(ingest_log::schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The baseline folded for a hook is reused by the commit only for the very same rows.
    #[test]
    fn folded_rows_are_recognised_by_their_arrays() {
        use arrow::array::{Int32Array, StringArray};
        let batch = |v: &[i32]| {
            RecordBatch::try_from_iter([
                ("n", Arc::new(Int32Array::from(v.to_vec())) as arrow::array::ArrayRef),
                ("s", Arc::new(StringArray::from(v.iter().map(|i| i.to_string()).collect::<Vec<_>>()))),
            ])
            .expect("batch")
        };
        let (a, b, empty) = (batch(&[1, 2]), batch(&[3]), batch(&[]));
        let folded = Folded { batches: vec![a.clone(), b.clone()], view: Sightings::default(), changed: Vec::new() };
        assert!(folded.holds(&[a.clone(), b.clone()]));
        assert!(folded.holds(&[a.clone(), empty, b.clone()]), "empty batches add no rows");
        assert!(!folded.holds(&[batch(&[1, 2]), b.clone()]), "equal values in other arrays are other rows");
        assert!(!folded.holds(std::slice::from_ref(&a)), "fewer batches");
        assert!(!folded.holds(&[a.clone(), b.clone(), a.clone()]), "more batches");
        assert!(!folded.holds(&[b, a.clone()]), "another order");
        let fewer_columns = a.project(&[0]).expect("projected");
        assert!(!Folded { batches: vec![a], ..folded }.holds(&[fewer_columns]));
    }

    /// An object's rows come out of [`ordered_runs`] sorted by date, account and time, and a
    /// sorted object's rows are passed on as they are.
    #[test]
    fn each_object_is_put_in_order_and_the_objects_by_their_first_row() {
        use crate::cloudtrail::CloudTrailParser;
        use arrow::array::AsArray;
        let object = |key: &str, records: &[(&str, &str)]| {
            let records: Vec<String> = records
                .iter()
                .map(|(time, account)| format!(r#"{{"eventTime":"{time}","recipientAccountId":"{account}"}}"#))
                .collect();
            let mut data = format!(r#"{{"Records":[{}]}}"#, records.join(",")).into_bytes();
            let ctx = crate::parsed::ObjectContext { bucket: "", key, key_date: None };
            let parsed = CloudTrailParser::new().parse(&mut data, &ctx).expect("parsed");
            PendingObject { object: ObjectRef::new("", key, 1), batch: parsed.batch }
        };
        let shuffled = object(
            "b",
            &[
                ("2024-03-02T10:00:00Z", "222222222222"),
                ("2024-03-01T12:00:00Z", "222222222222"),
                ("2024-03-02T09:00:00Z", "111111111111"),
                ("2024-03-02T08:00:00Z", "222222222222"),
            ],
        );
        let sorted = object("a", &[("2024-03-02T07:00:00Z", "111111111111"), ("2024-03-02T07:30:00Z", "111111111111")]);
        let parsed = sorted.batch.clone();
        let runs = ordered_runs(LogTable::CloudTrail, &[shuffled, sorted]).expect("ordered");
        let rows = |run: &RecordBatch| -> Vec<(String, String)> {
            let times = run
                .column_by_name("eventtime")
                .expect("eventtime")
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let accounts = run.column_by_name("recipientaccountid").expect("account").as_string::<i32>();
            (0..run.num_rows())
                .map(|i| {
                    let time = chrono::DateTime::from_timestamp_micros(times.value(i)).expect("a time");
                    (time.format("%d %H:%M").to_string(), accounts.value(i).to_owned())
                })
                .collect()
        };
        let all: Vec<Vec<(String, String)>> = runs.iter().map(rows).collect();
        let row = |t: &str, a: &str| (t.to_owned(), a.to_owned());
        assert_eq!(
            all,
            [
                vec![
                    row("01 12:00", "222222222222"),
                    row("02 09:00", "111111111111"),
                    row("02 08:00", "222222222222"),
                    row("02 10:00", "222222222222"),
                ],
                vec![row("02 07:00", "111111111111"), row("02 07:30", "111111111111")],
            ]
        );
        // The sorted object's arrays are the very ones parsed, not copies.
        let column = |batch: &RecordBatch| batch.column_by_name("eventtime").expect("eventtime").to_data();
        assert!(column(&runs[1]).ptr_eq(&column(&parsed)));
    }

    /// The `ingest_log` entry of a CloudTrail object `key` committed with one row.
    fn committed_entry(key: &str) -> LogEntry {
        LogEntry {
            object: ObjectRef::new("archive", key, 1),
            format: LogFormat::CloudTrail,
            table: Some(LogTable::CloudTrail),
            status: ingest_log::status::COMMITTED,
            rows: 1,
            rejected_records: 0,
            error_kind: None,
            reason: None,
            lake_version: None,
        }
    }

    /// Tables are checkpointed every ten commits, so a reader replays at most ten.
    #[tokio::test]
    async fn tables_are_checkpointed_every_ten_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = Lake::open(dir.path(), LakeConfig::default()).await.expect("lake");
        let entry = committed_entry("k");
        let pointer = dir.path().join(ingest_log::TABLE_NAME).join("_delta_log").join("_last_checkpoint");
        let checkpointed = || -> Option<u64> {
            let text = std::fs::read(&pointer).ok()?;
            serde_json::from_slice::<serde_json::Value>(&text).ok()?["version"].as_u64()
        };
        let mut seen = vec![(lake.log.version().expect("version"), checkpointed())];
        while lake.log.version().expect("version") < 25 {
            lake.append_log(std::slice::from_ref(&entry)).await.expect("append");
            seen.push((lake.log.version().expect("version"), checkpointed()));
        }
        // Commits a reader replays: those after the checkpoint, or all of them without one.
        let replayed = |(version, checkpoint): &(u64, Option<u64>)| checkpoint.map_or(version + 1, |c| version - c);
        assert!(seen.iter().all(|s| replayed(s) <= 10), "{seen:?}");
        assert_eq!(checkpointed(), Some(19), "{seen:?}");
    }

    /// Appended rows land in one file per day whatever their order, each file holding its day's
    /// rows; the table's state follows the commit without reading the log again; rows of other
    /// columns are refused before anything is written.
    #[tokio::test]
    async fn appends_write_one_file_per_day_and_refuse_other_columns() {
        use arrow::array::AsArray;
        use chrono::NaiveDate;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = Lake::open(dir.path(), LakeConfig::default()).await.expect("lake");
        let entries: Vec<LogEntry> = ["a", "b", "c"].into_iter().map(committed_entry).collect();
        let batch = log_batch(&entries, chrono::Utc::now()).expect("batch");
        // Two days, out of order.
        let (day_one, day_two) = (20_150, 20_151);
        let at = batch.schema().index_of(DATE_COLUMN).expect("date");
        let mut columns = batch.columns().to_vec();
        columns[at] = Arc::new(Date32Array::from(vec![day_two, day_one, day_two]));
        let batch = RecordBatch::try_new(batch.schema(), columns).expect("batch");

        let before = lake.log.version().expect("created");
        lake.append_log(&entries).await.expect("first append");
        let props = writer_properties(&lake.config, None).expect("props");
        append(&mut lake.log, ingest_log::TABLE_NAME, batch.clone(), props.clone(), LOG_STATS).await.expect("append");
        assert_eq!(lake.log.version(), Some(before + 2), "the state follows the commits");
        let mut reread = DeltaTable::try_from_url(lake.log.table_url().clone()).await.expect("reopen");
        reread.update_state().await.expect("state");
        assert_eq!(reread.version(), Some(before + 2));

        let snapshot = reread.snapshot().expect("snapshot");
        let mut per_day: BTreeMap<String, (usize, i64)> = BTreeMap::new();
        let mut keys = Vec::new();
        for add in snapshot.log_data().into_iter() {
            let path = dir.path().join(ingest_log::TABLE_NAME).join(add.path().as_ref());
            let day = add.path().split('/').next().expect("partition folder").to_owned();
            let file = std::fs::File::open(&path).expect("data file");
            let rows: usize = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .build()
                .expect("reader")
                .map(|b| {
                    let b = b.expect("rows");
                    keys.extend(
                        b.column_by_name("source_key")
                            .expect("key")
                            .as_string::<i32>()
                            .iter()
                            .flatten()
                            .map(str::to_owned),
                    );
                    b.num_rows()
                })
                .sum();
            let entry = per_day.entry(day).or_default();
            entry.0 += 1;
            entry.1 += rows as i64;
        }
        // The first append's day, and the second's two days.
        let today = format!("{DATE_COLUMN}={}", chrono::Utc::now().date_naive());
        let one = format!("{DATE_COLUMN}={}", NaiveDate::from_num_days_from_ce_opt(day_one + 719_163).expect("day"));
        let two = format!("{DATE_COLUMN}={}", NaiveDate::from_num_days_from_ce_opt(day_two + 719_163).expect("day"));
        assert_eq!(per_day.get(&one), Some(&(1, 1)), "{per_day:?}");
        assert_eq!(per_day.get(&two), Some(&(1, 2)), "{per_day:?}");
        assert_eq!(per_day.get(&today), Some(&(1, 3)), "{per_day:?}");
        keys.sort();
        assert_eq!(keys, ["a", "a", "b", "b", "c", "c"]);

        let other = batch.project(&[0, 1, 2]).expect("fewer columns");
        let refused = append(&mut lake.log, ingest_log::TABLE_NAME, other, props, LOG_STATS).await;
        assert!(
            matches!(&refused, Err(IngestError::Config(reason)) if reason.contains("do not have its columns")),
            "{refused:?}"
        );
        assert_eq!(lake.log.version(), Some(before + 2), "nothing committed");
    }

    #[test]
    fn a_commit_names_its_attempt_and_its_objects() {
        let commit = concat!(
            r#"{"add":{"path":"date=2025-03-03/part-0.parquet"}}"#,
            "\n",
            r#"{"commitInfo":{"operation":"WRITE","bunker":{"objects":["s3://a/k1","s3://a/k2"],"rows":3,"attempt":"4f1c"}}}"#,
            "\n",
        );
        assert_eq!(attempt_of_commit(commit.as_bytes()).as_deref(), Some("4f1c"));
        let mut ledger = Ledger::default();
        assert_eq!(ledger.read_commit(commit.as_bytes(), COMMIT_INFO_KEY, 5), 2);
        assert_eq!(ledger.holds(&ObjectRef::new("a", "k2", 1)), Some(5));
        // Commits by other writers, or by bunker before attempts had ids, have none.
        assert_eq!(attempt_of_commit(br#"{"commitInfo":{"operation":"WRITE"}}"#), None);
        assert_eq!(attempt_of_commit(br#"{"commitInfo":{"bunker":{"objects":[]}}}"#), None);
        assert_eq!(attempt_of_commit(b"not json\n"), None);
    }

    /// A failed write names the file as the operator knows it (regression: the message said
    /// "Failed to read delta log object" and named no file when a full disk refused a data file).
    #[test]
    fn failed_writes_name_local_files_by_path_and_s3_objects_by_url() {
        let local = Url::parse("file:///srv/lake/cloudtrail/").expect("url");
        assert_eq!(
            file_location(&local, "date=2025-03-01/part-1.parquet"),
            "/srv/lake/cloudtrail/date=2025-03-01/part-1.parquet"
        );
        let no_slash = Url::parse("file:///srv/lake/cloudtrail").expect("url");
        assert_eq!(
            file_location(&no_slash, "date=2025-03-01/p.parquet"),
            "/srv/lake/cloudtrail/date=2025-03-01/p.parquet"
        );
        let s3 = Url::parse("s3://security-lake/bunker/dns/").expect("url");
        assert_eq!(
            file_location(&s3, "date=2025-03-01/p.parquet"),
            "s3://security-lake/bunker/dns/date=2025-03-01/p.parquet"
        );
        assert_eq!(display_url(&Url::parse("file:///srv/lake/").expect("url")), "/srv/lake/");
    }
}
