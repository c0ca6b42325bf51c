//! The end-to-end ingest benchmark: a generated archive (gzip JSON and text in the AWS layout)
//! through gunzip, parsing, Arrow, sorting, zstd Parquet and Delta commits, into a fresh lake.
//! Prints events/s and the peak RSS of the ingest alone.
//!
//! `cargo run --release -p bunker-benches --bin e2e -- --events 1000000`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bunker_benches::{cached_archive, peak_rss_bytes, reset_peak_rss, tree_bytes};
use bunker_ingest::lake::{Lake, LakeConfig};
use bunker_ingest::pipeline::{IngestOptions, NoProgress, ingest_directory};
use bunker_ingest::synth::SynthConfig;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// CloudTrail events in the archive.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Also generate VPC flow and DNS records in the default proportion (otherwise CloudTrail only).
    #[arg(long)]
    all_types: bool,
    /// Seed of the archive.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Commit a table once this many MiB of rows are waiting (the ingest default when absent).
    #[arg(long)]
    commit_mib: Option<usize>,
    /// zstd level of the lake's Parquet files (the ingest default when absent).
    #[arg(long)]
    zstd_level: Option<i32>,
    /// Where generated archives are kept between runs.
    #[arg(long, default_value = "target/bench-archives")]
    cache: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("BUNKER_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let mut config = SynthConfig::new(args.events, args.seed);
    if !args.all_types {
        config.vpcflow_records = 0;
        config.dns_records = 0;
    }
    let (name, archive) = cached_archive(&args.cache, &config).context("generating the archive")?;
    let lake_dir = tempfile::tempdir_in(&args.cache)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let rss_reset = reset_peak_rss();
    let started = Instant::now();
    let summary = runtime.block_on(async {
        let mut config = LakeConfig::default();
        config.zstd_level = args.zstd_level.unwrap_or(config.zstd_level);
        let mut lake = Lake::open(lake_dir.path(), config).await?;
        let mut options = IngestOptions::default();
        if let Some(mib) = args.commit_mib {
            options.commit_bytes = mib << 20;
        }
        ingest_directory(&archive, &mut lake, &options, &NoProgress).await
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss_bytes().unwrap_or(0);

    let rows = summary.total_rows();
    let lake_bytes = tree_bytes(lake_dir.path());
    println!(
        "archive:        {name} ({} objects, {:.1} MiB gzip, {:.1} MiB decompressed)",
        summary.objects,
        summary.bytes as f64 / 1048576.0,
        summary.content_bytes as f64 / 1048576.0
    );
    for (table, n) in &summary.rows {
        println!("rows {table:<10} {n}");
    }
    println!("failed objects: {}", summary.failed.len());
    println!(
        "elapsed:        {elapsed:.2} s (parse {:.2} s of thread time, commit {:.2} s of wall time)",
        summary.parse_time.as_secs_f64(),
        summary.commit_time.as_secs_f64()
    );
    println!("events/s:       {:.0}", rows as f64 / elapsed);
    println!("input MB/s:     {:.1} decompressed", summary.content_bytes as f64 / 1e6 / elapsed);
    println!(
        "lake size:      {:.1} MiB ({:.1} bytes/event)",
        lake_bytes as f64 / 1048576.0,
        lake_bytes as f64 / rows.max(1) as f64
    );
    println!(
        "peak RSS:       {:.0} MiB{}",
        peak as f64 / 1048576.0,
        if rss_reset { "" } else { " (includes generation: clear_refs unavailable)" }
    );
    Ok(())
}
