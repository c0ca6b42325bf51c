//! Vacuum: deleting from storage the data files no version of a table within its retention
//! period still needs.
//!
//! A Delta commit that removes a file (a compaction swapping a day's small files for sorted
//! ones, a retention delete of old days) only records the removal: the file stays on storage,
//! so that readers of older versions — a query that opened the table before the commit, `VERSION
//! AS OF` — still find it. A compaction therefore doubles the bytes of the days it rewrites
//! until those files are vacuumed. Files a writer stored and never committed (a worker killed
//! between storing and committing, a compaction that lost its race) are on storage too, and in
//! no version at all.
//!
//! [`Lake::vacuum`] runs delta-rs's vacuum in its full mode over one table: it deletes the files
//! removed longer ago than the retention period and the files no version references that are
//! older than it. The retention period is the table's `delta.deletedFileRetentionDuration` (7
//! days unless the table says otherwise); a shorter one is refused unless forced, because
//! within it
//!
//! - a query (a `bunker serve` session, a long detection run) may still be reading the snapshot
//!   from before the removal, and would fail on the file vacuumed under it;
//! - a writer may have stored a file it has not committed yet: full mode would take it for an
//!   orphan and delete it, and the commit that follows would point at nothing;
//! - time travel (`VERSION AS OF`, `TIMESTAMP AS OF`) to a version of that window fails.
//!
//! What vacuum never touches is the Delta log: `_delta_log` (commits, checkpoints) is not a data
//! file, and the commits are the exactly-once ledger (see [`crate::lake`]: each commit's
//! `commitInfo` lists the objects it holds, and a writer replays every commit to know them).
//! Log cleanup (`delta.logRetentionDuration`, which would drop commits older than 30 days after
//! a checkpoint) is switched off when bunker creates a table (`delta.enableExpiredLogCleanup =
//! false`), and vacuum's own commits (`VACUUM START`, `VACUUM END`) are made with log cleanup
//! off explicitly, so a table whose property was changed by hand does not lose its ledger
//! through a vacuum. A table with log cleanup switched on is refused outright: its ledger may
//! already be incomplete, and a checkpoint does not keep the `commitInfo` a replay needs.
//!
//! Vacuum needs delete permission on the lake (`s3:DeleteObject`), which the ingestion worker
//! does not: it is an operator's command, `bunker vacuum`, never run by the worker.

use std::collections::HashMap;
use std::time::Duration;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::table::config::TablePropertiesExt as _;
use futures::StreamExt as _;

use crate::compact::Compactable;
use crate::lake::{self, Lake};
use crate::{IngestError, Result};

/// How a vacuum runs.
#[derive(Debug, Clone, Default)]
pub struct VacuumOptions {
    /// Files removed (or never committed) less than this long ago are kept; `None`: the
    /// table's `delta.deletedFileRetentionDuration`, 7 days by default.
    pub retain: Option<Duration>,
    /// Delete the files; otherwise only list them (a dry run).
    pub apply: bool,
    /// Accept a retention shorter than the table's `delta.deletedFileRetentionDuration`.
    pub force: bool,
}

/// What a vacuum of one table found, or deleted.
#[derive(Debug, Clone)]
pub struct VacuumReport {
    /// The table.
    pub table: Compactable,
    /// The retention period used.
    pub retain: Duration,
    /// Whether the files were deleted (`false`: a dry run).
    pub applied: bool,
    /// The files, relative to the table's folder, with their sizes in bytes (0 when storage did
    /// not say).
    pub files: Vec<(String, u64)>,
}

impl VacuumReport {
    /// Bytes of the files listed.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, size)| size).sum()
    }
}

/// Concurrent size look-ups of a dry run (one HEAD each on S3).
const SIZE_LOOKUPS: usize = 16;

impl Lake {
    /// Vacuums `table`: lists (or with [`VacuumOptions::apply`], deletes) the data files that
    /// no version inside the retention period needs. See the module doc for what is refused.
    pub async fn vacuum(&mut self, table: impl Into<Compactable>, options: &VacuumOptions) -> Result<VacuumReport> {
        let table = table.into();
        let name = table.name();
        let delta = self.table_mut(table).await?;
        let snapshot = delta.snapshot().map_err(|e| lake::lake_error(name, e))?;
        let config = snapshot.table_config();
        if config.enable_expired_log_cleanup() {
            return Err(IngestError::Config(format!(
                "{name}: the table has delta.enableExpiredLogCleanup on, so its old commits (the exactly-once \
                 ledger) may be gone; bunker creates its tables with it off. Set it back to false before vacuuming"
            )));
        }
        let minimum = config.deleted_file_retention_duration();
        let retain = options.retain.unwrap_or(minimum);
        if retain < minimum && !options.force {
            return Err(IngestError::Config(format!(
                "{name}: keeping removed files {} hours is below the table's delta.deletedFileRetentionDuration of \
                 {} hours. Within that window a running query or `bunker serve` session may still read the \
                 removed files, a writer may have stored files it has not committed yet (they would be deleted \
                 as orphans), and time travel to those versions would fail. Force it only with no reader or \
                 writer running",
                retain.as_secs() / 3600,
                minimum.as_secs() / 3600
            )));
        }
        let period = chrono::Duration::from_std(retain)
            .map_err(|e| IngestError::Config(format!("retention period {retain:?}: {e}")))?;
        // Log cleanup off whatever the table says: the commits are the ledger.
        let commit = CommitProperties::default().with_cleanup_expired_logs(Some(false));
        let vacuum = |dry_run: bool| {
            delta
                .clone()
                .vacuum()
                .with_retention_period(period)
                .with_enforce_retention_duration(!options.force)
                .with_mode(VacuumMode::Full)
                .with_dry_run(dry_run)
                .with_commit_properties(commit.clone())
        };
        // Sizes are looked up before anything is deleted; a file the real run deletes that the
        // dry run did not list (its retention ran out in between) is counted as 0 bytes.
        let (_, planned) = vacuum(true).await.map_err(|e| lake::lake_error(name, e))?;
        let store = delta.object_store();
        // Tombstones outlive their files (the log keeps a removal past its vacuum), so a file
        // already gone is left out of the listing: `None` here.
        let sizes: HashMap<String, Option<u64>> = futures::stream::iter(planned.files_deleted)
            .map(|path| {
                let store = store.clone();
                async move {
                    let size = match store.head(&deltalake::Path::from(path.as_str())).await {
                        Ok(meta) => Some(meta.size),
                        Err(deltalake::ObjectStoreError::NotFound { .. }) => None,
                        Err(_) => Some(0),
                    };
                    (path, size)
                }
            })
            .buffer_unordered(SIZE_LOOKUPS)
            .collect()
            .await;
        let mut files: Vec<(String, u64)> = if options.apply && sizes.values().any(Option::is_some) {
            // The lake's handle catches up with the vacuum's commits when next brought up to date.
            let (_, metrics) = vacuum(false).await.map_err(|e| lake::lake_error(name, e))?;
            metrics
                .files_deleted
                .into_iter()
                .filter_map(|p| match sizes.get(&p) {
                    Some(None) => None,
                    Some(Some(size)) => Some((p, *size)),
                    None => Some((p, 0)),
                })
                .collect()
        } else {
            sizes.into_iter().filter_map(|(p, size)| size.map(|s| (p, s))).collect()
        };
        files.sort();
        if options.apply {
            tracing::info!(table = name, files = files.len(), "vacuumed");
        }
        Ok(VacuumReport { table, retain, applied: options.apply, files })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bunker_schemas::LogTable;

    use super::*;
    use crate::compact::CompactOptions;
    use crate::lake::LakeConfig;
    use crate::pipeline::{IngestOptions, NoProgress, ingest_directory};
    use crate::synth::{SynthConfig, generate};

    /// Data files under a table's folder (relative to it), what storage holds.
    fn data_files(table_dir: &std::path::Path) -> BTreeSet<String> {
        crate::test_support::table_files(table_dir).into_keys().collect()
    }

    async fn count(lake: &mut Lake) -> usize {
        let delta = lake.table_mut(Compactable::Log(LogTable::CloudTrail)).await.expect("table");
        let snapshot = delta.snapshot().expect("snapshot");
        let store = delta.object_store();
        let mut rows = 0;
        for view in snapshot.log_data().iter() {
            let bytes = store.get(&deltalake::Path::from(view.path().as_ref())).await.expect("get");
            let bytes = bytes.bytes().await.expect("bytes");
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                .expect("parquet")
                .build()
                .expect("reader");
            rows += reader.map(|b| b.expect("batch").num_rows()).sum::<usize>();
        }
        rows
    }

    /// Regression: nothing ever deleted what compaction removed (one compaction doubled the
    /// lake's bytes on disk). A dry run lists exactly the compacted-away files and an orphan, and
    /// deletes nothing; `apply` deletes them and the table reads the same rows; a retention below
    /// the table's minimum is refused unless forced; the ledger still holds every object.
    #[tokio::test]
    async fn vacuum_lists_then_deletes_compacted_away_files_and_keeps_rows_and_ledger() {
        let (archive, lake_dir) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let config = SynthConfig { days: 2, accounts: 3, ..SynthConfig::new(3_000, 31) };
        generate(archive.path(), &config).expect("archive");
        let mut lake = Lake::open(lake_dir.path(), LakeConfig::default()).await.expect("lake");
        let options = IngestOptions { commit_bytes: 256 << 10, chunk_bytes: 64 << 10, ..IngestOptions::default() };
        ingest_directory(archive.path(), &mut lake, &options, &NoProgress).await.expect("ingest");
        let table = Compactable::Log(LogTable::CloudTrail);
        let dir = lake_dir.path().join(table.name());
        let ingested = data_files(&dir);
        let rows = count(&mut lake).await;
        lake.compact(table, &CompactOptions::default()).await.expect("compact");
        let compacted = data_files(&dir);
        let written: BTreeSet<String> = compacted.difference(&ingested).cloned().collect();
        assert!(!written.is_empty() && ingested.is_subset(&compacted), "the old files stay on disk");
        // A file stored and never committed (a writer killed before its commit).
        let orphan = "date=2020-01-01/part-00000-orphan.zstd.parquet";
        std::fs::create_dir_all(dir.join("date=2020-01-01")).expect("dir");
        std::fs::write(dir.join(orphan), b"not referenced").expect("orphan");

        // Retention 0 takes what was removed (or written) strictly before now, to the
        // millisecond: let the clock move past the last of it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The default retention (7 days) keeps everything: it was all removed just now.
        let kept = lake.vacuum(table, &VacuumOptions::default()).await.expect("dry run");
        assert!(kept.files.is_empty() && !kept.applied, "{:?}", kept.files);
        assert_eq!(kept.retain, Duration::from_secs(7 * 24 * 3600));
        // Shorter than the table's minimum: refused, saying why, unless forced.
        let short = VacuumOptions { retain: Some(Duration::ZERO), ..VacuumOptions::default() };
        let refused = lake.vacuum(table, &short).await.expect_err("below the minimum");
        assert!(refused.to_string().contains("deletedFileRetentionDuration"), "{refused}");
        let forced = VacuumOptions { force: true, ..short };
        let dry = lake.vacuum(table, &forced).await.expect("dry run");
        let mut expected: BTreeSet<String> = ingested.clone();
        expected.insert(orphan.to_owned());
        let listed: BTreeSet<String> = dry.files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(listed, expected, "the compacted-away files and the orphan");
        let on_disk: u64 = expected.iter().map(|p| std::fs::metadata(dir.join(p)).expect("file").len()).sum();
        assert_eq!(dry.bytes(), on_disk, "their bytes");
        let mut stored = compacted.clone();
        stored.insert(orphan.to_owned());
        assert_eq!(data_files(&dir), stored, "a dry run deletes nothing");

        let applied = lake.vacuum(table, &VacuumOptions { apply: true, ..forced }).await.expect("apply");
        assert!(applied.applied);
        assert_eq!(applied.files, dry.files);
        assert_eq!(data_files(&dir), written, "only the compacted files are left");
        assert_eq!(count(&mut lake).await, rows, "the same rows");
        assert!(lake.vacuum(table, &forced).await.expect("again").files.is_empty());

        // The ledger (every commit's record) is intact: the archive again adds nothing.
        let mut reopened = Lake::open(lake_dir.path(), LakeConfig::default()).await.expect("reopen");
        let summary = ingest_directory(archive.path(), &mut reopened, &IngestOptions::default(), &NoProgress)
            .await
            .expect("again");
        assert_eq!(count(&mut reopened).await, rows, "{summary:?}");
    }
}
