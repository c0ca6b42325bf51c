//! Retention: how many days of rows each table keeps, and the Delta delete that drops the days
//! past it.
//!
//! Every table is partitioned by `date` (the event's day for the log tables, the day of the
//! record for the side tables), so dropping old rows is dropping whole partitions: one Delta
//! commit of `remove` actions (operation `DELETE`, predicate `date < 'cutoff'`), no file read or
//! rewritten. The removed files stay on storage, as every removal's do, until [`crate::vacuum`]
//! deletes them past the retention period; until then `VERSION AS OF` still reads them.
//!
//! What retention leaves alone, and why:
//!
//! - Only the tables given a number of days are touched; nothing has one by default. In
//!   particular `ingest_log` (the record of every object looked at, with failures and their
//!   reasons), `alert_updates` (the alerts' history) and `region_sightings` (the region
//!   baseline: dropping it makes every old region new again, and the first-use-of-a-region
//!   detection fires again) keep everything unless set explicitly.
//! - The exactly-once ledger is not in any table's rows: it is each commit's `commitInfo` in
//!   `_delta_log` (see [`crate::lake`]), which a delete only extends. Dropping a day's rows
//!   therefore does not forget its objects: ingesting the same archive again adds nothing to
//!   the days dropped, which is what exactly-once needs, and also means a dropped day is not
//!   brought back by re-ingesting it into the same lake. The delete's commit is made with log
//!   cleanup off (`delta.logRetentionDuration` would otherwise drop the commits older than 30
//!   days after the next checkpoint, and a checkpoint keeps no `commitInfo`): the ledger must
//!   keep every commit since version 0.

use chrono::NaiveDate;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::protocol::DeltaOperation;
use serde_json::json;

use bunker_schemas::DATE_COLUMN;

use crate::compact::Compactable;
use crate::lake::{self, Lake};
use crate::{IngestError, Result};

/// Days of rows kept, per table (`[retention]` in `bunker.toml`): a day older than `today` minus
/// the number is dropped. A table without a number keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days of `cloudtrail` kept.
    pub cloudtrail_days: Option<u32>,
    /// Days of `vpcflow` kept.
    pub vpcflow_days: Option<u32>,
    /// Days of `dns` kept.
    pub dns_days: Option<u32>,
    /// Days of `ingest_log` kept (only if set: it records every object and failure).
    pub ingest_log_days: Option<u32>,
    /// Days of `alert_updates` kept (only if set: it is the alerts' history).
    pub alert_updates_days: Option<u32>,
    /// Days of `region_sightings` kept (only if set: it is the region baseline).
    pub region_sightings_days: Option<u32>,
}

impl RetentionConfig {
    /// The days `table` keeps, if it has a limit.
    pub fn days(&self, table: Compactable) -> Option<u32> {
        *self.slot(table)
    }

    /// Sets the days `table` keeps.
    pub fn set(&mut self, table: Compactable, days: u32) {
        *self.slot_mut(table) = Some(days);
    }

    /// The tables with a limit, with it, each checked (at least one day).
    pub fn limits(&self) -> Result<Vec<(Compactable, u32)>> {
        let mut limits = Vec::new();
        for table in Compactable::ALL {
            if let Some(days) = self.days(table) {
                if days == 0 {
                    return Err(IngestError::Config(format!(
                        "retention of {table}: 0 days would drop every day but today; keep at least 1"
                    )));
                }
                limits.push((table, days));
            }
        }
        Ok(limits)
    }

    fn slot(&self, table: Compactable) -> &Option<u32> {
        use bunker_schemas::LogTable;
        match table {
            Compactable::Log(LogTable::CloudTrail) => &self.cloudtrail_days,
            Compactable::Log(LogTable::VpcFlow) => &self.vpcflow_days,
            Compactable::Log(LogTable::Dns) => &self.dns_days,
            Compactable::IngestLog => &self.ingest_log_days,
            Compactable::AlertUpdates => &self.alert_updates_days,
            Compactable::RegionSightings => &self.region_sightings_days,
        }
    }

    fn slot_mut(&mut self, table: Compactable) -> &mut Option<u32> {
        use bunker_schemas::LogTable;
        match table {
            Compactable::Log(LogTable::CloudTrail) => &mut self.cloudtrail_days,
            Compactable::Log(LogTable::VpcFlow) => &mut self.vpcflow_days,
            Compactable::Log(LogTable::Dns) => &mut self.dns_days,
            Compactable::IngestLog => &mut self.ingest_log_days,
            Compactable::AlertUpdates => &mut self.alert_updates_days,
            Compactable::RegionSightings => &mut self.region_sightings_days,
        }
    }
}

/// One day past the retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredDay {
    /// The day (`date` partition).
    pub date: NaiveDate,
    /// Its files.
    pub files: usize,
    /// Its rows, as the Delta log's statistics count them.
    pub rows: u64,
    /// Bytes of its files.
    pub bytes: u64,
}

/// What applying (or planning) a table's retention found.
#[derive(Debug, Clone)]
pub struct RetentionReport {
    /// The table.
    pub table: Compactable,
    /// The oldest day kept: every day before it is dropped.
    pub cutoff: NaiveDate,
    /// The days dropped (or to drop), oldest first.
    pub days: Vec<ExpiredDay>,
    /// The version of the delete's commit; `None` for a dry run or when nothing was past.
    pub version: Option<u64>,
}

impl Lake {
    /// Drops (with `apply`; otherwise only lists) the days of `table` older than `keep_days`
    /// before `today`, in one Delta commit of the whole partitions' removals.
    pub async fn apply_retention(
        &mut self,
        table: impl Into<Compactable>,
        keep_days: u32,
        today: NaiveDate,
        apply: bool,
    ) -> Result<RetentionReport> {
        let table = table.into();
        let name = table.name();
        if keep_days == 0 {
            return Err(IngestError::Config(format!("retention of {table}: keep at least 1 day")));
        }
        let cutoff = today
            .checked_sub_days(chrono::Days::new(u64::from(keep_days)))
            .ok_or_else(|| IngestError::Config(format!("retention of {table}: {keep_days} days is too far back")))?;
        let delta = self.table_mut(table).await?;
        let snapshot = delta.snapshot().map_err(|e| lake::lake_error(name, e))?;
        let mut days = std::collections::BTreeMap::<NaiveDate, ExpiredDay>::new();
        let mut removes = Vec::new();
        for view in snapshot.log_data().iter() {
            let partition = view.partition_values_map();
            let Some(Some(day)) = partition.get(DATE_COLUMN) else { continue };
            let date = NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .map_err(|e| IngestError::Config(format!("{table}: file {} has date {day:?}: {e}", view.path())))?;
            if date >= cutoff {
                continue;
            }
            let entry = days.entry(date).or_insert(ExpiredDay { date, files: 0, rows: 0, bytes: 0 });
            entry.files += 1;
            entry.rows += view.num_records().unwrap_or(0) as u64;
            entry.bytes += u64::try_from(view.size()).unwrap_or(0);
            removes.push(Action::Remove(view.remove_action(true)));
        }
        let days: Vec<ExpiredDay> = days.into_values().collect();
        if !apply || removes.is_empty() {
            return Ok(RetentionReport { table, cutoff, days, version: None });
        }
        let commit = CommitProperties::default()
            .with_metadata([(
                lake::COMMIT_INFO_KEY.to_owned(),
                json!({ "retention": { "keep_days": keep_days, "before": cutoff.to_string() } }),
            )])
            // The commits are the exactly-once ledger: never let this one expire older ones.
            .with_cleanup_expired_logs(Some(false));
        // delta-rs's conflict check retries over concurrent appends to other days and fails
        // over an append to a day being dropped (its rows would outlive the delete).
        let operation = DeltaOperation::Delete { predicate: Some(format!("{DATE_COLUMN} < '{cutoff}'")) };
        let committed = CommitBuilder::from(commit)
            .with_actions(removes)
            .build(Some(snapshot as &dyn TableReference), delta.log_store(), operation)
            .await
            .map_err(|e| lake::lake_error(name, e))?;
        let version = committed.version();
        delta.state = Some(committed.snapshot());
        tracing::info!(table = name, %cutoff, days = days.len(), version, "retention applied");
        Ok(RetentionReport { table, cutoff, days, version: Some(version) })
    }
}

#[cfg(test)]
mod tests {
    use bunker_schemas::LogTable;

    use super::*;
    use crate::lake::LakeConfig;
    use crate::pipeline::{IngestOptions, NoProgress, ingest_directory};
    use crate::synth::{SynthConfig, generate};

    /// Rows per day of a table, as its current snapshot's statistics count them.
    async fn rows_per_day(lake: &mut Lake, table: Compactable) -> std::collections::BTreeMap<NaiveDate, u64> {
        let delta = lake.table_mut(table).await.expect("table");
        let mut days = std::collections::BTreeMap::new();
        for view in delta.snapshot().expect("snapshot").log_data().iter() {
            let day = view.partition_values_map()[DATE_COLUMN].clone().expect("date");
            let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d").expect("date");
            *days.entry(date).or_insert(0) += view.num_records().expect("stats") as u64;
        }
        days
    }

    /// Retention drops exactly the days past it, in one commit, dry run first; the tables
    /// without a limit, `ingest_log` among them, are untouched; and the ledger still knows the
    /// dropped days' objects (ingesting the archive again adds nothing).
    #[tokio::test]
    async fn retention_drops_old_partitions_only_and_keeps_the_ledger() {
        let (archive, lake_dir) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let config = SynthConfig { days: 4, accounts: 3, ..SynthConfig::new(4_000, 41) };
        generate(archive.path(), &config).expect("archive");
        let mut lake = Lake::open(lake_dir.path(), LakeConfig::default()).await.expect("lake");
        ingest_directory(archive.path(), &mut lake, &IngestOptions::default(), &NoProgress).await.expect("ingest");
        let table = Compactable::Log(LogTable::CloudTrail);
        let before = rows_per_day(&mut lake, table).await;
        let dates: Vec<NaiveDate> = before.keys().copied().collect();
        assert!(dates.len() >= 4, "{dates:?}");
        // "Today" is the day after the last: keeping 2 days keeps the last two.
        let today = dates[dates.len() - 1].succ_opt().expect("date");
        let ingest_log = rows_per_day(&mut lake, Compactable::IngestLog).await;
        let version = lake.table_mut(table).await.expect("table").version();

        let dry = lake.apply_retention(table, 2, today, false).await.expect("dry run");
        let expected: Vec<NaiveDate> = dates.iter().copied().filter(|d| *d < today - chrono::Days::new(2)).collect();
        assert_eq!(dry.days.iter().map(|d| d.date).collect::<Vec<_>>(), expected);
        assert_eq!(dry.days.iter().map(|d| d.rows).sum::<u64>(), expected.iter().map(|d| before[d]).sum::<u64>());
        assert_eq!(dry.version, None);
        assert_eq!(lake.table_mut(table).await.expect("table").version(), version, "a dry run commits nothing");

        let applied = lake.apply_retention(table, 2, today, true).await.expect("apply");
        assert_eq!(applied.days, dry.days);
        assert_eq!(applied.version, version.map(|v| v + 1), "one commit");
        let after = rows_per_day(&mut lake, table).await;
        let kept: std::collections::BTreeMap<NaiveDate, u64> =
            before.iter().filter(|(d, _)| !expected.contains(d)).map(|(d, n)| (*d, *n)).collect();
        assert_eq!(after, kept);
        assert_eq!(rows_per_day(&mut lake, Compactable::IngestLog).await, ingest_log, "no limit, untouched");
        assert!(lake.apply_retention(table, 2, today, true).await.expect("again").days.is_empty());

        let mut reopened = Lake::open(lake_dir.path(), LakeConfig::default()).await.expect("reopen");
        ingest_directory(archive.path(), &mut reopened, &IngestOptions::default(), &NoProgress).await.expect("again");
        assert_eq!(rows_per_day(&mut reopened, table).await, kept, "the dropped days' objects are still known");
    }

    /// What a retention config text should read as: the days per table, or an error's text.
    type Expected = Result<Vec<(Compactable, u32)>, &'static str>;

    #[test]
    fn retention_config_reads_days_per_table_and_refuses_zero() {
        let cases: [(&str, Expected); 4] = [
            ("", Ok(vec![])),
            ("cloudtrail_days = 400", Ok(vec![(Compactable::Log(LogTable::CloudTrail), 400)])),
            (
                "dns_days = 30\ningest_log_days = 800",
                Ok(vec![(Compactable::Log(LogTable::Dns), 30), (Compactable::IngestLog, 800)]),
            ),
            ("vpcflow_days = 0", Err("0 days")),
        ];
        for (text, expected) in cases {
            let config: RetentionConfig = toml_like(text);
            match (config.limits(), expected) {
                (Ok(limits), Ok(expected)) => assert_eq!(limits, expected, "{text}"),
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{text}: {e}"),
                (got, expected) => panic!("{text}: {got:?} != {expected:?}"),
            }
        }
    }

    /// `key = number` lines as the config file gives them (the crate has no TOML reader).
    fn toml_like(text: &str) -> RetentionConfig {
        let object: serde_json::Map<String, serde_json::Value> = text
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k.to_owned(), json!(v.parse::<u32>().expect("number"))))
            .collect();
        serde_json::from_value(serde_json::Value::Object(object)).expect("config")
    }
}
