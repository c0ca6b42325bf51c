//! Which log an object holds, decided from its key in the AWS layouts and, where the key does not
//! say, from the first bytes of its content.
//!
//! Layouts recognised (optionally below any prefix, and for organization trails with an `o-xxxx/`
//! segment after `AWSLogs/`):
//! - `AWSLogs/<acct>/CloudTrail/<region>/YYYY/MM/DD/<acct>_CloudTrail_<region>_..._.json.gz`
//! - `AWSLogs/<acct>/CloudTrail-Digest/...`, `AWSLogs/<acct>/CloudTrail-Insight/...`
//! - `AWSLogs/<acct>/vpcflowlogs/<region>/YYYY/MM/DD/..._vpcflowlogs_..._.log.gz`
//! - `AWSLogs/<acct>/vpcdnsquerylogs/<vpc-id>/YYYY/MM/DD/..._vpcdnsquerylogs_..._.log.gz`
//!
//! Everything else is [`LogFormat::Unknown`]: skipped and counted, not an error.

use chrono::NaiveDate;

/// The kinds of object bunker tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogFormat {
    /// A CloudTrail log file (`{"Records":[...]}`).
    CloudTrail,
    /// A CloudTrail digest file (integrity chain); recognised and skipped.
    CloudTrailDigest,
    /// A CloudTrail Insights file; its records are ingested into the `cloudtrail` table.
    CloudTrailInsight,
    /// A VPC or transit-gateway flow log file.
    VpcFlow,
    /// A Route 53 Resolver query log file.
    Dns,
    /// Anything else (other AWS logs, stray files): skipped and counted.
    Unknown,
}

impl LogFormat {
    /// A short stable name, as used in the ingest log.
    pub const fn name(self) -> &'static str {
        match self {
            LogFormat::CloudTrail => "cloudtrail",
            LogFormat::CloudTrailDigest => "cloudtrail-digest",
            LogFormat::CloudTrailInsight => "cloudtrail-insight",
            LogFormat::VpcFlow => "vpcflow",
            LogFormat::Dns => "dns",
            LogFormat::Unknown => "unknown",
        }
    }

    /// The lake table this format's records go to, if any.
    pub const fn table(self) -> Option<bunker_schemas::LogTable> {
        use bunker_schemas::LogTable;
        match self {
            LogFormat::CloudTrail | LogFormat::CloudTrailInsight => Some(LogTable::CloudTrail),
            LogFormat::VpcFlow => Some(LogTable::VpcFlow),
            LogFormat::Dns => Some(LogTable::Dns),
            LogFormat::CloudTrailDigest | LogFormat::Unknown => None,
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A log object in an archive: an S3 object, or a file under a local archive directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Bucket; empty for a local archive.
    pub bucket: String,
    /// Key, or the path relative to the local archive root with `/` separators.
    pub key: String,
    /// Size in bytes as stored (compressed).
    pub size: u64,
    /// The S3 ETag (without quotes), when a listing or a notification gave one.
    pub etag: Option<String>,
    /// The SHA-256 of the stored bytes, once they have been read: with the name and the size, what
    /// makes it the same AWS object wherever it is read from (see `ledger`).
    pub sha256: Option<[u8; 32]>,
}

impl ObjectRef {
    /// An object known by its place and size, not read yet.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>, size: u64) -> ObjectRef {
        ObjectRef { bucket: bucket.into(), key: key.into(), size, etag: None, sha256: None }
    }

    /// The same object, now that its stored bytes have been read: their size and SHA-256.
    pub fn read_as(mut self, data: &[u8]) -> ObjectRef {
        use sha2::Digest as _;
        self.size = data.len() as u64;
        self.sha256 = Some(sha2::Sha256::digest(data).into());
        self
    }

    /// Where the object was read from, as logs, errors and `ingest_log` name it: `s3://bucket/key`
    /// for S3 objects, the path under the archive root for a local archive. Whether the lake holds
    /// the object is decided by what it is, not where it was read (see `ledger`).
    pub fn id(&self) -> String {
        if self.bucket.is_empty() { self.key.clone() } else { format!("s3://{}/{}", self.bucket, self.key) }
    }

    /// Whether this is a zero-byte "folder" placeholder (a key ending in `/`), which holds nothing.
    pub fn is_folder_marker(&self) -> bool {
        self.key.ends_with('/') && self.size == 0
    }
}

/// An S3 ETag without the quotes S3 puts around it in some answers and not in others.
pub fn normalized_etag(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// What an object's key says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyClass {
    /// The format, or `None` when the key does not follow an AWS layout and the content must decide.
    pub format: Option<LogFormat>,
    /// The `YYYY/MM/DD` date the layout names, if any.
    pub date: Option<NaiveDate>,
}

/// Classifies an object by its key alone.
pub fn classify_key(key: &str) -> KeyClass {
    let segments: Vec<&str> = key.split('/').collect();
    let date = key_date(&segments);
    if let Some(at) = segments.iter().position(|s| *s == "AWSLogs") {
        let mut rest = &segments[at + 1..];
        // Organization trails add the organization id before the account.
        if rest.first().is_some_and(|s| s.starts_with("o-")) {
            rest = &rest[1..];
        }
        if rest.len() >= 3 && is_account_id(rest[0]) {
            let format = match rest[1] {
                "CloudTrail" => LogFormat::CloudTrail,
                "CloudTrail-Digest" => LogFormat::CloudTrailDigest,
                "CloudTrail-Insight" => LogFormat::CloudTrailInsight,
                "vpcflowlogs" => LogFormat::VpcFlow,
                "vpcdnsquerylogs" => LogFormat::Dns,
                // Another AWS service's logs (ELB, CloudFront, ...): the layout says it is not ours.
                _ => LogFormat::Unknown,
            };
            return KeyClass { format: Some(format), date };
        }
    }
    // Exported files keep AWS's file names even when the folders are gone.
    let name = segments.last().copied().unwrap_or("");
    let format = if name.contains("_CloudTrail-Digest_") {
        Some(LogFormat::CloudTrailDigest)
    } else if name.contains("_CloudTrail-Insight_") {
        Some(LogFormat::CloudTrailInsight)
    } else if name.contains("_CloudTrail_") {
        Some(LogFormat::CloudTrail)
    } else if name.contains("_vpcflowlogs_") {
        Some(LogFormat::VpcFlow)
    } else if name.contains("_vpcdnsquerylogs_") {
        Some(LogFormat::Dns)
    } else {
        None
    };
    KeyClass { format, date }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The first `YYYY/MM/DD` run of segments that is a real date.
fn key_date(segments: &[&str]) -> Option<NaiveDate> {
    segments.windows(3).find_map(|w| {
        let ok = w[0].len() == 4 && w[1].len() == 2 && w[2].len() == 2;
        let num = |s: &str| s.parse::<u32>().ok();
        if !ok {
            return None;
        }
        NaiveDate::from_ymd_opt(num(w[0])? as i32, num(w[1])?, num(w[2])?)
    })
}

/// Classifies decompressed content whose key did not say what it is, from its first bytes.
pub fn sniff(content: &[u8]) -> LogFormat {
    const WINDOW: usize = 4096;
    let head = &content[..content.len().min(WINDOW)];
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let first_line = trimmed.lines().next().unwrap_or("");
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let has = |k: &str| trimmed.contains(k);
        if has("\"digestStartTime\"") || has("\"digestS3Object\"") {
            return LogFormat::CloudTrailDigest;
        }
        if has("\"insightDetails\"") && has("\"eventTime\"") {
            return LogFormat::CloudTrailInsight;
        }
        if has("\"Records\"") && (has("\"eventTime\"") || has("\"eventName\"") || has("\"eventVersion\"")) {
            return LogFormat::CloudTrail;
        }
        if has("\"Records\"") && trimmed.len() < 64 {
            // `{"Records":[]}`: an empty CloudTrail file.
            return LogFormat::CloudTrail;
        }
        if has("\"query_name\"") && has("\"query_timestamp\"") {
            return LogFormat::Dns;
        }
        if (has("\"eventName\"") || has("\"eventSource\"")) && (has("\"eventTime\"") || has("\"@timestamp\"")) {
            return LogFormat::CloudTrail;
        }
        if let Some(message) = first_line.strip_prefix("{\"message\":\"") {
            return if looks_like_flow_record(message) { LogFormat::VpcFlow } else { LogFormat::Unknown };
        }
        return LogFormat::Unknown;
    }
    if first_line.starts_with("version ")
        && (first_line.contains("log-status") || first_line.contains("srcaddr") || first_line.contains("interface-id"))
    {
        return LogFormat::VpcFlow;
    }
    if looks_like_flow_record(first_line) {
        return LogFormat::VpcFlow;
    }
    LogFormat::Unknown
}

/// A headerless flow record: a version number 2–8, then an account id (some real samples have
/// lost a leading zero, so any run of digits), or `-` and a transit-gateway resource, and at least
/// 14 space-separated fields. Lines in a custom order cannot be read without their header, so they
/// do not count.
fn looks_like_flow_record(line: &str) -> bool {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if fields.len() < 14 {
        return false;
    }
    let version_ok = matches!(fields[0], "2" | "3" | "4" | "5" | "6" | "7" | "8");
    let digits = |s: &str| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit());
    let account_ok = digits(fields[1])
        || (matches!(fields[1], "-" | "TransitGateway") && digits(fields[2]) && fields[3].starts_with("tgw-"));
    version_ok && account_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn keys_in_aws_layouts() {
        let cases = [
            (
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T0005Z_abc.json.gz",
                Some(LogFormat::CloudTrail),
                date(2024, 5, 1),
            ),
            (
                "archive/AWSLogs/o-abc123defg/111122223333/CloudTrail/eu-west-1/2023/12/31/x.json.gz",
                Some(LogFormat::CloudTrail),
                date(2023, 12, 31),
            ),
            (
                "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240501T000000Z.json.gz",
                Some(LogFormat::CloudTrailDigest),
                date(2024, 5, 1),
            ),
            (
                "AWSLogs/o-abc123defg/111122223333/CloudTrail-Insight/us-east-1/2024/05/01/f.json.gz",
                Some(LogFormat::CloudTrailInsight),
                date(2024, 5, 1),
            ),
            (
                "AWSLogs/111122223333/vpcflowlogs/us-east-1/2024/05/01/111122223333_vpcflowlogs_us-east-1_fl-1_20240501T0000Z_ab.log.gz",
                Some(LogFormat::VpcFlow),
                date(2024, 5, 1),
            ),
            (
                "AWSLogs/111122223333/vpcdnsquerylogs/vpc-0abc/2024/05/01/111122223333_vpcdnsquerylogs_vpc-0abc_20240501T0000Z_ab.log.gz",
                Some(LogFormat::Dns),
                date(2024, 5, 1),
            ),
            (
                "AWSLogs/111122223333/elasticloadbalancing/us-east-1/2024/05/01/alb.log.gz",
                Some(LogFormat::Unknown),
                date(2024, 5, 1),
            ),
            ("exports/111122223333_CloudTrail_us-east-1_20240501T0005Z_abc.json.gz", Some(LogFormat::CloudTrail), None),
            ("exports/incident/events.json", None, None),
            ("AWSLogs/not-an-account/CloudTrail/us-east-1/2024/05/01/x.json.gz", None, date(2024, 5, 1)),
            ("AWSLogs/111122223333/CloudTrail/us-east-1/2024/13/01/x.json.gz", Some(LogFormat::CloudTrail), None),
        ];
        for (key, format, d) in cases {
            assert_eq!(classify_key(key), KeyClass { format, date: d }, "{key}");
        }
    }

    #[test]
    fn content_sniffing() {
        let cases: [(&str, LogFormat); 15] = [
            (
                "{\"Records\":[{\"eventVersion\":\"1.08\",\"eventTime\":\"2024-05-01T00:00:00Z\"}]}",
                LogFormat::CloudTrail,
            ),
            ("{\n  \"Records\": [\n    {\n      \"eventVersion\": \"1.09\"", LogFormat::CloudTrail),
            ("{\"Records\":[]}", LogFormat::CloudTrail),
            (
                "{\"eventVersion\":\"1.05\",\"eventTime\":\"2014-07-16T15:49:27Z\",\"eventName\":\"ConsoleLogin\"}\n",
                LogFormat::CloudTrail,
            ),
            ("{\"awsAccountId\":\"1\",\"digestStartTime\":\"2015-08-17T14:01:31Z\"}", LogFormat::CloudTrailDigest),
            (
                "{\"version\":\"1.100000\",\"query_timestamp\":\"2021-12-11T22:46:23Z\",\"query_name\":\"a.\"}",
                LogFormat::Dns,
            ),
            (
                "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n",
                LogFormat::VpcFlow,
            ),
            (
                "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n",
                LogFormat::VpcFlow,
            ),
            (
                "5 64111117617 eni-069b7a490 89.160.20.156 10.200.0.0 50041 33004 17 52 1 1640000066 1640000297 REJECT OK vpc-0967\n",
                LogFormat::VpcFlow,
            ),
            (
                "3 - 748335378900 tgw-0a12bc34 tgw-attach-0789 - - vpc-0jkl vpc-0ghi - - eni-0c eni-0c - - - 1.128.0.0 2a02:cf40:: 39464 22 6 49 8947 1755592533 1755592558 OK\n",
                LogFormat::VpcFlow,
            ),
            // A custom field order without its header cannot be read safely.
            (
                "3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 52.213.180.42 10.0.0.62 43416 5001 52.213.180.42 10.0.0.62 6 568 8 1566848875 1566848933 ACCEPT 2 OK\n",
                LogFormat::Unknown,
            ),
            (
                "{\"message\":\"2 428961148399 eni-0e0bf7be352692297 - - - - - - - 1671029698 1671029728 - NODATA\"}",
                LogFormat::VpcFlow,
            ),
            (
                "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80",
                LogFormat::Unknown,
            ),
            (
                "{\"InsightSelectors\":[],\"TrailARN\":\"arn:aws:cloudtrail:us-east-1:123456789012:trail/T\"}",
                LogFormat::Unknown,
            ),
            ("", LogFormat::Unknown),
        ];
        for (content, format) in cases {
            assert_eq!(sniff(content.as_bytes()), format, "{content}");
        }
        assert_eq!(sniff(&[0xff, 0xfe, 0x00, 0x13]), LogFormat::Unknown);
    }

    #[test]
    fn object_ids_and_folders() {
        let local = ObjectRef::new("", "a/b.json.gz", 3);
        let s3 = ObjectRef::new("bunker", "a/b.json.gz", 3);
        assert_eq!(local.id(), "a/b.json.gz");
        assert_eq!(s3.id(), "s3://bunker/a/b.json.gz");
        assert!(ObjectRef::new("b", "AWSLogs/", 0).is_folder_marker());
        assert!(!local.is_folder_marker());
    }
}
