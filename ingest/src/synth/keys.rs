//! The keys AWS delivers each log type under, in one place: the generator names its files with
//! them, and so does anything that adds objects to a generated archive (the labelled attacks of
//! `bunker gen --attacks`), so both stay in the layouts ingest classifies.
//!
//! `start` is the delivery window's start in seconds since the epoch; `suffix` the random part AWS
//! puts at the end of a file name.

use super::emit::{key_date, key_minute};

/// A CloudTrail log file of an organization trail.
pub fn cloudtrail(org: &str, account: &str, region: &str, start: i64, suffix: &str) -> String {
    format!(
        "AWSLogs/{org}/{account}/CloudTrail/{region}/{date}/{account}_CloudTrail_{region}_{stamp}_{suffix}.json.gz",
        date = key_date(start),
        stamp = key_minute(start),
    )
}

/// A VPC flow log file delivered to S3; `flow_log_id` is `fl-…`.
pub fn vpcflow(account: &str, region: &str, flow_log_id: &str, start: i64, suffix: &str) -> String {
    format!(
        "AWSLogs/{account}/vpcflowlogs/{region}/{date}/{account}_vpcflowlogs_{region}_{flow_log_id}_{stamp}_{suffix}.log.gz",
        date = key_date(start),
        stamp = key_minute(start),
    )
}

/// A Route 53 Resolver query log file of one VPC.
pub fn dns(account: &str, vpc_id: &str, start: i64, suffix: &str) -> String {
    format!(
        "AWSLogs/{account}/vpcdnsquerylogs/{vpc_id}/{date}/{account}_vpcdnsquerylogs_{vpc_id}_{stamp}_{suffix}.log.gz",
        date = key_date(start),
        stamp = key_minute(start),
    )
}
