//! Timelines that follow their subject beyond its own CloudTrail rows: an access key into the
//! sessions it assumed (role chaining included), a principal into the flows and DNS queries of the
//! addresses it called from. Built through ingest, read through `bunker_query::timeline`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use bunker_query::LakeSession;
use bunker_query::timeline::{Subject, timeline};
use serde_json::{Value, json};

use crate::support::ingest;

const ACCOUNT: &str = "111122223333";
const AUDIT_ACCOUNT: &str = "444455556666";
const DEPLOYER_KEY: &str = "AKIAEXAMPLEDEPLOYER1";
const DEPLOY_SESSION_KEY: &str = "ASIAEXAMPLEDEPLOYHOP1";
const AUDIT_SESSION_KEY: &str = "ASIAEXAMPLEAUDITHOP2";
const DEPLOY_ROLE: &str = "arn:aws:iam::111122223333:role/deploy";
const INSTANCE_IP: &str = "10.0.1.5";
const ATTACKER: &str = "203.0.113.66";

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

fn day_dir(archive: &Path, kind: &str, scope: &str, day: &str) -> PathBuf {
    let dir = archive.join(format!("AWSLogs/{ACCOUNT}/{kind}/{scope}/{}/{}/{}", &day[..4], &day[5..7], &day[8..10]));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn write_trail(archive: &Path, account: &str, day: &str, records: &[Value]) {
    let (year, month, date) = (&day[..4], &day[5..7], &day[8..10]);
    let dir = archive.join(format!("AWSLogs/{account}/CloudTrail/eu-west-1/{year}/{month}/{date}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file =
        dir.join(format!("{account}_CloudTrail_eu-west-1_{}T1200Z_k{}.json.gz", day.replace('-', ""), records.len()));
    std::fs::write(file, gzip(&json!({ "Records": records }).to_string())).expect("write trail");
}

fn write_flows(archive: &Path, day: &str, lines: &[String]) {
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
    let file = day_dir(archive, "vpcflowlogs", "eu-west-1", day)
        .join(format!("{ACCOUNT}_vpcflowlogs_eu-west-1_fl-0c0ffee0_{}T1200Z_c0ffee01.log.gz", day.replace('-', "")));
    std::fs::write(file, gzip(&format!("{header}\n{}\n", lines.join("\n")))).expect("write flows");
}

fn flow(src: &str, dst: &str, dport: u16, time: &str) -> String {
    let start = bunker_ingest::timestamp::parse_rfc3339_micros(time).expect("time") / 1_000_000;
    format!("2 {ACCOUNT} eni-0aa11bb22cc33dd44 {src} {dst} 40404 {dport} 6 12 960 {start} {} ACCEPT OK", start + 60)
}

fn write_dns(archive: &Path, day: &str, records: &[Value]) {
    let body: Vec<String> = records.iter().map(Value::to_string).collect();
    let file = day_dir(archive, "vpcdnsquerylogs", "vpc-0c0ffee0", day)
        .join(format!("{ACCOUNT}_vpcdnsquerylogs_vpc-0c0ffee0_{}T1200Z_d00dfeed.log.gz", day.replace('-', "")));
    std::fs::write(file, gzip(&(body.join("\n") + "\n"))).expect("write dns");
}

fn lookup(time: &str, src: &str, name: &str, answer: &str) -> Value {
    json!({
        "version": "1.100000", "account_id": ACCOUNT, "region": "eu-west-1", "vpc_id": "vpc-0c0ffee0",
        "query_timestamp": time, "query_name": name, "query_type": "A", "query_class": "IN",
        "rcode": "NOERROR", "answers": [{ "Rdata": answer, "Type": "A", "Class": "IN" }],
        "srcaddr": src, "srcport": "41414", "transport": "UDP", "srcids": { "instance": "i-0feedfacecafe0001" }
    })
}

/// A call signed with `key` by `identity`, from `source_ip`.
fn call(id: &str, time: &str, account: &str, identity: Value, source_ip: &str, action: (&str, &str)) -> Value {
    json!({
        "eventVersion": "1.09", "eventTime": time, "eventSource": action.0, "eventName": action.1,
        "eventType": "AwsApiCall", "awsRegion": "eu-west-1", "eventID": id, "recipientAccountId": account,
        "sourceIPAddress": source_ip, "userAgent": "aws-cli/2.15.0", "userIdentity": identity,
        "requestParameters": null, "responseElements": null
    })
}

fn iam_user(name: &str, key: &str) -> Value {
    json!({ "type": "IAMUser", "principalId": "AIDAEXAMPLEUSER00001", "accountId": ACCOUNT,
            "arn": format!("arn:aws:iam::{ACCOUNT}:user/{name}"), "accessKeyId": key, "userName": name })
}

fn role_session(account: &str, role: &str, session: &str, key: &str) -> Value {
    json!({
        "type": "AssumedRole", "principalId": format!("AROAEXAMPLE{role}:{session}"), "accountId": account,
        "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"), "accessKeyId": key,
        "sessionContext": {
            "sessionIssuer": { "type": "Role", "principalId": format!("AROAEXAMPLE{role}"),
                               "arn": format!("arn:aws:iam::{account}:role/{role}"), "accountId": account, "userName": role },
            "attributes": { "creationDate": "2026-11-19T09:00:00Z", "mfaAuthenticated": "false" }
        }
    })
}

/// An `sts:AssumeRole` signed with `key` that handed out `new_key` for `role`'s session.
#[allow(clippy::too_many_arguments)]
fn assume(
    id: &str,
    time: &str,
    identity: Value,
    source_ip: &str,
    role_account: &str,
    role: &str,
    session: &str,
    new_key: &str,
) -> Value {
    let mut event = call(id, time, ACCOUNT, identity, source_ip, ("sts.amazonaws.com", "AssumeRole"));
    event["requestParameters"] =
        json!({ "roleArn": format!("arn:aws:iam::{role_account}:role/{role}"), "roleSessionName": session });
    event["responseElements"] = json!({
        "credentials": { "accessKeyId": new_key, "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLETOKEN", "expiration": "Nov 19, 2026, 10:00:00 AM" },
        "assumedRoleUser": { "assumedRoleId": format!("AROAEXAMPLE{role}:{session}"),
                             "arn": format!("arn:aws:sts::{role_account}:assumed-role/{role}/{session}") }
    });
    event
}

/// A CI key assumes `deploy`, whose session (on an instance, through a VPC endpoint, so from a
/// private address) reads an object and chains into `audit` in another account, whose session
/// lists buckets. Beside it: another key's session that must stay out, failures, and traffic.
async fn lake(dir: &Path) -> PathBuf {
    let (archive, lake) = (dir.join("archive"), dir.join("lake"));
    let deployer = || iam_user("ci-deployer", DEPLOYER_KEY);
    let deploy = || role_session(ACCOUNT, "deploy", "ci-job-7", DEPLOY_SESSION_KEY);
    let mut day_19 = vec![
        call("k-1", "2026-11-19T09:00:00Z", ACCOUNT, deployer(), ATTACKER, ("sts.amazonaws.com", "GetCallerIdentity")),
        assume("k-2", "2026-11-19T09:01:00Z", deployer(), ATTACKER, ACCOUNT, "deploy", "ci-job-7", DEPLOY_SESSION_KEY),
        call("s-1", "2026-11-19T09:10:00Z", ACCOUNT, deploy(), INSTANCE_IP, ("s3.amazonaws.com", "GetObject")),
        assume(
            "s-2",
            "2026-11-19T09:20:00Z",
            deploy(),
            INSTANCE_IP,
            AUDIT_ACCOUNT,
            "audit",
            "chained",
            AUDIT_SESSION_KEY,
        ),
        // The session's calls that AWS makes for it: not addresses.
        call("s-3", "2026-11-19T09:30:00Z", ACCOUNT, deploy(), "AWS Internal", ("kms.amazonaws.com", "Decrypt")),
        call(
            "s-4",
            "2026-11-19T09:31:00Z",
            ACCOUNT,
            deploy(),
            "cloudformation.amazonaws.com",
            ("ec2.amazonaws.com", "RunInstances"),
        ),
        // Another key and its session: in no timeline of the deployer's.
        assume(
            "o-1",
            "2026-11-19T09:02:00Z",
            iam_user("backup", "AKIAEXAMPLEBACKUP001"),
            "198.51.100.20",
            ACCOUNT,
            "backup",
            "nightly",
            "ASIAEXAMPLEBACKUPS01",
        ),
        call(
            "o-2",
            "2026-11-19T09:12:00Z",
            ACCOUNT,
            role_session(ACCOUNT, "backup", "nightly", "ASIAEXAMPLEBACKUPS01"),
            "198.51.100.20",
            ("s3.amazonaws.com", "GetObject"),
        ),
    ];
    // A refused AssumeRole hands out no key: nothing to follow.
    let mut refused =
        call("k-3", "2026-11-19T09:03:00Z", ACCOUNT, deployer(), ATTACKER, ("sts.amazonaws.com", "AssumeRole"));
    refused["errorCode"] = "AccessDenied".into();
    day_19.push(refused);
    write_trail(&archive, ACCOUNT, "2026-11-19", &day_19);
    let audit = role_session(AUDIT_ACCOUNT, "audit", "chained", AUDIT_SESSION_KEY);
    write_trail(
        &archive,
        AUDIT_ACCOUNT,
        "2026-11-19",
        &[call("a-1", "2026-11-19T09:25:00Z", AUDIT_ACCOUNT, audit, INSTANCE_IP, ("s3.amazonaws.com", "ListBuckets"))],
    );
    write_flows(
        &archive,
        "2026-11-19",
        &[
            flow(INSTANCE_IP, "52.218.0.10", 443, "2026-11-19T09:09:00Z"),
            flow("10.0.7.7", "10.0.2.9", 5432, "2026-11-19T09:15:00Z"),
            flow("10.0.3.3", INSTANCE_IP, 22, "2026-11-19T23:00:00Z"),
        ],
    );
    // A day the deployer's sessions did nothing: the instance's traffic of that day stays out.
    write_flows(&archive, "2026-11-21", &[flow(INSTANCE_IP, "52.218.0.10", 443, "2026-11-21T09:00:00Z")]);
    write_trail(
        &archive,
        ACCOUNT,
        "2026-11-21",
        &[call(
            "x-1",
            "2026-11-21T08:00:00Z",
            ACCOUNT,
            iam_user("ops", "AKIAEXAMPLEOPS000001"),
            "198.51.100.7",
            ("ec2.amazonaws.com", "DescribeInstances"),
        )],
    );
    write_dns(
        &archive,
        "2026-11-19",
        &[
            lookup("2026-11-19T09:08:00Z", INSTANCE_IP, "releases.example.com.", "192.0.2.80"),
            lookup("2026-11-19T09:08:30Z", "10.0.7.7", "db.internal.example.", "10.0.2.9"),
        ],
    );
    let summary = ingest(&archive, &lake).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    lake
}

/// The timeline's chosen columns as a table, for assertions that show the rows.
async fn table(lake: &Path, subject: Subject, columns: &[&str]) -> (String, Vec<String>) {
    let session = LakeSession::open(lake).await.expect("open session");
    let timeline = timeline(&session, &subject, 1000).await.expect("timeline");
    let projected: Vec<RecordBatch> = timeline
        .batches
        .iter()
        .map(|b| {
            let indices: Vec<usize> = columns.iter().map(|c| b.schema().index_of(c).expect("column")).collect();
            b.project(&indices).expect("project")
        })
        .collect();
    (arrow::util::pretty::pretty_format_batches(&projected).expect("format").to_string(), timeline.notes)
}

/// `rows` under `header` as the same kind of table, an empty cell being NULL.
fn render(header: &[&str], rows: &[&[&str]]) -> String {
    let columns: Vec<(&str, arrow::array::ArrayRef)> = header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let cells: arrow::array::StringArray = rows.iter().map(|r| Some(r[i]).filter(|c| !c.is_empty())).collect();
            (*name, std::sync::Arc::new(cells) as arrow::array::ArrayRef)
        })
        .collect();
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    arrow::util::pretty::pretty_format_batches(&[batch]).expect("format").to_string()
}

/// Regression: a key's timeline stopped at its own calls; the GetObject its AssumeRole session
/// made, and the calls of the role it chained into, were missing.
#[tokio::test]
async fn an_access_keys_timeline_follows_the_sessions_it_assumed_through_role_chaining() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = lake(dir.path()).await;
    let columns = ["time", "account", "action", "outcome", "via"];
    let (rows, notes) = table(&lake, Subject::access_key(DEPLOYER_KEY).expect("key"), &columns).await;
    let hop_1 = "AKIAEXAMPLEDEPLOYER1 -AssumeRole-> ASIAEXAMPLEDEPLOYHOP1 (arn:aws:sts::111122223333:assumed-role/deploy/ci-job-7)";
    let hop_2 =
        &format!("{hop_1} -AssumeRole-> ASIAEXAMPLEAUDITHOP2 (arn:aws:sts::444455556666:assumed-role/audit/chained)");
    let want: &[&[&str]] = &[
        &["2026-11-19T09:00:00Z", ACCOUNT, "sts.amazonaws.com:GetCallerIdentity", "ok", ""],
        &["2026-11-19T09:01:00Z", ACCOUNT, "sts.amazonaws.com:AssumeRole", "ok", ""],
        &["2026-11-19T09:03:00Z", ACCOUNT, "sts.amazonaws.com:AssumeRole", "AccessDenied", ""],
        &["2026-11-19T09:10:00Z", ACCOUNT, "s3.amazonaws.com:GetObject", "ok", hop_1],
        &["2026-11-19T09:20:00Z", ACCOUNT, "sts.amazonaws.com:AssumeRole", "ok", hop_1],
        &["2026-11-19T09:25:00Z", AUDIT_ACCOUNT, "s3.amazonaws.com:ListBuckets", "ok", hop_2],
        &["2026-11-19T09:30:00Z", ACCOUNT, "kms.amazonaws.com:Decrypt", "ok", hop_1],
        &["2026-11-19T09:31:00Z", ACCOUNT, "ec2.amazonaws.com:RunInstances", "ok", hop_1],
    ];
    assert_eq!(rows, render(&columns, want), "\n{rows}");
    assert_eq!(
        notes,
        ["followed 2 session key(s) created from AKIAEXAMPLEDEPLOYER1, 2 hop(s) deep (see the via column)"]
    );

    // The chained session's own key: its call, and the AssumeRole that created it.
    let columns = ["time", "action", "id", "via"];
    let (rows, notes) = table(&lake, Subject::access_key(AUDIT_SESSION_KEY).expect("key"), &columns).await;
    let want: &[&[&str]] = &[
        &["2026-11-19T09:20:00Z", "sts.amazonaws.com:AssumeRole", "s-2", ""],
        &["2026-11-19T09:25:00Z", "s3.amazonaws.com:ListBuckets", "a-1", ""],
    ];
    assert_eq!(rows, render(&columns, want), "\n{rows}");
    assert!(notes.is_empty(), "{notes:?}");
}

/// Regression: a principal's timeline crossed only CloudTrail and alerts; the flows and DNS
/// queries of the addresses it called from were missing, and a service name is no address.
#[tokio::test]
async fn a_principals_timeline_includes_the_flows_and_dns_queries_of_its_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = lake(dir.path()).await;
    let columns = ["time", "source", "action", "source_ip", "via"];
    let (rows, notes) = table(&lake, Subject::principal(DEPLOY_ROLE).expect("arn"), &columns).await;
    let via = "address 10.0.1.5";
    let want: &[&[&str]] = &[
        &["2026-11-19T09:08:00Z", "dns", "query releases.example.com. A", INSTANCE_IP, via],
        &["2026-11-19T09:09:00Z", "vpcflow", "tcp 10.0.1.5:40404 -> 52.218.0.10:443", INSTANCE_IP, via],
        &["2026-11-19T09:10:00Z", "cloudtrail", "s3.amazonaws.com:GetObject", INSTANCE_IP, ""],
        &["2026-11-19T09:20:00Z", "cloudtrail", "sts.amazonaws.com:AssumeRole", INSTANCE_IP, ""],
        &["2026-11-19T09:30:00Z", "cloudtrail", "kms.amazonaws.com:Decrypt", "AWS Internal", ""],
        &["2026-11-19T09:31:00Z", "cloudtrail", "ec2.amazonaws.com:RunInstances", "cloudformation.amazonaws.com", ""],
        &["2026-11-19T23:00:00Z", "vpcflow", "tcp 10.0.3.3:40404 -> 10.0.1.5:22", "10.0.3.3", via],
    ];
    assert_eq!(rows, render(&columns, want), "\n{rows}");
    assert_eq!(
        notes,
        [
            "followed 1 address(es) the principal called from into VPC flow and DNS rows of 2026-11-19 .. 2026-11-19: 10.0.1.5"
        ]
    );

    // The deployer user called from the attacker's address only: no flow or DNS row names it,
    // and the instance's rows are not the user's.
    let principal = Subject::principal(&format!("arn:aws:iam::{ACCOUNT}:user/ci-deployer")).expect("arn");
    let (rows, _) = table(&lake, principal, &["source", "action"]).await;
    let want: &[&[&str]] = &[
        &["cloudtrail", "sts.amazonaws.com:GetCallerIdentity"],
        &["cloudtrail", "sts.amazonaws.com:AssumeRole"],
        &["cloudtrail", "sts.amazonaws.com:AssumeRole"],
    ];
    assert_eq!(rows, render(&["source", "action"], want), "\n{rows}");
}
