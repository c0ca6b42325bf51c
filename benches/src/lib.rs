//! Shared pieces of the benchmarks: generated inputs and the process's peak memory.
#![deny(missing_docs)]

use std::path::Path;

use bunker_ingest::LogFormat;
use bunker_ingest::classify::classify_key;
use bunker_ingest::decode::{Limits, decompress};
use bunker_ingest::synth::{SynthConfig, generate};
use bunker_schemas::LogTable;

/// Decompressed contents of a generated archive's objects, grouped by table, with their keys.
#[derive(Debug, Default)]
pub struct Inputs {
    /// `(key, content)` of every object, per table.
    pub objects: Vec<(LogTable, String, Vec<u8>)>,
    /// The stored (gzip) bytes of every object, for the gunzip bench.
    pub compressed: Vec<Vec<u8>>,
}

impl Inputs {
    /// Generates an archive of `events` CloudTrail events (flow and DNS in proportion) and loads it.
    pub fn generate(events: u64, seed: u64) -> anyhow::Result<Inputs> {
        let dir = tempfile::tempdir()?;
        generate(dir.path(), &SynthConfig::new(events, seed))?;
        Self::load(dir.path())
    }

    /// Loads every log object under `root`.
    pub fn load(root: &Path) -> anyhow::Result<Inputs> {
        let mut inputs = Inputs::default();
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry?;
            if !entry.file_type().is_file() {
                continue;
            }
            let key = entry.path().strip_prefix(root)?.to_string_lossy().replace('\\', "/");
            let table = match classify_key(&key).format {
                Some(LogFormat::CloudTrail) => LogTable::CloudTrail,
                Some(LogFormat::VpcFlow) => LogTable::VpcFlow,
                Some(LogFormat::Dns) => LogTable::Dns,
                _ => continue,
            };
            let stored = std::fs::read(entry.path())?;
            let content = decompress(&key, stored.clone(), Limits::default())?;
            inputs.compressed.push(stored);
            inputs.objects.push((table, key, content));
        }
        Ok(inputs)
    }

    /// Total decompressed bytes of one table's objects.
    pub fn bytes(&self, table: LogTable) -> u64 {
        self.objects.iter().filter(|(t, _, _)| *t == table).map(|(_, _, c)| c.len() as u64).sum()
    }
}

/// Peak resident set size of this process so far, in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user and system, all threads) this process has used so far, in seconds (Linux
/// `/proc/self/stat`, in clock ticks of 1/100 s), if known.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Resets the peak RSS counter (Linux `clear_refs`), so a measurement covers only what follows.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A generated archive kept under `cache` between runs (generating ten million events takes
/// minutes): its name, from what it holds, and its directory. Generated on first use; a marker
/// file says it is complete, so an interrupted generation is started over.
pub fn cached_archive(cache: &Path, config: &SynthConfig) -> anyhow::Result<(String, std::path::PathBuf)> {
    // Everything that changes the archive is in its name, so two shapes never share a cache entry.
    let shape =
        if config.days == bunker_ingest::synth::DEFAULT_DAYS { String::new() } else { format!("-days{}", config.days) };
    let name = format!(
        "ct{}-flow{}-dns{}-seed{}{shape}{}",
        config.cloudtrail_events,
        config.vpcflow_records,
        config.dns_records,
        config.seed,
        if config.benign { "-benign" } else { "" }
    );
    let archive = cache.join(&name);
    let complete = cache.join(format!("{name}.complete"));
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&archive);
        let started = std::time::Instant::now();
        let summary = generate(&archive, config)?;
        std::fs::write(&complete, b"")?;
        eprintln!(
            "generated {name}: {} objects ({:.1} MiB) in {:.1} s",
            summary.objects,
            summary.bytes as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        );
    }
    Ok((name, archive))
}

/// The lake of a [`cached_archive`], kept beside it under `cache` (ingesting ten million events
/// takes minutes): its name and directory. Built on first use; a marker says it is complete.
pub async fn cached_lake(cache: &Path, config: &SynthConfig) -> anyhow::Result<(String, std::path::PathBuf)> {
    let (name, archive) = cached_archive(cache, config)?;
    let lake = cache.join(format!("{name}-lake"));
    let complete = cache.join(format!("{name}-lake.complete"));
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&lake);
        let started = std::time::Instant::now();
        let mut writer = bunker_ingest::lake::Lake::open(&lake, bunker_ingest::lake::LakeConfig::default()).await?;
        let options = bunker_ingest::pipeline::IngestOptions::default();
        let summary = bunker_ingest::pipeline::ingest_directory(
            &archive,
            &mut writer,
            &options,
            &bunker_ingest::pipeline::NoProgress,
        )
        .await?;
        anyhow::ensure!(summary.failed.is_empty(), "{} objects failed", summary.failed.len());
        std::fs::write(&complete, b"")?;
        eprintln!("built the lake: {} rows in {:.1} s", summary.total_rows(), started.elapsed().as_secs_f64());
    }
    Ok((name, lake))
}

/// The lake of [`cached_lake`] after `bunker compact` (every table, default options), built once
/// next to it: its data files are hard links to the ingested lake's (compaction adds files and log
/// entries, it never changes one), so the two share the disk they can.
pub async fn cached_compacted_lake(cache: &Path, config: &SynthConfig) -> anyhow::Result<(String, std::path::PathBuf)> {
    let (name, ingested) = cached_lake(cache, config).await?;
    let lake = cache.join(format!("{name}-lake-compacted"));
    let complete = cache.join(format!("{name}-lake-compacted.complete"));
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&lake);
        for entry in walkdir::WalkDir::new(&ingested) {
            let entry = entry?;
            let to = lake.join(entry.path().strip_prefix(&ingested)?);
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&to)?;
            } else if entry.path().extension().is_some_and(|e| e == "parquet") {
                std::fs::hard_link(entry.path(), &to)?;
            } else {
                std::fs::copy(entry.path(), &to)?;
            }
        }
        let mut writer = bunker_ingest::lake::Lake::open(&lake, bunker_ingest::lake::LakeConfig::default()).await?;
        let options = bunker_ingest::compact::CompactOptions::default();
        for table in bunker_schemas::LogTable::ALL {
            let started = std::time::Instant::now();
            let report = writer.compact(table, &options).await?;
            anyhow::ensure!(report.failed.is_empty(), "compacting {table}: {:?}", report.failed);
            let rows: u64 = report.days.iter().map(|d| d.rows).sum();
            let (before, after): (usize, usize) =
                report.days.iter().fold((0, 0), |(b, a), d| (b + d.files_before, a + d.files_after));
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "compacted {table}: {before} files -> {after}, {rows} rows in {secs:.1} s ({:.0} rows/s)",
                rows as f64 / secs
            );
        }
        std::fs::write(&complete, b"")?;
    }
    Ok((name, lake))
}

/// The median of `values` (sorted in place); 0 when empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Total size of the files under `root`, in bytes.
pub fn tree_bytes(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
