//! The detections benchmark, for the two budgets of the detections issue:
//! - the whole built-in pack over a lake of ten million CloudTrail events (flow and DNS records in
//!   the generator's proportion), as `bunker detect` runs it — target under 15 s;
//! - what the row rules cost ingestion: the same archive ingested with and without them, in turns,
//!   into fresh lakes — target under 10% fewer events/s.
//!
//! The archive and the big lake are kept under `--cache` between runs (building them takes
//! minutes). Prints seconds, events/s and the peak RSS of each part.
//!
//! `cargo run --release -p bunker-benches --bin detect_bench -- --events 10000000`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bunker_benches::{
    cached_archive, cached_compacted_lake, cached_lake, cpu_seconds, median, peak_rss_bytes, reset_peak_rss, tree_bytes,
};
use bunker_detect::engine::{run_over_lake, validate};
use bunker_detect::live::Detector;
use bunker_detect::pack::builtin_validated;
use bunker_detect::regions::RegionConfig;
use bunker_detect::rule::{Rule, load_dir};
use bunker_detect::sink::Sinks;
use bunker_detect::store::RunKind;
use bunker_detect::tuning::{DetectConfig, Tuning};
use bunker_ingest::lake::{Lake, LakeConfig};
use bunker_ingest::pipeline::{IngestOptions, IngestSummary, LakeHook, NoProgress, ingest_directory};
use bunker_ingest::synth::SynthConfig;
use bunker_query::LakeSession;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// CloudTrail events in the lake the pack runs over.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// CloudTrail events in the archive ingested with and without the row rules.
    #[arg(long, default_value_t = 1_000_000)]
    overhead_events: u64,
    /// How many times each measurement is repeated (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seed of the archives.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Skip the ingest-overhead part.
    #[arg(long)]
    skip_overhead: bool,
    /// Skip the pack-over-the-lake part.
    #[arg(long)]
    skip_pack: bool,
    /// Also time each rule on its own over the big lake (before the whole pack), with its peak RSS.
    #[arg(long)]
    per_rule: bool,
    /// Run the pack over the big lake after `bunker compact` (built once beside it, as query_bench
    /// does) instead of the lake as ingestion left it.
    #[arg(long)]
    compacted: bool,
    /// Where generated archives and the big lake are kept between runs.
    #[arg(long, default_value = "target/bench-archives")]
    cache: PathBuf,
    /// Run the rules of this folder instead of the built-in pack (to measure a rule while
    /// rewriting it, without rebuilding the benchmark).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Only these rule ids (repeatable).
    #[arg(long)]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("BUNKER_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut pack = match &args.rules {
            Some(dir) => {
                // Reading and compiling the rules (Sigma files are compiled to SQL here), then
                // planning every rule's SQL: what a worker's start and `--rules` pay.
                let started = std::time::Instant::now();
                let rules = load_dir(dir)?;
                let loaded = started.elapsed();
                validate(&rules).await?;
                println!(
                    "rules:          {} loaded from {} in {:.0} ms (Sigma files compiled to SQL), planned in {:.0} ms",
                    rules.len(),
                    dir.display(),
                    loaded.as_secs_f64() * 1000.0,
                    (started.elapsed() - loaded).as_secs_f64() * 1000.0
                );
                rules
            }
            None => builtin_validated().await?,
        };
        if !args.only.is_empty() {
            pack.retain(|rule| args.only.contains(&rule.id));
            anyhow::ensure!(!pack.is_empty(), "no rule has an id given with --only");
        }
        if !args.skip_pack {
            pack_over_lake(&args, &pack).await?;
        }
        if !args.skip_overhead {
            row_rule_overhead(&args, &pack).await?;
        }
        Ok(())
    })
}

/// The configuration the benchmark detects under: the generator's regions are the allowed ones.
fn detect_config(config: &SynthConfig) -> DetectConfig {
    DetectConfig {
        regions: RegionConfig { allowed: config.regions.clone(), ..RegionConfig::default() },
        ..DetectConfig::default()
    }
}

async fn pack_over_lake(args: &Args, pack: &[Rule]) -> anyhow::Result<()> {
    let config = SynthConfig::new(args.events, args.seed);
    let (name, lake) = if args.compacted {
        cached_compacted_lake(&args.cache, &config).await.context("building the compacted lake")?
    } else {
        cached_lake(&args.cache, &config).await.context("building the lake")?
    };
    let session = LakeSession::open(&lake).await?;
    let count = |table: &'static str| {
        let session = &session;
        async move {
            let (_, batches) = session.sql(&format!("SELECT count(*) FROM {table}")).await?;
            let n = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batches[0].column(0)).value(0);
            anyhow::Ok(n)
        }
    };
    println!(
        "lake:           {name} ({} cloudtrail, {} vpcflow, {} dns rows; {:.0} MiB)",
        count("cloudtrail").await?,
        count("vpcflow").await?,
        count("dns").await?,
        tree_bytes(&lake) as f64 / 1048576.0
    );
    let tuning = Tuning::new(&detect_config(&config), pack)?;
    let regions = tuning.regions();
    if args.per_rule {
        // Each rule alone first, printed as it finishes, with its own peak RSS: if the whole pack
        // runs out of memory, this says which rule did.
        for rule in pack {
            let session = LakeSession::open(&lake).await?;
            reset_peak_rss();
            let started = Instant::now();
            let found = run_over_lake(&session, std::slice::from_ref(rule), regions, None, None).await?.len();
            println!(
                "  {:>6.2} s  {:>6.0} MiB  {:<48} {found} alerts",
                started.elapsed().as_secs_f64(),
                peak_rss_bytes().unwrap_or(0) as f64 / 1048576.0,
                rule.id
            );
        }
    }
    let rss_reset = reset_peak_rss();
    let mut times = Vec::new();
    let mut alerts = 0;
    for _ in 0..args.repeat.max(1) {
        // A session per run, as `bunker detect` opens one.
        let session = LakeSession::open(&lake).await?;
        let started = Instant::now();
        alerts = run_over_lake(&session, pack, regions, None, None).await?.len();
        times.push(started.elapsed().as_secs_f64());
    }
    let peak = peak_rss_bytes().unwrap_or(0);
    println!(
        "pack:           {} rules over the whole lake: median {:.2} s (runs {}), {alerts} alerts",
        pack.len(),
        median(&mut times.clone()),
        times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "peak RSS:       {:.0} MiB{}",
        peak as f64 / 1048576.0,
        if rss_reset { "" } else { " (includes building the lake: clear_refs unavailable)" }
    );
    Ok(())
}

async fn row_rule_overhead(args: &Args, pack: &[Rule]) -> anyhow::Result<()> {
    let config = SynthConfig::new(args.overhead_events, args.seed);
    let (name, archive) = cached_archive(&args.cache, &config).context("generating the archive")?;
    let tuning = Tuning::new(&detect_config(&config), pack)?;
    let (mut plain, mut with_rules) = (Vec::new(), Vec::new());
    // CPU seconds per run: on a shared machine less noisy than events/s, and what the rules
    // really take from the cores ingestion uses.
    let (mut plain_cpu, mut rules_cpu) = (Vec::new(), Vec::new());
    let mut rows = 0;
    let mut alerts = 0;
    for _ in 0..args.repeat.max(1) {
        // In turns, so that a slower machine moment hurts both the same.
        for detect in [false, true] {
            let lake = tempfile::tempdir_in(&args.cache)?;
            let detector =
                detect.then(|| Arc::new(Detector::new(pack.to_vec(), tuning.clone(), Sinks::empty(), RunKind::Ingest)));
            let hook = detector.clone().map(|d| d as Arc<dyn LakeHook>);
            let started = Instant::now();
            let cpu_before = cpu_seconds().unwrap_or(0.0);
            let summary = ingest(&archive, lake.path(), hook).await?;
            let rate = summary.total_rows() as f64 / started.elapsed().as_secs_f64();
            let cpu = cpu_seconds().unwrap_or(0.0) - cpu_before;
            rows = summary.total_rows();
            if let Some(detector) = detector {
                alerts = detector.tally().values().map(|t| t.alerts).sum::<u64>();
                with_rules.push(rate);
                rules_cpu.push(cpu);
            } else {
                plain.push(rate);
                plain_cpu.push(cpu);
            }
        }
    }
    let (plain_rate, rules_rate) = (median(&mut plain), median(&mut with_rules));
    let rates = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    println!("ingest:         {name} ({rows} rows)");
    let seconds = |v: &[f64]| v.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>().join(", ");
    let (plain_cpu_median, rules_cpu_median) = (median(&mut plain_cpu.clone()), median(&mut rules_cpu.clone()));
    println!(
        "  without rules  median {plain_rate:.0} events/s (runs {}), CPU {plain_cpu_median:.1} s (runs {})",
        rates(&plain),
        seconds(&plain_cpu)
    );
    println!(
        "  with row rules median {rules_rate:.0} events/s (runs {}), CPU {rules_cpu_median:.1} s (runs {}), {alerts} alert updates",
        rates(&with_rules),
        seconds(&rules_cpu)
    );
    println!(
        "  row rules cost {:.1}% of ingest throughput, {:.1}% more CPU",
        (1.0 - rules_rate / plain_rate) * 100.0,
        (rules_cpu_median / plain_cpu_median - 1.0) * 100.0
    );
    Ok(())
}

async fn ingest(archive: &Path, lake: &Path, hook: Option<Arc<dyn LakeHook>>) -> anyhow::Result<IngestSummary> {
    let mut lake = Lake::open(lake, LakeConfig::default()).await?;
    let options = IngestOptions { hook, ..IngestOptions::default() };
    let summary = ingest_directory(archive, &mut lake, &options, &NoProgress).await?;
    anyhow::ensure!(summary.failed.is_empty(), "{} objects failed", summary.failed.len());
    Ok(summary)
}
