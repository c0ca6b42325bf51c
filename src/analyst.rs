//! The analyst's and the responder's commands: `query`, `sql` and `timeline`. Argument parsing
//! and wiring only; the session, the shell and the timeline live in `bunker-query`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bunker_query::progress::Spinner;
use bunker_query::timeline::Subject;
use bunker_query::{LakeSession, OutputFormat, TimeSpan};
use bunker_schemas::location::LakeLocation;
use clap::ValueEnum;

/// Which lake, and which span of it.
#[derive(Debug, clap::Args)]
pub struct LakeArgs {
    /// Lake: a directory or s3://bucket/prefix.
    #[arg(long)]
    lake: String,
    /// S3-compatible endpoint (also AWS_ENDPOINT_URL) for an s3:// lake.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Only events at or after this: YYYY-MM-DD, an RFC 3339 time, or 7d / 12h / 30m / 2w ago.
    /// Prunes the date partitions of cloudtrail, vpcflow and dns.
    #[arg(long)]
    since: Option<String>,
    /// Only events before the end of this day (YYYY-MM-DD), before this RFC 3339 time, or before
    /// 7d / 12h / 30m / 2w ago.
    #[arg(long)]
    until: Option<String>,
}

impl LakeArgs {
    async fn open(&self) -> Result<LakeSession> {
        let span = TimeSpan::parse(self.since.as_deref(), self.until.as_deref()).map_err(anyhow::Error::msg)?;
        let location = LakeLocation::parse(&self.lake).map_err(anyhow::Error::msg)?;
        let options = location.storage_options(self.endpoint_url.as_deref());
        Ok(LakeSession::open_span(&location, options, span).await?)
    }
}

/// `bunker query` flags.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// The SQL statement.
    // A statement may open with a `--` comment, as queries copied from rule files often do.
    #[arg(allow_hyphen_values = true)]
    sql: String,
    /// Output format (parquet needs --output, or stdout redirected to a file).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the results to this file instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Do not run the statement: print the files and bytes it would read (after pruning).
    #[arg(long)]
    explain: bool,
}

/// `bunker sql` flags.
#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// Output format the shell starts with (`\format` changes it).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// History file [default: $BUNKER_HISTORY, else $XDG_STATE_HOME/bunker/history, else
    /// ~/.local/state/bunker/history].
    #[arg(long)]
    history: Option<PathBuf>,
}

/// `bunker timeline` flags.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["principal", "access_key", "ip"])))]
pub struct TimelineArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// An IAM principal ARN (a role's ARN also finds every session of the role), with the VPC
    /// flows and DNS queries of the IP addresses it called from.
    #[arg(long)]
    principal: Option<String>,
    /// An access key id: its own calls, the calls that created, changed or deleted it, and the
    /// calls of the session keys it created (AssumeRole, GetSessionToken, ...; role chains too).
    #[arg(long)]
    access_key: Option<String>,
    /// An IP address: its CloudTrail calls, its flows, its DNS queries and the answers naming it.
    #[arg(long)]
    ip: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Most rows shown (the earliest first).
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
}

/// `bunker serve` flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// Address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: std::net::SocketAddr,
    /// Allow a non-loopback --listen address. Put TLS in front: the token travels in clear text.
    #[arg(long)]
    allow_remote: bool,
    /// The bearer token clients must send (at least 16 characters). Without it, and without
    /// --token-file, a random token is made and printed once on stderr.
    #[arg(long, env = "BUNKER_SERVE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the bearer token from this file (its first line).
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
}

/// How results are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per line.
    Json,
    /// An Apache Parquet file.
    Parquet,
}

impl From<Format> for OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => OutputFormat::Table,
            Format::Csv => OutputFormat::Csv,
            Format::Json => OutputFormat::Json,
            Format::Parquet => OutputFormat::Parquet,
        }
    }
}

/// `bunker query`.
pub async fn query(args: QueryArgs) -> Result<()> {
    let session = args.lake.open().await?;
    if args.explain {
        let report = session.scan_report(&args.sql).await?;
        print!("{report}");
        return Ok(());
    }
    if matches!(args.format, Format::Parquet) && args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("--format parquet writes binary: add --output FILE (or redirect stdout to a file)");
    }
    let spinner = Spinner::start();
    let mut progress = |rows: usize| {
        if let Some(spinner) = &spinner {
            spinner.rows(rows);
        }
    };
    let result = session.sql_with_progress(&args.sql, &mut progress).await;
    if let Some(spinner) = spinner {
        spinner.finish();
    }
    let (schema, batches) = result?;
    write_results(&schema, &batches, args.format.into(), args.output.as_ref())
}

/// `bunker sql`.
pub async fn sql(args: SqlArgs) -> Result<()> {
    let session = args.lake.open().await?;
    let history = args.history.or_else(bunker_query::shell::default_history);
    let format = match args.format {
        Format::Parquet => bail!("the shell prints results: choose table, csv or json"),
        other => other.into(),
    };
    bunker_query::shell::run(&session, bunker_query::shell::ShellOptions { history, format }).await?;
    Ok(())
}

/// `bunker timeline`.
pub async fn timeline(args: TimelineArgs) -> Result<()> {
    let subject = match (&args.principal, &args.access_key, &args.ip) {
        (Some(arn), _, _) => Subject::principal(arn),
        (_, Some(key), _) => Subject::access_key(key),
        (_, _, Some(ip)) => Subject::ip(ip),
        _ => bail!("give --principal, --access-key or --ip"),
    }
    .map_err(anyhow::Error::msg)?;
    let session = args.lake.open().await?;
    let timeline = bunker_query::timeline::timeline(&session, &subject, args.limit).await?;
    let rows: usize = timeline.batches.iter().map(|b| b.num_rows()).sum();
    write_results(&timeline.schema, &timeline.batches, args.format.into(), None)?;
    // On stderr in every format: a bound that left rows out must not go unnoticed in a script.
    for note in &timeline.notes {
        eprintln!("bunker timeline: {note}");
    }
    if matches!(args.format, Format::Table) {
        let more =
            if rows == args.limit { format!(" (the first {rows}; raise --limit for more)") } else { String::new() };
        eprintln!("{rows} events of {subject} in {}{more}", describe_span(session.span()));
    }
    Ok(())
}

/// `bunker serve`: runs until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let (token, generated) = match (&args.token, &args.token_file) {
        (Some(token), _) => (token.trim().to_owned(), false),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            (text.lines().next().unwrap_or_default().trim().to_owned(), false)
        }
        (None, None) => (format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()), true),
    };
    if token.len() < 16 {
        bail!("the serve token must be at least 16 characters");
    }
    let session = args.lake.open().await?;
    let listener = bunker_query::flight::bind(args.listen, args.allow_remote).await?;
    let addr = listener.local_addr()?;
    eprintln!("bunker serve: read-only Arrow Flight SQL on grpc://{addr} over {}", args.lake.lake);
    if generated {
        eprintln!(
            "bunker serve: clients must send `authorization: Bearer {token}` (a new token each start; set --token-file to keep one)"
        );
    }
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        eprintln!("bunker serve: stopping");
    };
    bunker_query::flight::serve(session, listener, token, shutdown).await?;
    Ok(())
}

fn describe_span(span: TimeSpan) -> String {
    if span.is_all() { "the whole lake".to_owned() } else { span.to_string() }
}

fn write_results(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[arrow::array::RecordBatch],
    format: OutputFormat,
    output: Option<&PathBuf>,
) -> Result<()> {
    match output {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
            );
            bunker_query::render(schema, batches, format, &mut file)?;
            file.flush().with_context(|| format!("writing {}", path.display()))?;
        }
        None => bunker_query::render(schema, batches, format, &mut std::io::stdout().lock())?,
    }
    Ok(())
}
