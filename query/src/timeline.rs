//! Timelines for an incident responder: everything one principal, access key or address did, in
//! time order, across CloudTrail, VPC Flow and DNS, with the alerts that touched it.
//!
//! A timeline is one SQL statement over the lake session (so `--since`/`--until` prune it like any
//! query): a `UNION ALL` of one branch per source, each shaped into the same columns. The subject
//! is validated before it reaches SQL (an ARN, an access key id, an IP address) and quoted anyway.

use std::net::IpAddr;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::{LakeSession, Result};

/// Who or what a timeline follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An IAM principal ARN: a user, a role (every session of it), an assumed-role session, root.
    Principal(String),
    /// An access key id (`AKIA...` long-term, `ASIA...` temporary).
    AccessKey(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl Subject {
    /// A principal ARN, checked to look like one.
    pub fn principal(arn: &str) -> Result<Subject, String> {
        let arn = arn.trim();
        if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
            return Err(format!("{arn:?} is not an ARN (arn:aws:iam::123456789012:user/alice)"));
        }
        Ok(Subject::Principal(arn.to_owned()))
    }

    /// An access key id, checked for its shape (16 to 128 upper-case letters and digits).
    pub fn access_key(id: &str) -> Result<Subject, String> {
        let id = id.trim();
        if !(16..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(format!("{id:?} is not an access key id (AKIA... or ASIA..., upper-case letters and digits)"));
        }
        Ok(Subject::AccessKey(id.to_owned()))
    }

    /// An IP address.
    pub fn ip(text: &str) -> Result<Subject, String> {
        text.trim().parse().map(Subject::Ip).map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address"))
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Principal(arn) => write!(f, "principal {arn}"),
            Subject::AccessKey(id) => write!(f, "access key {id}"),
            Subject::Ip(ip) => write!(f, "address {ip}"),
        }
    }
}

/// The columns of a timeline, in order.
pub const COLUMNS: [&str; 11] =
    ["time", "source", "account", "region", "actor", "action", "outcome", "source_ip", "detail", "id", "source_key"];

/// Everything `subject` did inside the session's span, oldest first, at most `limit` rows.
pub async fn timeline(session: &LakeSession, subject: &Subject, limit: usize) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    session.sql(&timeline_sql(subject, session, limit)).await
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The statement behind [`timeline`].
pub fn timeline_sql(subject: &Subject, session: &LakeSession, limit: usize) -> String {
    let mut branches = vec![cloudtrail_branch(subject)];
    if let Subject::Ip(ip) = subject {
        let ip = quote(&ip.to_string());
        branches.push(flow_branch(&ip));
        branches.push(dns_branch(&ip));
    }
    branches.push(alerts_branch(subject, session));
    format!("SELECT * FROM ({}) ORDER BY time, source, id LIMIT {limit}", branches.join("\nUNION ALL\n"))
}

fn cloudtrail_branch(subject: &Subject) -> String {
    let filter = match subject {
        // A role's ARN finds every session of it, through the session issuer.
        Subject::Principal(arn) => {
            let arn = quote(arn);
            format!("useridentity.arn = {arn} OR useridentity.sessioncontext.sessionissuer.arn = {arn}")
        }
        // The key's own calls, and the calls that created, changed or deleted it.
        Subject::AccessKey(id) => {
            let id = quote(id);
            format!(
                "useridentity.accesskeyid = {id} OR json_get_str(requestparameters, 'accessKeyId') = {id} \
                 OR json_get_str(responseelements, 'accessKey', 'accessKeyId') = {id}"
            )
        }
        Subject::Ip(ip) => format!("sourceipaddress = {}", quote(&ip.to_string())),
    };
    format!(
        "SELECT eventtime AS time, 'cloudtrail' AS source, recipientaccountid AS account, awsregion AS region, \
           coalesce(useridentity.arn, useridentity.principalid, useridentity.invokedby) AS actor, \
           concat(eventsource, ':', eventname) AS action, \
           coalesce(errorcode, 'ok') AS outcome, sourceipaddress AS source_ip, \
           concat_ws(' ', CASE WHEN useridentity.accesskeyid IS NOT NULL THEN concat('key=', useridentity.accesskeyid) END, \
                     substr(requestparameters, 1, 200)) AS detail, \
           eventid AS id, source_key \
         FROM cloudtrail WHERE {filter}"
    )
}

fn flow_branch(ip: &str) -> String {
    format!(
        "SELECT start AS time, 'vpcflow' AS source, account_id AS account, region, interface_id AS actor, \
           concat(CASE protocol WHEN 6 THEN 'tcp' WHEN 17 THEN 'udp' WHEN 1 THEN 'icmp' ELSE CAST(protocol AS VARCHAR) END, \
                  ' ', srcaddr, ':', CAST(srcport AS VARCHAR), ' -> ', dstaddr, ':', CAST(dstport AS VARCHAR)) AS action, \
           coalesce(action, log_status) AS outcome, srcaddr AS source_ip, \
           concat(CAST(bytes AS VARCHAR), ' bytes, ', CAST(packets AS VARCHAR), ' packets') AS detail, \
           CAST(NULL AS VARCHAR) AS id, source_key \
         FROM vpcflow WHERE srcaddr = {ip} OR dstaddr = {ip} OR pkt_srcaddr = {ip} OR pkt_dstaddr = {ip}"
    )
}

fn dns_branch(ip: &str) -> String {
    // The queries the address sent, and the answers that pointed at it (who looked it up).
    format!(
        "SELECT query_timestamp AS time, 'dns' AS source, account_id AS account, region, \
           coalesce(srcids.instance, srcids.resolver_endpoint, srcaddr) AS actor, \
           concat('query ', query_name, ' ', query_type) AS action, rcode AS outcome, srcaddr AS source_ip, \
           concat('answers: ', array_to_string(answer_rdata(answers), ' ')) AS detail, CAST(NULL AS VARCHAR) AS id, source_key \
         FROM dns WHERE srcaddr = {ip} OR array_has(answer_rdata(answers), {ip})"
    )
}

fn alerts_branch(subject: &Subject, session: &LakeSession) -> String {
    // Alerts keep the first match's principal and address, and the rule's other output columns
    // as JSON; a quoted value in that JSON is an exact match, not a prefix.
    let (column, value) = match subject {
        Subject::Principal(arn) => ("principal", arn.clone()),
        Subject::AccessKey(id) => ("principal", id.clone()),
        Subject::Ip(ip) => ("source_ip", ip.to_string()),
    };
    let mut filter =
        format!("({column} = {} OR strpos(details, {}) > 0)", quote(&value), quote(&format!("\"{value}\"")));
    let span = session.span();
    if let Some(since) = span.since {
        filter.push_str(&format!(" AND last_seen >= to_timestamp_micros({})", since.timestamp_micros()));
    }
    if let Some(until) = span.until {
        filter.push_str(&format!(" AND first_seen < to_timestamp_micros({})", until.timestamp_micros()));
    }
    format!(
        "SELECT first_seen AS time, 'alert' AS source, account, region, principal AS actor, \
           concat(rule_id, ': ', title) AS action, severity AS outcome, source_ip, \
           concat(CAST(count AS VARCHAR), ' events until ', CAST(last_seen AS VARCHAR)) AS detail, \
           id, array_element(source_keys, 1) AS source_key \
         FROM alerts WHERE {filter}"
    )
}
