//! `bunker gen`: a deterministic synthetic log archive, laid out and encoded exactly as AWS delivers
//! logs to an organisation's log-archive bucket.
//!
//! What it writes under the output directory (each a gzip file, keyed as AWS keys it):
//! - CloudTrail files of an organization trail, one per (account, region, 5-minute window) with
//!   activity, holding a heavy-tailed number of events; a few are multi-member gzip, as AWS sometimes
//!   delivers them;
//! - one CloudTrail digest file per account and day (recognised and skipped by ingest);
//! - VPC flow log files, most in the default version-2 format, some in a custom version-5 field order;
//! - Route 53 Resolver query log files (JSON lines);
//! - an ALB access log and an AWS Config history file: other AWS logs that ingest must classify as
//!   unknown and skip.
//!
//! How data flows: [`SynthConfig`] is validated, then a [`world::World`] (accounts, principals, VPCs,
//! …) is drawn from the seed, then a plan lists every file with its key and record count, and
//! finally the files are generated and written in parallel. Each file draws from its own random
//! stream, derived from the seed and its position in the plan, so the archive is byte-identical
//! whatever the thread count; no timestamp comes from the clock.
//!
//! The counts in [`SynthSummary`] are summed from what the writers actually wrote, not from the
//! plan, so they stay exact whatever is added to the plan. That is the seam for labelled attack
//! scenarios: a scenario appends its own [`plan::FileJob`]s (or a new `Content` kind carrying
//! fully specified records) to the plan before the write phase, and its records are counted like
//! any others.

mod cloudtrail;
mod dns;
mod emit;
mod extra;
mod plan;
mod vpcflow;
mod weighted;
mod world;

use std::io::Write as _;
use std::path::Path;

use chrono::NaiveDate;
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{IngestError, Result};
use plan::{Content, FileJob};

/// First day of the default archive: a Monday, so the default week has a weekday/weekend rhythm.
pub const DEFAULT_START: NaiveDate = match NaiveDate::from_ymd_opt(2025, 3, 3) {
    Some(date) => date,
    None => NaiveDate::MIN,
};
/// Days covered by default.
pub const DEFAULT_DAYS: u32 = 7;
/// Member accounts by default.
pub const DEFAULT_ACCOUNTS: u32 = 5;
/// Principals across the organisation by default.
pub const DEFAULT_PRINCIPALS: u32 = 300;
/// Regions by default; the first is the home region and carries most of the activity.
pub const DEFAULT_REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "us-west-2"];
/// Bucket named in digest files by default.
pub const DEFAULT_BUCKET: &str = "bunker-demo-log-archive";

/// What to generate. Build it with [`SynthConfig::new`] and adjust the public fields; [`generate`]
/// checks the ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    /// CloudTrail records to write, across all CloudTrail files.
    pub cloudtrail_events: u64,
    /// VPC flow log rows to write (including `NODATA`/`SKIPDATA` rows, which are rows of the table
    /// too). Defaults to `cloudtrail_events`.
    pub vpcflow_records: u64,
    /// Route 53 Resolver query log lines to write. Defaults to `cloudtrail_events / 2`.
    pub dns_records: u64,
    /// Seed of every random choice; the same config always gives byte-identical files.
    pub seed: u64,
    /// First UTC day of the archive.
    pub start: NaiveDate,
    /// Number of days covered, 1 to 366.
    pub days: u32,
    /// Number of member accounts, 1 to 100.
    pub accounts: u32,
    /// Regions in use, 1 to 8; the first is the home region.
    pub regions: Vec<String>,
    /// Approximate number of principals across the organisation (each account gets at least 12).
    pub principals: u32,
    /// Bucket name written inside digest files.
    pub bucket: String,
}

impl SynthConfig {
    /// A config with the defaults: flow records equal to `cloudtrail_events`, DNS records half of
    /// it, a week from [`DEFAULT_START`], [`DEFAULT_ACCOUNTS`] accounts in [`DEFAULT_REGIONS`].
    pub fn new(cloudtrail_events: u64, seed: u64) -> Self {
        SynthConfig {
            cloudtrail_events,
            vpcflow_records: cloudtrail_events,
            dns_records: cloudtrail_events / 2,
            seed,
            start: DEFAULT_START,
            days: DEFAULT_DAYS,
            accounts: DEFAULT_ACCOUNTS,
            regions: DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect(),
            principals: DEFAULT_PRINCIPALS,
            bucket: DEFAULT_BUCKET.to_string(),
        }
    }

    /// Checks every range; the error says which field is wrong.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(IngestError::Config(format!("synthetic archive: {msg}")));
        if !(1..=366).contains(&self.days) {
            return fail(format!("days must be 1 to 366, not {}", self.days));
        }
        if !(1..=100).contains(&self.accounts) {
            return fail(format!("accounts must be 1 to 100, not {}", self.accounts));
        }
        if !(1..=8).contains(&self.regions.len()) {
            return fail(format!("between 1 and 8 regions are needed, not {}", self.regions.len()));
        }
        for region in &self.regions {
            let shaped = region.split('-').count() == 3
                && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !shaped {
                return fail(format!("{region:?} is not a region name like us-east-1"));
            }
        }
        if self.bucket.is_empty() {
            return fail("bucket must not be empty".to_string());
        }
        if self.start.checked_add_days(chrono::Days::new(u64::from(self.days))).is_none() {
            return fail(format!("{} plus {} days is out of range", self.start, self.days));
        }
        Ok(())
    }
}

/// Exactly what [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SynthSummary {
    /// Files written, of every kind.
    pub objects: u64,
    /// Bytes written (gzip, as stored).
    pub bytes: u64,
    /// Bytes before compression, for throughput figures.
    pub uncompressed_bytes: u64,
    /// CloudTrail files.
    pub cloudtrail_objects: u64,
    /// CloudTrail records across them.
    pub cloudtrail_events: u64,
    /// VPC flow log files.
    pub vpcflow_objects: u64,
    /// Flow log rows across them, header lines excluded.
    pub vpcflow_records: u64,
    /// Route 53 Resolver query log files.
    pub dns_objects: u64,
    /// Query log lines across them.
    pub dns_records: u64,
    /// CloudTrail digest files.
    pub digest_objects: u64,
    /// Files of other AWS logs, which ingest classifies as unknown.
    pub unknown_objects: u64,
}

/// Writes the archive described by `config` under `out`, creating directories as needed and
/// overwriting files of the same name (a rerun with the same config rewrites identical bytes).
pub fn generate(out: &Path, config: &SynthConfig) -> Result<SynthSummary> {
    config.validate()?;
    let world = world::World::build(config, &mut rng_for(config.seed, Stream::World));
    let jobs = plan::plan(config, &world, &mut rng_for(config.seed, Stream::Plan));
    let catalog = cloudtrail::Catalog::new();
    let written = jobs
        .par_iter()
        .enumerate()
        .map(|(index, job)| write_file(out, config, &world, &catalog, index as u64, job))
        .collect::<Result<Vec<_>>>()?;
    let mut summary = SynthSummary::default();
    for file in written {
        summary.objects += 1;
        summary.bytes += file.bytes;
        summary.uncompressed_bytes += file.uncompressed_bytes;
        match file.kind {
            Kind::CloudTrail => {
                summary.cloudtrail_objects += 1;
                summary.cloudtrail_events += file.records;
            }
            Kind::VpcFlow => {
                summary.vpcflow_objects += 1;
                summary.vpcflow_records += file.records;
            }
            Kind::Dns => {
                summary.dns_objects += 1;
                summary.dns_records += file.records;
            }
            Kind::Digest => summary.digest_objects += 1,
            Kind::Unknown => summary.unknown_objects += 1,
        }
    }
    tracing::info!(
        objects = summary.objects,
        bytes = summary.bytes,
        cloudtrail_events = summary.cloudtrail_events,
        "synthetic archive written"
    );
    Ok(summary)
}

/// Which independent random stream a draw belongs to.
#[derive(Debug, Clone, Copy)]
enum Stream {
    /// The organisation.
    World,
    /// The list of files.
    Plan,
    /// The content of the file at this position in the plan.
    File(u64),
}

/// A generator for one stream. ChaCha streams from one key are independent, so adding files to
/// the plan never changes the content of the files before them.
fn rng_for(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(match stream {
        Stream::World => 0,
        Stream::Plan => 1,
        Stream::File(index) => 2 + index,
    });
    rng
}

/// What kind of file a job wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CloudTrail,
    Digest,
    VpcFlow,
    Dns,
    Unknown,
}

/// One written file.
#[derive(Debug)]
struct Written {
    kind: Kind,
    records: u64,
    bytes: u64,
    uncompressed_bytes: u64,
}

fn write_file(
    out: &Path,
    config: &SynthConfig,
    world: &world::World,
    catalog: &cloudtrail::Catalog,
    index: u64,
    job: &FileJob,
) -> Result<Written> {
    let mut rng = rng_for(config.seed, Stream::File(index));
    let mut raw = Vec::new();
    let (kind, records) = match &job.content {
        Content::CloudTrail(window) => (Kind::CloudTrail, cloudtrail::write(&mut raw, &mut rng, world, catalog, window)),
        Content::Digest(digest) => {
            extra::write_digest(&mut raw, &mut rng, world, digest);
            (Kind::Digest, 0)
        }
        Content::VpcFlow(window) => (Kind::VpcFlow, vpcflow::write(&mut raw, &mut rng, world, window)),
        Content::Dns(window) => (Kind::Dns, dns::write(&mut raw, &mut rng, world, window)),
        Content::Foreign(foreign) => {
            extra::write_foreign(&mut raw, &mut rng, world, foreign);
            (Kind::Unknown, 0)
        }
    };
    // AWS occasionally delivers CloudTrail files as several gzip members; readers that stop after
    // the first member silently lose events, so the archive exercises that case.
    let members = if kind == Kind::CloudTrail && raw.len() > 2 && rng.random_bool(0.05) { 2 } else { 1 };
    let path = out.join(&job.key);
    let io_err = |source| IngestError::Io { path: path.clone(), source };
    let gz = gzip(&raw, members).map_err(io_err)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    std::fs::write(&path, &gz).map_err(io_err)?;
    Ok(Written { kind, records, bytes: gz.len() as u64, uncompressed_bytes: raw.len() as u64 })
}

/// `raw` compressed as `members` concatenated gzip members (split at byte boundaries, as a
/// streaming writer that flushes mid-file would).
fn gzip(raw: &[u8], members: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 6 + 64);
    let chunk = raw.len().div_ceil(members.max(1)).max(1);
    for part in raw.chunks(chunk) {
        // Level 1: the archive is regenerated often and compression ratio hardly matters here.
        let mut encoder = GzEncoder::new(out, Compression::fast());
        encoder.write_all(part)?;
        out = encoder.finish()?;
    }
    if raw.is_empty() {
        out = GzEncoder::new(out, Compression::fast()).finish()?;
    }
    Ok(out)
}
