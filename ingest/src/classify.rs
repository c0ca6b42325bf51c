//! Which log an object holds, decided from its key in the AWS layouts and, where the key does not
//! say, from the first bytes of its content.
//!
//! Layouts recognised (optionally below any prefix, and for organization trails with an `o-xxxx/`
//! segment after `AWSLogs/`):
//! - `AWSLogs/<acct>/CloudTrail/<region>/YYYY/MM/DD/<acct>_CloudTrail_<region>_..._.json.gz`
//! - `AWSLogs/<acct>/CloudTrail-Digest/...`, `AWSLogs/<acct>/CloudTrail-Insight/...`
//! - `AWSLogs/<acct>/vpcflowlogs/<region>/YYYY/MM/DD/..._vpcflowlogs_..._.log.gz`
//! - `AWSLogs/<acct>/vpcdnsquerylogs/<vpc-id>/YYYY/MM/DD/..._vpcdnsquerylogs_..._.log.gz`
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
}
