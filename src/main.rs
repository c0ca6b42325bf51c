//! The `bunker` command line: argument parsing and wiring only; the work lives in the crates.

mod analyst;
mod log_writer;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bunker_detect::live::{Detector, Tally};
use bunker_detect::regions::RegionConfig;
use bunker_detect::render::RenderContext;
use bunker_detect::sink::{SinkConfig, Sinks};
use bunker_detect::store::RunKind;
use bunker_detect::tuning::{DetectConfig, Tuning};
use bunker_ingest::compact::{CompactOptions, Compactable};
use bunker_ingest::decode::Limits;
use bunker_ingest::lake::{Lake, LakeConfig};
use bunker_ingest::ops::{install_metrics, serve_ops};
use bunker_ingest::pipeline::{
    IngestOptions, IngestSummary, LakeHook, NoProgress, ProgressSink, ingest_directory, ingest_s3,
};
use bunker_ingest::retention::RetentionConfig;
use bunker_ingest::s3::{
    DEFAULT_REQUEST_TIMEOUT, S3Source, load_aws_config, s3_client, sqs_client as aws_sdk_sqs_client,
};
use bunker_ingest::synth::{SynthConfig, generate};
use bunker_ingest::vacuum::VacuumOptions;
use bunker_ingest::worker::{Heartbeat, WorkerOptions, run_worker};
use bunker_query::{LakeSession, OutputFormat};
use bunker_schemas::LogTable;
use bunker_schemas::location::LakeLocation;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "bunker",
    version,
    about = "Ingest, query and detect on an AWS log archive (CloudTrail, VPC Flow, Route 53 Resolver)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log as JSON lines on stderr instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest an archive into a lake: a local directory (AWS key layout, or any folder of exported
    /// logs) or an S3 prefix (backfill).
    Ingest {
        /// Archive to read: a directory, or s3://bucket/prefix.
        #[arg(long)]
        from: String,
        /// Lake to write: a directory (created if missing) or s3://bucket/prefix.
        #[arg(long)]
        lake: String,
        /// With an s3:// archive, only objects of this day or later (YYYY-MM-DD, or relative: 7d).
        #[arg(long, value_parser = parse_day)]
        since: Option<chrono::NaiveDate>,
        /// With an s3:// archive, only objects of this day or earlier (YYYY-MM-DD, or relative: 1d).
        #[arg(long, value_parser = parse_day)]
        until: Option<chrono::NaiveDate>,
        /// S3-compatible endpoint (also AWS_ENDPOINT_URL), for the archive and an s3:// lake.
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        /// Objects fetched from S3 at once.
        #[arg(long, default_value_t = 16)]
        fetch_concurrency: usize,
        /// Largest decompressed object accepted, in MiB; bigger objects are recorded as failed.
        #[arg(long, default_value_t = 256)]
        max_object_mib: u64,
        /// Largest decompressed ÷ stored size accepted past the first MiB (0: no cap); objects
        /// over it are recorded as failed, as likely gzip bombs.
        #[arg(long, default_value_t = bunker_ingest::decode::DEFAULT_MAX_RATIO)]
        max_ratio: u64,
        /// Commit a table once this many MiB of rows are waiting.
        #[arg(long, default_value_t = 48)]
        commit_mib: usize,
        /// A TOML file whose `[detect]` and `[[sinks]]` sections tune the detections.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Do not run the row detections on the ingested rows.
        #[arg(long)]
        no_detect: bool,
        /// Compact the lake afterwards (as `bunker compact` does): for an archive of past days,
        /// which selective queries then read a fraction of.
        #[arg(long)]
        compact: bool,
    },
    /// Run one SQL statement over a lake (tables: cloudtrail, vpcflow, dns, alerts, ingest_log, ...).
    Query(analyst::QueryArgs),
    /// An interactive SQL shell over a lake: line editing, history, \d to describe the tables.
    Sql(analyst::SqlArgs),
    /// Everything one principal, access key or IP address did, in time order, across CloudTrail,
    /// VPC Flow and DNS, with the alerts that touched it.
    Timeline(analyst::TimelineArgs),
    /// Serve the lake read-only over Arrow Flight SQL (ADBC, JDBC, BI tools) on 127.0.0.1.
    Serve(analyst::ServeArgs),
    /// Rewrite each day's small files (one per ingest commit) as a few large files clustered by
    /// principal or address, account and time, so that selective queries skip most of the lake.
    Compact {
        /// Lake: a directory or s3://bucket/prefix.
        #[arg(long)]
        lake: String,
        /// S3-compatible endpoint (also AWS_ENDPOINT_URL) for an s3:// lake.
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        /// Only these tables (cloudtrail, vpcflow, dns, ingest_log, alert_updates,
        /// region_sightings); all of them by default.
        #[arg(long = "table", value_parser = parse_compactable)]
        tables: Vec<Compactable>,
        /// Only days on or after this one (YYYY-MM-DD, or relative: 7d).
        #[arg(long, value_parser = parse_day)]
        since: Option<chrono::NaiveDate>,
        /// Only days on or before this one (YYYY-MM-DD, or relative: 1d). Today's partition is
        /// still being written to; compacting it is safe, later files are compacted next time.
        #[arg(long, value_parser = parse_day)]
        until: Option<chrono::NaiveDate>,
        /// Rows sorted into one output file at most, in MiB of memory; the peak is about twice it.
        #[arg(long, default_value_t = 512)]
        memory_mib: usize,
    },
    /// Delete from storage the data files no recent version of a table needs (those compaction
    /// and retention removed, and files stored but never committed). Lists them by default;
    /// --apply deletes, which needs delete permission on the lake (s3:DeleteObject).
    Vacuum {
        /// Lake: a directory or s3://bucket/prefix.
        #[arg(long)]
        lake: String,
        /// S3-compatible endpoint (also AWS_ENDPOINT_URL) for an s3:// lake.
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        /// Only these tables (as for `compact`); all of them by default.
        #[arg(long = "table", value_parser = parse_compactable)]
        tables: Vec<Compactable>,
        /// Keep files removed less than this many hours ago [default: the table's
        /// delta.deletedFileRetentionDuration, 168 hours]. Time travel reaches back this far.
        #[arg(long)]
        retain_hours: Option<u64>,
        /// Accept a --retain-hours below the table's delta.deletedFileRetentionDuration: only
        /// with no query, `bunker serve`, worker or ingest running on the lake.
        #[arg(long)]
        force: bool,
        /// Delete the files listed (without it, nothing is deleted).
        #[arg(long)]
        apply: bool,
    },
    /// Drop the days of rows older than each table's retention (`[retention]` of --config, or
    /// --keep-days), one Delta delete of whole date partitions per table. Lists them by default.
    Retention {
        /// Lake: a directory or s3://bucket/prefix.
        #[arg(long)]
        lake: String,
        /// S3-compatible endpoint (also AWS_ENDPOINT_URL) for an s3:// lake.
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        /// A TOML file whose `[retention]` section sets the days kept (`cloudtrail_days = 400`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Days a table keeps, as TABLE=DAYS (cloudtrail=400); over the config's. Repeatable.
        #[arg(long = "keep-days", value_parser = parse_keep_days)]
        keep_days: Vec<(Compactable, u32)>,
        /// Drop the days listed (without it, nothing is changed).
        #[arg(long)]
        apply: bool,
    },
    /// Run every detection rule over the lake's history and print the alerts.
    Detect {
        /// Lake: a directory or s3://bucket/prefix.
        #[arg(long)]
        lake: String,
        /// S3-compatible endpoint (also AWS_ENDPOINT_URL) for an s3:// lake.
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        /// Only events of this day or later (YYYY-MM-DD, or relative: 7d).
        #[arg(long, value_parser = parse_day)]
        since: Option<chrono::NaiveDate>,
        /// Only events of this day or earlier (YYYY-MM-DD, or relative: 1d).
        #[arg(long, value_parser = parse_day)]
        until: Option<chrono::NaiveDate>,
        /// A directory of your own rule files, run along with the built-in pack.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = AlertFormat::Table)]
        format: AlertFormat,
        /// A TOML file whose `[detect]` section tunes the rules (disabled, shadow, suppressions).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only print the alerts; do not record them in the lake's `alerts` table.
        #[arg(long)]
        no_record: bool,
    },
    /// List the detection rules, or run their labelled examples.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Run the continuous ingestion worker: S3 notifications from SQS become lake rows.
    Worker(WorkerArgs),
    /// Generate a deterministic synthetic archive in the AWS key layout.
    Gen {
        /// Directory to write the archive to.
        #[arg(long)]
        out: PathBuf,
        /// Number of CloudTrail events (flow and DNS records are generated in proportion).
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Seed; the same seed gives the same archive, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days the archive spans.
        #[arg(long)]
        days: Option<u32>,
        /// Number of AWS accounts in the organization.
        #[arg(long)]
        accounts: Option<u32>,
        /// First day of the archive (YYYY-MM-DD).
        #[arg(long)]
        start: Option<chrono::NaiveDate>,
        /// Generate a background no built-in rule flags, plus one labelled attack per built-in rule
        /// (its first positive example, moved into the archive's days).
        #[arg(long)]
        attacks: bool,
        /// Generate only the benign background --attacks hides its attacks in, which no built-in
        /// rule should flag (the quiet background the alert budget is measured on).
        #[arg(long, conflicts_with = "attacks")]
        benign: bool,
        /// With --attacks, where to write the labels (JSON) [default: <out>/attacks.json].
        #[arg(long, requires = "attacks")]
        labels: Option<PathBuf>,
        /// With --attacks, also one attack per rule in this directory (rule files or Sigma rules,
        /// from the first example each labels as an alert), to try your own rules end to end.
        #[arg(long, requires = "attacks")]
        rules: Option<PathBuf>,
    },
    /// Generate a small archive, ingest it, and show what bunker does with it.
    Demo {
        /// Working directory for the demo's archive and lake.
        #[arg(long, default_value = "bunker-demo")]
        dir: PathBuf,
        /// Number of CloudTrail events to generate.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
    /// Print the columns of a table with their docs.
    Schema {
        /// cloudtrail, vpcflow, dns or ingest_log.
        table: String,
    },
}

#[derive(Debug, Subcommand)]
enum RulesAction {
    /// Every rule: id, severity, mode, tables, MITRE techniques, title.
    List {
        /// A directory of your own rule files, listed along with the built-in pack.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Run every rule's labelled examples through the real parser and SQL; fails if any does not
    /// behave as labelled.
    Test {
        /// Test the rules in this directory instead of the built-in pack.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Compile a folder of Sigma rules (e.g. SigmaHQ's rules/cloud/aws/cloudtrail) into bunker
    /// rule files; names every rule it refuses, with the reason, and fails if it refused any.
    Import {
        /// The folder of Sigma `.yml` files (searched recursively).
        #[arg(long)]
        sigma: PathBuf,
        /// Where to write the compiled rule files (one `<id>.yaml` each); created if missing.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlertFormat {
    /// An aligned table.
    Table,
    /// One JSON alert per line.
    Json,
}

/// `bunker worker` flags; each overrides the same setting of the `[worker]` section of `--config`.
#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// A TOML file with a `[worker]` section (see README.md, "The log-archive account: run the worker").
    #[arg(long)]
    config: Option<PathBuf>,
    /// The SQS queue the archive bucket's notifications arrive on.
    #[arg(long)]
    queue_url: Option<String>,
    /// Lake to write: a directory or s3://bucket/prefix.
    #[arg(long)]
    lake: Option<String>,
    /// S3/SQS-compatible endpoint (also AWS_ENDPOINT_URL).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Address of the /healthz and /metrics listener (loopback by default).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Concurrent long-polling receivers.
    #[arg(long)]
    receivers: Option<usize>,
    /// Commit at least this often, in seconds.
    #[arg(long)]
    commit_interval_secs: Option<f64>,
    /// Commit once this many MiB of rows wait.
    #[arg(long)]
    commit_mib: Option<usize>,
    /// Visibility timeout of received messages, in seconds (extended while in progress).
    #[arg(long)]
    visibility_timeout_secs: Option<i32>,
    /// Long-poll wait per receive, in seconds (0-20).
    #[arg(long)]
    wait_time_secs: Option<i32>,
    /// Messages held at once; the bound on memory under any backlog.
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Objects fetched and parsed at once.
    #[arg(long)]
    fetch_concurrency: Option<usize>,
    /// Largest object accepted (stored or decompressed), in MiB.
    #[arg(long)]
    max_object_mib: Option<u64>,
    /// Largest decompressed ÷ stored size accepted past the first MiB (0: no cap; default 200).
    #[arg(long)]
    max_ratio: Option<u64>,
    /// Seconds a transiently failed message waits before it is tried again; doubles with each
    /// further failure, up to 900.
    #[arg(long)]
    retry_backoff_secs: Option<i32>,
    /// Limit on one attempt of an S3, SQS or lake request, in seconds; a request that takes longer
    /// is retried.
    #[arg(long)]
    request_timeout_secs: Option<f64>,
}

/// The `[worker]` section of `bunker.toml`: the same settings as the flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerFile {
    queue_url: Option<String>,
    lake: Option<String>,
    endpoint_url: Option<String>,
    metrics_listen: Option<std::net::SocketAddr>,
    receivers: Option<usize>,
    commit_interval_secs: Option<f64>,
    commit_mib: Option<usize>,
    visibility_timeout_secs: Option<i32>,
    wait_time_secs: Option<i32>,
    max_in_flight: Option<usize>,
    fetch_concurrency: Option<usize>,
    max_object_mib: Option<u64>,
    max_ratio: Option<u64>,
    retry_backoff_secs: Option<i32>,
    request_timeout_secs: Option<f64>,
    /// Hours between compactions of the finished days (0: never).
    compact_every_hours: Option<f64>,
    /// How many days back each compaction looks.
    compact_lookback_days: Option<u32>,
    /// Memory a compaction sorts at a time, in MiB (its peak is about twice this).
    compact_memory_mib: Option<usize>,
}

/// `bunker.toml`: the worker's settings, the detections' tuning, and where alerts go.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    worker: WorkerFile,
    #[serde(default)]
    detect: DetectConfig,
    #[serde(default)]
    sinks: Vec<SinkConfig>,
    /// Days of rows each table keeps, applied by `bunker retention` (never by the worker).
    #[serde(default)]
    retention: RetentionConfig,
}

fn read_config(path: Option<&Path>) -> Result<ConfigFile> {
    let Some(path) = path else { return Ok(ConfigFile::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str::<ConfigFile>(&text).with_context(|| format!("{} is not a valid bunker config", path.display()))
}

/// The detector a run plugs into ingestion: the rules (the built-in pack and `[detect] rules`,
/// or `rules_dir`), their tuning, and the sinks of the configuration.
async fn detector(
    config: &ConfigFile,
    rules_dir: Option<&Path>,
    run: RunKind,
    aws: Option<&aws_config::SdkConfig>,
) -> Result<Detector> {
    let dir = rules_dir.or(config.detect.rules.as_deref());
    let rules = load_rules(dir, config.detect.builtin).await?;
    let tuning = Tuning::new(&config.detect, &rules)?;
    // ASFF findings are imported in the region bunker runs in, under the account it runs as (asked
    // of STS by the sinks unless a sink names it); each finding's own account comes from its alert.
    let context = RenderContext { account: None, region: aws.and_then(|a| a.region()).map(|r| r.to_string()) };
    let sinks = Sinks::build(&config.sinks, aws, context).await.context("setting up the alert sinks")?;
    Ok(Detector::new(rules, tuning, sinks, run))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", error_report(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The whole `err.chain()`, each cause on its own line, leaving out a cause a line above already
/// says: one whose text is shown, or one that only labels a source whose text is shown. Most error
/// types (DataFusion's, deltalake's, object_store's, ours) put their source in their own message,
/// and printed layer by layer the same message came out three or four times.
fn error_report(err: &anyhow::Error) -> String {
    let mut shown: Vec<String> = Vec::new();
    for cause in err.chain() {
        let said = |text: String| shown.iter().any(|line| line.contains(text.trim()));
        if said(cause.to_string()) || cause.source().is_some_and(|source| said(source.to_string())) {
            continue;
        }
        shown.push(cause.to_string());
    }
    let mut report = String::new();
    for (i, line) in shown.iter().enumerate() {
        report.push_str(if i == 0 { "error: " } else { "  caused by: " });
        report.push_str(line);
        report.push('\n');
    }
    report
}

fn init_logging(json: bool) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // The Delta kernel logs as ERROR each failure it also returns (an s3:// lake without
    // credentials: one line per table before the error), and main prints the returned one.
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUNKER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,buoyant_kernel=off"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| log_writer::OneLine(std::io::stderr()))
        // Colour codes would be escaped as the control characters they are (see log_writer).
        .with_ansi(false);
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    // Its own filter: the retries are counted whatever BUNKER_LOG lets through to the log.
    let retries = tracing_subscriber::filter::Targets::new().with_target("object_store::client", tracing::Level::INFO);
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(CountLakeRetries.with_filter(retries)).init();
}

/// Counts the lake's storage retries in `bunker_lake_retries_total`.
///
/// deltalake's S3 client (`object_store`) retries throttling, 5xx and broken connections on its
/// own, and its only trace of that is an INFO event under `object_store::client` per retry
/// ("… backing off …, retry N of M"; "… Retrying in …" for a body that broke off) — every INFO
/// event there is one. There is no other hook to count them, and uncounted they are invisible:
/// the commit simply succeeds, later.
struct CountLakeRetries;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountLakeRetries {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        metrics::counter!("bunker_lake_retries_total").increment(1);
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Ingest {
            from,
            lake,
            since,
            until,
            endpoint_url,
            fetch_concurrency,
            max_object_mib,
            max_ratio,
            commit_mib,
            config,
            no_detect,
            compact: then_compact,
        } => {
            let config = read_config(config.as_deref())?;
            // The SDK reads the archive and feeds SQS sinks; an s3:// lake goes through deltalake's own client.
            let needs_aws = from.starts_with("s3://") || !config.sinks.is_empty();
            let aws = if needs_aws {
                Some(load_aws_config(endpoint_url.as_deref(), DEFAULT_REQUEST_TIMEOUT).await)
            } else {
                None
            };
            let lake = LakeLocation::parse(&lake).map_err(anyhow::Error::msg)?;
            let detector = if no_detect {
                None
            } else {
                let storage_options = lake.storage_options(endpoint_url.as_deref());
                let detector = detector(&config, None, RunKind::Ingest, aws.as_ref()).await?;
                Some(Arc::new(detector.with_window_rules(lake.clone(), storage_options)))
            };
            let options = IngestOptions {
                limits: Limits { max_bytes: max_object_mib << 20, max_ratio },
                commit_bytes: commit_mib << 20,
                fetch_concurrency,
                hook: detector.clone().map(|d| d as Arc<dyn LakeHook>),
                ..IngestOptions::default()
            };
            let summary = if let Some(archive) = from.strip_prefix("s3://") {
                let dates = date_range(since, until)?;
                let aws = aws.as_ref().context("the AWS configuration is loaded for an s3:// archive")?;
                backfill(archive, &lake, aws, endpoint_url.as_deref(), dates, &options).await?
            } else {
                if since.is_some() || until.is_some() {
                    bail!("--since and --until apply to an s3:// archive; a local folder is ingested whole");
                }
                ingest(Path::new(&from), &lake, endpoint_url.as_deref(), &options).await?
            };
            if let Some(detector) = &detector {
                // The window rules (bursts, rare regions) run once over the event time this run
                // committed, as the worker's tick runs them over what it commits.
                let mut handle = open_lake(&lake, endpoint_url.as_deref()).await?;
                detector
                    .run_due_window_rules(&mut handle, chrono::Utc::now())
                    .await
                    .context("running the window rules over what was ingested")?;
            }
            let mut out = std::io::stdout().lock();
            print_summary(&summary, &mut out)?;
            if let Some(detector) = detector {
                print_tally(&detector.tally(), &mut out)?;
            }
            if then_compact {
                let mut lake = open_lake(&lake, endpoint_url.as_deref()).await?;
                compact(&mut lake, &Compactable::ALL, &CompactOptions::default(), &mut out).await?;
            }
        }
        Command::Worker(args) => worker(args).await?,
        Command::Detect { lake, endpoint_url, since, until, rules, format, config, no_record } => {
            let config = read_config(config.as_deref())?;
            // History runs print and record; they do not page anyone through the sinks.
            let sinks_off = ConfigFile { sinks: Vec::new(), ..config };
            let detector = detector(&sinks_off, rules.as_deref(), RunKind::Detect, None).await?;
            let location = LakeLocation::parse(&lake).map_err(anyhow::Error::msg)?;
            let session = LakeSession::open_at(&location, location.storage_options(endpoint_url.as_deref())).await?;
            let regions = detector.tuning().regions();
            let found = bunker_detect::engine::run_over_lake(&session, detector.rules(), regions, since, until).await?;
            let alerts = if no_record {
                detector.triage(found)
            } else {
                let mut lake = open_lake(&location, endpoint_url.as_deref()).await?;
                detector.emit(&mut lake, found, RunKind::Detect).await?
            };
            print_alerts(&alerts, format, &mut std::io::stdout().lock())?;
            let tally = detector.tally();
            let (shadow, suppressed): (u64, u64) =
                tally.values().fold((0, 0), |(s, p), t| (s + t.shadow, p + t.suppressed));
            if shadow + suppressed > 0 {
                eprintln!("({shadow} alerts of rules in shadow mode and {suppressed} suppressed alerts not shown)");
            }
        }
        Command::Compact { lake, endpoint_url, tables, since, until, memory_mib } => {
            let location = LakeLocation::parse(&lake).map_err(anyhow::Error::msg)?;
            let mut lake = open_lake(&location, endpoint_url.as_deref()).await?;
            let options = CompactOptions { since, until, memory_bytes: memory_mib << 20, ..CompactOptions::default() };
            let tables = if tables.is_empty() { Compactable::ALL.to_vec() } else { tables };
            compact(&mut lake, &tables, &options, &mut std::io::stdout().lock()).await?;
        }
        Command::Vacuum { lake, endpoint_url, tables, retain_hours, force, apply } => {
            let location = LakeLocation::parse(&lake).map_err(anyhow::Error::msg)?;
            let mut lake = open_lake(&location, endpoint_url.as_deref()).await?;
            let options = VacuumOptions { retain: retain_hours.map(|h| Duration::from_secs(h * 3600)), apply, force };
            let tables = if tables.is_empty() { Compactable::ALL.to_vec() } else { tables };
            vacuum(&mut lake, &tables, &options, &mut std::io::stdout().lock()).await?;
        }
        Command::Retention { lake, endpoint_url, config, keep_days, apply } => {
            let mut retention = read_config(config.as_deref())?.retention;
            for (table, days) in keep_days {
                retention.set(table, days);
            }
            let limits = retention.limits()?;
            if limits.is_empty() {
                bail!(
                    "no table has a retention: set e.g. `[retention] cloudtrail_days = 400` in --config, or --keep-days cloudtrail=400"
                );
            }
            let location = LakeLocation::parse(&lake).map_err(anyhow::Error::msg)?;
            let mut lake = open_lake(&location, endpoint_url.as_deref()).await?;
            apply_retention(&mut lake, &limits, apply, &mut std::io::stdout().lock()).await?;
        }
        Command::Rules { action: RulesAction::List { rules } } => {
            let rules = load_rules(rules.as_deref(), true).await?;
            let mut out = std::io::stdout().lock();
            // How each rule runs (live on commits, or on a schedule), since every rule also runs
            // in `bunker detect`.
            for rule in &rules {
                // A rule of the user's says where it came from (a rule file, or a Sigma file).
                let origin = match rule.origin.starts_with("builtin:") {
                    true => String::new(),
                    false => format!("  [{}]", rule.origin),
                };
                writeln!(
                    out,
                    "{:<48} {:<8} {:<34} {:<22} {}{origin}",
                    rule.id,
                    rule.severity.name(),
                    rule.runs(),
                    rule.mitre.join(","),
                    rule.title
                )?;
            }
            writeln!(out, "{} rules", rules.len())?;
        }
        Command::Rules { action: RulesAction::Import { sigma, out } } => {
            let import = bunker_detect::sigma::import_dir(&sigma)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut refused: Vec<String> = import.refused.iter().map(|e| e.to_string()).collect();
            let mut written = 0;
            for rule in &import.rules {
                // A compiled rule must plan like any rule file; one that does not is refused too.
                if let Err(e) = bunker_detect::engine::validate(std::slice::from_ref(rule)).await {
                    refused.push(format!("{}: Sigma rule {:?}: {e}", rule.origin, rule.title));
                    continue;
                }
                let path = out.join(format!("{}.yaml", rule.id));
                std::fs::write(&path, rule.to_file()).with_context(|| format!("writing {}", path.display()))?;
                written += 1;
            }
            for reason in &refused {
                eprintln!("refused: {reason}");
            }
            println!("{written} rules compiled into {}, {} refused", out.display(), refused.len());
            if !refused.is_empty() {
                bail!("{} Sigma rules could not be compiled (listed above)", refused.len());
            }
        }
        Command::Rules { action: RulesAction::Test { rules } } => {
            let rules = load_rules(rules.as_deref(), rules.is_none()).await?;
            let outcomes = bunker_detect::testing::run_tests(&rules).await?;
            let mut out = std::io::stdout().lock();
            let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).collect();
            for outcome in &outcomes {
                let mark = if outcome.passed { "ok  " } else { "FAIL" };
                writeln!(out, "{mark} {} / {}", outcome.rule_id, outcome.name)?;
                if !outcome.passed {
                    writeln!(out, "     {}", outcome.message)?;
                }
            }
            writeln!(
                out,
                "{} examples of {} rules: {} passed, {} failed",
                outcomes.len(),
                rules.len(),
                outcomes.len() - failed.len(),
                failed.len()
            )?;
            if !failed.is_empty() {
                bail!("{} rule examples did not behave as labelled", failed.len());
            }
        }
        Command::Query(args) => analyst::query(args).await?,
        Command::Sql(args) => analyst::sql(args).await?,
        Command::Timeline(args) => analyst::timeline(args).await?,
        Command::Serve(args) => analyst::serve(args).await?,
        Command::Gen { out, events, seed, days, accounts, start, attacks, benign, labels, rules: own } => {
            let mut config = SynthConfig::new(events, seed);
            config.days = days.unwrap_or(config.days);
            config.accounts = accounts.unwrap_or(config.accounts);
            config.start = start.unwrap_or(config.start);
            config.benign = attacks || benign;
            let (archive_dir, archive) = (out.clone(), bunker_detect::inject::Archive::of(&config));
            let summary = tokio::task::spawn_blocking(move || generate(&archive_dir, &config)).await??;
            println!(
                "generated {} objects ({:.1} MiB): {} cloudtrail events, {} vpcflow records, {} dns records, {} digest and {} other objects",
                summary.objects,
                summary.bytes as f64 / (1 << 20) as f64,
                summary.cloudtrail_events,
                summary.vpcflow_records,
                summary.dns_records,
                summary.digest_objects,
                summary.unknown_objects
            );
            if attacks {
                let mut rules = bunker_detect::pack::builtin()?;
                if let Some(dir) = &own {
                    rules.extend(bunker_detect::rule::load_dir(dir)?);
                }
                let injected = bunker_detect::inject::inject(&out, &rules, &archive, seed)?;
                let labels = labels.unwrap_or_else(|| out.join("attacks.json"));
                bunker_detect::inject::write_labels(&labels, &injected)?;
                let objects: usize = injected.iter().map(|a| a.keys.len()).sum();
                let events: u64 = injected.iter().map(|a| a.events).sum();
                println!(
                    "injected {} attacks ({objects} objects, {events} events), one per rule, into a benign background; labels in {}",
                    injected.len(),
                    labels.display()
                );
            }
        }
        Command::Demo { dir, events } => demo(&dir, events).await?,
        Command::Schema { table } => {
            let schema = match table.as_str() {
                t if t == bunker_schemas::ingest_log::TABLE_NAME => bunker_schemas::ingest_log::schema(),
                t => LogTable::from_name(t)
                    .with_context(|| format!("no table {t:?}; tables are cloudtrail, vpcflow, dns, ingest_log"))?
                    .schema(),
            };
            print!("{}", bunker_schemas::describe(&schema));
        }
    }
    Ok(())
}

/// The built-in pack (when `with_builtin`) plus the rules in `dir`, all planned against the
/// table schemas.
async fn load_rules(dir: Option<&Path>, with_builtin: bool) -> Result<Vec<bunker_detect::Rule>> {
    let mut rules = Vec::new();
    if with_builtin {
        rules.extend(bunker_detect::pack::builtin()?);
    }
    if let Some(dir) = dir {
        let (loaded, refused) = bunker_detect::rule::load_dir_reporting(dir)?;
        // A Sigma rule bunker cannot run is reported and left out; the rest load. One that
        // compiles but does not plan is left out the same way.
        for refusal in &refused {
            tracing::warn!("{refusal}");
            eprintln!("warning: rule left out: {refusal}");
        }
        for rule in loaded {
            let is_sigma = rule.id.starts_with("sigma-") && !rule.origin.starts_with("builtin:");
            if is_sigma && let Err(e) = bunker_detect::engine::validate(std::slice::from_ref(&rule)).await {
                eprintln!("warning: rule left out: {e}");
                continue;
            }
            rules.push(rule);
        }
    }
    bunker_detect::engine::validate(&rules).await?;
    Ok(rules)
}

fn print_alerts(alerts: &[bunker_detect::Alert], format: AlertFormat, out: &mut dyn Write) -> Result<()> {
    match format {
        AlertFormat::Json => {
            for alert in alerts {
                serde_json::to_writer(&mut *out, alert)?;
                writeln!(out)?;
            }
        }
        AlertFormat::Table => {
            if alerts.is_empty() {
                writeln!(out, "no alerts")?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<20} {:<8} {:<46} {:>5} {:<12} {:<15} principal",
                "first seen", "severity", "rule", "count", "account", "source ip"
            )?;
            for a in alerts {
                writeln!(
                    out,
                    "{:<20} {:<8} {:<46} {:>5} {:<12} {:<15} {}",
                    a.first_seen.format("%Y-%m-%d %H:%M:%S"),
                    a.severity.name(),
                    a.rule_id,
                    a.count,
                    a.account.as_deref().unwrap_or("-"),
                    a.source_ip.as_deref().unwrap_or("-"),
                    a.principal.as_deref().unwrap_or("-")
                )?;
            }
            let mut by_severity = std::collections::BTreeMap::new();
            for a in alerts {
                *by_severity.entry(std::cmp::Reverse(a.severity)).or_insert(0u64) += 1;
            }
            let counts: Vec<String> = by_severity.iter().map(|(s, n)| format!("{n} {}", s.0.name())).collect();
            writeln!(out, "{} alerts: {}", alerts.len(), counts.join(", "))?;
        }
    }
    Ok(())
}

/// What the row detections of an ingest run raised.
fn print_tally(tally: &std::collections::BTreeMap<String, Tally>, out: &mut dyn Write) -> Result<()> {
    let alerts: u64 = tally.values().map(|t| t.alerts).sum();
    let quiet: u64 = tally.values().map(|t| t.shadow + t.suppressed).sum();
    let fired: Vec<String> =
        tally.iter().filter(|(_, t)| t.alerts > 0).map(|(rule, t)| format!("{rule} ({})", t.alerts)).collect();
    writeln!(
        out,
        "alerts:    {alerts} recorded in the alerts table{}",
        if quiet > 0 { format!(", {quiet} shadowed or suppressed") } else { String::new() }
    )?;
    if !fired.is_empty() {
        writeln!(out, "           {}", fired.join(", "))?;
    }
    Ok(())
}

async fn open_lake(location: &LakeLocation, endpoint_url: Option<&str>) -> Result<Lake> {
    Lake::open_at(location, location.storage_options(endpoint_url), LakeConfig::default())
        .await
        .with_context(|| format!("opening lake {location}"))
}

fn progress() -> Box<dyn ProgressSink> {
    if std::io::stderr().is_terminal() { Box::new(BarProgress::new()) } else { Box::new(NoProgress) }
}

async fn ingest(
    from: &Path,
    location: &LakeLocation,
    endpoint_url: Option<&str>,
    options: &IngestOptions,
) -> Result<IngestSummary> {
    if !from.is_dir() {
        bail!("--from {} is not a directory", from.display());
    }
    let mut lake = open_lake(location, endpoint_url).await?;
    ingest_directory(from, &mut lake, options, progress().as_ref())
        .await
        .with_context(|| format!("ingesting {} into {location}", from.display()))
}

/// `bunker ingest --from s3://bucket/prefix`.
async fn backfill(
    archive: &str,
    location: &LakeLocation,
    aws: &aws_config::SdkConfig,
    endpoint_url: Option<&str>,
    dates: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    options: &IngestOptions,
) -> Result<IngestSummary> {
    let (bucket, prefix) = archive.split_once('/').unwrap_or((archive, ""));
    if bucket.is_empty() {
        bail!("--from s3://{archive}: no bucket name");
    }
    let source = S3Source::new(s3_client(aws), options.limits.max_bytes);
    let mut lake = open_lake(location, endpoint_url).await?;
    ingest_s3(&source, bucket, prefix, dates, &mut lake, options, progress().as_ref())
        .await
        .with_context(|| format!("ingesting s3://{archive} into {location}"))
}

/// A day given as YYYY-MM-DD, `today`, or relative to today (`7d` = seven days ago).
fn parse_day(text: &str) -> Result<chrono::NaiveDate, String> {
    let today = chrono::Utc::now().date_naive();
    if text == "today" {
        return Ok(today);
    }
    if let Some(days) = text.strip_suffix('d').and_then(|n| n.parse::<u32>().ok()) {
        return today.checked_sub_days(chrono::Days::new(days.into())).ok_or_else(|| format!("{text}: too far back"));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text}: expected YYYY-MM-DD or Nd (days ago)"))
}

/// Compacts the tables and prints a line per table (and per day that failed); fails when a day did.
async fn compact(lake: &mut Lake, tables: &[Compactable], options: &CompactOptions, out: &mut dyn Write) -> Result<()> {
    let mut failed = 0;
    for &table in tables {
        let started = std::time::Instant::now();
        let report = lake.compact(table, options).await.with_context(|| format!("compacting {table}"))?;
        let (files_before, files_after, rows, bytes_before, bytes_after) =
            report.days.iter().fold((0, 0, 0, 0, 0), |t, d| {
                (t.0 + d.files_before, t.1 + d.files_after, t.2 + d.rows, t.3 + d.bytes_before, t.4 + d.bytes_after)
            });
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        writeln!(
            out,
            "{:<16} {} days compacted: {files_before} files ({:.1} MiB) -> {files_after} ({:.1} MiB), {rows} rows, {:.1} s",
            table.name(),
            report.days.len(),
            mib(bytes_before),
            mib(bytes_after),
            started.elapsed().as_secs_f64()
        )?;
        for (date, error) in &report.failed {
            writeln!(out, "{:<16} {date} not compacted: {error}", table.name())?;
        }
        failed += report.failed.len();
    }
    if failed > 0 {
        bail!("{failed} days could not be compacted (left as they were; see above)");
    }
    Ok(())
}

/// Vacuums the tables, printing each file (with `apply`, deleted; otherwise to delete) and a line
/// per table.
async fn vacuum(lake: &mut Lake, tables: &[Compactable], options: &VacuumOptions, out: &mut dyn Write) -> Result<()> {
    let (mut files, mut bytes) = (0, 0);
    for &table in tables {
        let report = lake.vacuum(table, options).await.with_context(|| format!("vacuuming {table}"))?;
        for (path, size) in &report.files {
            writeln!(out, "{:<16} {path} {size}", table.name())?;
        }
        writeln!(
            out,
            "{:<16} {} files, {:.1} MiB {} (removed or never committed over {} hours ago)",
            table.name(),
            report.files.len(),
            report.bytes() as f64 / f64::from(1 << 20),
            if report.applied { "deleted" } else { "to delete" },
            report.retain.as_secs() / 3600
        )?;
        (files, bytes) = (files + report.files.len(), bytes + report.bytes());
    }
    if !options.apply && files > 0 {
        writeln!(out, "dry run: {files} files ({bytes} bytes) would be deleted; --apply deletes them")?;
    }
    Ok(())
}

/// Applies (or lists) each table's retention, printing a line per day dropped and per table.
async fn apply_retention(
    lake: &mut Lake,
    limits: &[(Compactable, u32)],
    apply: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let today = chrono::Utc::now().date_naive();
    let mut dropped = 0;
    for &(table, days) in limits {
        let report =
            lake.apply_retention(table, days, today, apply).await.with_context(|| format!("retention of {table}"))?;
        for day in &report.days {
            writeln!(
                out,
                "{:<16} {} {} files, {} rows, {} bytes",
                table.name(),
                day.date,
                day.files,
                day.rows,
                day.bytes
            )?;
        }
        writeln!(
            out,
            "{:<16} keeps {days} days (from {}): {} days {}",
            table.name(),
            report.cutoff,
            report.days.len(),
            if apply { "dropped" } else { "to drop" }
        )?;
        dropped += report.days.len();
    }
    if !apply && dropped > 0 {
        writeln!(out, "dry run: nothing changed; --apply drops them (`bunker vacuum` later deletes their files)")?;
    }
    Ok(())
}

/// `TABLE=DAYS` of `--keep-days`.
fn parse_keep_days(text: &str) -> Result<(Compactable, u32), String> {
    let (table, days) =
        text.split_once('=').ok_or_else(|| format!("{text}: expected TABLE=DAYS, e.g. cloudtrail=400"))?;
    let days = days.parse().map_err(|_| format!("{text}: {days} is not a number of days"))?;
    Ok((parse_compactable(table)?, days))
}

fn parse_compactable(text: &str) -> Result<Compactable, String> {
    Compactable::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Compactable::ALL.iter().map(|t| t.name()).collect();
        format!("{text}: not a table of the lake (one of {})", names.join(", "))
    })
}

fn date_range(
    since: Option<chrono::NaiveDate>,
    until: Option<chrono::NaiveDate>,
) -> Result<Option<(chrono::NaiveDate, chrono::NaiveDate)>> {
    match (since, until) {
        (None, None) => Ok(None),
        (since, until) => {
            let since = since.unwrap_or(chrono::NaiveDate::MIN);
            let until = until.unwrap_or_else(|| chrono::Utc::now().date_naive());
            if since > until {
                bail!("--since {since} is after --until {until}");
            }
            if since == chrono::NaiveDate::MIN {
                bail!("--until needs --since too: bunker lists the archive day by day");
            }
            Ok(Some((since, until)))
        }
    }
}

/// Hours between the worker's compactions of finished days, unless the config says otherwise.
const DEFAULT_COMPACT_EVERY_HOURS: f64 = 6.0;

/// The worker's compaction of the days ingestion has finished with, every `every` (the first
/// after one period: a worker restarted in a crash loop does not rewrite the lake each time).
async fn compact_on_schedule(
    location: LakeLocation,
    storage_options: std::collections::HashMap<String, String>,
    every: Duration,
    lookback_days: u32,
    memory_bytes: usize,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = std::time::Instant::now();
        let mut lake = match Lake::open_at(&location, storage_options.clone(), LakeConfig::default()).await {
            Ok(lake) => lake,
            Err(error) => {
                tracing::warn!(%error, "could not open the lake to compact it; trying again next time");
                continue;
            }
        };
        let today = chrono::Utc::now().date_naive();
        let days = bunker_ingest::compact::compact_past_days(&mut lake, today, lookback_days, memory_bytes).await;
        tracing::info!(days, seconds = started.elapsed().as_secs_f64(), "scheduled compaction done");
    }
}

/// `bunker worker`: runs until SIGTERM/SIGINT, then drains and exits 0.
async fn worker(args: WorkerArgs) -> Result<()> {
    // First, so that a stop request during start-up is a clean stop.
    let shutdown = shutdown_signal();
    let mut config = read_config(args.config.as_deref())?;
    let file = std::mem::take(&mut config.worker);
    let queue_url =
        args.queue_url.or(file.queue_url).context("no queue: pass --queue-url or set queue_url under [worker]")?;
    let lake = args.lake.or(file.lake).context("no lake: pass --lake or set lake under [worker]")?;
    let endpoint_url = args.endpoint_url.or(file.endpoint_url);
    let mut options = WorkerOptions::new(queue_url);
    options.receivers = args.receivers.or(file.receivers).unwrap_or(options.receivers);
    options.wait_time_seconds = args.wait_time_secs.or(file.wait_time_secs).unwrap_or(options.wait_time_seconds);
    options.visibility_timeout_seconds =
        args.visibility_timeout_secs.or(file.visibility_timeout_secs).unwrap_or(options.visibility_timeout_seconds);
    options.max_messages_in_flight =
        args.max_in_flight.or(file.max_in_flight).unwrap_or(options.max_messages_in_flight);
    options.fetch_concurrency = args.fetch_concurrency.or(file.fetch_concurrency).unwrap_or(options.fetch_concurrency);
    if let Some(mib) = args.commit_mib.or(file.commit_mib) {
        options.commit_bytes = mib << 20;
    }
    if let Some(secs) = args.commit_interval_secs.or(file.commit_interval_secs) {
        options.commit_interval =
            Duration::try_from_secs_f64(secs).context("commit interval must be a positive number of seconds")?;
    }
    if let Some(mib) = args.max_object_mib.or(file.max_object_mib) {
        options.limits.max_bytes = mib << 20;
    }
    if let Some(ratio) = args.max_ratio.or(file.max_ratio) {
        options.limits.max_ratio = ratio;
    }
    options.retry_backoff_seconds =
        args.retry_backoff_secs.or(file.retry_backoff_secs).unwrap_or(options.retry_backoff_seconds);
    let request_timeout = match args.request_timeout_secs.or(file.request_timeout_secs) {
        Some(secs) if secs > 0.0 => {
            Duration::try_from_secs_f64(secs).context("request timeout must be a positive number of seconds")?
        }
        Some(_) => bail!("request timeout must be a positive number of seconds"),
        None => DEFAULT_REQUEST_TIMEOUT,
    };
    if request_timeout.as_secs_f64() <= f64::from(options.wait_time_seconds) {
        bail!("request_timeout_secs must be longer than wait_time_secs, or every long poll times out");
    }
    let listen = args.metrics_listen.or(file.metrics_listen).unwrap_or(([127, 0, 0, 1], 9464).into());

    let metrics = install_metrics()?;
    let heartbeat = Arc::new(Heartbeat::default());
    heartbeat.beat();
    let stall_after = options.commit_interval * 3 + Duration::from_secs(120);
    let bound = serve_ops(listen, metrics, heartbeat.clone(), stall_after).await?;
    let location = LakeLocation::parse(&lake).map_err(anyhow::Error::msg)?;
    let aws = load_aws_config(endpoint_url.as_deref(), request_timeout).await;
    let source = S3Source::new(s3_client(&aws), options.limits.max_bytes);
    let sqs = aws_sdk_sqs_client(&aws);
    // The lake's object store has a timeout of its own (30 s per request, body included); the
    // worker's request timeout replaces it, so one setting bounds every request the worker makes.
    let mut storage_options = location.storage_options(endpoint_url.as_deref());
    if matches!(location, LakeLocation::S3(_)) {
        storage_options.insert("timeout".to_owned(), format!("{}ms", request_timeout.as_millis()));
    }
    let detector = detector(&config, None, RunKind::Worker, Some(&aws))
        .await?
        .with_window_rules(location.clone(), storage_options.clone());
    options.hook = Some(Arc::new(detector));
    let mut lake = Lake::open_at(&location, storage_options.clone(), LakeConfig::default())
        .await
        .with_context(|| format!("opening lake {location}"))?;
    let every = file.compact_every_hours.unwrap_or(DEFAULT_COMPACT_EVERY_HOURS);
    if every > 0.0 {
        let every = Duration::try_from_secs_f64(every * 3600.0).context("compact_every_hours must be a number")?;
        let lookback = file.compact_lookback_days.unwrap_or(7);
        let memory = file.compact_memory_mib.unwrap_or(256) << 20;
        // Its own handle on the lake, so the day's messages keep flowing while a day is rewritten;
        // stopped with the process (a compaction cut short leaves only unreferenced files).
        tokio::spawn(compact_on_schedule(location.clone(), storage_options, every, lookback, memory));
    }
    tracing::warn!(queue = %options.queue_url, lake = %location, metrics = %bound, "worker started");
    let summary = run_worker(sqs, source, &mut lake, options, heartbeat, shutdown).await?;
    tracing::warn!(
        messages = summary.messages_received,
        deleted = summary.messages_deleted,
        retried = summary.messages_retried,
        objects = summary.ingest.objects,
        rows = summary.ingest.total_rows(),
        failed = summary.ingest.failed.len(),
        "worker stopped"
    );
    Ok(())
}

/// Resolves on SIGTERM (how ECS, Kubernetes and systemd stop a service) or SIGINT (Ctrl-C).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// SIGTERM that arrives while the worker is still starting (loading and planning rules, opening
/// the lake) is then a clean stop, not the default action of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (term, _) => {
                    if let Err(e) = term {
                        tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the worker cleanly");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A progress bar on stderr, by stored bytes.
struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {msg})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar }
    }
}

impl ProgressSink for BarProgress {
    fn start(&self, objects: u64, bytes: u64) {
        self.bar.set_length(bytes);
        self.bar.set_message(format!("{objects} objects"));
    }
    fn object_done(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn print_summary(s: &IngestSummary, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "objects: {} seen, {} committed, {} already in the lake, {} skipped (not CloudTrail/VPC Flow/DNS), {} failed",
        s.objects,
        s.committed_objects,
        s.duplicate_objects,
        s.skipped_objects,
        s.failed.len()
    )?;
    for table in LogTable::ALL {
        writeln!(out, "  {:<11} {:>12} events", table.name(), s.rows.get(&table).copied().unwrap_or(0))?;
    }
    writeln!(
        out,
        "bytes: {:.1} MiB read, {:.1} MiB decompressed; {} records rejected; {} commits",
        s.bytes as f64 / (1 << 20) as f64,
        s.content_bytes as f64 / (1 << 20) as f64,
        s.rejected_records,
        s.commits
    )?;
    writeln!(out, "time: {:.2} s, {:.0} events/s", s.elapsed.as_secs_f64(), s.events_per_second())?;
    if !s.failed.is_empty() {
        writeln!(out, "failed objects (all recorded in the ingest_log table):")?;
        for f in s.failed.iter().take(20) {
            writeln!(out, "  [{}] {}", f.kind, f.message)?;
        }
        if s.failed.len() > 20 {
            writeln!(out, "  ... and {} more: SELECT * FROM ingest_log WHERE status = 'failed'", s.failed.len() - 20)?;
        }
    }
    Ok(())
}

/// The queries the demo shows, each with a line saying what it answers.
const DEMO_QUERIES: &[(&str, &str)] = &[
    (
        "Events per table",
        "SELECT 'cloudtrail' AS table_name, count(*) AS events FROM cloudtrail UNION ALL SELECT 'vpcflow', count(*) FROM vpcflow UNION ALL SELECT 'dns', count(*) FROM dns ORDER BY table_name",
    ),
    (
        "Busiest API calls",
        "SELECT eventsource, eventname, count(*) AS calls FROM cloudtrail GROUP BY eventsource, eventname ORDER BY calls DESC LIMIT 8",
    ),
    (
        "Who got AccessDenied most",
        "SELECT useridentity.arn AS principal, count(*) AS denied FROM cloudtrail WHERE errorcode LIKE '%AccessDenied%' GROUP BY useridentity.arn ORDER BY denied DESC LIMIT 5",
    ),
    (
        "Console logins",
        "SELECT eventtime, useridentity.type AS identity, useridentity.arn AS principal, sourceipaddress, responseelements FROM cloudtrail WHERE eventname = 'ConsoleLogin' ORDER BY eventtime LIMIT 5",
    ),
    (
        "Rejected flows by destination port",
        "SELECT dstport, count(*) AS flows, count(DISTINCT srcaddr) AS sources FROM vpcflow WHERE action = 'REJECT' GROUP BY dstport ORDER BY flows DESC LIMIT 5",
    ),
    (
        "Names that did not resolve",
        "SELECT query_name, count(*) AS queries FROM dns WHERE rcode = 'NXDOMAIN' GROUP BY query_name ORDER BY queries DESC LIMIT 5",
    ),
    (
        "What the ingest log says",
        "SELECT status, format, count(*) AS objects, sum(rows) AS rows FROM ingest_log GROUP BY status, format ORDER BY status, format",
    ),
];

async fn demo(dir: &Path, events: u64) -> Result<()> {
    let archive = dir.join("archive");
    let lake_dir = dir.join("lake");
    if dir.exists() {
        // Start clean, but only inside a folder that looks like ours.
        let ours = archive.is_dir() || lake_dir.is_dir();
        if !ours && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(false) {
            bail!("{} exists and is not a bunker demo folder; pass --dir to choose another", dir.display());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    println!("bunker demo — a log archive made useful\n");
    println!(
        "1. Generating a synthetic log archive in {} (real AWS key layout: CloudTrail org trail, VPC Flow Logs, Route 53 Resolver query logs)",
        archive.display()
    );
    let mut config = SynthConfig::new(events, 7);
    config.benign = true;
    // The organization works in the archive's regions; a day of an account's history is enough
    // for a first use of a region to count in a week-long demo (production keeps the default week).
    let detect_config = DetectConfig {
        regions: RegionConfig {
            allowed: config.regions.clone(),
            learning: Some("1d".into()),
            ..RegionConfig::default()
        },
        ..DetectConfig::default()
    };
    let attack_archive = bunker_detect::inject::Archive::of(&config);
    let out = archive.clone();
    let generated = tokio::task::spawn_blocking(move || generate(&out, &config)).await??;
    let pack = load_rules(None, true).await?;
    let injected = bunker_detect::inject::inject(&archive, &pack, &attack_archive, 7)?;
    println!(
        "   {} objects: {} CloudTrail events, {} flow records, {} DNS queries (+{} digest and {} other files that bunker skips)\n",
        generated.objects,
        generated.cloudtrail_events,
        generated.vpcflow_records,
        generated.dns_records,
        generated.digest_objects,
        generated.unknown_objects
    );
    println!(
        "   plus {} labelled attacks hidden in it, one per built-in rule (bunker gen --attacks)\n",
        injected.len()
    );
    println!("2. Ingesting it into a Delta Lake in {}; the row detections run on every commit", lake_dir.display());
    println!("   $ bunker ingest --from {} --lake {}", archive.display(), lake_dir.display());
    let lake = LakeLocation::Local(lake_dir.clone());
    let tuning = Tuning::new(&detect_config, &pack)?;
    let detector = Arc::new(Detector::new(pack.clone(), tuning, Sinks::empty(), RunKind::Ingest));
    let options = IngestOptions { hook: Some(detector.clone() as Arc<dyn LakeHook>), ..IngestOptions::default() };
    let summary = ingest(&archive, &lake, None, &options).await?;
    let mut out = std::io::stdout().lock();
    let mut indented = Vec::new();
    print_summary(&summary, &mut indented)?;
    print_tally(&detector.tally(), &mut indented)?;
    for line in String::from_utf8_lossy(&indented).lines() {
        writeln!(out, "   {line}")?;
    }
    writeln!(out, "\n3. Ingesting the same archive again adds nothing (exactly once):")?;
    let again = ingest(&archive, &lake, None, &IngestOptions::default()).await?;
    writeln!(out, "   {} objects already in the lake, {} new events\n", again.duplicate_objects, again.total_rows())?;
    writeln!(out, "4. Asking questions with SQL (bunker query --lake {} \"...\")\n", lake_dir.display())?;
    let session = LakeSession::open(&lake_dir).await?;
    for (title, sql) in DEMO_QUERIES {
        writeln!(out, "-- {title}\n{sql}")?;
        let (schema, batches) = session.sql(sql).await.with_context(|| format!("demo query {title:?}"))?;
        bunker_query::render(&schema, &batches, OutputFormat::Table, &mut out)?;
        writeln!(out)?;
    }
    writeln!(
        out,
        "5. Running the {} built-in detections, window rules included, over the whole lake (bunker detect --lake {})\n",
        pack.len(),
        lake_dir.display()
    )?;
    let alerts = bunker_detect::engine::run_over_lake(&session, &pack, detector.tuning().regions(), None, None).await?;
    let mut by_rule: std::collections::BTreeMap<(std::cmp::Reverse<bunker_detect::Severity>, &str), (u64, &str)> =
        std::collections::BTreeMap::new();
    for alert in &alerts {
        let entry =
            by_rule.entry((std::cmp::Reverse(alert.severity), alert.rule_id.as_str())).or_insert((0, &alert.title));
        entry.0 += 1;
    }
    for ((severity, rule), (count, title)) in &by_rule {
        writeln!(out, "   {:<8} {:>4} x {:<46} {}", severity.0.name(), count, rule, title)?;
    }
    let fired: std::collections::BTreeSet<&str> = alerts.iter().map(|a| a.rule_id.as_str()).collect();
    let found = injected.iter().filter(|a| fired.contains(a.rule_id.as_str())).count();
    writeln!(
        out,
        "   {} alerts from {} rules; {found} of the {} injected attacks found. Each alert has its evidence:\n   bunker detect --lake {} --format json; recorded ones: bunker query --lake {} \"SELECT * FROM alerts\"\n",
        alerts.len(),
        by_rule.len(),
        injected.len(),
        lake_dir.display(),
        lake_dir.display()
    )?;
    writeln!(
        out,
        "Next: `bunker schema cloudtrail` for the columns, `bunker query --lake {} \"SELECT ...\"` for your own questions.",
        lake_dir.display()
    )?;
    Ok(())
}
