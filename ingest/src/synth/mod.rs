//! `bunker gen`: a deterministic synthetic log archive, laid out and encoded exactly as AWS delivers
//! logs to an organisation's log-archive bucket.
//!
//! What it writes under the output directory (each a gzip file, keyed as AWS keys it):
//! - CloudTrail files of an organization trail, one per (account, region, 5-minute window) with
//!   activity, holding a heavy-tailed number of events; a few are multi-member gzip, as AWS sometimes
//!   delivers them;
//! - one CloudTrail digest file per account and day, listing the log files of the hour it covers
//!   (recognised and skipped by ingest);
//! - VPC flow log files, most in the default version-2 format, some in a custom version-5 field order;
//! - Route 53 Resolver query log files (JSON lines);
//! - an ALB access log and an AWS Config snapshot: other AWS logs that ingest must classify as
//!   unknown and skip.
//!
//! How data flows: [`SynthConfig`] is validated, then a `world::World` (accounts, principals, VPCs,
//! …) is drawn from the seed, then a plan lists every file with its key and record count, and
//! finally the files are generated and written in parallel. Each file draws from its own random
//! stream, derived from the seed and its position in the plan, so the archive is byte-identical
//! whatever the thread count; no timestamp comes from the clock.
//!
//! The counts in [`SynthSummary`] are summed from what the writers actually wrote, not from the
//! plan, so they stay exact whatever is added to the plan. That is the seam for labelled attack
//! scenarios: a scenario appends its own `plan::FileJob`s (or a new `Content` kind carrying
//! fully specified records) to the plan before the write phase, and its records are counted like
//! any others.

mod cloudtrail;
mod dns;
mod emit;
mod extra;
pub mod keys;
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
    /// A background nothing in the built-in rule pack flags, for injecting labelled attacks into:
    /// no root user activity, console sign-ins with MFA, no IAM credentials created, no mining or
    /// blocklisted DNS names, no NXDOMAIN or access-denied bursts, no admin port accepted from the
    /// internet, no bulk egress. When false (the default), the background keeps the suspicious
    /// activity a real organisation has, and its bytes do not depend on this field.
    pub benign: bool,
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
            benign: false,
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
///
/// Other files already under `out` are left alone and are not in the summary, so tests that compare
/// the summary with an ingest of `out` should start from an empty directory.
pub fn generate(out: &Path, config: &SynthConfig) -> Result<SynthSummary> {
    config.validate()?;
    let world = world::World::build(config, &mut rng_for(config.seed, Stream::World));
    let jobs = plan::plan(config, &world, &mut rng_for(config.seed, Stream::Plan));
    let catalog = cloudtrail::Catalog::new(config.benign);
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

/// The organization id in the CloudTrail keys of the archive `config` describes (an organization
/// trail's layout), for files added to the archive afterwards.
pub fn organization_id(config: &SynthConfig) -> String {
    world::organization_id(&mut rng_for(config.seed, Stream::World))
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
        Content::CloudTrail(window) => {
            (Kind::CloudTrail, cloudtrail::write(&mut raw, &mut rng, world, catalog, window))
        }
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::path::PathBuf;

    use super::*;

    /// A small archive: fast in a debug build, yet with every kind of file.
    fn small() -> SynthConfig {
        SynthConfig { days: 2, ..SynthConfig::new(500, 42) }
    }

    /// Every file under `dir`: key (with `/`), size on disk, decompressed content.
    fn read_archive(dir: &Path) -> Vec<(String, u64, Vec<u8>)> {
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|entry| entry.expect("walk").into_path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let key = path.strip_prefix(dir).expect("under dir").to_string_lossy().replace('\\', "/");
                let bytes = std::fs::read(&path).expect("read");
                let mut raw = Vec::new();
                flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut raw).expect("gunzip");
                (key, bytes.len() as u64, raw)
            })
            .collect()
    }

    fn kind_of(key: &str) -> &'static str {
        if key.contains("/CloudTrail-Digest/") {
            "digest"
        } else if key.contains("/CloudTrail/") {
            "cloudtrail"
        } else if key.contains("/vpcflowlogs/") {
            "vpcflow"
        } else if key.contains("/vpcdnsquerylogs/") {
            "dns"
        } else {
            "unknown"
        }
    }

    /// `YYYY-MM-DD` from the `YYYY/MM/DD` folders of a key.
    fn key_day(key: &str) -> String {
        let parts: Vec<&str> = key.split('/').collect();
        let at = parts.iter().position(|p| p.len() == 4 && p.starts_with("20")).expect("year folder");
        format!("{}-{}-{}", parts[at], parts[at + 1], parts[at + 2])
    }

    #[test]
    fn same_config_gives_identical_bytes_whatever_the_thread_count() {
        let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let config = small();
        let first = generate(a.path(), &config).expect("generate");
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        let second = pool.install(|| generate(b.path(), &config)).expect("generate");
        assert_eq!(first, second);
        let (left, right) = (read_archive(a.path()), read_archive(b.path()));
        assert_eq!(left.len(), right.len());
        for ((key_a, _, _), (key_b, _, _)) in left.iter().zip(&right) {
            assert_eq!(key_a, key_b);
            let bytes_a = std::fs::read(a.path().join(key_a)).expect("read");
            let bytes_b = std::fs::read(b.path().join(key_b)).expect("read");
            assert!(bytes_a == bytes_b, "{key_a} differs between runs");
        }
        // A different seed is a different archive.
        let c = tempfile::tempdir().expect("tempdir");
        generate(c.path(), &SynthConfig { seed: 43, ..config }).expect("generate");
        assert_ne!(read_archive(c.path()).first().map(|f| f.0.clone()), left.first().map(|f| f.0.clone()));
    }

    #[test]
    fn summary_counts_equal_what_is_in_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = small();
        let summary = generate(dir.path(), &config).expect("generate");
        let mut counted = SynthSummary::default();
        for (key, size, raw) in read_archive(dir.path()) {
            counted.objects += 1;
            counted.bytes += size;
            counted.uncompressed_bytes += raw.len() as u64;
            match kind_of(&key) {
                "cloudtrail" => {
                    let doc: serde_json::Value = serde_json::from_slice(&raw).expect("CloudTrail JSON");
                    counted.cloudtrail_objects += 1;
                    counted.cloudtrail_events += doc["Records"].as_array().expect("Records").len() as u64;
                }
                "vpcflow" => {
                    counted.vpcflow_objects += 1;
                    counted.vpcflow_records += raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64 - 1;
                }
                "dns" => {
                    counted.dns_objects += 1;
                    for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        serde_json::from_slice::<serde_json::Value>(line).expect("query log JSON");
                        counted.dns_records += 1;
                    }
                }
                "digest" => counted.digest_objects += 1,
                _ => counted.unknown_objects += 1,
            }
        }
        assert_eq!(summary, counted);
        // The configured totals are met exactly.
        assert_eq!(summary.cloudtrail_events, config.cloudtrail_events);
        assert_eq!(summary.vpcflow_records, config.vpcflow_records);
        assert_eq!(summary.dns_records, config.dns_records);
        assert_eq!(summary.digest_objects, u64::from(config.accounts * config.days));
        assert_eq!(summary.unknown_objects, 2);
        assert!(summary.cloudtrail_objects > 1 && summary.vpcflow_objects > 1 && summary.dns_objects > 1);
    }

    #[test]
    fn keys_follow_the_aws_layouts() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate(dir.path(), &small()).expect("generate");
        let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        let account = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
        let stamp = |s: &str| s.len() == 14 && &s[8..9] == "T" && s.ends_with('Z');
        for (key, _, _) in read_archive(dir.path()) {
            let parts: Vec<&str> = key.split('/').collect();
            assert_eq!(parts[0], "AWSLogs", "{key}");
            match kind_of(&key) {
                "cloudtrail" => {
                    // AWSLogs/o-xxxxxxxxxx/<acct>/CloudTrail/<region>/YYYY/MM/DD/<file>
                    assert_eq!(parts.len(), 9, "{key}");
                    assert!(parts[1].starts_with("o-") && parts[1].len() == 12, "{key}");
                    assert!(account(parts[2]), "{key}");
                    let name = parts[8].strip_suffix(".json.gz").expect("suffix");
                    let fields: Vec<&str> = name.split('_').collect();
                    assert_eq!(fields.len(), 5, "{key}");
                    assert_eq!((fields[0], fields[1], fields[2]), (parts[2], "CloudTrail", parts[4]), "{key}");
                    assert!(stamp(fields[3]) && fields[3].starts_with(&parts[5..8].concat()), "{key}");
                    assert!(fields[4].len() == 16 && alnum(fields[4]), "{key}");
                }
                "digest" => {
                    assert_eq!(parts.len(), 9, "{key}");
                    let name = parts[8].strip_suffix(".json.gz").expect("suffix");
                    let fields: Vec<&str> = name.split('_').collect();
                    assert_eq!(fields.len(), 6, "{key}");
                    assert_eq!(
                        (fields[0], fields[1], fields[2], fields[4]),
                        (parts[2], "CloudTrail-Digest", parts[4], parts[4])
                    );
                    assert!(fields[5].len() == 16 && fields[5].ends_with('Z'), "{key}");
                }
                "vpcflow" => {
                    // AWSLogs/<acct>/vpcflowlogs/<region>/YYYY/MM/DD/<file>
                    assert_eq!(parts.len(), 8, "{key}");
                    assert!(account(parts[1]), "{key}");
                    let name = parts[7].strip_suffix(".log.gz").expect("suffix");
                    let fields: Vec<&str> = name.split('_').collect();
                    assert_eq!(fields.len(), 6, "{key}");
                    assert_eq!((fields[0], fields[1], fields[2]), (parts[1], "vpcflowlogs", parts[3]), "{key}");
                    assert!(fields[3].len() == 20 && fields[3].starts_with("fl-") && hex(&fields[3][3..]), "{key}");
                    assert!(stamp(fields[4]) && fields[5].len() == 8 && hex(fields[5]), "{key}");
                }
                "dns" => {
                    // AWSLogs/<acct>/vpcdnsquerylogs/<vpc-id>/YYYY/MM/DD/<file>
                    assert_eq!(parts.len(), 8, "{key}");
                    assert!(parts[3].starts_with("vpc-") && parts[3].len() == 21, "{key}");
                    let name = parts[7].strip_suffix(".log.gz").expect("suffix");
                    let fields: Vec<&str> = name.split('_').collect();
                    assert_eq!(fields.len(), 5, "{key}");
                    assert_eq!((fields[0], fields[1], fields[2]), (parts[1], "vpcdnsquerylogs", parts[3]), "{key}");
                    assert!(stamp(fields[3]) && fields[4].len() == 8 && hex(fields[4]), "{key}");
                }
                _ => assert!(key.contains("/elasticloadbalancing/") || key.contains("/Config/"), "{key}"),
            }
        }
    }

    #[test]
    fn cloudtrail_records_have_the_aws_fields_in_order_and_the_key_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate(dir.path(), &small()).expect("generate");
        let order = [
            "eventVersion",
            "userIdentity",
            "eventTime",
            "eventSource",
            "eventName",
            "awsRegion",
            "sourceIPAddress",
            "userAgent",
            "requestParameters",
            "responseElements",
            "eventID",
            "readOnly",
            "eventType",
            "managementEvent",
            "recipientAccountId",
            "eventCategory",
        ];
        let (mut records, mut bytes, mut errors, mut types) = (0u64, 0u64, 0u64, std::collections::BTreeSet::new());
        for (key, _, raw) in read_archive(dir.path()).into_iter().filter(|f| kind_of(&f.0) == "cloudtrail") {
            assert!(raw.starts_with(b"{\"Records\":[{\"eventVersion\":"), "{key}");
            let doc: serde_json::Value = serde_json::from_slice(&raw).expect("JSON");
            let account = key.split('/').nth(2).expect("account");
            let mut previous = String::new();
            for record in doc["Records"].as_array().expect("Records") {
                let object = record.as_object().expect("record is an object");
                for field in order {
                    assert!(object.contains_key(field), "{key}: record without {field}: {record}");
                }
                // Field order as AWS writes it: re-serialised text keeps serde_json's sorted order, so
                // check the raw text of this record instead.
                let text = serde_json::to_string(record).expect("text");
                let raw_record = std::str::from_utf8(&raw).expect("utf8");
                let event_id = record["eventID"].as_str().expect("eventID");
                let at = raw_record.find(event_id).expect("record in file");
                let start = raw_record[..at].rfind("{\"eventVersion\"").expect("record start");
                let mut last = 0;
                for field in order {
                    let pos = raw_record[start..].find(&format!("\"{field}\":")).expect("field");
                    assert!(pos >= last, "{key}: {field} out of order in {text}");
                    last = pos;
                }
                let time = record["eventTime"].as_str().expect("eventTime");
                assert_eq!(&time[..10], key_day(&key), "{key}: {time}");
                assert!(time.as_bytes() >= previous.as_bytes(), "{key}: records not in time order");
                previous = time.to_string();
                assert_eq!(record["recipientAccountId"], account);
                assert_eq!(record["eventID"].as_str().map(str::len), Some(36));
                errors += u64::from(object.contains_key("errorCode") || object.contains_key("errorMessage"));
                types.insert(record["userIdentity"]["type"].as_str().expect("type").to_string());
                records += 1;
            }
            bytes += raw.len() as u64;
        }
        let mean = bytes / records;
        assert!((800..1800).contains(&mean), "mean record size {mean} bytes");
        assert!(errors > 0 && errors < records / 10, "{errors} errors in {records} records");
        for kind in ["AssumedRole", "IAMUser", "AWSService"] {
            assert!(types.contains(kind), "no {kind} in {types:?}");
        }
    }

    #[test]
    fn flow_and_dns_records_fall_on_the_key_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate(dir.path(), &small()).expect("generate");
        let (mut custom, mut default, mut nodata, mut nxdomain) = (0, 0, 0, 0);
        for (key, _, raw) in read_archive(dir.path()) {
            let text = String::from_utf8(raw).expect("utf8");
            let day = key_day(&key);
            match kind_of(&key) {
                "vpcflow" => {
                    let mut lines = text.lines();
                    let header: Vec<&str> = lines.next().expect("header").split(' ').collect();
                    if header.len() == 14 {
                        default += 1
                    } else {
                        custom += 1
                    }
                    let start = header.iter().position(|&f| f == "start").expect("start field");
                    for line in lines {
                        let values: Vec<&str> = line.split(' ').collect();
                        assert_eq!(values.len(), header.len(), "{key}: {line}");
                        let secs: i64 = values[start].parse().expect("start");
                        assert_eq!(emit::iso(secs)[..10], day, "{key}: {line}");
                        nodata += usize::from(line.ends_with("NODATA") || line.contains(" NODATA "));
                    }
                }
                "dns" => {
                    for line in text.lines() {
                        assert!(line.starts_with("{\"version\":\"1.100000\",\"account_id\":"), "{line}");
                        let record: serde_json::Value = serde_json::from_str(line).expect("JSON");
                        assert_eq!(record["query_timestamp"].as_str().map(|t| &t[..10]), Some(day.as_str()));
                        nxdomain += usize::from(record["rcode"] == "NXDOMAIN");
                    }
                }
                _ => {}
            }
        }
        assert!(default > 0 && custom > 0, "default {default}, custom {custom}");
        assert!(nodata > 0 && nxdomain > 0, "nodata {nodata}, nxdomain {nxdomain}");
    }

    #[test]
    fn invalid_configs_are_rejected_with_the_field_named() {
        let out = Path::new("/nonexistent/never-written");
        for (config, field) in [
            (SynthConfig { days: 0, ..small() }, "days"),
            (SynthConfig { accounts: 0, ..small() }, "accounts"),
            (SynthConfig { regions: Vec::new(), ..small() }, "regions"),
            (SynthConfig { regions: vec!["US East".to_string()], ..small() }, "region name"),
        ] {
            let err = generate(out, &config).expect_err("invalid");
            assert!(matches!(err, IngestError::Config(_)) && err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn empty_counts_still_give_digests_and_unknown_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SynthConfig { vpcflow_records: 0, dns_records: 0, days: 1, accounts: 1, ..SynthConfig::new(0, 1) };
        let summary = generate(dir.path(), &config).expect("generate");
        assert_eq!((summary.cloudtrail_objects, summary.vpcflow_objects, summary.dns_objects), (0, 0, 0));
        assert_eq!((summary.digest_objects, summary.unknown_objects), (1, 2));
    }

    /// What the built-in rules flag, counted over an archive's raw records.
    #[derive(Debug, Default)]
    struct Flagged {
        root_activity: usize,
        access_keys_created: usize,
        console_logins_without_mfa: usize,
        /// Most access-denied errors of one principal in one file.
        denied_per_principal_and_file: usize,
        blocked_names: usize,
        /// Most NXDOMAIN answers to one source in one file.
        nxdomain_per_source_and_file: usize,
        admin_ports_accepted_from_internet: usize,
        /// Largest flow, in bytes.
        largest_flow_bytes: u64,
    }

    fn flagged(dir: &Path) -> Flagged {
        let mut found = Flagged::default();
        let private = |ip: &str| {
            ip.starts_with("10.")
                || ip.starts_with("192.168.")
                || (16..32).any(|n| ip.starts_with(&format!("172.{n}.")))
                || ip.starts_with("fd")
        };
        for (key, _, raw) in read_archive(dir) {
            match kind_of(&key) {
                "cloudtrail" => {
                    let doc: serde_json::Value = serde_json::from_slice(&raw).expect("JSON");
                    let mut denied = std::collections::HashMap::new();
                    for record in doc["Records"].as_array().expect("Records") {
                        let kind = record["userIdentity"]["type"].as_str().unwrap_or("");
                        found.root_activity += usize::from(kind == "Root");
                        found.access_keys_created += usize::from(record["eventName"] == "CreateAccessKey");
                        found.console_logins_without_mfa += usize::from(
                            record["eventName"] == "ConsoleLogin"
                                && kind == "IAMUser"
                                && record["responseElements"]["ConsoleLogin"] == "Success"
                                && record["additionalEventData"]["MFAUsed"] == "No",
                        );
                        let code = record["errorCode"].as_str().unwrap_or("");
                        if code.contains("AccessDenied") || code.contains("Unauthorized") {
                            let count = denied.entry(record["userIdentity"]["arn"].to_string()).or_insert(0);
                            *count += 1;
                            found.denied_per_principal_and_file = found.denied_per_principal_and_file.max(*count);
                        }
                    }
                }
                "vpcflow" => {
                    let text = String::from_utf8(raw).expect("utf8");
                    let mut lines = text.lines();
                    let header: Vec<&str> = lines.next().expect("header").split(' ').collect();
                    let at = |name: &str| header.iter().position(|&f| f == name).expect("field");
                    let (src, port, protocol, action, bytes) =
                        (at("srcaddr"), at("dstport"), at("protocol"), at("action"), at("bytes"));
                    for line in lines {
                        let values: Vec<&str> = line.split(' ').collect();
                        found.admin_ports_accepted_from_internet += usize::from(
                            values[action] == "ACCEPT"
                                && matches!(values[port], "22" | "3389")
                                && values[protocol] == "6"
                                && !private(values[src]),
                        );
                        let size = values[bytes].parse().unwrap_or(0);
                        found.largest_flow_bytes = found.largest_flow_bytes.max(size);
                    }
                }
                "dns" => {
                    let mut nxdomains = std::collections::HashMap::new();
                    for line in String::from_utf8(raw).expect("utf8").lines() {
                        let entry: serde_json::Value = serde_json::from_str(line).expect("JSON");
                        let name = entry["query_name"].as_str().expect("name");
                        found.blocked_names += usize::from(
                            dns::BLOCKED_NAMES.contains(&name) || entry.get("firewall_rule_action").is_some(),
                        );
                        if entry["rcode"] == "NXDOMAIN" {
                            let count = nxdomains.entry(entry["srcaddr"].to_string()).or_insert(0);
                            *count += 1;
                            found.nxdomain_per_source_and_file = found.nxdomain_per_source_and_file.max(*count);
                        }
                    }
                }
                _ => {}
            }
        }
        found
    }

    #[test]
    fn a_benign_archive_holds_nothing_the_rules_flag() {
        let config = SynthConfig { days: 3, accounts: 4, ..SynthConfig::new(20_000, 5) };
        let (noisy, benign) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let noisy_summary = generate(noisy.path(), &config).expect("generate");
        let benign_summary = generate(benign.path(), &SynthConfig { benign: true, ..config }).expect("generate");

        // The default background has what a real organisation has, so the checks below can fail.
        let noisy = flagged(noisy.path());
        assert!(
            noisy.access_keys_created > 0
                && noisy.console_logins_without_mfa > 0
                && noisy.blocked_names > 0
                && noisy.admin_ports_accepted_from_internet > 0,
            "{noisy:?}"
        );
        let benign = flagged(benign.path());
        let absent = (
            benign.root_activity,
            benign.access_keys_created,
            benign.console_logins_without_mfa,
            benign.blocked_names,
            benign.admin_ports_accepted_from_internet,
        );
        assert_eq!(absent, (0, 0, 0, 0, 0), "{benign:?}");
        // Errors and failed lookups remain, too few to make a burst.
        assert_eq!(benign.denied_per_principal_and_file, 1, "{benign:?}");
        assert!((1..=4).contains(&benign.nxdomain_per_source_and_file), "{benign:?}");
        assert!(benign.largest_flow_bytes <= 100_000 * 1_400, "{benign:?}");
        // The same files with the same counts: only their content is made safe.
        let counts = |s: &SynthSummary| SynthSummary { bytes: 0, uncompressed_bytes: 0, ..s.clone() };
        assert_eq!(counts(&noisy_summary), counts(&benign_summary));
    }

    #[test]
    fn the_organization_id_is_the_one_in_the_cloudtrail_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = small();
        generate(dir.path(), &config).expect("generate");
        let org = organization_id(&config);
        let keys: Vec<String> = read_archive(dir.path()).into_iter().map(|f| f.0).collect();
        let trails: Vec<&String> = keys.iter().filter(|k| kind_of(k) == "cloudtrail").collect();
        assert!(!trails.is_empty(), "no CloudTrail keys to check");
        assert!(trails.iter().all(|k| k.split('/').nth(1) == Some(org.as_str())), "{trails:?}");
        assert_ne!(organization_id(&SynthConfig { seed: 43, ..config }), org);
    }
}
