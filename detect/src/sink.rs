//! Alert sinks: where alerts go once a rule has fired, besides the lake's `alerts` table.
//!
//! Configuration enters as `[[sinks]]` tables of `bunker.toml` ([`SinkConfig`]), is validated once
//! by [`Sinks::build`] into ready-to-run sinks with their clients, and alerts leave through
//! [`Sinks::send`], each sink rendering them ([`crate::render`]) in its own format:
//!
//! ```toml
//! [[sinks]]
//! type = "stdout"                 # stdout | file | sqs | webhook
//! format = "native"               # native | ocsf | asff | slack (default native; slack for webhooks)
//! min_severity = "low"            # info (default) | low | medium | high | critical
//!
//! [[sinks]]
//! type = "file"
//! path = "alerts.jsonl"
//!
//! [[sinks]]
//! type = "sqs"
//! queue_url = "https://sqs.eu-west-1.amazonaws.com/111122223333/security-alerts"
//! format = "asff"
//! min_severity = "high"
//!
//! [[sinks]]
//! type = "webhook"
//! url = "https://hooks.slack.com/services/..."
//! headers = { Authorization = "Bearer ..." }
//!
//! [[sinks]]
//! type = "file"
//! path = "findings.jsonl"
//! format = "asff"
//! product_account = "999988887777" # asff only: who imports the findings (default: the account bunker runs as)
//! ```
//!
//! An ASFF finding's `ProductArn` names the account that imports it into Security Hub and the
//! region it is imported into — the log-archive or security account, not the member account the
//! activity happened in (that one is its `AwsAccountId`). Security Hub refuses a finding whose
//! `ProductArn` is not the importer's own `product/<account>/default`. A sink takes it from
//! `product_arn`, or `product_account` and the region of the AWS configuration, or else from STS
//! `GetCallerIdentity`, asked once when the sinks are built; a sink that can learn neither is
//! refused then, not when its first finding is rejected.
//!
//! Delivery is at least once: `send` fails when any sink did not take all of its alerts, the
//! worker then keeps its SQS message and the batch is retried, so a receiver may see an alert
//! twice. Alert ids are stable, so receivers deduplicate on them (FIFO queues do it themselves:
//! the deduplication id is derived from the alert's id, count and last match).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::alert::Alert;
use crate::render::{Format, RenderContext, render};
use crate::rule::Severity;
use crate::{DetectError, Result};

/// SQS takes at most 10 messages per `SendMessageBatch`.
const SQS_BATCH_MESSAGES: usize = 10;
/// The smallest maximum message size a queue can have had (SQS's limit before 2025, and what
/// existing queues may still be set to), used for one message and for a whole batch.
const SQS_BATCH_BYTES: usize = 256 * 1024;
/// Evidence kept when an alert is too big for one SQS message.
const SQS_SHRUNK_EVIDENCE: usize = 10;
/// Attempts at a batch's entries that SQS reports as failed through no fault of ours.
const SQS_ATTEMPTS: u32 = 3;
/// Attempts at one webhook post.
const WEBHOOK_ATTEMPTS: u32 = 3;
/// The first wait between attempts; doubled each time.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The longest `Retry-After` honoured: the worker's batch is waiting.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);
/// How much of an error response body goes into the error.
const ERROR_BODY_CHARS: usize = 200;

const fn default_min_severity() -> Severity {
    Severity::Info
}

/// How long one webhook request may take when `timeout_secs` is not set.
const DEFAULT_WEBHOOK_TIMEOUT_SECS: u64 = 10;

/// Which kind of sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// One JSON object per line on standard output.
    Stdout,
    /// JSON lines appended to a file, synced to disk before `send` returns.
    File,
    /// Messages on an SQS queue, one alert per message.
    Sqs,
    /// One HTTP POST per alert (Slack incoming webhooks and the like).
    Webhook,
}

impl SinkKind {
    fn name(self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File => "file",
            SinkKind::Sqs => "sqs",
            SinkKind::Webhook => "webhook",
        }
    }

    /// The keys a sink of this kind takes besides `type`, `format` and `min_severity`.
    fn own_keys(self) -> &'static [&'static str] {
        match self {
            SinkKind::Stdout => &[],
            SinkKind::File => &["path"],
            SinkKind::Sqs => &["queue_url"],
            SinkKind::Webhook => &["url", "headers", "timeout_secs"],
        }
    }
}

/// The keys of every kind of sink.
const COMMON_KEYS: [&str; 3] = ["type", "format", "min_severity"];
/// The keys only an `asff` sink takes, whatever its kind.
const ASFF_KEYS: [&str; 2] = ["product_account", "product_arn"];

/// One `[[sinks]]` entry of the configuration, as written.
///
/// Its `Debug` leaves out a webhook's path and query and every header value: Slack webhook
/// URLs and authorization headers are credentials, and configurations end up in logs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Which kind of sink (`type` in the file).
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// The shape alerts are rendered in; `native` by default, `slack` for webhooks.
    #[serde(default)]
    pub format: Option<Format>,
    /// Alerts below this severity are not sent to this sink.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// `file`: the file to append to; parent directories are created.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `sqs`: the queue's URL; a name ending in `.fifo` makes it a FIFO queue.
    #[serde(default)]
    pub queue_url: Option<String>,
    /// `webhook`: the http(s) URL to POST to. A secret for Slack.
    #[serde(default)]
    pub url: Option<String>,
    /// `webhook`: extra request headers (e.g. `Authorization`). Values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `webhook`: the time one request may take, connecting included; 10 when not set.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// `asff`: the account that imports the findings (12 digits), named by their `ProductArn`;
    /// the account bunker runs as (STS `GetCallerIdentity`) when not set.
    #[serde(default)]
    pub product_account: Option<String>,
    /// `asff`: the whole `ProductArn`, `arn:<partition>:securityhub:<region>:<account>:product/<account>/default`,
    /// for findings imported in another region than bunker's own.
    #[serde(default)]
    pub product_arn: Option<String>,
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self.headers.keys().map(|k| (k.as_str(), "<redacted>")).collect();
        f.debug_struct("SinkConfig")
            .field("kind", &self.kind)
            .field("format", &self.format)
            .field("min_severity", &self.min_severity)
            .field("path", &self.path)
            .field("queue_url", &self.queue_url)
            .field("url", &self.url.as_deref().map(redacted_url))
            .field("headers", &headers)
            .field("timeout_secs", &self.timeout_secs)
            .field("product_account", &self.product_account)
            .field("product_arn", &self.product_arn)
            .finish()
    }
}

/// A URL with only its scheme, host and port left: `https://hooks.slack.com/…`.
fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}/…", parsed.scheme(), parsed.host_str().unwrap_or(""))
        }
        Err(_) => "<unparsable URL, redacted>".into(),
    }
}

/// The configured sinks, validated and with their clients built.
pub struct Sinks {
    sinks: Vec<Sink>,
}

impl fmt::Debug for Sinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.sinks.iter().map(|s| &s.name)).finish()
    }
}

struct Sink {
    /// How errors name the sink: never with a secret in it.
    name: String,
    format: Format,
    min_severity: Severity,
    target: Target,
    /// What the rendering needs to know besides the alert; for `asff`, the importer's account
    /// and region, which every finding's `ProductArn` names.
    ctx: RenderContext,
}

enum Target {
    Stdout,
    File {
        path: PathBuf,
        /// Two sends into one file must not interleave their lines.
        lock: Arc<Mutex<()>>,
    },
    Sqs {
        client: aws_sdk_sqs::Client,
        queue_url: String,
        fifo: bool,
    },
    Webhook {
        client: reqwest::Client,
        url: reqwest::Url,
        headers: HeaderMap,
    },
}

impl Sinks {
    /// No sinks: `send` does nothing.
    pub fn empty() -> Sinks {
        Sinks { sinks: Vec::new() }
    }

    /// Validates the configuration and builds every sink's client. An `sqs` sink needs `aws`.
    ///
    /// `ctx` is what findings say of where they are imported: its region (the AWS
    /// configuration's) and, if the caller knows it, the importing account. An `asff` sink's own
    /// `product_arn` or `product_account` come first; without them and without `ctx.account`, the
    /// account `aws` signs as is asked of STS — once, however many sinks need it.
    pub async fn build(
        configs: &[SinkConfig],
        aws: Option<&aws_config::SdkConfig>,
        ctx: RenderContext,
    ) -> Result<Sinks> {
        let mut sinks = Vec::with_capacity(configs.len());
        let mut caller = CallerAccount::new(aws, ctx.account.clone());
        for (index, config) in configs.iter().enumerate() {
            let invalid = |reason: String| DetectError::InvalidSink {
                sink: format!("sinks[{index}] ({})", config.kind.name()),
                reason,
            };
            check_keys(config).map_err(invalid)?;
            let mut sink = build_one(config, aws).map_err(invalid)?;
            sink.ctx = if sink.format == Format::Asff {
                importer(config, &ctx, &mut caller).await.map_err(invalid)?
            } else {
                ctx.clone()
            };
            sinks.push(sink);
        }
        Ok(Sinks { sinks })
    }

    /// Sends every sink the alerts at or above its `min_severity`, all sinks at once.
    ///
    /// Every sink is tried even when another fails. An error means some sink may not have taken
    /// some alerts: the caller must not acknowledge their source (the worker keeps its message
    /// and retries, so the sinks that succeeded see the alerts again).
    pub async fn send(&self, alerts: &[Alert]) -> Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        let sends = self
            .sinks
            .iter()
            .map(|sink| async move { sink.send(alerts).await.map_err(|reason| (sink.name.clone(), reason)) });
        let failures: Vec<(String, String)> =
            futures::future::join_all(sends).await.into_iter().filter_map(|r| r.err()).collect();
        match failures.len() {
            0 => Ok(()),
            1 => {
                let (sink, reason) = failures.into_iter().next().unwrap_or_default();
                Err(DetectError::Sink { sink, reason })
            }
            _ => Err(DetectError::Sink {
                sink: failures.iter().map(|(sink, _)| sink.as_str()).collect::<Vec<_>>().join(", "),
                reason: failures
                    .iter()
                    .map(|(sink, reason)| format!("{sink}: {reason}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// How many sinks there are.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether there are no sinks.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

/// Refuses keys that belong to another kind of sink: `deny_unknown_fields` cannot see them, and
/// a `url` on a file sink is a mistake the operator wants to hear about.
fn check_keys(config: &SinkConfig) -> std::result::Result<(), String> {
    let present = [
        ("path", config.path.is_some()),
        ("queue_url", config.queue_url.is_some()),
        ("url", config.url.is_some()),
        ("headers", !config.headers.is_empty()),
        ("timeout_secs", config.timeout_secs.is_some()),
        ("product_account", config.product_account.is_some()),
        ("product_arn", config.product_arn.is_some()),
    ];
    let own = config.kind.own_keys();
    let asff = config.format == Some(Format::Asff);
    for (key, is_set) in present {
        if !is_set {
            continue;
        }
        if ASFF_KEYS.contains(&key) {
            if !asff {
                return Err(format!("`{key}` names the importer of ASFF findings: it needs format = \"asff\""));
            }
            continue;
        }
        if !own.contains(&key) {
            let allowed = COMMON_KEYS.iter().chain(own).copied().collect::<Vec<_>>().join(", ");
            return Err(format!("`{key}` is not a key of a {} sink (its keys: {allowed})", config.kind.name()));
        }
    }
    if config.product_account.is_some() && config.product_arn.is_some() {
        return Err("`product_account` and `product_arn` both name the importing account: set one".into());
    }
    Ok(())
}

/// The account the AWS configuration signs as, asked of STS at most once.
struct CallerAccount<'a> {
    aws: Option<&'a aws_config::SdkConfig>,
    /// The answer, or why there is none; `None` until asked.
    resolved: Option<std::result::Result<String, String>>,
}

impl<'a> CallerAccount<'a> {
    /// `known` is an account the caller already knows to be the importer: STS is not asked.
    fn new(aws: Option<&'a aws_config::SdkConfig>, known: Option<String>) -> CallerAccount<'a> {
        CallerAccount { aws, resolved: known.map(Ok) }
    }

    async fn get(&mut self) -> std::result::Result<String, String> {
        if let Some(resolved) = &self.resolved {
            return resolved.clone();
        }
        let resolved = match self.aws {
            None => Err("no AWS configuration was given to ask STS with".to_owned()),
            Some(aws) => match aws_sdk_sts::Client::new(aws).get_caller_identity().send().await {
                Ok(identity) => match identity.account() {
                    Some(account) if is_account_id(account) => Ok(account.to_owned()),
                    other => Err(format!("STS GetCallerIdentity answered no account id ({other:?})")),
                },
                Err(e) => Err(format!("STS GetCallerIdentity failed: {}", aws_sdk_sts::error::DisplayErrorContext(&e))),
            },
        };
        self.resolved = Some(resolved.clone());
        resolved
    }
}

/// Whether `text` is an AWS account id: 12 digits.
fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The account and region an `asff` sink's findings are imported into, from its configuration,
/// the caller's context, or the account bunker runs as.
async fn importer(
    config: &SinkConfig,
    ctx: &RenderContext,
    caller: &mut CallerAccount<'_>,
) -> std::result::Result<RenderContext, String> {
    if let Some(arn) = &config.product_arn {
        let (account, region) = parse_product_arn(arn).map_err(|reason| format!("product_arn: {reason}"))?;
        return Ok(RenderContext { account: Some(account), region: Some(region) });
    }
    let account = match &config.product_account {
        Some(account) if is_account_id(account) => account.clone(),
        Some(account) => return Err(format!("product_account must be a 12-digit AWS account id, not {account:?}")),
        None => caller.get().await.map_err(|reason| {
            format!(
                "an asff finding's ProductArn names the account that imports it, and the account bunker runs as \
                 could not be found ({reason}): set `product_account = \"<12-digit account id>\"` in this sink"
            )
        })?,
    };
    let region = ctx.region.clone().ok_or(
        "an asff finding's ProductArn names the region it is imported into, and the AWS configuration has none: \
         set AWS_REGION, or `product_arn` in this sink",
    )?;
    Ok(RenderContext { account: Some(account), region: Some(region) })
}

/// The account and region of a custom integration's ProductArn,
/// `arn:<partition>:securityhub:<region>:<account>:product/<account>/default` — the only form an
/// account may import its own findings under.
fn parse_product_arn(arn: &str) -> std::result::Result<(String, String), String> {
    let form = "arn:<partition>:securityhub:<region>:<account>:product/<account>/default";
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return Err(format!("{arn:?} is not of the form {form}"));
    };
    if prefix != "arn" || service != "securityhub" || resource != format!("product/{account}/default") {
        return Err(format!("{arn:?} is not of the form {form}"));
    }
    if !is_account_id(account) {
        return Err(format!("{account:?} is not a 12-digit account id"));
    }
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("{region:?} is not a region"));
    }
    let expected = crate::render::partition(region);
    if partition != expected {
        return Err(format!("region {region} is in partition {expected}, not {partition}"));
    }
    Ok((account.to_owned(), region.to_owned()))
}

fn build_one(config: &SinkConfig, aws: Option<&aws_config::SdkConfig>) -> std::result::Result<Sink, String> {
    let format = config.format.unwrap_or(match config.kind {
        SinkKind::Webhook => Format::Slack,
        _ => Format::Native,
    });
    let (name, target) = match config.kind {
        SinkKind::Stdout => ("stdout".to_owned(), Target::Stdout),
        SinkKind::File => {
            let path = config.path.clone().filter(|p| !p.as_os_str().is_empty()).ok_or("`path` is required")?;
            (format!("file {}", path.display()), Target::File { path, lock: Arc::new(Mutex::new(())) })
        }
        SinkKind::Sqs => {
            let queue_url = config.queue_url.clone().ok_or("`queue_url` is required")?;
            http_url(&queue_url).map_err(|reason| format!("queue_url: {reason}"))?;
            let aws = aws.ok_or(
                "an sqs sink needs AWS configuration (credentials and region), and none was given to build it",
            )?;
            let fifo = queue_url.ends_with(".fifo");
            let client = aws_sdk_sqs::Client::new(aws);
            (format!("sqs {queue_url}"), Target::Sqs { client, queue_url, fifo })
        }
        SinkKind::Webhook => {
            let raw = config.url.as_deref().ok_or("`url` is required")?;
            // The reason never repeats the URL: it is a secret.
            let url = http_url(raw).map_err(|reason| format!("url: {reason}"))?;
            let timeout_secs = config.timeout_secs.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_SECS);
            if !(1..=300).contains(&timeout_secs) {
                return Err(format!("timeout_secs must be between 1 and 300, not {timeout_secs}"));
            }
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            for (key, value) in &config.headers {
                let name = HeaderName::from_bytes(key.as_bytes())
                    .map_err(|_| format!("`{key}` is not a valid header name"))?;
                let mut value = HeaderValue::from_str(value)
                    .map_err(|_| format!("the value of header `{key}` is not a valid header value"))?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(timeout_secs))
                // A webhook that redirects is misconfigured; following it would turn the POST
                // into a GET and could carry the headers elsewhere.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e.without_url())))?;
            let host = url.host_str().unwrap_or_default().to_owned();
            (format!("webhook {host}"), Target::Webhook { client, url, headers })
        }
    };
    Ok(Sink { name, format, min_severity: config.min_severity, target, ctx: RenderContext::default() })
}

/// Parses an http(s) URL with a host; the error does not repeat the URL.
fn http_url(raw: &str) -> std::result::Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be an http or https URL, not {}:", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(url)
}

impl Sink {
    /// Sends this sink's share of `alerts`; the error is the reason, without the sink's name.
    async fn send(&self, alerts: &[Alert]) -> std::result::Result<(), String> {
        let ctx = &self.ctx;
        let selected: Vec<&Alert> = alerts.iter().filter(|a| a.severity >= self.min_severity).collect();
        if selected.is_empty() {
            return Ok(());
        }
        match &self.target {
            Target::Stdout => {
                let lines = self.json_lines(&selected, ctx);
                blocking(move || write_stdout(&lines)).await
            }
            Target::File { path, lock } => {
                let lines = self.json_lines(&selected, ctx);
                let (path, lock) = (path.clone(), lock.clone());
                blocking(move || {
                    let _one_writer = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    append_durably(&path, &lines)
                })
                .await
            }
            Target::Sqs { client, queue_url, fifo } => {
                send_sqs(client, queue_url, *fifo, &selected, self.format, ctx).await
            }
            Target::Webhook { client, url, headers } => {
                for (sent, alert) in selected.iter().enumerate() {
                    let body = serde_json::to_vec(&render(alert, self.format, ctx)).map_err(|e| e.to_string())?;
                    post(client, url, headers, body).await.map_err(|reason| {
                        format!("alert {}: {reason} ({sent} of {} alerts delivered)", alert.id, selected.len())
                    })?;
                }
                Ok(())
            }
        }
    }

    fn json_lines(&self, alerts: &[&Alert], ctx: &RenderContext) -> Vec<u8> {
        let mut lines = Vec::new();
        for alert in alerts {
            // Writing a `Value` into a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut lines, &render(alert, self.format, ctx));
            lines.push(b'\n');
        }
        lines
    }
}

/// Runs blocking file or terminal I/O off the async runtime's threads.
async fn blocking(work: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> std::result::Result<(), String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the writing task failed: {e}")),
    }
}

fn write_stdout(lines: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(lines)?;
    out.flush()
}

/// Appends whole lines and syncs them to disk, so that they survive a crash once this returns
/// (the worker acknowledges its message next). A failed write is cut back off, so the file never
/// keeps half a line for the next append to run into.
fn append_durably(path: &Path, lines: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    let created = !path.exists();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let start = file.metadata()?.len();
    let written = file.write_all(lines).and_then(|()| file.flush()).and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = file.set_len(start);
        return Err(e);
    }
    if created {
        // A new file's directory entry must reach the disk too, or the file can vanish whole.
        #[cfg(unix)]
        std::fs::File::open(parent.unwrap_or(Path::new(".")))?.sync_all()?;
    }
    Ok(())
}

/// One SQS message, ready to batch.
struct Outgoing {
    entry: SendMessageBatchRequestEntry,
    alert_id: String,
    bytes: usize,
}

async fn send_sqs(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    fifo: bool,
    alerts: &[&Alert],
    format: Format,
    ctx: &RenderContext,
) -> std::result::Result<(), String> {
    let mut outgoing = Vec::with_capacity(alerts.len());
    for (i, alert) in alerts.iter().enumerate() {
        outgoing.push(sqs_message(i, alert, fifo, format, ctx)?);
    }
    let mut failures: Vec<String> = Vec::new();
    let sizes: Vec<usize> = outgoing.iter().map(|m| m.bytes).collect();
    let mut outgoing = outgoing.into_iter();
    for len in batch_lengths(&sizes) {
        failures.extend(send_batch(client, queue_url, outgoing.by_ref().take(len).collect()).await?);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} alerts not sent: {}", failures.len(), alerts.len(), failures.join("; ")))
    }
}

/// Splits messages of these sizes, in order, into batches SQS takes: at most 10 messages and
/// 256 KiB each.
fn batch_lengths(sizes: &[usize]) -> Vec<usize> {
    let mut lengths = Vec::new();
    let (mut len, mut bytes) = (0, 0);
    for &size in sizes {
        if len == SQS_BATCH_MESSAGES || (len > 0 && bytes + size > SQS_BATCH_BYTES) {
            lengths.push(len);
            (len, bytes) = (0, 0);
        }
        len += 1;
        bytes += size;
    }
    if len > 0 {
        lengths.push(len);
    }
    lengths
}

fn sqs_message(
    index: usize,
    alert: &Alert,
    fifo: bool,
    format: Format,
    ctx: &RenderContext,
) -> std::result::Result<Outgoing, String> {
    let attribute = |value: &str| MessageAttributeValue::builder().data_type("String").string_value(value).build();
    let severity = attribute(alert.severity.name()).map_err(|e| e.to_string())?;
    let rule_id = attribute(&alert.rule_id).map_err(|e| e.to_string())?;
    // Attributes count towards the message size: name, type and value.
    let attribute_bytes = "severity".len() + alert.severity.name().len() + "rule_id".len() + alert.rule_id.len() + 12;
    let body = sqs_body(alert, format, ctx, SQS_BATCH_BYTES - attribute_bytes)?;
    let bytes = body.len() + attribute_bytes;
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(format!("m{index}"))
        .message_body(body)
        .message_attributes("severity", severity)
        .message_attributes("rule_id", rule_id);
    if fifo {
        // One group per rule keeps each rule's alerts in order without serializing all of them;
        // the deduplication id changes only when the alert does, so SQS drops redeliveries.
        let digest = Sha256::digest(format!("{}\n{}\n{}", alert.id, alert.count, alert.last_seen.to_rfc3339()));
        entry = entry.message_group_id(&alert.rule_id).message_deduplication_id(hex::encode(digest));
    }
    let entry = entry.build().map_err(|e| e.to_string())?;
    Ok(Outgoing { entry, alert_id: alert.id.clone(), bytes })
}

/// The rendered alert, cut down to its first pieces of evidence if it does not fit a message.
fn sqs_body(
    alert: &Alert,
    format: Format,
    ctx: &RenderContext,
    max_bytes: usize,
) -> std::result::Result<String, String> {
    let body = render(alert, format, ctx).to_string();
    if body.len() <= max_bytes {
        return Ok(body);
    }
    let mut smaller = alert.clone();
    smaller.event_ids.truncate(SQS_SHRUNK_EVIDENCE);
    smaller.source_keys.truncate(SQS_SHRUNK_EVIDENCE);
    smaller.details.clear();
    smaller.details.insert("bunker_truncated".into(), serde_json::json!("the alert was too big for an SQS message"));
    let body = render(&smaller, format, ctx).to_string();
    if body.len() <= max_bytes {
        Ok(body)
    } else {
        Err(format!("alert {} renders to {} bytes, more than an SQS message holds", alert.id, body.len()))
    }
}

/// Sends one batch, retrying the entries SQS failed through no fault of the sender. Returns the
/// entries still failed, as "alert id (code: message)"; a failed call is an error.
async fn send_batch(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: Vec<Outgoing>,
) -> std::result::Result<Vec<String>, String> {
    let mut pending = batch;
    let mut failed_for_good = Vec::new();
    for attempt in 1..=SQS_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        // Throttling and 5xx on the call itself are retried inside the SDK.
        let out = client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(pending.iter().map(|m| m.entry.clone()).collect()))
            .send()
            .await
            .map_err(|e| format!("SendMessageBatch failed: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
        let mut retry = Vec::new();
        for failed in out.failed() {
            let Some(at) = pending.iter().position(|m| m.entry.id() == failed.id()) else { continue };
            let message = pending.swap_remove(at);
            if failed.sender_fault() || attempt == SQS_ATTEMPTS {
                let reason = failed.message().unwrap_or("");
                failed_for_good.push(format!("{} ({}: {reason})", message.alert_id, failed.code()));
            } else {
                retry.push(message);
            }
        }
        if retry.is_empty() {
            break;
        }
        pending = retry;
    }
    Ok(failed_for_good)
}

fn backoff(attempt: u32) -> Duration {
    BACKOFF_BASE * 2u32.pow(attempt.saturating_sub(1))
}

/// POSTs one body, retrying connection failures, timeouts, 429 and 5xx. Errors name neither the
/// URL nor the headers.
async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> std::result::Result<(), String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client.post(url.clone()).headers(headers.clone()).body(body.clone()).send().await;
        let (retryable, wait, reason) = match sent {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs).min(RETRY_AFTER_CAP));
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(ERROR_BODY_CHARS).collect();
                let reason = if text.trim().is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {}", text.trim())
                };
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    (true, retry_after.unwrap_or_else(|| backoff(attempt)), reason)
                } else {
                    (status.is_server_error(), backoff(attempt), reason)
                }
            }
            // The request never got an answer (refused, reset, timed out): worth another try.
            Err(e) => (!e.is_builder(), backoff(attempt), error_chain(&e.without_url())),
        };
        if !retryable || attempt >= WEBHOOK_ATTEMPTS {
            return Err(format!("{reason} (after {attempt} attempt{})", if attempt == 1 { "" } else { "s" }));
        }
        tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, %reason, "webhook post failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    use chrono::{DateTime, Utc};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The secret part of the test webhook URLs: it must never show up in errors or Debug.
    const SECRET_PATH: &str = "/services/T0000/B0000/XXXXsecretXXXX";

    #[derive(Deserialize)]
    struct ConfigFile {
        sinks: Vec<SinkConfig>,
    }

    fn configs(toml_text: &str) -> std::result::Result<Vec<SinkConfig>, toml::de::Error> {
        toml::from_str::<ConfigFile>(toml_text).map(|f| f.sinks)
    }

    /// The region of the AWS configuration the tests' sinks are built with.
    const REGION: &str = "eu-west-1";

    async fn sinks(toml_text: &str) -> Sinks {
        let configs = configs(toml_text).expect("config parses");
        let ctx = RenderContext { account: None, region: Some(REGION.into()) };
        Sinks::build(&configs, None, ctx).await.expect("sinks build")
    }

    fn asff_file(path: &Path, extra: &str) -> String {
        format!("[[sinks]]\ntype = \"file\"\nformat = \"asff\"\npath = {:?}\n{extra}\n", path.to_str().expect("utf-8"))
    }

    fn read_findings(path: &Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).expect("read findings");
        text.lines().map(|l| serde_json::from_str(l).expect("one finding per line")).collect()
    }

    /// Issue 36: findings named the member account in `ProductArn`
    /// (`product/<member>/default`), which Security Hub refuses from the importing account.
    #[tokio::test]
    async fn asff_product_arn_names_the_importing_account_not_the_alerts_member_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("findings.jsonl");
        let sinks = sinks(&asff_file(&path, "product_account = \"999988887777\"")).await;
        let alerts = one_of_each();
        sinks.send(&alerts).await.expect("send");
        let findings = read_findings(&path);
        assert_eq!(findings.len(), alerts.len());
        let importer = crate::asff_check::Importer { account: "999988887777", region: REGION };
        for (finding, alert) in findings.iter().zip(&alerts) {
            assert_eq!(
                finding["ProductArn"], "arn:aws:securityhub:eu-west-1:999988887777:product/999988887777/default",
                "{finding:#}"
            );
            assert_eq!(finding["AwsAccountId"], alert.account.as_deref().expect("member account"));
            assert_eq!(finding["AwsAccountId"], "111122223333");
            let found = crate::asff_check::violations(finding, &importer);
            assert!(found.is_empty(), "{found:#?}");
        }
    }

    #[tokio::test]
    async fn asff_product_arn_may_name_another_region_and_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("findings.jsonl");
        let arn = "arn:aws-us-gov:securityhub:us-gov-west-1:444455556666:product/444455556666/default";
        let sinks = sinks(&asff_file(&path, &format!("product_arn = \"{arn}\""))).await;
        sinks.send(&[alert(1, Severity::High)]).await.expect("send");
        let findings = read_findings(&path);
        assert_eq!(findings[0]["ProductArn"], arn);
        assert_eq!(findings[0]["AwsAccountId"], "111122223333");
        let importer = crate::asff_check::Importer { account: "444455556666", region: "us-gov-west-1" };
        assert_eq!(crate::asff_check::violations(&findings[0], &importer), Vec::<String>::new());
    }

    /// Only one STS call is made however many sinks need the caller's account, and a caller that
    /// already knows the importer (`ctx.account`) makes none.
    #[tokio::test]
    async fn asff_sinks_take_the_importer_the_caller_knows_without_asking_sts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        let text = format!("{}{}", asff_file(&a, ""), asff_file(&b, "product_account = \"444455556666\""));
        let ctx = RenderContext { account: Some("999988887777".into()), region: Some(REGION.into()) };
        // No AWS configuration at all: asking STS would fail the build.
        let sinks = Sinks::build(&configs(&text).expect("parses"), None, ctx).await.expect("build");
        sinks.send(&[alert(1, Severity::High)]).await.expect("send");
        let arn = |path: &Path| read_findings(path)[0]["ProductArn"].as_str().expect("arn").to_owned();
        assert_eq!(arn(&a), "arn:aws:securityhub:eu-west-1:999988887777:product/999988887777/default");
        assert_eq!(arn(&b), "arn:aws:securityhub:eu-west-1:444455556666:product/444455556666/default");
    }

    #[tokio::test]
    async fn asff_sink_whose_importer_cannot_be_found_is_refused_at_build_time_saying_what_to_set() {
        // Nothing listens on the port: STS cannot answer.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let text = "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"stdout\"\nformat = \"asff\"\n";
        let ctx = RenderContext { account: None, region: Some(REGION.into()) };
        for aws in [None, Some(&aws)] {
            let err = Sinks::build(&configs(text).expect("parses"), aws, ctx.clone()).await.expect_err("no importer");
            assert!(matches!(err, DetectError::InvalidSink { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.starts_with("sinks[1] (stdout): "), "{text}");
            assert!(text.contains("set `product_account = \"<12-digit account id>\"` in this sink"), "{text}");
            let why = if aws.is_none() { "no AWS configuration" } else { "STS GetCallerIdentity failed" };
            assert!(text.contains(why), "{text}");
        }
    }

    fn alert(n: usize, severity: Severity) -> Alert {
        let time: DateTime<Utc> = DateTime::from_timestamp(1_741_000_000 + n as i64, 0).expect("time");
        Alert {
            id: format!("{n:032x}"),
            rule_id: "aws-root-console-login".into(),
            title: "Root user signed in to the console".into(),
            description: "The root user should never be used day to day.".into(),
            severity,
            mitre: vec!["T1078.004".into()],
            dedup_key: format!("aws-root-console-login|account=111122223333|n={n}"),
            first_seen: time,
            last_seen: time,
            count: 1,
            account: Some("111122223333".into()),
            region: Some("us-east-1".into()),
            principal: Some("arn:aws:iam::111122223333:root".into()),
            source_ip: Some("198.51.100.23".into()),
            event_ids: vec![format!("event-{n}")],
            source_keys: vec!["AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/03/f.json.gz".into()],
            details: serde_json::Map::new(),
        }
    }

    /// One of each severity, lowest first.
    fn one_of_each() -> Vec<Alert> {
        [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical]
            .into_iter()
            .enumerate()
            .map(|(n, severity)| alert(n, severity))
            .collect()
    }

    struct Request {
        head: String,
        body: Vec<u8>,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
            })
        }
    }

    /// A real HTTP listener on a free loopback port that records every request and answers with
    /// the scripted responses in turn (the last one for ever after).
    struct Listener {
        base: String,
        requests: Arc<Mutex<Vec<Request>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Listener {
        async fn start(script: &[(u16, &str)]) -> Listener {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let script: Vec<(u16, String)> = script.iter().map(|(s, h)| (*s, (*h).to_owned())).collect();
            let recorded = requests.clone();
            let task = tokio::spawn(async move {
                let mut served = 0;
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else { return };
                    let request = read_request(&mut stream).await;
                    recorded.lock().expect("lock").push(request);
                    let (status, extra_headers) = &script[served.min(script.len() - 1)];
                    served += 1;
                    let reply = format!(
                        "HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\nConnection: close\r\n{extra_headers}\r\nok"
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            });
            Listener { base, requests, task }
        }

        fn url(&self) -> String {
            format!("{}{SECRET_PATH}?token=querysecret", self.base)
        }

        fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Request>> {
            self.requests.lock().expect("lock")
        }
    }

    async fn read_request(stream: &mut tokio::net::TcpStream) -> Request {
        let mut data = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before the request head ended");
            data.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while data.len() < head_end + length {
            let n = stream.read(&mut chunk).await.expect("read body");
            assert!(n > 0, "connection closed before the body ended");
            data.extend_from_slice(&chunk[..n]);
        }
        Request { head, body: data[head_end..head_end + length].to_vec() }
    }

    fn webhook(url: &str, extra: &str) -> String {
        format!("[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}\n")
    }

    #[tokio::test]
    async fn webhook_posts_one_slack_message_per_alert_at_or_above_min_severity() {
        let listener = Listener::start(&[(200, "")]).await;
        let sinks = sinks(&webhook(
            &listener.url(),
            "min_severity = \"high\"\nheaders = { Authorization = \"Bearer hook-token\", X-Team = \"secops\" }",
        ))
        .await;
        sinks.send(&one_of_each()).await.expect("send");
        let requests = listener.requests();
        assert_eq!(requests.len(), 2, "high and critical only");
        for (request, severity) in requests.iter().zip(["HIGH", "CRITICAL"]) {
            assert!(
                request.head.starts_with(&format!("POST {SECRET_PATH}?token=querysecret HTTP/1.1")),
                "{}",
                request.head
            );
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert_eq!(request.header("authorization"), Some("Bearer hook-token"));
            assert_eq!(request.header("x-team"), Some("secops"));
            let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON body");
            assert!(body["text"].as_str().is_some_and(|t| t.starts_with(&format!("[{severity}]"))), "{body}");
            assert_eq!(body["blocks"][0]["type"], "header");
        }
    }

    #[tokio::test]
    async fn webhook_retries_a_server_error_and_then_delivers() {
        let listener = Listener::start(&[(500, ""), (200, "")]).await;
        let sinks = sinks(&webhook(&listener.url(), "format = \"ocsf\"")).await;
        sinks.send(&[alert(1, Severity::High)]).await.expect("delivered on the second attempt");
        let requests = listener.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].body, requests[1].body, "the retry sends the same finding");
        let body: serde_json::Value = serde_json::from_slice(&requests[1].body).expect("JSON");
        assert_eq!(body["class_uid"], 2004);
    }

    #[tokio::test]
    async fn webhook_waits_as_long_as_retry_after_says_on_429() {
        let listener = Listener::start(&[(429, "Retry-After: 1\r\n"), (200, "")]).await;
        let sinks = sinks(&webhook(&listener.url(), "")).await;
        let started = Instant::now();
        sinks.send(&[alert(1, Severity::High)]).await.expect("delivered after the wait");
        assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
        assert_eq!(listener.requests().len(), 2);
    }

    #[tokio::test]
    async fn webhook_that_keeps_failing_is_an_error_naming_the_host_but_not_the_url() {
        let listener = Listener::start(&[(503, "")]).await;
        let sinks = sinks(&webhook(&listener.url(), "headers = { Authorization = \"Bearer hook-token\" }")).await;
        let err = sinks.send(&[alert(1, Severity::High), alert(2, Severity::High)]).await.expect_err("must fail");
        assert!(matches!(err, DetectError::Sink { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("webhook 127.0.0.1") && text.contains("HTTP 503"), "{text}");
        assert!(text.contains("after 3 attempts") && text.contains("0 of 2 alerts delivered"), "{text}");
        for secret in ["secret", "hook-token", "/services"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(listener.requests().len(), 3, "three attempts at the first alert, then it stops");
    }

    #[tokio::test]
    async fn webhook_client_errors_are_not_retried() {
        let listener = Listener::start(&[(404, "")]).await;
        let sinks = sinks(&webhook(&listener.url(), "")).await;
        let err = sinks.send(&[alert(1, Severity::High)]).await.expect_err("must fail");
        assert!(err.to_string().contains("HTTP 404") && err.to_string().contains("after 1 attempt)"), "{err}");
        assert_eq!(listener.requests().len(), 1);
    }

    #[tokio::test]
    async fn webhook_nobody_listens_on_is_retried_then_an_error_without_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        // The listener is dropped: connections to the port are refused.
        let url = format!("http://127.0.0.1:{port}{SECRET_PATH}");
        let sinks = sinks(&webhook(&url, "")).await;
        let err = sinks.send(&[alert(1, Severity::High)]).await.expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("after 3 attempts"), "{text}");
        assert!(!text.contains("secret") && !text.contains("/services"), "URL leaked: {text}");
    }

    #[tokio::test]
    async fn file_sink_appends_json_lines_at_or_above_min_severity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/deeper/alerts.jsonl");
        let text = format!(
            "[[sinks]]\ntype = \"file\"\npath = {:?}\nmin_severity = \"medium\"\n\n[[sinks]]\ntype = \"file\"\npath = {:?}\nformat = \"asff\"\n",
            path.to_str().expect("utf-8"),
            dir.path().join("asff.jsonl").to_str().expect("utf-8"),
        ) + "product_account = \"999988887777\"\n";
        let sinks = sinks(&text).await;
        assert_eq!(sinks.len(), 2);
        sinks.send(&one_of_each()).await.expect("first send");
        sinks.send(&[alert(7, Severity::Low), alert(8, Severity::Critical)]).await.expect("second send");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect();
        let severities: Vec<&str> = lines.iter().filter_map(|v| v["severity"].as_str()).collect();
        assert_eq!(severities, ["medium", "high", "critical", "critical"], "appended, low and info filtered out");
        assert_eq!(lines[3]["id"], format!("{:032x}", 8));
        let asff = std::fs::read_to_string(dir.path().join("asff.jsonl")).expect("read");
        assert_eq!(asff.lines().count(), 7, "min_severity defaults to info");
        assert!(asff.lines().all(|l| l.contains("\"SchemaVersion\":\"2018-10-08\"")));
    }

    #[tokio::test]
    async fn every_sink_is_tried_when_one_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let listener = Listener::start(&[(400, "")]).await;
        let text = format!(
            "{}\n[[sinks]]\ntype = \"file\"\npath = {:?}\n",
            webhook(&listener.url(), ""),
            path.to_str().expect("utf-8")
        );
        let sinks = sinks(&text).await;
        let err = sinks.send(&[alert(1, Severity::High)]).await.expect_err("the webhook fails");
        assert!(err.to_string().contains("webhook 127.0.0.1"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 1, "the file sink still got it");
    }

    #[tokio::test]
    async fn no_sinks_and_no_alerts_send_nothing() {
        assert!(Sinks::empty().is_empty());
        Sinks::empty().send(&one_of_each()).await.expect("no sinks");
        let listener = Listener::start(&[(500, "")]).await;
        let sinks = sinks(&webhook(&listener.url(), "min_severity = \"critical\"")).await;
        sinks.send(&[]).await.expect("no alerts");
        sinks.send(&[alert(1, Severity::High)]).await.expect("below min_severity");
        assert_eq!(listener.requests().len(), 0);
    }

    #[test]
    fn unknown_types_keys_and_severities_are_refused_by_the_parser() {
        let cases = [
            ("[[sinks]]\ntype = \"kafka\"\n", "unknown variant `kafka`"),
            ("[[sinks]]\ntype = \"sqs\"\nqueue = \"https://sqs\"\n", "unknown field `queue`"),
            ("[[sinks]]\ntype = \"stdout\"\nformat = \"xml\"\n", "unknown variant `xml`"),
            ("[[sinks]]\ntype = \"stdout\"\nmin_severity = \"urgent\"\n", "unknown variant `urgent`"),
            ("[[sinks]]\nformat = \"native\"\n", "missing field `type`"),
        ];
        for (text, expected) in cases {
            let err = configs(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[tokio::test]
    async fn invalid_sinks_are_refused_at_build_time() {
        let cases = [
            (
                "[[sinks]]\ntype = \"webhook\"\nurl = \"ftp://hooks.example.com/services/XXXXsecretXXXX\"\n",
                "sinks[0] (webhook): url: must be an http or https URL, not ftp:",
            ),
            ("[[sinks]]\ntype = \"webhook\"\nurl = \"not a url secret\"\n", "sinks[0] (webhook): url: not a URL"),
            ("[[sinks]]\ntype = \"webhook\"\n", "`url` is required"),
            (
                "[[sinks]]\ntype = \"webhook\"\nurl = \"https://h.example.com/x\"\nheaders = { \"Bad Name\" = \"v\" }\n",
                "`Bad Name` is not a valid header name",
            ),
            (
                "[[sinks]]\ntype = \"webhook\"\nurl = \"https://h.example.com/x\"\ntimeout_secs = 0\n",
                "timeout_secs must be between 1 and 300",
            ),
            ("[[sinks]]\ntype = \"file\"\n", "sinks[0] (file): `path` is required"),
            (
                "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"file\"\npath = \"a.jsonl\"\nurl = \"https://h.example.com/x\"\n",
                "sinks[1] (file): `url` is not a key of a file sink (its keys: type, format, min_severity, path)",
            ),
            (
                "[[sinks]]\ntype = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/alerts\"\n",
                "sinks[0] (sqs): an sqs sink needs AWS configuration",
            ),
            ("[[sinks]]\ntype = \"sqs\"\nqueue_url = \"alerts\"\n", "sinks[0] (sqs): queue_url: not a URL"),
            (
                "[[sinks]]\ntype = \"stdout\"\nproduct_account = \"999988887777\"\n",
                "sinks[0] (stdout): `product_account` names the importer of ASFF findings: it needs format = \"asff\"",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\nformat = \"ocsf\"\nproduct_arn = \"arn:aws:securityhub:eu-west-1:999988887777:product/999988887777/default\"\n",
                "`product_arn` names the importer of ASFF findings",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\nformat = \"asff\"\nproduct_account = \"9999-8888-7777\"\n",
                "product_account must be a 12-digit AWS account id, not \"9999-8888-7777\"",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\nformat = \"asff\"\nproduct_account = \"999988887777\"\nproduct_arn = \"arn:aws:securityhub:eu-west-1:999988887777:product/999988887777/default\"\n",
                "`product_account` and `product_arn` both name the importing account: set one",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\nformat = \"asff\"\nproduct_account = \"999988887777\"\n",
                "the AWS configuration has none: set AWS_REGION, or `product_arn` in this sink",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\nformat = \"asff\"\nproduct_arn = \"arn:aws:securityhub:eu-west-1:999988887777:product/111122223333/default\"\n",
                "product_arn: \"arn:aws:securityhub:eu-west-1:999988887777:product/111122223333/default\" is not of the form",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\nformat = \"asff\"\nproduct_arn = \"arn:aws:securityhub:eu-west-1:999988887777:product/acme/scanner\"\n",
                "is not of the form arn:<partition>:securityhub:<region>:<account>:product/<account>/default",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\nformat = \"asff\"\nproduct_arn = \"arn:aws:securityhub:cn-north-1:999988887777:product/999988887777/default\"\n",
                "product_arn: region cn-north-1 is in partition aws-cn, not aws",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\nformat = \"asff\"\nproduct_arn = \"arn:aws:securityhub:eu-west-1:99998888777:product/99998888777/default\"\n",
                "product_arn: \"99998888777\" is not a 12-digit account id",
            ),
        ];
        for (text, expected) in cases {
            let configs = configs(text).expect(text);
            let err = Sinks::build(&configs, None, RenderContext::default()).await.expect_err(text);
            assert!(matches!(err, DetectError::InvalidSink { .. }), "{err:?}");
            let err = err.to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains("secret"), "the URL leaked into {err}");
        }
    }

    #[test]
    fn debug_of_a_webhook_config_hides_the_url_path_and_header_values() {
        let text = webhook(
            &format!("https://user:pw@hooks.slack.com:8443{SECRET_PATH}?token=querysecret"),
            "headers = { Authorization = \"Bearer hook-token\" }",
        );
        let config = configs(&text).expect("parses");
        let debug = format!("{config:?} {config:#?}");
        assert!(debug.contains("https://hooks.slack.com:8443/…"), "{debug}");
        assert!(debug.contains("Authorization"), "header names are not secret: {debug}");
        for secret in ["secret", "hook-token", "services", "pw", "user"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
    }

    #[tokio::test]
    async fn debug_of_built_sinks_names_them_without_secrets() {
        let sinks = sinks(&webhook(&format!("https://hooks.slack.com{SECRET_PATH}"), "")).await;
        let debug = format!("{sinks:?}");
        assert_eq!(debug, "[\"webhook hooks.slack.com\"]");
    }

    /// The worker sends from spawned tasks: the sinks and their `send` future must be shareable.
    #[test]
    fn sinks_and_their_sends_can_cross_tasks() {
        fn shared<T: Send + Sync>(_: &T) {}
        fn spawnable<F: std::future::Future + Send>(_: F) {}
        let sinks = Sinks::empty();
        shared(&sinks);
        spawnable(sinks.send(&[]));
    }

    #[test]
    fn sqs_batches_hold_at_most_ten_messages_and_256_kib() {
        assert_eq!(batch_lengths(&[100; 23]), [10, 10, 3]);
        assert_eq!(batch_lengths(&[]), Vec::<usize>::new());
        assert_eq!(batch_lengths(&[100 * 1024; 5]), [2, 2, 1]);
        assert_eq!(batch_lengths(&[256 * 1024, 1, 256 * 1024]), [1, 1, 1]);
        assert_eq!(batch_lengths(&[128 * 1024, 128 * 1024, 1]), [2, 1]);
    }

    #[test]
    fn an_alert_too_big_for_one_message_loses_evidence_not_the_alert() {
        let mut big = alert(1, Severity::High);
        big.details.insert("request_parameters".into(), serde_json::json!("x".repeat(300 * 1024)));
        big.event_ids = (0..100).map(|i| format!("event-{i}")).collect();
        let body = sqs_body(&big, Format::Native, &RenderContext::default(), SQS_BATCH_BYTES).expect("shrunk");
        assert!(body.len() <= SQS_BATCH_BYTES);
        let value: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(value["id"], big.id);
        assert_eq!(value["event_ids"].as_array().map(Vec::len), Some(SQS_SHRUNK_EVIDENCE));
        assert!(value["details"]["bunker_truncated"].is_string());
    }
}
