//! The `bunker` command line: argument parsing and wiring only; the work lives in the crates.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bunker_ingest::lake::{Lake, LakeConfig};
use bunker_ingest::pipeline::{IngestOptions, IngestSummary, NoProgress, ProgressSink, ingest_directory};
use bunker_ingest::synth::{SynthConfig, generate};
use bunker_query::{LakeSession, OutputFormat};
use bunker_schemas::LogTable;
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
    /// Ingest a local archive directory (AWS key layout, or any folder of exported logs) into a lake.
    Ingest {
        /// Archive directory to read (e.g. a synced copy of s3://bucket/AWSLogs/...).
        #[arg(long)]
        from: PathBuf,
        /// Lake directory to write (created if missing).
        #[arg(long)]
        lake: PathBuf,
        /// Largest decompressed object accepted, in MiB; bigger objects are recorded as failed.
        #[arg(long, default_value_t = 256)]
        max_object_mib: u64,
        /// Commit a table once this many MiB of rows are waiting.
        #[arg(long, default_value_t = 48)]
        commit_mib: usize,
    },
    /// Run one SQL statement over a lake (tables: cloudtrail, vpcflow, dns, ingest_log).
    Query {
        /// Lake directory.
        #[arg(long)]
        lake: PathBuf,
        /// The SQL statement.
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

impl From<Format> for OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => OutputFormat::Table,
            Format::Csv => OutputFormat::Csv,
            Format::Json => OutputFormat::Json,
        }
    }
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
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUNKER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,buoyant_kernel::snapshot::builder=off"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Ingest { from, lake, max_object_mib, commit_mib } => {
            let options = IngestOptions {
                max_object_bytes: max_object_mib << 20,
                commit_bytes: commit_mib << 20,
                ..IngestOptions::default()
            };
            let summary = ingest(&from, &lake, &options).await?;
            print_summary(&summary, &mut std::io::stdout().lock())?;
        }
        Command::Query { lake, sql, format } => {
            let session = LakeSession::open(&lake).await?;
            let (schema, batches) = session.sql(&sql).await?;
            let mut out = std::io::stdout().lock();
            bunker_query::render(&schema, &batches, format.into(), &mut out)?;
        }
        Command::Gen { out, events, seed, days, accounts, start } => {
            let mut config = SynthConfig::new(events, seed);
            config.days = days.unwrap_or(config.days);
            config.accounts = accounts.unwrap_or(config.accounts);
            config.start = start.unwrap_or(config.start);
            let summary = tokio::task::spawn_blocking(move || generate(&out, &config)).await??;
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

async fn ingest(from: &Path, lake_dir: &Path, options: &IngestOptions) -> Result<IngestSummary> {
    if !from.is_dir() {
        bail!("--from {} is not a directory", from.display());
    }
    let mut lake = Lake::open(lake_dir, LakeConfig::default())
        .await
        .with_context(|| format!("opening lake {}", lake_dir.display()))?;
    let summary = if std::io::stderr().is_terminal() {
        ingest_directory(from, &mut lake, options, &BarProgress::new()).await
    } else {
        ingest_directory(from, &mut lake, options, &NoProgress).await
    };
    summary.with_context(|| format!("ingesting {} into {}", from.display(), lake_dir.display()))
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
    let config = SynthConfig::new(events, 7);
    let out = archive.clone();
    let generated = tokio::task::spawn_blocking(move || generate(&out, &config)).await??;
    println!(
        "   {} objects: {} CloudTrail events, {} flow records, {} DNS queries (+{} digest and {} other files that bunker skips)\n",
        generated.objects,
        generated.cloudtrail_events,
        generated.vpcflow_records,
        generated.dns_records,
        generated.digest_objects,
        generated.unknown_objects
    );
    println!("2. Ingesting it into a Delta Lake in {}", lake_dir.display());
    println!("   $ bunker ingest --from {} --lake {}", archive.display(), lake_dir.display());
    let summary = ingest(&archive, &lake_dir, &IngestOptions::default()).await?;
    let mut out = std::io::stdout().lock();
    let mut indented = Vec::new();
    print_summary(&summary, &mut indented)?;
    for line in String::from_utf8_lossy(&indented).lines() {
        writeln!(out, "   {line}")?;
    }
    writeln!(out, "\n3. Ingesting the same archive again adds nothing (exactly once):")?;
    let again = ingest(&archive, &lake_dir, &IngestOptions::default()).await?;
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
        "Next: `bunker schema cloudtrail` for the columns, `bunker query --lake {} \"SELECT ...\"` for your own questions.",
        lake_dir.display()
    )?;
    Ok(())
}
