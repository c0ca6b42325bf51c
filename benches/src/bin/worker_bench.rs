//! The worker benchmark, against a real S3/SQS/KMS endpoint (`moto_server`, as in the tests):
//!
//! 1. a generated archive is uploaded to an Object-Locked SSE-KMS bucket whose notifications fill a
//!    queue — the backlog;
//! 2. the same archive is ingested from local disk (`bunker ingest`), the baseline;
//! 3. `bunker worker` drains the backlog into a lake on S3: rows/s, and its peak RSS;
//! 4. with the worker idle, single objects are put one at a time and the time until their rows are
//!    visible to a query is measured: median and worst.
//!
//! `cargo build --release --bin bunker && cargo run --release -p bunker-benches --bin worker_bench -- --events 200000`

#[allow(dead_code)]
#[path = "../../../tests/worker/moto.rs"]
mod moto;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bunker_ingest::synth::{SynthConfig, generate};
use bunker_query::LakeSession;
use bunker_schemas::location::LakeLocation;
use clap::Parser;
use moto::Moto;

#[derive(Debug, Parser)]
struct Args {
    /// CloudTrail events in the archive (flow and DNS records in the default proportion).
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Accounts in the archive: with days, decides how many objects (messages) there are.
    #[arg(long, default_value_t = 20)]
    accounts: u32,
    /// Days in the archive.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// Single-object puts timed for the latency figure.
    #[arg(long, default_value_t = 15)]
    latency_samples: usize,
    /// Commit interval of the worker, seconds.
    #[arg(long, default_value_t = 1.0)]
    commit_interval: f64,
    /// Where generated archives are kept between runs.
    #[arg(long, default_value = "target/bench-archives")]
    cache: PathBuf,
    /// Put the worker's lake on local disk instead of on S3 (the emulator), to see what the S3 lake costs.
    #[arg(long)]
    local_lake: bool,
    /// Run `benches/moto_server_fast.py`: moto with its quadratic SQS receive and send fixed (see that file),
    /// so that the drain measures the worker rather than the emulator's backlog walks.
    #[arg(long)]
    moto_fix: bool,
}

const ARCHIVE: &str = "org-log-archive";
const LAKE: &str = "s3://security-lake/bunker";

fn bunker_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe.with_file_name("bunker");
    if !binary.exists() {
        bail!("{} is missing: build it first with `cargo build --release --bin bunker`", binary.display());
    }
    Ok(binary)
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn lake_rows(moto: &Moto, lake: &str) -> anyhow::Result<u64> {
    let location = LakeLocation::parse(lake).map_err(anyhow::Error::msg)?;
    let mut options: HashMap<String, String> = location.storage_options(Some(&moto.endpoint));
    for (key, value) in moto.env() {
        options.insert(key.to_ascii_lowercase(), value);
    }
    let session = LakeSession::open_at(&location, options).await?;
    let (_, batches) = session
        .sql("SELECT (SELECT count(*) FROM cloudtrail) + (SELECT count(*) FROM vpcflow) + (SELECT count(*) FROM dns) AS n")
        .await?;
    let column = batches.first().context("no result")?.column(0);
    let counts = column.as_any().downcast_ref::<arrow::array::Int64Array>().context("count type")?;
    Ok(counts.value(0) as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bunker = bunker_binary()?;
    let mut config = SynthConfig::new(args.events, 17);
    config.accounts = args.accounts;
    config.days = args.days;
    let archive = args.cache.join(format!("worker-ct{}-a{}-d{}", args.events, args.accounts, args.days));
    let _ = std::fs::remove_dir_all(&archive);
    let summary = generate(&archive, &config).context("generating the archive")?;
    let rows = summary.cloudtrail_events + summary.vpcflow_records + summary.dns_records;
    println!(
        "archive: {} objects, {:.1} MiB stored, {rows} rows ({} CloudTrail, {} flow, {} DNS)",
        summary.objects,
        summary.bytes as f64 / (1 << 20) as f64,
        summary.cloudtrail_events,
        summary.vpcflow_records,
        summary.dns_records
    );

    // The baseline: the same archive from local disk into a local lake.
    let scratch = tempfile::tempdir()?;
    let started = Instant::now();
    let status = Command::new(&bunker)
        .args(["ingest", "--from", path(&archive)?, "--lake", path(&scratch.path().join("local-lake"))?])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("local ingest failed");
    }
    let local = started.elapsed();
    println!("local directory ingest: {:.2} s, {:.0} rows/s", local.as_secs_f64(), rows as f64 / local.as_secs_f64());

    let fixed = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_server_fast.py");
    let moto = Moto::start_program(args.moto_fix.then_some(fixed)).await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket("security-lake").await;
    let started = Instant::now();
    let uploaded = moto.upload_dir(&archive, ARCHIVE).await;
    println!(
        "uploaded {uploaded} objects in {:.1} s; backlog: {} messages",
        started.elapsed().as_secs_f64(),
        moto.queue_depth(&queue).await
    );

    let lake = if args.local_lake { path(&scratch.path().join("worker-lake"))?.to_owned() } else { LAKE.to_owned() };
    let started = Instant::now();
    let metrics = free_port()?;
    let mut worker =
        spawn_worker(&bunker, &moto, &queue, &lake, args.commit_interval, metrics, &scratch.path().join("worker.log"))?;
    let pid = worker.id();
    let mut peak_rss = 0;
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if last_report.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "  {:.0} s: {} messages left, worker RSS {} MiB",
                started.elapsed().as_secs_f64(),
                moto.queue_depth(&queue).await,
                rss_kib(pid, "VmRSS:").unwrap_or(0) / 1024
            );
            last_report = Instant::now();
        }
        peak_rss = peak_rss.max(rss_kib(pid, "VmRSS:").unwrap_or(0));
        if let Some(status) = worker.try_wait()? {
            bail!("worker exited with {status}; see {}", scratch.path().join("worker.log").display());
        }
        // The worker's own metrics say when it has committed everything: asking the emulator
        // (the queue's depth, the lake) would compete with the worker being measured for its one
        // core. Only then are the queue and the lake checked.
        if committed_rows(metrics).unwrap_or(0) >= rows
            && moto.queue_depth(&queue).await == 0
            && lake_rows(&moto, &lake).await? == rows
        {
            break;
        }
    }
    let drained = started.elapsed();
    let hwm = rss_kib(pid, "VmHWM:").unwrap_or(peak_rss);
    println!(
        "worker drained the backlog: {:.2} s, {:.0} rows/s ({:.2}x the local ingest time); peak RSS {:.0} MiB",
        drained.as_secs_f64(),
        rows as f64 / drained.as_secs_f64(),
        drained.as_secs_f64() / local.as_secs_f64(),
        hwm.max(peak_rss) as f64 / 1024.0
    );

    // Latency: one object at a time, from the end of its PUT to its rows being queryable.
    let mut latencies = Vec::new();
    let mut expected = rows;
    for i in 0..args.latency_samples {
        let key = format!(
            "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/03/111122223333_CloudTrail_us-east-1_20250303T1000Z_lat{i:04}.json.gz"
        );
        let body = latency_object(i);
        moto.put(ARCHIVE, &key, body).await;
        let put_done = Instant::now();
        expected += 10;
        loop {
            if lake_rows(&moto, &lake).await? >= expected {
                break;
            }
            if put_done.elapsed() > Duration::from_secs(60) {
                bail!("object {key} not visible after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.push(put_done.elapsed());
    }
    latencies.sort();
    if !latencies.is_empty() {
        println!(
            "put → visible to a query: median {:.2} s, worst {:.2} s over {} objects (commit interval {} s)",
            latencies[latencies.len() / 2].as_secs_f64(),
            latencies[latencies.len() - 1].as_secs_f64(),
            latencies.len(),
            args.commit_interval
        );
    }
    Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let status = worker.wait()?;
    println!("worker exit after SIGTERM: {status}");
    Ok(())
}

fn spawn_worker(
    bunker: &Path,
    moto: &Moto,
    queue: &str,
    lake: &str,
    commit_interval: f64,
    metrics_port: u16,
    log: &Path,
) -> anyhow::Result<Child> {
    let metrics = format!("127.0.0.1:{metrics_port}");
    Ok(Command::new(bunker)
        .envs(moto.env())
        .args(["worker", "--queue-url", queue, "--lake", lake, "--metrics-listen", &metrics])
        .args(["--commit-interval-secs", &commit_interval.to_string(), "--wait-time-secs", "1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Rows the worker has committed, from its Prometheus endpoint (`bunker_rows_total`, every table).
fn committed_rows(port: u16) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut page = String::new();
    stream.read_to_string(&mut page)?;
    Ok(page
        .lines()
        .filter(|line| line.starts_with("bunker_rows_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|rows| rows as u64)
        .sum())
}

/// A gzipped CloudTrail file of ten events with ids unique to `i`.
fn latency_object(i: usize) -> Vec<u8> {
    use std::io::Write;
    let records: Vec<String> = (0..10)
        .map(|j| {
            format!(
                r#"{{"eventVersion":"1.08","eventTime":"2025-03-03T10:00:{j:02}Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","awsRegion":"us-east-1","eventID":"lat-{i}-{j}","recipientAccountId":"111122223333","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/bench"}}}}"#
            )
        })
        .collect();
    let json = format!(r#"{{"Records":[{}]}}"#, records.join(","));
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(json.as_bytes());
    encoder.finish().unwrap_or_default()
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}
