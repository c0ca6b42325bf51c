//! Timelines for an incident responder: everything one principal, access key or address did, in
//! time order, across CloudTrail, VPC Flow and DNS, with the alerts that touched it.
//!
//! A timeline is one SQL statement over the lake session (so `--since`/`--until` prune it like any
//! query): a `UNION ALL` of one branch per source, each shaped into the same columns. Before it, a
//! few small queries find what the subject leads to ([`Reach`]): for an access key, the session
//! keys it created (`AssumeRole` and the other STS calls, followed through role chaining, one query
//! per hop); for a principal, the IP addresses it called from, whose flow and DNS rows join its
//! timeline (one query). The `via` column says through which key or address a row was reached.
//! The subject is validated before it reaches SQL (an ARN, an access key id, an IP address), the
//! keys and addresses found in the lake are validated the same way, and everything is quoted anyway.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use bunker_schemas::LogTable;
use chrono::{DateTime, Days, NaiveTime, Utc};

use crate::{LakeSession, Result, TimeSpan};

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

/// The columns of a timeline, in order. `via` is empty for the subject's own rows; otherwise it
/// names the session key chain (`AKIA… -AssumeRole-> ASIA… (arn…)`) or the address
/// (`address 203.0.113.66`) the row was reached through.
pub const COLUMNS: [&str; 12] = [
    "time",
    "source",
    "account",
    "region",
    "actor",
    "action",
    "outcome",
    "source_ip",
    "detail",
    "id",
    "source_key",
    "via",
];

/// The STS calls that hand out a new access key, returned in `responseElements.credentials`.
/// The SAML and web-identity calls are signed by no key, so they are never a hop from one; they
/// are listed so that a session key they created finds the call that created it.
const SESSION_CALLS: [&str; 5] =
    ["AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "GetSessionToken", "GetFederationToken"];

/// Role chaining deeper than this is not followed. AWS does not bound the chain, but a session
/// that assumes a role that assumes a role eight times over is rare enough to report, not follow.
pub const MAX_HOPS: usize = 8;

/// At most this many session keys are followed from one key: a CI key that assumes a role for
/// every job creates thousands, and each one is a literal in the timeline's statement.
pub const MAX_KEYS: usize = 256;

/// At most this many of a principal's addresses are followed into flow and DNS rows (the ones
/// it called from most): each one is a literal in four conditions of the flow branch.
pub const MAX_ADDRESSES: usize = 32;

/// A timeline: its rows, and sentences for the user about what it followed and what it left out.
#[derive(Debug)]
pub struct Timeline {
    /// The schema of the rows ([`COLUMNS`]).
    pub schema: SchemaRef,
    /// The rows, oldest first.
    pub batches: Vec<RecordBatch>,
    /// What the timeline followed beyond its subject, and where a bound stopped it.
    pub notes: Vec<String>,
}

/// A session key reached from the subject's key through the STS calls that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedKey {
    /// The session's access key id (`ASIA…`).
    pub key: String,
    /// The key that made the call creating it: the subject, or a key derived earlier.
    pub parent: String,
    /// The STS call (`AssumeRole`, `GetSessionToken`, …).
    pub call: String,
    /// The session's ARN (`assumedRoleUser.arn` or `federatedUser.arn`), when the response has one.
    pub session: Option<String>,
    /// How many calls away from the subject: 1 for a session the subject's key created.
    pub depth: usize,
    /// The chain from the subject to this key, for the `via` column.
    pub via: String,
}

/// What a timeline reaches beyond its subject, found before its statement runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// For an access key: the session keys derived from it, each after the key that created it.
    pub keys: Vec<DerivedKey>,
    /// For a principal: the IP addresses it called from, most used first.
    pub addresses: Vec<IpAddr>,
    /// For a principal: the whole days from its first to its last call from those addresses,
    /// to which their flow and DNS rows are limited (inside the session's span).
    pub window: Option<TimeSpan>,
    /// What was followed and what a bound left out, for the user.
    pub notes: Vec<String>,
}

/// Everything `subject` did inside the session's span, oldest first, at most `limit` rows.
pub async fn timeline(session: &LakeSession, subject: &Subject, limit: usize) -> Result<Timeline> {
    let reach = reach(session, subject).await?;
    let (schema, batches) = session.sql(&timeline_sql(subject, &reach, session, limit)).await?;
    Ok(Timeline { schema, batches, notes: reach.notes })
}

/// What `subject` leads to: one query per hop of session keys for an access key, one query for
/// a principal's addresses, none for an address.
pub async fn reach(session: &LakeSession, subject: &Subject) -> Result<Reach> {
    match subject {
        Subject::AccessKey(key) => {
            let (keys, mut notes) =
                follow_sessions(key, async |frontier: &[String]| issued_by(session, frontier).await).await?;
            if !keys.is_empty() {
                let hops = keys.iter().map(|k| k.depth).max().unwrap_or(0);
                notes.insert(
                    0,
                    format!(
                        "followed {} session key(s) created from {key}, {hops} hop(s) deep (see the via column)",
                        keys.len()
                    ),
                );
            }
            Ok(Reach { keys, notes, ..Reach::default() })
        }
        Subject::Principal(arn) => principal_addresses(session, arn).await,
        Subject::Ip(_) => Ok(Reach::default()),
    }
}

/// One STS call that created a session key: who called, which call, the new key and session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Issued {
    parent: String,
    call: String,
    key: String,
    session: Option<String>,
}

/// The session keys the keys of `frontier` created, earliest first: one query for the whole hop.
async fn issued_by(session: &LakeSession, frontier: &[String]) -> Result<Vec<Issued>> {
    let calls = SESSION_CALLS.map(quote).join(", ");
    let sql = format!(
        "SELECT useridentity.accesskeyid AS parent, eventname AS call, \
           json_get_str(responseelements, 'credentials', 'accessKeyId') AS key, \
           coalesce(json_get_str(responseelements, 'assumedRoleUser', 'arn'), \
                    json_get_str(responseelements, 'federatedUser', 'arn')) AS session, \
           min(eventtime) AS first \
         FROM cloudtrail \
         WHERE useridentity.accesskeyid IN ({}) AND eventsource = 'sts.amazonaws.com' AND eventname IN ({calls}) \
           AND json_get_str(responseelements, 'credentials', 'accessKeyId') IS NOT NULL \
         GROUP BY 1, 2, 3, 4 ORDER BY first, key",
        in_list(frontier.iter()),
    );
    let (_, batches) = session.sql(&sql).await?;
    let mut issued = Vec::new();
    for batch in &batches {
        let columns: Vec<Vec<Option<String>>> = (0..4).map(|i| strings(batch.column(i))).collect::<Result<_>>()?;
        let [parents, calls, keys, sessions] = <[_; 4]>::try_from(columns).expect("four columns");
        for (((parent, call), key), session) in parents.into_iter().zip(calls).zip(keys).zip(sessions) {
            if let (Some(parent), Some(call), Some(key)) = (parent, call, key) {
                issued.push(Issued { parent, call, key, session });
            }
        }
    }
    Ok(issued)
}

/// Follows the session keys created from `root`, hop by hop (`hop` answers, for a set of keys,
/// the keys they created), to [`MAX_HOPS`] and [`MAX_KEYS`]; a key seen before is not followed
/// again, so a cycle in forged or duplicated records ends. Returns the keys and the notes on
/// what a bound left out.
async fn follow_sessions(
    root: &str,
    mut hop: impl AsyncFnMut(&[String]) -> Result<Vec<Issued>>,
) -> Result<(Vec<DerivedKey>, Vec<String>)> {
    let mut seen = HashSet::from([root.to_owned()]);
    let mut chains = HashMap::from([(root.to_owned(), root.to_owned())]);
    let (mut keys, mut notes) = (Vec::new(), Vec::new());
    let mut frontier = vec![root.to_owned()];
    for depth in 1.. {
        if frontier.is_empty() {
            break;
        }
        let mut next = Vec::new();
        let mut left_out = 0;
        for issued in hop(&frontier).await? {
            // A key is a literal in the next statement: only the shape of a key gets there.
            if Subject::access_key(&issued.key).is_err() || !seen.insert(issued.key.clone()) {
                continue;
            }
            if depth > MAX_HOPS || keys.len() == MAX_KEYS {
                left_out += 1;
                continue;
            }
            let parent_chain = chains.get(&issued.parent).cloned().unwrap_or_else(|| issued.parent.clone());
            let session = issued.session.as_ref().map(|s| format!(" ({s})")).unwrap_or_default();
            let via = format!("{parent_chain} -{}-> {}{session}", issued.call, issued.key);
            chains.insert(issued.key.clone(), via.clone());
            next.push(issued.key.clone());
            keys.push(DerivedKey {
                key: issued.key,
                parent: issued.parent,
                call: issued.call,
                session: issued.session,
                depth,
                via,
            });
        }
        if left_out > 0 {
            notes.push(if depth > MAX_HOPS {
                format!(
                    "role chaining deeper than {MAX_HOPS} hops is not followed: {left_out} session key(s) created at hop {depth} are left out"
                )
            } else {
                format!("only {MAX_KEYS} session keys are followed: {left_out} more created at hop {depth} are left out")
            });
            break;
        }
        frontier = next;
    }
    Ok((keys, notes))
}

/// The addresses `arn` called from (IP addresses only: CloudTrail also writes service names
/// such as `s3.amazonaws.com` and `AWS Internal` there), most used first, and the days they span.
async fn principal_addresses(session: &LakeSession, arn: &str) -> Result<Reach> {
    let sql = format!(
        "SELECT sourceipaddress, count(*) AS calls, to_unixtime(min(eventtime)) AS first, \
           to_unixtime(max(eventtime)) AS last \
         FROM cloudtrail WHERE ({}) AND sourceipaddress IS NOT NULL GROUP BY sourceipaddress",
        principal_filter(arn)
    );
    let (_, batches) = session.sql(&sql).await?;
    let mut used = Vec::new();
    for batch in &batches {
        let addresses = strings(batch.column(0))?;
        let numbers: Vec<_> = (1..4)
            .map(|i| arrow::compute::cast(batch.column(i), &DataType::Int64).map_err(crate::QueryError::from))
            .collect::<Result<_>>()?;
        let [calls, first, last] = [0, 1, 2].map(|i| numbers[i].as_primitive::<Int64Type>());
        for (row, address) in addresses.into_iter().enumerate() {
            if let Some(address) = address {
                used.push(Used { address, calls: calls.value(row), first: first.value(row), last: last.value(row) });
            }
        }
    }
    Ok(addresses_reach(used))
}

/// One value of `sourceipaddress` a principal used: how often, and its first and last use
/// (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Used {
    address: String,
    calls: i64,
    first: i64,
    last: i64,
}

/// Keeps the values that are IP addresses, the [`MAX_ADDRESSES`] most used, and the whole days
/// from the first to the last use of those.
fn addresses_reach(used: Vec<Used>) -> Reach {
    // One address can be written two ways (IPv6 case, zeros): merged under its parsed form.
    let mut by_address: HashMap<IpAddr, Used> = HashMap::new();
    for entry in used {
        let Ok(ip) = entry.address.trim().parse::<IpAddr>() else { continue };
        by_address
            .entry(ip)
            .and_modify(|u| {
                u.calls += entry.calls;
                u.first = u.first.min(entry.first);
                u.last = u.last.max(entry.last);
            })
            .or_insert(entry);
    }
    let mut ranked: Vec<(IpAddr, Used)> = by_address.into_iter().collect();
    ranked.sort_by(|(a, x), (b, y)| y.calls.cmp(&x.calls).then(a.cmp(b)));
    let total = ranked.len();
    ranked.truncate(MAX_ADDRESSES);
    let mut notes = Vec::new();
    let first = ranked.iter().map(|(_, u)| u.first).min();
    let last = ranked.iter().map(|(_, u)| u.last).max();
    let day_start = |secs: i64, days: u64| {
        DateTime::<Utc>::from_timestamp(secs, 0)
            .map(|t| t.date_naive())
            .and_then(|d| d.checked_add_days(Days::new(days)))
            .map(|d| d.and_time(NaiveTime::MIN).and_utc())
    };
    let window = match (first, last) {
        (Some(first), Some(last)) => Some(TimeSpan { since: day_start(first, 0), until: day_start(last, 1) }),
        _ => None,
    };
    let addresses: Vec<IpAddr> = ranked.into_iter().map(|(ip, _)| ip).collect();
    if let Some(TimeSpan { since: Some(since), until: Some(until) }) = window {
        let shown: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        let last_day = until - chrono::TimeDelta::days(1);
        notes.push(format!(
            "followed {} address(es) the principal called from into VPC flow and DNS rows of {} .. {}: {}",
            addresses.len(),
            since.date_naive(),
            last_day.date_naive(),
            shown.join(", ")
        ));
    }
    if total > MAX_ADDRESSES {
        notes.push(format!(
            "the principal called from {total} addresses: only the {MAX_ADDRESSES} it used most are followed into flow and DNS rows"
        ));
    }
    Reach { addresses, window, notes, ..Reach::default() }
}

/// The text of a string column (of any string type), row by row.
fn strings(column: &dyn Array) -> Result<Vec<Option<String>>> {
    let text = arrow::compute::cast(column, &DataType::Utf8)?;
    Ok(text.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect())
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn in_list<'a>(values: impl Iterator<Item = &'a String>) -> String {
    values.map(|v| quote(v)).collect::<Vec<_>>().join(", ")
}

/// The statement behind [`timeline`], given what the subject reaches.
pub fn timeline_sql(subject: &Subject, reach: &Reach, session: &LakeSession, limit: usize) -> String {
    let mut branches = vec![cloudtrail_branch(subject, &reach.keys)];
    match subject {
        Subject::Ip(ip) => {
            let addresses = [ip.to_string()];
            branches.push(flow_branch(&addresses, false, &[]));
            branches.push(dns_branch(&addresses, false, &[]));
        }
        Subject::Principal(_) if !reach.addresses.is_empty() => {
            let addresses: Vec<String> = reach.addresses.iter().map(IpAddr::to_string).collect();
            let window = |table| reach.window.map(|w| w.predicates(table)).unwrap_or_default();
            branches.push(flow_branch(&addresses, true, &window(LogTable::VpcFlow)));
            branches.push(dns_branch(&addresses, true, &window(LogTable::Dns)));
        }
        _ => {}
    }
    branches.push(alerts_branch(subject, &reach.keys, session));
    format!("SELECT * FROM ({}) ORDER BY time, source, id LIMIT {limit}", branches.join("\nUNION ALL\n"))
}

/// A principal's own calls. A role's ARN finds every session of it, through the session issuer.
fn principal_filter(arn: &str) -> String {
    let arn = quote(arn);
    format!("useridentity.arn = {arn} OR useridentity.sessioncontext.sessionissuer.arn = {arn}")
}

fn cloudtrail_branch(subject: &Subject, keys: &[DerivedKey]) -> String {
    let filter = match subject {
        Subject::Principal(arn) => principal_filter(arn),
        // The key's own calls and its sessions' calls, and the calls that created, changed or
        // deleted it (an access key's, or a session's from STS).
        Subject::AccessKey(id) => {
            let callers = in_list(std::iter::once(id).chain(keys.iter().map(|k| &k.key)));
            let id = quote(id);
            format!(
                "useridentity.accesskeyid IN ({callers}) OR json_get_str(requestparameters, 'accessKeyId') = {id} \
                 OR json_get_str(responseelements, 'accessKey', 'accessKeyId') = {id} \
                 OR json_get_str(responseelements, 'credentials', 'accessKeyId') = {id}"
            )
        }
        Subject::Ip(ip) => format!("sourceipaddress = {}", quote(&ip.to_string())),
    };
    let via = if keys.is_empty() {
        "CAST(NULL AS VARCHAR)".to_owned()
    } else {
        let arms: Vec<String> = keys.iter().map(|k| format!("WHEN {} THEN {}", quote(&k.key), quote(&k.via))).collect();
        format!("CASE useridentity.accesskeyid {} END", arms.join(" "))
    };
    format!(
        "SELECT eventtime AS time, 'cloudtrail' AS source, recipientaccountid AS account, awsregion AS region, \
           coalesce(useridentity.arn, useridentity.principalid, useridentity.invokedby) AS actor, \
           concat(eventsource, ':', eventname) AS action, \
           coalesce(errorcode, 'ok') AS outcome, sourceipaddress AS source_ip, \
           concat_ws(' ', CASE WHEN useridentity.accesskeyid IS NOT NULL THEN concat('key=', useridentity.accesskeyid) END, \
                     substr(requestparameters, 1, 200)) AS detail, \
           eventid AS id, source_key, {via} AS via \
         FROM cloudtrail WHERE {filter}"
    )
}

/// The flows from or to any of `addresses`; `via` names the address a row matched (a
/// principal's timeline), `window` adds the predicates that limit the rows to some days.
fn flow_branch(addresses: &[String], via: bool, window: &[String]) -> String {
    let list = in_list(addresses.iter());
    let columns = ["srcaddr", "dstaddr", "pkt_srcaddr", "pkt_dstaddr"];
    let matched: Vec<String> = columns.iter().map(|c| format!("{c} IN ({list})")).collect();
    let via = if via {
        let arms: Vec<String> = columns.iter().map(|c| format!("WHEN {c} IN ({list}) THEN {c}")).collect();
        format!("concat('address ', CASE {} END)", arms.join(" "))
    } else {
        "CAST(NULL AS VARCHAR)".to_owned()
    };
    let mut filter = format!("({})", matched.join(" OR "));
    for predicate in window {
        filter.push_str(&format!(" AND {predicate}"));
    }
    format!(
        "SELECT start AS time, 'vpcflow' AS source, account_id AS account, region, interface_id AS actor, \
           concat(CASE protocol WHEN 6 THEN 'tcp' WHEN 17 THEN 'udp' WHEN 1 THEN 'icmp' ELSE CAST(protocol AS VARCHAR) END, \
                  ' ', srcaddr, ':', CAST(srcport AS VARCHAR), ' -> ', dstaddr, ':', CAST(dstport AS VARCHAR)) AS action, \
           coalesce(action, log_status) AS outcome, srcaddr AS source_ip, \
           concat(CAST(bytes AS VARCHAR), ' bytes, ', CAST(packets AS VARCHAR), ' packets') AS detail, \
           CAST(NULL AS VARCHAR) AS id, source_key, {via} AS via \
         FROM vpcflow WHERE {filter}"
    )
}

/// The queries any of `addresses` sent, and the answers that pointed at one of them (who looked
/// it up); `via` and `window` as for [`flow_branch`].
fn dns_branch(addresses: &[String], via: bool, window: &[String]) -> String {
    let list = in_list(addresses.iter());
    let answered = format!("array_has_any(answer_rdata(answers), make_array({list}))");
    let via = if via {
        format!(
            "CASE WHEN srcaddr IN ({list}) THEN concat('address ', srcaddr) \
             ELSE concat('answer naming ', array_to_string(array_intersect(answer_rdata(answers), make_array({list})), ' ')) END"
        )
    } else {
        "CAST(NULL AS VARCHAR)".to_owned()
    };
    let mut filter = format!("(srcaddr IN ({list}) OR {answered})");
    for predicate in window {
        filter.push_str(&format!(" AND {predicate}"));
    }
    format!(
        "SELECT query_timestamp AS time, 'dns' AS source, account_id AS account, region, \
           coalesce(srcids.instance, srcids.resolver_endpoint, srcaddr) AS actor, \
           concat('query ', query_name, ' ', query_type) AS action, rcode AS outcome, srcaddr AS source_ip, \
           concat('answers: ', array_to_string(answer_rdata(answers), ' ')) AS detail, CAST(NULL AS VARCHAR) AS id, \
           source_key, {via} AS via \
         FROM dns WHERE {filter}"
    )
}

fn alerts_branch(subject: &Subject, keys: &[DerivedKey], session: &LakeSession) -> String {
    // Alerts keep the first match's principal and address, and the rule's other output columns
    // as JSON; a quoted value in that JSON is an exact match, not a prefix.
    let (column, value) = match subject {
        Subject::Principal(arn) => ("principal", arn.clone()),
        Subject::AccessKey(id) => ("principal", id.clone()),
        Subject::Ip(ip) => ("source_ip", ip.to_string()),
    };
    let values = in_list(std::iter::once(&value).chain(keys.iter().map(|k| &k.key)));
    let mut filter = format!("({column} IN ({values}) OR strpos(details, {}) > 0)", quote(&format!("\"{value}\"")));
    let span = session.span();
    if let Some(since) = span.since {
        filter.push_str(&format!(" AND last_seen >= to_timestamp_micros({})", since.timestamp_micros()));
    }
    if let Some(until) = span.until {
        filter.push_str(&format!(" AND first_seen < to_timestamp_micros({})", until.timestamp_micros()));
    }
    let via = if keys.is_empty() {
        "CAST(NULL AS VARCHAR)".to_owned()
    } else {
        let arms: Vec<String> = keys.iter().map(|k| format!("WHEN {} THEN {}", quote(&k.key), quote(&k.via))).collect();
        format!("CASE principal {} END", arms.join(" "))
    };
    format!(
        "SELECT first_seen AS time, 'alert' AS source, account, region, principal AS actor, \
           concat(rule_id, ': ', title) AS action, severity AS outcome, source_ip, \
           concat(CAST(count AS VARCHAR), ' events until ', CAST(last_seen AS VARCHAR)) AS detail, \
           id, array_element(source_keys, 1) AS source_key, {via} AS via \
         FROM alerts WHERE {filter}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(parent: &str, key: &str, session: Option<&str>) -> Issued {
        Issued { parent: parent.into(), call: "AssumeRole".into(), key: key.into(), session: session.map(Into::into) }
    }

    /// Follows `graph` (the calls each key made that created a key) as the lake would answer.
    fn follow(root: &str, graph: &[Issued]) -> (Vec<(String, usize)>, Vec<String>, usize) {
        let mut queries = 0;
        let (keys, notes) = futures::executor::block_on(follow_sessions(root, async |frontier: &[String]| {
            queries += 1;
            Ok(graph.iter().filter(|i| frontier.contains(&i.parent)).cloned().collect())
        }))
        .expect("follow");
        (keys.into_iter().map(|k| (k.key, k.depth)).collect(), notes, queries)
    }

    fn chain(length: usize) -> Vec<Issued> {
        let key = |i: usize| if i == 0 { "AKIAROOTROOTROOT0000".to_owned() } else { format!("ASIACHAIN{i:011}") };
        (1..=length).map(|i| issued(&key(i - 1), &key(i), None)).collect()
    }

    #[test]
    fn session_keys_are_followed_hop_by_hop_with_a_cycle_guard_and_bounds() {
        const ROOT: &str = "AKIAROOTROOTROOT0000";
        let owned = |pairs: &[(&str, usize)]| pairs.iter().map(|(k, d)| (k.to_string(), *d)).collect::<Vec<_>>();
        let cases: Vec<(&str, Vec<Issued>, Vec<(String, usize)>, usize, &str)> = vec![
            ("no sessions", vec![], vec![], 1, ""),
            (
                "two sessions, one chained, and a forged record issuing the root again",
                vec![
                    issued(ROOT, "ASIAFIRSTFIRST00001", Some("arn:aws:sts::1:assumed-role/a/s")),
                    issued(ROOT, "ASIASECONDSECOND002", None),
                    issued("ASIAFIRSTFIRST00001", "ASIATHIRDTHIRD00003", None),
                    issued("ASIATHIRDTHIRD00003", ROOT, None),
                    issued("ASIATHIRDTHIRD00003", "ASIAFIRSTFIRST00001", None),
                ],
                owned(&[("ASIAFIRSTFIRST00001", 1), ("ASIASECONDSECOND002", 1), ("ASIATHIRDTHIRD00003", 2)]),
                3,
                "",
            ),
            (
                "a value that is not a key is not followed (it would be a literal in SQL)",
                vec![issued(ROOT, "asia') OR 1=1 --", None)],
                vec![],
                1,
                "",
            ),
            (
                "a chain exactly as deep as the bound",
                chain(MAX_HOPS),
                chain(MAX_HOPS).into_iter().enumerate().map(|(i, k)| (k.key, i + 1)).collect(),
                MAX_HOPS + 1,
                "",
            ),
            (
                "a chain one hop deeper than the bound",
                chain(MAX_HOPS + 1),
                chain(MAX_HOPS).into_iter().enumerate().map(|(i, k)| (k.key, i + 1)).collect(),
                MAX_HOPS + 1,
                "role chaining deeper than 8 hops is not followed: 1 session key(s) created at hop 9 are left out",
            ),
        ];
        for (what, graph, want, queries, note) in cases {
            let (keys, notes, asked) = follow(ROOT, &graph);
            assert_eq!(keys, want, "{what}");
            assert_eq!(asked, queries, "{what}: one query per hop");
            assert_eq!(notes.join("\n"), note, "{what}");
        }
    }

    #[test]
    fn a_keys_via_names_the_chain_from_the_subject() {
        let graph = [
            issued("AKIAROOTROOTROOT0000", "ASIAFIRSTFIRST00001", Some("arn:aws:sts::1:assumed-role/a/s1")),
            issued("ASIAFIRSTFIRST00001", "ASIATHIRDTHIRD00003", Some("arn:aws:sts::2:assumed-role/b/s2")),
        ];
        let (keys, _) = futures::executor::block_on(follow_sessions("AKIAROOTROOTROOT0000", async |f: &[String]| {
            Ok(graph.iter().filter(|i| f.contains(&i.parent)).cloned().collect())
        }))
        .expect("follow");
        assert_eq!(
            keys[1].via,
            "AKIAROOTROOTROOT0000 -AssumeRole-> ASIAFIRSTFIRST00001 (arn:aws:sts::1:assumed-role/a/s1) \
             -AssumeRole-> ASIATHIRDTHIRD00003 (arn:aws:sts::2:assumed-role/b/s2)"
        );
    }

    #[test]
    fn only_ip_addresses_of_a_principal_are_followed() {
        let day = 86_400;
        let used = |address: &str, calls, first, last| Used { address: address.into(), calls, first, last };
        let reach = addresses_reach(vec![
            used("s3.amazonaws.com", 50, 0, 0),
            used("AWS Internal", 40, 0, 0),
            used("203.0.113.66", 3, 20_000 * day + 3600, 20_000 * day + 7200),
            used("2001:DB8::1", 2, 20_002 * day, 20_002 * day + 60),
            used("2001:db8:0::1", 2, 20_001 * day, 20_001 * day),
            used(" 10.0.1.5 ", 1, 20_001 * day, 20_001 * day),
            used("", 1, 0, 0),
        ]);
        let shown: Vec<String> = reach.addresses.iter().map(IpAddr::to_string).collect();
        assert_eq!(shown, ["2001:db8::1", "203.0.113.66", "10.0.1.5"]);
        let window = reach.window.expect("a window");
        assert_eq!(window.since.map(|t| t.to_rfc3339()).as_deref(), Some("2024-10-04T00:00:00+00:00"));
        assert_eq!(window.until.map(|t| t.to_rfc3339()).as_deref(), Some("2024-10-07T00:00:00+00:00"));
        assert_eq!(reach.notes.len(), 1, "{:?}", reach.notes);

        let none = addresses_reach(vec![used("AWS Internal", 4, 0, 0)]);
        assert_eq!((none.addresses.len(), none.window, none.notes.len()), (0, None, 0));

        let many = addresses_reach((0..40).map(|i| used(&format!("192.0.2.{i}"), 100 - i, 0, 0)).collect());
        assert_eq!(many.addresses.len(), MAX_ADDRESSES);
        assert_eq!(many.addresses.last().map(IpAddr::to_string).as_deref(), Some("192.0.2.31"), "the most used kept");
        assert!(many.notes[1].contains("40 addresses: only the 32"), "{:?}", many.notes);
    }
}
