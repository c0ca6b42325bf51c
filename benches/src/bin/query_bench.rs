//! The analyst benchmark, for the budgets of the query issue, on a lake of ten million CloudTrail
//! events (one week by default; `--days` spreads them wider):
//! - a responder's query — everything one principal did in one week — target under 0.5 s;
//! - a full-scan aggregation — events per region per day — target under 3 s;
//! - each within 1.5x of DuckDB running the same SQL over the same Parquet files, in the same run.
//!
//! bunker runs each query as `bunker query` does — a fresh lake session, plan, execute, collect —
//! and as `bunker sql` and `bunker serve` do, statement after statement in one session. Parquet
//! footers are cached in the process either way (only a new `bunker query` process reads them
//! again), as DuckDB caches them in its connection.
//! DuckDB runs in a Python child (PyPI `duckdb`) over exactly the files the Delta table lists, with
//! the `date` partition read from the paths as bunker reads it; both use every core.
//!
//! `cargo run --release -p bunker-benches --bin query_bench -- --events 10000000`

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use bunker_benches::{cached_compacted_lake, cached_lake, median, peak_rss_bytes, reset_peak_rss};
use bunker_ingest::synth::SynthConfig;
use bunker_query::LakeSession;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// CloudTrail events in the lake.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Days the lake spans (the default is the generator's week, the lake detect_bench uses).
    #[arg(long, default_value_t = bunker_ingest::synth::DEFAULT_DAYS)]
    days: u32,
    /// Runs of each query after one warm-up (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Seed of the archive.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the archive and the lake are kept between runs.
    #[arg(long, default_value = "target/bench-archives")]
    cache: PathBuf,
    /// Skip the DuckDB comparison.
    #[arg(long)]
    skip_duckdb: bool,
    /// More queries to time in both engines, as LABEL=SQL (repeatable), e.g. to isolate a cost.
    #[arg(long = "query", value_parser = parse_labelled)]
    extra: Vec<(String, String)>,
    /// Print bunker's answer to each query (with `--query LABEL='EXPLAIN ANALYZE ...'`, where the
    /// time goes).
    #[arg(long)]
    print: bool,
    /// Query the lake after `bunker compact` (built once from the ingested one and kept beside it)
    /// instead of the lake as ingestion left it.
    #[arg(long)]
    compacted: bool,
    /// Time only the queries with these labels (repeatable), e.g. to profile one alone.
    #[arg(long)]
    only: Vec<String>,
}

fn parse_labelled(text: &str) -> Result<(String, String), String> {
    let (label, sql) = text.split_once('=').ok_or("expected LABEL=SQL")?;
    Ok((label.trim().to_owned(), sql.trim().to_owned()))
}

const DUCKDB: &str = r#"
import json, sys, time
import duckdb
spec = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")  # it would write to stdout, which carries the answer
files = spec["files"]
listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
con.execute(
    f"CREATE VIEW cloudtrail AS SELECT * FROM read_parquet([{listed}], hive_partitioning = true, hive_types = {{'date': DATE}})"
)
out = {}
for name, sql in spec["queries"].items():
    times, rows = [], None
    for i in range(spec["repeat"] + 1):
        started = time.perf_counter()
        rows = len(con.execute(sql).fetchall())
        if i > 0:  # the first run warms the OS cache and DuckDB's metadata cache
            times.append(time.perf_counter() - started)
    out[name] = {"times": times, "rows": rows}
print(json.dumps(out))
"#;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = SynthConfig { days: args.days, ..SynthConfig::new(args.events, args.seed) };
    let (name, lake) = if args.compacted {
        cached_compacted_lake(&args.cache, &config).await.context("building the compacted lake")?
    } else {
        cached_lake(&args.cache, &config).await.context("building the lake")?
    };
    let session = LakeSession::open(&lake).await?;
    let scalar = |sql: String| {
        let session = &session;
        async move {
            let (_, batches) = session.sql(&sql).await?;
            let formatter =
                arrow::util::display::ArrayFormatter::try_new(batches[0].column(0).as_ref(), &Default::default())?;
            anyhow::Ok(formatter.value(0).to_string())
        }
    };
    let rows = scalar("SELECT count(*) FROM cloudtrail".into()).await?;
    // A principal of median activity among the people and roles (the busiest are service
    // principals with hundreds of thousands of calls, not what a responder follows).
    let principal = scalar(
        "SELECT arn FROM (SELECT useridentity.arn AS arn, count(*) AS n, row_number() OVER (ORDER BY count(*), useridentity.arn) AS r, \
           count(*) OVER () AS total FROM cloudtrail WHERE useridentity.type IN ('IAMUser', 'AssumedRole') \
           AND useridentity.arn IS NOT NULL GROUP BY useridentity.arn) WHERE r = total / 2 + 1"
            .into(),
    )
    .await?;
    let first_day = config.start;
    // The last week of the lake (all of it, with the default one-week lake).
    let week_start = first_day + chrono::Days::new(u64::from(args.days.saturating_sub(7)));
    let week_end = week_start + chrono::Days::new(7);
    println!(
        "lake:        {name}{}, {} days ({rows} cloudtrail rows, {:.0} MiB of Parquet)",
        if args.compacted { " compacted" } else { "" },
        args.days,
        session.scan_report("SELECT * FROM cloudtrail").await?.bytes() as f64 / 1048576.0
    );
    // The same text for both engines; `date` is the partition column in both.
    let mut queries = vec![
        (
            "responder",
            format!(
                "SELECT eventtime, eventsource, eventname, awsregion, sourceipaddress, errorcode, requestparameters \
                 FROM cloudtrail WHERE useridentity.arn = '{principal}' \
                 AND date >= DATE '{week_start}' AND date < DATE '{week_end}' ORDER BY eventtime"
            ),
        ),
        (
            "region-day",
            "SELECT awsregion, date_trunc('day', eventtime) AS day, count(*) AS events FROM cloudtrail \
             GROUP BY awsregion, date_trunc('day', eventtime) ORDER BY day, awsregion"
                .to_owned(),
        ),
    ];
    queries.extend(args.extra.iter().map(|(label, sql)| (label.as_str(), sql.replace("{principal}", &principal))));
    if !args.only.is_empty() {
        queries.retain(|(label, _)| args.only.iter().any(|only| only == label));
    }
    println!("principal:   {principal}, week {week_start} .. {week_end}");

    let rss_reset = reset_peak_rss();
    let mut ours = Vec::new();
    for (label, sql) in &queries {
        let mut times = Vec::new();
        let mut rows = 0;
        for i in 0..=args.repeat {
            let started = Instant::now();
            let session = LakeSession::open(&lake).await?;
            let (_, batches) = session.sql(sql).await?;
            rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
            if i > 0 {
                times.push(started.elapsed().as_secs_f64());
            }
            if args.print && i == args.repeat {
                println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
            }
        }
        // As in `bunker sql` or `bunker serve`: one session, statement after statement.
        let session = LakeSession::open(&lake).await?;
        let mut in_session = Vec::new();
        for i in 0..=args.repeat {
            let started = Instant::now();
            session.sql(sql).await?;
            if i > 0 {
                in_session.push(started.elapsed().as_secs_f64());
            }
        }
        let report = session.scan_report(sql).await?;
        let secs = median(&mut times);
        println!(
            "bunker  {label:<11} median {secs:.3} s (new session), {:.3} s (one session), {rows} rows; reads {} files, {:.1} MiB",
            median(&mut in_session),
            report.files().count(),
            report.bytes() as f64 / 1048576.0
        );
        ours.push((label, secs, rows));
    }
    let footers = LakeSession::open(&lake).await?.context().runtime_env().cache_manager.get_file_metadata_cache();
    println!("footers:     {} files' Parquet metadata cached in the process", footers.len());
    println!(
        "peak RSS:    {:.0} MiB{}",
        peak_rss_bytes().unwrap_or(0) as f64 / 1048576.0,
        if rss_reset { "" } else { " (includes building the lake)" }
    );
    if args.skip_duckdb {
        return Ok(());
    }

    // Exactly the files the Delta table lists, as absolute paths.
    let report = session.scan_report("SELECT * FROM cloudtrail").await?;
    let table_dir = std::fs::canonicalize(lake.join("cloudtrail"))?;
    let files: Vec<String> = report
        .files()
        .map(|f| {
            let path = PathBuf::from(format!("/{}", f.path.trim_start_matches('/')));
            if path.exists() { path } else { table_dir.join(&f.path) }
        })
        .map(|p| p.display().to_string())
        .collect();
    let spec = serde_json::json!({
        "files": files,
        "repeat": args.repeat,
        "queries": queries
            .iter()
            .map(|(label, sql)| (label.to_string(), serde_json::Value::String(sql.clone())))
            .collect::<serde_json::Map<_, _>>(),
    });
    let mut child = Command::new("python3")
        .args(["-c", DUCKDB])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting python3 for DuckDB")?;
    serde_json::to_writer(child.stdin.take().context("stdin")?, &spec)?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("DuckDB run failed (python3 -m pip install duckdb, if it is missing)");
    }
    let theirs: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    for (label, secs, rows) in ours {
        let mut times: Vec<f64> =
            theirs[label]["times"].as_array().context("DuckDB times")?.iter().filter_map(|t| t.as_f64()).collect();
        let duck = median(&mut times);
        let duck_rows = theirs[label]["rows"].as_u64().unwrap_or(0);
        println!(
            "duckdb  {label:<11} median {duck:.3} s, {duck_rows} rows; bunker/duckdb = {:.2}x{}",
            secs / duck,
            if duck_rows as usize == rows { "" } else { "  (ROW COUNTS DIFFER)" }
        );
    }
    Ok(())
}
