//! The list of files an archive holds: for each, its key and what goes in it (which account,
//! region or VPC, which 5-minute window, how many records). Drawn sequentially from the plan's own
//! random stream; the content itself is generated later, in parallel, from each file's stream.

use std::collections::HashSet;

use chrono::{Datelike, Weekday};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::SynthConfig;
use super::emit::{Alphabet, key_date, key_minute, key_second, random_id};
use super::keys;
use super::weighted::Table;
use super::world::World;

/// Seconds in a delivery window: CloudTrail, flow logs and query logs all deliver about every
/// five minutes.
pub(crate) const WINDOW_SECS: i64 = 300;
const WINDOWS_PER_DAY: usize = 288;
const DAY_SECS: i64 = 86_400;

/// Mean records per file, before capacity limits: a busy account's CloudTrail file holds tens of
/// events, a flow log file a few hundred rows.
const CLOUDTRAIL_MEAN: u64 = 40;
const VPCFLOW_MEAN: u64 = 150;
const DNS_MEAN: u64 = 60;

/// One file to write.
#[derive(Debug)]
pub(crate) struct FileJob {
    /// Key relative to the archive root.
    pub key: String,
    /// What goes in it.
    pub content: Content,
}

/// The content of a file, enough to generate it.
#[derive(Debug)]
pub(crate) enum Content {
    /// CloudTrail records; `place` is the region index.
    CloudTrail(Window),
    /// A CloudTrail digest.
    Digest(Digest),
    /// Flow log rows; `place` is the VPC index within the account.
    VpcFlow(Window),
    /// Resolver query log lines; `place` is the VPC index within the account.
    Dns(Window),
    /// A file of another AWS log type.
    Foreign(Foreign),
}

/// Records of one stream in one delivery window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// Index into `World::accounts`.
    pub account: usize,
    /// Region index (CloudTrail) or VPC index within the account (flow, DNS).
    pub place: usize,
    /// First second of the window; every record's time falls in `[start, start + WINDOW_SECS)`.
    pub start: i64,
    /// Records to write.
    pub records: u64,
}

/// A CloudTrail digest file: the hour it covers and the log files delivered in it.
#[derive(Debug)]
pub(crate) struct Digest {
    /// Index into `World::accounts`; digests are delivered to the home region.
    pub account: usize,
    /// Start of the covered hour.
    pub start: i64,
    /// End of the covered hour (and the time in the key).
    pub end: i64,
    /// Key of this digest (it names itself in `digestS3Object`).
    pub key: String,
    /// Key of the previous digest in the chain, if any.
    pub previous: Option<String>,
    /// Keys and window starts of the CloudTrail files delivered in the covered hour.
    pub log_files: Vec<(String, i64)>,
}

/// Other AWS logs found in log-archive buckets.
#[derive(Debug)]
pub(crate) enum Foreign {
    /// An Application Load Balancer access log.
    AlbAccessLog {
        /// Index into `World::accounts`.
        account: usize,
        /// Region index.
        region: usize,
        /// Delivery time.
        at: i64,
        /// The load balancer ID part of the name.
        lb_id: String,
    },
    /// An AWS Config configuration snapshot.
    ConfigSnapshot {
        /// Index into `World::accounts`.
        account: usize,
        /// Region index.
        region: usize,
        /// Delivery time.
        at: i64,
    },
}

/// Every file of the archive, in a fixed order.
pub(crate) fn plan(config: &SynthConfig, world: &World, rng: &mut ChaCha8Rng) -> Vec<FileJob> {
    let day0 = config.start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp();
    let days = config.days as usize;
    let busy = slot_table(config, 1.0);
    let steady = slot_table(config, 0.3);
    let mut jobs = Vec::new();

    // CloudTrail: one stream per (account, region).
    let streams: Vec<(usize, usize)> =
        (0..world.accounts.len()).flat_map(|a| (0..world.regions.len()).map(move |r| (a, r))).collect();
    let stream_table =
        Table::new(streams.iter().map(|&(a, r)| ((a, r), world.account_weights[a] * world.region_weights[r])));
    let capacity = (streams.len() * days * WINDOWS_PER_DAY / 2) as u64;
    let mut taken = HashSet::new();
    let mut cloudtrail_files = Vec::new();
    for (i, records) in spread(rng, config.cloudtrail_events, CLOUDTRAIL_MEAN, capacity).into_iter().enumerate() {
        // A benign background has every account at work in each of its regions from the first
        // hour, so that no later day is an account's first use of a region (a built-in rule).
        let (stream, slot) = if world.benign && i < streams.len() {
            let first_hour = i % (WINDOWS_PER_DAY / 24);
            taken.insert((i, first_hour));
            (i, first_hour)
        } else {
            place(rng, &stream_table, &busy, &mut taken)
        };
        let (account, region) = streams[stream];
        let start = day0 + slot as i64 * WINDOW_SECS;
        let acct = &world.accounts[account].id;
        let region_name = &world.regions[region].name;
        let key = keys::cloudtrail(&world.org_id, acct, region_name, start, &random_id(rng, Alphabet::Alnum, 16));
        cloudtrail_files.push((account, region, key.clone(), start));
        jobs.push(FileJob { key, content: Content::CloudTrail(Window { account, place: region, start, records }) });
    }

    // Digests: one per account and day in the home region, covering the busy hour from 14:00 UTC,
    // chained to the previous day's as real digests are. (AWS writes one every hour; a day's worth
    // per account would only add files that ingest skips.)
    for (account, acct) in world.accounts.iter().enumerate() {
        let mut previous = None;
        for day in 0..days {
            let start = day0 + day as i64 * DAY_SECS + 14 * 3600;
            let end = start + 3600 + rng.random_range(0..60);
            let region_name = &world.regions[0].name;
            let key = format!(
                "AWSLogs/{org}/{id}/CloudTrail-Digest/{region_name}/{date}/{id}_CloudTrail-Digest_{region_name}_{trail}_{region_name}_{stamp}.json.gz",
                org = world.org_id,
                id = acct.id,
                date = key_date(end),
                trail = world.trail,
                stamp = key_second(end),
            );
            let log_files = cloudtrail_files
                .iter()
                .filter(|(a, r, _, t)| *a == account && *r == 0 && (start..start + 3600).contains(t))
                .map(|(_, _, key, t)| (key.clone(), *t))
                .collect();
            let digest = Digest { account, start, end, key: key.clone(), previous: previous.take(), log_files };
            previous = Some(key.clone());
            jobs.push(FileJob { key, content: Content::Digest(digest) });
        }
    }

    // Flow logs and query logs: one stream per VPC.
    let vpcs: Vec<(usize, usize)> =
        world.accounts.iter().enumerate().flat_map(|(a, acct)| (0..acct.vpcs.len()).map(move |v| (a, v))).collect();
    let vpc_table = Table::new(vpcs.iter().map(|&(a, v)| {
        let region = world.accounts[a].vpcs[v].region;
        ((a, v), world.account_weights[a] * world.region_weights[region])
    }));
    let capacity = (vpcs.len() * days * WINDOWS_PER_DAY / 2) as u64;
    let mut taken = HashSet::new();
    for records in spread(rng, config.vpcflow_records, VPCFLOW_MEAN, capacity) {
        let (stream, slot) = place(rng, &vpc_table, &steady, &mut taken);
        let (account, vpc_index) = vpcs[stream];
        let acct = &world.accounts[account];
        let vpc = &acct.vpcs[vpc_index];
        let start = day0 + slot as i64 * WINDOW_SECS;
        let region_name = &world.regions[vpc.region].name;
        let key = keys::vpcflow(&acct.id, region_name, &vpc.flow_log_id, start, &random_id(rng, Alphabet::Hex, 8));
        jobs.push(FileJob { key, content: Content::VpcFlow(Window { account, place: vpc_index, start, records }) });
    }
    let mut taken = HashSet::new();
    for records in spread(rng, config.dns_records, DNS_MEAN, capacity) {
        let (stream, slot) = place(rng, &vpc_table, &busy, &mut taken);
        let (account, vpc_index) = vpcs[stream];
        let acct = &world.accounts[account];
        let vpc = &acct.vpcs[vpc_index];
        let start = day0 + slot as i64 * WINDOW_SECS;
        let key = keys::dns(&acct.id, &vpc.id, start, &random_id(rng, Alphabet::Hex, 8));
        jobs.push(FileJob { key, content: Content::Dns(Window { account, place: vpc_index, start, records }) });
    }

    // Two files of other logs that share the bucket: ingest must skip them, not choke on them.
    let noon = day0 + DAY_SECS / 2;
    let acct = &world.accounts[0].id;
    let region_name = &world.regions[0].name;
    let lb_id = random_id(rng, Alphabet::Hex, 16);
    let alb_key = format!(
        "AWSLogs/{acct}/elasticloadbalancing/{region_name}/{date}/{acct}_elasticloadbalancing_{region_name}_app.web-alb.{lb_id}_{stamp}_{ip}_{suffix}.log.gz",
        date = key_date(noon),
        stamp = key_minute(noon),
        ip = format_args!(
            "52.{}.{}.{}",
            rng.random_range(0..255u8),
            rng.random_range(0..255u8),
            rng.random_range(1..255u8)
        ),
        suffix = random_id(rng, Alphabet::LowerAlnum, 8),
    );
    jobs.push(FileJob {
        key: alb_key,
        content: Content::Foreign(Foreign::AlbAccessLog { account: 0, region: 0, at: noon, lb_id }),
    });
    let at = noon + 3600;
    let start = chrono::DateTime::from_timestamp(at, 0).unwrap_or_default();
    // AWS Config writes unpadded month and day folders: 2025/3/3.
    let config_key = format!(
        "AWSLogs/{acct}/Config/{region_name}/{y}/{m}/{d}/ConfigSnapshot/{acct}_Config_{region_name}_ConfigSnapshot_{stamp}_{id}.json.gz",
        y = start.year(),
        m = start.month(),
        d = start.day(),
        stamp = key_second(at),
        id = super::emit::uuid(rng),
    );
    jobs.push(FileJob {
        key: config_key,
        content: Content::Foreign(Foreign::ConfigSnapshot { account: 0, region: 0, at }),
    });
    jobs
}

/// `total` split into a heavy-tailed list of positive per-file counts with the given mean (at
/// most `max_files` files), summing to `total` exactly.
fn spread(rng: &mut ChaCha8Rng, total: u64, mean: u64, max_files: u64) -> Vec<u64> {
    if total == 0 {
        return Vec::new();
    }
    let files = total.div_ceil(mean).clamp(1, max_files.max(1)).min(total);
    // Pareto(1.3) weights shifted towards zero, so quiet windows hold a handful of records while
    // a few hold thousands; capped so one file cannot swallow the archive. Integer arithmetic so
    // the counts sum exactly.
    let weights: Vec<u64> = (0..files)
        .map(|_| {
            let u: f64 = rng.random();
            let w = ((1.0 - u).powf(-1.0 / 1.3) - 0.95).min(150.0);
            (w * 1_000.0) as u64
        })
        .collect();
    let weight_sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let spare = u128::from(total - files);
    let mut counts: Vec<u64> =
        weights.iter().map(|&w| 1 + (spare * u128::from(w) / weight_sum.max(1)) as u64).collect();
    // Rounding leaves fewer than `files` records over; hand them out one each.
    let short = total - counts.iter().sum::<u64>();
    for count in counts.iter_mut().take(short as usize) {
        *count += 1;
    }
    counts
}

/// Weights of every 5-minute window of the archive: a daytime peak around 15:00 UTC and quiet
/// weekends, scaled by `strength` (0 is flat).
fn slot_table(config: &SynthConfig, strength: f64) -> Table<usize> {
    Table::new((0..config.days as usize * WINDOWS_PER_DAY).map(|slot| {
        let day = config.start + chrono::Days::new((slot / WINDOWS_PER_DAY) as u64);
        let hour = (slot % WINDOWS_PER_DAY) as f64 / 12.0;
        let daytime = 0.2 + (-((hour - 15.0).powi(2)) / 32.0).exp();
        let weekday = if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) { 0.35 } else { 1.0 };
        (slot, 1.0 - strength + strength * daytime * weekday)
    }))
}

/// A stream and a window for one more file, avoiding (stream, window) pairs already used while
/// free ones are easy to find.
fn place(
    rng: &mut ChaCha8Rng,
    streams: &Table<(usize, usize)>,
    slots: &Table<usize>,
    taken: &mut HashSet<(usize, usize)>,
) -> (usize, usize) {
    let mut choice = (0, 0);
    for _ in 0..16 {
        choice = (streams.pick_index(rng), *slots.pick(rng));
        if taken.insert(choice) {
            break;
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn spread_sums_exactly_and_is_heavy_tailed() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (total, mean, max) in [(1, 40, 100), (7, 40, 100), (500, 40, 100), (100_000, 40, 1_000), (1_000, 1, 10)] {
            let counts = spread(&mut rng, total, mean, max);
            assert_eq!(counts.iter().sum::<u64>(), total, "{total}");
            assert!(counts.iter().all(|&c| c > 0));
        }
        let counts = spread(&mut rng, 100_000, 40, 100_000);
        let max = counts.iter().copied().max().unwrap_or(0);
        let min = counts.iter().copied().min().unwrap_or(0);
        assert!(max > 400 && min <= 3, "file sizes range from {min} to {max} records");
        assert!(spread(&mut rng, 0, 40, 10).is_empty());
    }
}
