//! The analyst's and the responder's commands: `query` with spans, `--explain`, Parquet and files,
//! name hints, Athena-style SQL; `timeline`; and the `sql` shell driven through a real terminal.

use std::io::Write as _;
use std::path::Path;

use super::{bunker, ok, path, stderr, trail_event, write_trail_object};

const ACCOUNT: &str = "111122223333";
const ATTACKER: &str = "203.0.113.66";

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

/// One VPC flow log object (version 2 fields) of `day`, in the key layout AWS uses.
fn write_flow_object(archive: &Path, day: &str, lines: &[String]) {
    let (year, month, date) = (&day[..4], &day[5..7], &day[8..10]);
    let dir = archive.join(format!("AWSLogs/{ACCOUNT}/vpcflowlogs/eu-west-1/{year}/{month}/{date}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let stamp = day.replace('-', "");
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
    let body = format!("{header}\n{}\n", lines.join("\n"));
    let file = dir.join(format!("{ACCOUNT}_vpcflowlogs_eu-west-1_fl-0a1b2c3d_{stamp}T1200Z_a1b2c3d4.log.gz"));
    std::fs::write(file, gzip(&body)).expect("write flow object");
}

fn flow_line(src: &str, dst: &str, dport: u16, epoch: i64, action: &str) -> String {
    format!("2 {ACCOUNT} eni-0f1e2d3c {src} {dst} 51515 {dport} 6 10 840 {epoch} {} {action} OK", epoch + 30)
}

/// One Resolver query log object of `day`, each line a JSON record.
fn write_dns_object(archive: &Path, day: &str, records: &[serde_json::Value]) {
    let (year, month, date) = (&day[..4], &day[5..7], &day[8..10]);
    let dir = archive.join(format!("AWSLogs/{ACCOUNT}/vpcdnsquerylogs/vpc-0a1b2c3d/{year}/{month}/{date}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let stamp = day.replace('-', "");
    let body: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    let file = dir.join(format!("{ACCOUNT}_vpcdnsquerylogs_vpc-0a1b2c3d_{stamp}T1200Z_e5f6a7b8.log.gz"));
    std::fs::write(file, gzip(&(body.join("\n") + "\n"))).expect("write dns object");
}

fn dns_record(time: &str, src: &str, name: &str, answer: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "1.100000", "account_id": ACCOUNT, "region": "eu-west-1", "vpc_id": "vpc-0a1b2c3d",
        "query_timestamp": time, "query_name": name, "query_type": "A", "query_class": "IN",
        "rcode": "NOERROR", "answers": [{ "Rdata": answer, "Type": "A", "Class": "IN" }],
        "srcaddr": src, "srcport": "53530", "transport": "UDP",
        "srcids": { "instance": "i-0123456789abcdef0" }
    })
}

fn epoch(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time).expect("time").timestamp()
}

/// Three days of one account's activity: an operator's routine calls, and an intruder at
/// [`ATTACKER`] who uses a stolen key on the second day, talks to an instance and is looked up.
fn small_lake(dir: &Path) -> std::path::PathBuf {
    let (archive, lake) = (dir.join("archive"), dir.join("lake"));
    for day in ["2026-11-18", "2026-11-19", "2026-11-20"] {
        let records: Vec<serde_json::Value> = (0..4)
            .map(|i| trail_event(&format!("ops-{day}-{i}"), &format!("{day}T0{}:00:00Z", i + 1), ACCOUNT, "eu-west-1"))
            .collect();
        write_trail_object(&archive, ACCOUNT, "eu-west-1", day, &records);
        let routine = flow_line("10.0.1.5", "10.0.2.9", 443, epoch(&format!("{day}T03:00:00Z")), "ACCEPT");
        write_flow_object(&archive, day, &[routine]);
        let lookup = dns_record(&format!("{day}T02:00:00Z"), "10.0.1.5", "example.com.", "93.184.216.34");
        write_dns_object(&archive, day, &[lookup]);
    }
    // The intruder, on the 19th: two calls with the stolen key, then traffic and a lookup.
    let mut calls = Vec::new();
    for (i, (name, time)) in
        [("GetCallerIdentity", "2026-11-19T10:00:00Z"), ("ListBuckets", "2026-11-19T10:05:00Z")].iter().enumerate()
    {
        let mut event = trail_event(&format!("intruder-{i}"), time, ACCOUNT, "eu-west-1");
        event["eventName"] = (*name).into();
        event["sourceIPAddress"] = ATTACKER.into();
        event["userIdentity"] = serde_json::json!({
            "type": "IAMUser", "arn": format!("arn:aws:iam::{ACCOUNT}:user/ci-deployer"),
            "accessKeyId": "AKIAEXAMPLESTOLEN01", "principalId": "AIDAEXAMPLE"
        });
        calls.push(event);
    }
    // Its own object of the day (`_t2`), beside the operator's (`_t4`).
    write_trail_object(&archive, ACCOUNT, "eu-west-1", "2026-11-19", &calls);
    let day_19 = [
        flow_line("10.0.1.5", "10.0.2.9", 443, epoch("2026-11-19T03:00:00Z"), "ACCEPT"),
        flow_line(ATTACKER, "10.0.1.5", 22, epoch("2026-11-19T10:02:00Z"), "REJECT"),
        flow_line("10.0.1.5", ATTACKER, 443, epoch("2026-11-19T10:07:00Z"), "ACCEPT"),
    ];
    write_flow_object(&archive, "2026-11-19", &day_19);
    write_dns_object(
        &archive,
        "2026-11-19",
        &[
            dns_record("2026-11-19T02:00:00Z", "10.0.1.5", "example.com.", "93.184.216.34"),
            dns_record("2026-11-19T10:06:00Z", "10.0.1.5", "exfil.example.net.", ATTACKER),
        ],
    );
    ok(&["ingest", "--from", path(&archive), "--lake", path(&lake), "--no-detect"]);
    lake
}

fn csv(lake: &Path, extra: &[&str], sql: &str) -> String {
    let mut args = vec!["query", "--lake", path(lake), "--format", "csv"];
    args.extend_from_slice(extra);
    args.push(sql);
    ok(&args)
}

#[test]
fn spans_prune_partitions_and_explain_shows_what_a_query_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = small_lake(dir.path());
    let count = "SELECT count(*) AS n FROM cloudtrail";
    assert_eq!(csv(&lake, &[], count), "n\n14\n");
    assert_eq!(csv(&lake, &["--since", "2026-11-19", "--until", "2026-11-19"], count), "n\n6\n");
    assert_eq!(csv(&lake, &["--since", "2026-11-19T10:00:00Z"], count), "n\n6\n");
    assert_eq!(csv(&lake, &["--until", "2026-11-19T10:00:00Z"], count), "n\n8\n");
    assert_eq!(csv(&lake, &["--since", "100000d"], count), "n\n14\n");
    assert_eq!(csv(&lake, &["--since", "1d"], count), "n\n0\n", "the lake's days are long past");

    // The whole lake reads three days of files; a one-day query, by span or by predicate, one.
    let lake_arg = path(&lake);
    let whole = ok(&["query", "--lake", lake_arg, "--explain", "SELECT * FROM cloudtrail"]);
    assert!(whole.contains("partitions: 3 days, 2026-11-18 .. 2026-11-20"), "{whole}");
    for (args, sql) in [
        (vec!["--since", "2026-11-19", "--until", "2026-11-19"], "SELECT eventname FROM cloudtrail"),
        (vec![], "SELECT eventname FROM cloudtrail WHERE date = DATE '2026-11-19'"),
        (vec!["--since", "2026-11-19T08:00:00Z", "--until", "2026-11-19T12:00:00Z"], "SELECT * FROM cloudtrail"),
    ] {
        let mut all = vec!["query", "--lake", lake_arg, "--explain"];
        all.extend(args.iter());
        all.push(sql);
        let report = ok(&all);
        assert!(report.contains("partitions: 1 days, 2026-11-19 .. 2026-11-19"), "{args:?} {sql}: {report}");
        assert!(report.contains("scan cloudtrail"), "{report}");
    }
    // A join across tables reports each table's scan.
    let join = ok(&[
        "query",
        "--lake",
        lake_arg,
        "--since",
        "2026-11-20",
        "--explain",
        "SELECT c.eventname FROM cloudtrail c JOIN vpcflow f ON c.sourceipaddress = f.srcaddr",
    ]);
    assert!(join.contains("scan cloudtrail") && join.contains("scan vpcflow"), "{join}");
    assert!(join.contains("reads 2 files"), "{join}");

    // Bad spans are refused with the reason.
    let output = bunker(&["query", "--lake", lake_arg, "--since", "2026-11-20", "--until", "2026-11-19", count]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("is not before --until"), "{}", stderr(&output));
    let output = bunker(&["query", "--lake", lake_arg, "--since", "last tuesday", count]);
    assert!(stderr(&output).contains("expected YYYY-MM-DD"), "{}", stderr(&output));
}

#[test]
fn results_go_to_files_as_csv_json_or_parquet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = small_lake(dir.path());
    let sql = "SELECT eventid, eventtime, useridentity FROM cloudtrail ORDER BY eventtime";
    let out = dir.path().join("events.parquet");
    let printed = ok(&["query", "--lake", path(&lake), "--format", "parquet", "--output", path(&out), sql]);
    assert!(printed.is_empty(), "{printed}");
    let file = std::fs::File::open(&out).expect("parquet written");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).expect("a parquet file");
    assert_eq!(reader.metadata().file_metadata().num_rows(), 14);
    let names: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["eventid", "eventtime", "useridentity"]);

    let out = dir.path().join("events.csv");
    ok(&[
        "query",
        "--lake",
        path(&lake),
        "--format",
        "csv",
        "-o",
        path(&out),
        "SELECT eventid FROM cloudtrail ORDER BY eventid LIMIT 2",
    ]);
    assert_eq!(std::fs::read_to_string(&out).expect("csv"), "eventid\nintruder-0\nintruder-1\n");

    let output = bunker(&["query", "--lake", path(&lake), "--format", "csv", "-o", "/nonexistent/dir/x.csv", sql]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("creating /nonexistent/dir/x.csv"), "{}", stderr(&output));
}

#[test]
fn a_wrong_name_gets_a_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).expect("lake dir");
    for (sql, hint) in [
        ("SELECT count(*) FROM cloudtrial", "there is no table cloudtrial; did you mean cloudtrail?"),
        ("SELECT eventnme FROM cloudtrail", "there is no column eventnme; did you mean eventname (in cloudtrail)?"),
        ("SELECT srcadr FROM vpcflow", "did you mean srcaddr"),
        ("SELECT useridentity.arm FROM cloudtrail", "did you mean arn"),
    ] {
        let output = bunker(&["query", "--lake", path(&lake), sql]);
        assert!(!output.status.success(), "{sql}");
        assert!(stderr(&output).contains(hint), "{sql}: {}", stderr(&output));
    }
    // Writes are refused, COPY TO included: a query never writes files.
    let target = dir.path().join("copied.csv");
    for sql in [
        format!("COPY (SELECT 1) TO '{}'", target.display()),
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
        "INSERT INTO cloudtrail SELECT * FROM cloudtrail".to_owned(),
    ] {
        let output = bunker(&["query", "--lake", path(&lake), &sql]);
        assert!(!output.status.success(), "{sql} was allowed");
    }
    assert!(!target.exists(), "COPY TO wrote a file");
}

/// Queries in the style of AWS's documented Athena examples for these three logs run unchanged
/// but for the table names.
#[test]
fn athena_style_queries_run_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = small_lake(dir.path());
    let lake = lake.as_path();
    // CloudTrail: who called what from where, the nested identity read with dots.
    let who = csv(
        lake,
        &[],
        "SELECT useridentity.arn, eventname, sourceipaddress, eventtime FROM cloudtrail \
         WHERE sourceipaddress = '203.0.113.66' ORDER BY eventtime",
    );
    assert_eq!(who.lines().count(), 3, "{who}");
    assert!(who.contains("arn:aws:iam::111122223333:user/ci-deployer,GetCallerIdentity,203.0.113.66"), "{who}");
    // Free-form fields with Athena's JSON function, and the crate's arrow operator.
    let key = csv(
        lake,
        &[],
        "SELECT count(*) AS n FROM cloudtrail WHERE json_extract_scalar(requestparameters, '$.bucketName') IS NULL \
         AND (requestparameters ->> 'x') IS NULL",
    );
    assert_eq!(key, "n\n14\n");
    // VPC Flow: the rejected TCP traffic per source, and which of it came from the internet.
    let rejected = csv(
        lake,
        &[],
        "SELECT srcaddr, count(*) AS count FROM vpcflow WHERE action = 'REJECT' AND protocol = 6 \
         AND is_public_ip(srcaddr) AND NOT cidr_contains('10.0.0.0/8', srcaddr) GROUP BY srcaddr ORDER BY count DESC",
    );
    assert_eq!(rejected, "srcaddr,count\n203.0.113.66,1\n");
    // DNS: the most queried names, and who resolved a name to an address.
    let top =
        csv(lake, &[], "SELECT query_name, count(*) AS n FROM dns GROUP BY query_name ORDER BY n DESC, query_name");
    assert_eq!(top, "query_name,n\nexample.com.,3\nexfil.example.net.,1\n");
    let resolved =
        csv(lake, &[], "SELECT srcaddr, query_name FROM dns WHERE array_has(answer_rdata(answers), '203.0.113.66')");
    assert_eq!(resolved, "srcaddr,query_name\n10.0.1.5,exfil.example.net.\n");
    // A statement that opens with a comment, as the rule files' queries do; names grouped by domain.
    let domains = csv(
        lake,
        &[],
        "-- the domains queried\nSELECT base_domain(query_name) AS domain, count(*) AS n FROM dns \
         GROUP BY base_domain(query_name) ORDER BY n DESC, domain",
    );
    assert_eq!(domains, "domain,n\nexample.com,3\nexample.net,1\n");
}

#[test]
fn a_timeline_follows_a_key_a_principal_and_an_address_across_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = small_lake(dir.path());
    let timeline = |args: &[&str]| {
        let mut all = vec!["timeline", "--lake", path(&lake), "--format", "csv"];
        all.extend_from_slice(args);
        ok(&all)
    };
    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines().skip(1).map(|l| l.split(',').map(str::to_owned).collect()).collect()
    };

    let by_ip = timeline(&["--ip", ATTACKER]);
    assert!(
        by_ip.starts_with("time,source,account,region,actor,action,outcome,source_ip,detail,id,source_key,via\n"),
        "{by_ip}"
    );
    let sources: Vec<String> = rows(&by_ip).iter().map(|r| r[1].clone()).collect();
    assert_eq!(sources, ["cloudtrail", "vpcflow", "cloudtrail", "dns", "vpcflow"], "{by_ip}");
    let times: Vec<String> = rows(&by_ip).iter().map(|r| r[0].clone()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order: {by_ip}");
    assert!(by_ip.contains("tcp 203.0.113.66:51515 -> 10.0.1.5:22"), "{by_ip}");
    assert!(by_ip.contains("query exfil.example.net. A"), "{by_ip}");

    let by_key = timeline(&["--access-key", "AKIAEXAMPLESTOLEN01"]);
    let actions: Vec<String> = rows(&by_key).iter().map(|r| r[5].clone()).collect();
    assert_eq!(actions, ["ec2.amazonaws.com:GetCallerIdentity", "ec2.amazonaws.com:ListBuckets"], "{by_key}");

    let by_principal = timeline(&["--principal", "arn:aws:iam::111122223333:user/ops", "--since", "2026-11-20"]);
    assert_eq!(rows(&by_principal).len(), 4, "{by_principal}");
    assert!(rows(&by_principal).iter().all(|r| r[0].starts_with("2026-11-20")), "{by_principal}");

    let limited = timeline(&["--ip", ATTACKER, "--limit", "2"]);
    assert_eq!(limited.lines().count(), 3, "header and two rows: {limited}");
    let json = ok(&["timeline", "--lake", path(&lake), "--ip", ATTACKER, "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().expect("a line")).expect("json");
    assert_eq!(first["action"], "ec2.amazonaws.com:GetCallerIdentity", "{json}");

    for (args, why) in [
        (vec!["--ip", "not-an-ip"], "is not an IPv4 or IPv6 address"),
        (vec!["--principal", "alice"], "is not an ARN"),
        (vec!["--access-key", "akia'; DROP"], "is not an access key id"),
    ] {
        let mut all = vec!["timeline", "--lake", path(&lake)];
        all.extend(args.iter());
        let output = bunker(&all);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr(&output).contains(why), "{args:?}: {}", stderr(&output));
    }
    let output = bunker(&["timeline", "--lake", path(&lake)]);
    assert!(!output.status.success(), "a timeline needs a subject");
}

/// A key that assumed a role, whose session read an object and chained into a second role, from
/// an instance that also shows up in flow and DNS logs.
fn session_lake(dir: &Path) -> std::path::PathBuf {
    let (archive, lake) = (dir.join("archive"), dir.join("lake"));
    let session = |role: &str, name: &str, key: &str| {
        serde_json::json!({
            "type": "AssumedRole", "principalId": format!("AROAEXAMPLE{role}:{name}"),
            "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{name}"), "accessKeyId": key,
            "sessionContext": { "sessionIssuer": { "type": "Role", "arn": format!("arn:aws:iam::{ACCOUNT}:role/{role}") } }
        })
    };
    let event = |id: &str, time: &str, identity: serde_json::Value, ip: &str, source: &str, name: &str| {
        let mut event = trail_event(id, time, ACCOUNT, "eu-west-1");
        event["eventSource"] = source.into();
        event["eventName"] = name.into();
        event["sourceIPAddress"] = ip.into();
        event["userIdentity"] = identity;
        event
    };
    let assumed = |mut event: serde_json::Value, role: &str, name: &str, key: &str| {
        event["requestParameters"] =
            serde_json::json!({ "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/{role}"), "roleSessionName": name });
        event["responseElements"] = serde_json::json!({
            "credentials": { "accessKeyId": key, "sessionToken": "FwoGZXIvYXdzEXAMPLE", "expiration": "Nov 19, 2026, 11:00:00 AM" },
            "assumedRoleUser": { "assumedRoleId": format!("AROAEXAMPLE{role}:{name}"), "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{name}") }
        });
        event
    };
    let ci = serde_json::json!({ "type": "IAMUser", "arn": format!("arn:aws:iam::{ACCOUNT}:user/ci"), "accessKeyId": "AKIAEXAMPLECIKEY0001" });
    let build = || session("build", "job-1", "ASIAEXAMPLESESSION01");
    let records = [
        assumed(
            event("c-1", "2026-11-19T10:00:00Z", ci, ATTACKER, "sts.amazonaws.com", "AssumeRole"),
            "build",
            "job-1",
            "ASIAEXAMPLESESSION01",
        ),
        event("c-2", "2026-11-19T10:05:00Z", build(), "10.0.1.5", "s3.amazonaws.com", "GetObject"),
        assumed(
            event("c-3", "2026-11-19T10:06:00Z", build(), "10.0.1.5", "sts.amazonaws.com", "AssumeRole"),
            "release",
            "chained",
            "ASIAEXAMPLESESSION02",
        ),
        event(
            "c-4",
            "2026-11-19T10:07:00Z",
            session("release", "chained", "ASIAEXAMPLESESSION02"),
            "10.0.1.5",
            "s3.amazonaws.com",
            "PutObject",
        ),
        event("c-5", "2026-11-19T10:08:00Z", build(), "AWS Internal", "kms.amazonaws.com", "Decrypt"),
    ];
    write_trail_object(&archive, ACCOUNT, "eu-west-1", "2026-11-19", &records);
    write_flow_object(
        &archive,
        "2026-11-19",
        &[
            flow_line("10.0.1.5", "52.218.0.10", 443, epoch("2026-11-19T10:04:00Z"), "ACCEPT"),
            flow_line("10.0.9.9", "10.0.2.9", 443, epoch("2026-11-19T10:04:00Z"), "ACCEPT"),
        ],
    );
    write_dns_object(
        &archive,
        "2026-11-19",
        &[
            dns_record("2026-11-19T10:03:00Z", "10.0.1.5", "artifacts.example.com.", "192.0.2.80"),
            dns_record("2026-11-19T10:03:00Z", "10.0.9.9", "example.com.", "93.184.216.34"),
        ],
    );
    ok(&["ingest", "--from", path(&archive), "--lake", path(&lake), "--no-detect"]);
    lake
}

/// Regression: `--access-key` showed only the key's own calls (not its sessions' GetObject and
/// PutObject), and `--principal` no flow or DNS row of the addresses the principal called from.
#[test]
fn a_timeline_follows_a_keys_sessions_and_a_principals_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = session_lake(dir.path());
    let timeline = |args: &[&str]| {
        let mut all = vec!["timeline", "--lake", path(&lake), "--format", "json"];
        all.extend_from_slice(args);
        let output = bunker(&all);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let rows: Vec<Vec<String>> = super::stdout(&output)
            .lines()
            .map(|line| {
                let row: serde_json::Value = serde_json::from_str(line).expect("json");
                ["source", "action", "via"].iter().map(|c| row[c].as_str().unwrap_or("").to_owned()).collect()
            })
            .collect();
        (rows, stderr(&output))
    };
    let table = |rows: &[[&str; 3]]| rows.iter().map(|r| r.map(str::to_owned).to_vec()).collect::<Vec<_>>();

    let (by_key, notes) = timeline(&["--access-key", "AKIAEXAMPLECIKEY0001"]);
    let hop_1 =
        "AKIAEXAMPLECIKEY0001 -AssumeRole-> ASIAEXAMPLESESSION01 (arn:aws:sts::111122223333:assumed-role/build/job-1)";
    let hop_2 =
        format!("{hop_1} -AssumeRole-> ASIAEXAMPLESESSION02 (arn:aws:sts::111122223333:assumed-role/release/chained)");
    assert_eq!(
        by_key,
        table(&[
            ["cloudtrail", "sts.amazonaws.com:AssumeRole", ""],
            ["cloudtrail", "s3.amazonaws.com:GetObject", hop_1],
            ["cloudtrail", "sts.amazonaws.com:AssumeRole", hop_1],
            ["cloudtrail", "s3.amazonaws.com:PutObject", &hop_2],
            ["cloudtrail", "kms.amazonaws.com:Decrypt", hop_1],
        ]),
        "{by_key:?}"
    );
    assert!(
        notes.contains("bunker timeline: followed 2 session key(s) created from AKIAEXAMPLECIKEY0001, 2 hop(s) deep"),
        "{notes}"
    );

    let (by_role, notes) = timeline(&["--principal", "arn:aws:iam::111122223333:role/build"]);
    assert_eq!(
        by_role,
        table(&[
            ["dns", "query artifacts.example.com. A", "address 10.0.1.5"],
            ["vpcflow", "tcp 10.0.1.5:51515 -> 52.218.0.10:443", "address 10.0.1.5"],
            ["cloudtrail", "s3.amazonaws.com:GetObject", ""],
            ["cloudtrail", "sts.amazonaws.com:AssumeRole", ""],
            ["cloudtrail", "kms.amazonaws.com:Decrypt", ""],
        ]),
        "{by_role:?}"
    );
    assert!(notes.contains("DNS rows of 2026-11-19 .. 2026-11-19: 10.0.1.5\n"), "no AWS Internal: {notes}");
}

/// The shell through a real pseudo-terminal: prompts, multi-line statements, backslash commands,
/// hints, the spinner and Ctrl-C of a long statement, and history that survives to the next session.
#[test]
fn the_sql_shell_in_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = small_lake(dir.path());
    let history = dir.path().join("state/history");
    let shell = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bunker"));
        command.args(["sql", "--lake", path(&lake), "--history", path(&history)]).env("TERM", "xterm");
        rexpect::session::spawn_command(command, Some(30_000)).expect("spawn bunker sql in a pty")
    };
    // Each line is typed at a prompt: the shell may drop what is typed before it is ready.
    let at_prompt = |p: &mut rexpect::session::PtySession, line: &str| {
        p.exp_string("bunker> ").expect("prompt");
        p.send_line(line).expect("send");
    };
    let mut p = shell();
    at_prompt(&mut p, "\\d");
    p.exp_string("region_baseline").expect("\\d lists the tables");
    at_prompt(&mut p, "\\d vpcflow");
    p.exp_string("destination port").expect("\\d vpcflow shows the column docs");
    at_prompt(&mut p, "SELECT count(*) AS n");
    p.exp_string("...> ").expect("continuation prompt");
    p.send_line("FROM cloudtrail;").expect("send");
    p.exp_string("| 14 |").expect("the count");
    p.exp_string("(1 rows in").expect("timing");
    at_prompt(&mut p, "\\format csv");
    at_prompt(&mut p, "SELECT eventname FROM cloudtrail WHERE sourceipaddress = '203.0.113.66' ORDER BY eventtime;");
    p.exp_string("eventname\r\nGetCallerIdentity\r\nListBuckets").expect("csv rows");
    at_prompt(&mut p, "SELECT eventnme FROM cloudtrail;");
    p.exp_string("did you mean eventname").expect("a hint");
    // A long statement shows a spinner, and Ctrl-C cancels it but not the shell.
    at_prompt(&mut p, "SELECT count(*) FROM generate_series(1, 100000000000);");
    p.exp_string("running").expect("the spinner of a long statement");
    p.send_control('c').expect("ctrl-c");
    p.exp_string("cancelled after").expect("the statement is cancelled");
    at_prompt(&mut p, "SELECT count(*) AS n FROM dns;");
    p.exp_string("(1 rows in").expect("the shell still answers");
    at_prompt(&mut p, "\\explain SELECT * FROM dns WHERE date = DATE '2026-11-19';");
    p.exp_string("partitions: 1 days").expect("explain");
    at_prompt(&mut p, "\\nonsense");
    p.exp_string("unknown command").expect("an unknown command is named");
    at_prompt(&mut p, "\\q");
    p.exp_eof().expect("the shell exits");

    let saved = std::fs::read_to_string(&history).expect("history saved");
    assert!(saved.contains("FROM cloudtrail;"), "{saved}");

    // A new session recalls the last statement with the up arrow.
    let mut p = shell();
    at_prompt(&mut p, "\\timing off");
    p.exp_string("bunker> ").expect("prompt");
    p.send("\x1b[A").expect("up arrow");
    p.send("\x1b[A").expect("up arrow");
    p.send_line("").expect("enter");
    p.exp_string("unknown command").expect("history recalled \\nonsense");
    p.send_control('d').expect("ctrl-d");
    p.exp_eof().expect("ctrl-d leaves");
}

/// Stops a spawned `bunker serve` however the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails the test, saying how to install it, unless Python has the ADBC Flight SQL driver.
fn require_adbc() {
    let check = std::process::Command::new("python3")
        .args(["-c", "import adbc_driver_flightsql, pyarrow"])
        .output()
        .expect("python3 is needed for the Flight SQL client test");
    assert!(
        check.status.success(),
        "the Flight SQL test needs the ADBC driver: python3 -m pip install adbc-driver-flightsql pyarrow \
         (scripts/test.sh installs it)\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

type StderrLines = std::io::Lines<std::io::BufReader<std::process::ChildStderr>>;

/// Starts `bunker serve` over `lake` on a free loopback port; returns it with its grpc:// address
/// and the rest of its stderr.
fn start_serve(lake: &Path, token: &str, env: &[(&str, &str)]) -> (Server, String, StderrLines) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bunker"))
        .args(["serve", "--lake", path(lake), "--listen", "127.0.0.1:0", "--token", token])
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bunker serve");
    let stderr = child.stderr.take().expect("stderr");
    let server = Server(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let uri = loop {
        let line = lines.next().expect("bunker serve exited before listening").expect("stderr line");
        if let Some(at) = line.find("grpc://") {
            break line[at..].split_whitespace().next().expect("uri").to_owned();
        }
    };
    assert!(uri.starts_with("grpc://127.0.0.1:"), "{uri}");
    (server, uri, lines)
}

/// `bunker serve` answered by a real Flight SQL client (the ADBC driver from PyPI): queries,
/// metadata, and every write, escape and bad token refused.
#[test]
fn the_lake_over_flight_sql_with_a_real_client() {
    require_adbc();
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = small_lake(dir.path());
    let token = "test-token-0123456789abcdef";
    let (server, uri, _stderr) = start_serve(&lake, token, &[]);

    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/flight_client.py");
    let output = std::process::Command::new("python3").args([client, &uri, token]).output().expect("run the client");
    assert!(output.status.success(), "client failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("client JSON");
    drop(server);

    assert_eq!(answer["count"], 14, "{answer}");
    assert_eq!(answer["names"], serde_json::json!(["GetCallerIdentity", "ListBuckets"]), "{answer}");
    assert!(answer["time_type"].as_str().is_some_and(|t| t.starts_with("timestamp[us")), "{answer}");
    assert_eq!(answer["json"], "7", "{answer}");
    let tables: Vec<&str> = answer["tables"].as_array().expect("tables").iter().filter_map(|t| t.as_str()).collect();
    for table in ["alerts", "cloudtrail", "dns", "ingest_log", "vpcflow"] {
        assert!(tables.contains(&table), "{table} not listed: {tables:?}");
    }
    assert_eq!(answer["table_schema"], serde_json::json!(["version", "account_id", "region"]), "{answer}");
    for (sql, error) in answer["refused"].as_object().expect("refused") {
        let error = error.as_str().unwrap_or_else(|| panic!("{sql} was allowed"));
        assert!(!error.is_empty(), "{sql}");
    }
    assert!(!Path::new("/tmp/bunker-flight-copy.csv").exists(), "COPY TO wrote a file");
    let update = answer["updates"]["execute_update"].as_str().expect("execute_update refused");
    assert!(update.contains("read-only"), "{update}");
    for name in ["token_missing", "token_wrong"] {
        let error = answer[name].as_str().unwrap_or_else(|| panic!("{name}: the query was allowed"));
        assert!(error.to_lowercase().contains("unauthenticated") || error.contains("bearer token"), "{name}: {error}");
    }
}

/// Issue 36: `bunker serve` answered every statement from the snapshot it opened at start, so a
/// client counted the same rows before and after an ingest. Each statement must read the latest
/// commit, of a table that grew and of one that was empty when serve started, and say which.
#[test]
fn serve_answered_from_the_snapshot_it_opened_at_start() {
    use std::io::{BufRead as _, Write as _};
    require_adbc();
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let events = |day: &str, n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| trail_event(&format!("{day}-{i}"), &format!("{day}T10:00:{:02}Z", i % 60), ACCOUNT, "eu-west-1"))
            .collect()
    };
    write_trail_object(&archive, ACCOUNT, "eu-west-1", "2026-11-18", &events("2026-11-18", 4));
    ok(&["ingest", "--from", path(&archive), "--lake", path(&lake), "--no-detect"]);

    let token = "test-token-0123456789abcdef";
    let (server, uri, stderr) = start_serve(&lake, token, &[("BUNKER_LOG", "error,bunker_query::flight=info")]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/flight_statements.py");
    let mut client = std::process::Command::new("python3")
        .args([script, &uri, token])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the client");
    let mut to_client = client.stdin.take().expect("stdin");
    let mut from_client = std::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    let mut count = || -> serde_json::Value {
        let sql = "SELECT (SELECT count(*) FROM cloudtrail) AS trail, (SELECT count(*) FROM vpcflow) AS flows";
        writeln!(to_client, "{sql}").expect("send the statement");
        let line = from_client.next().expect("the client answered").expect("client line");
        serde_json::from_str(&line).expect("client JSON")
    };

    let before = count();
    assert_eq!(before["rows"], serde_json::json!([[4, 0]]), "{before}");
    let trail_before = before["versions"]["cloudtrail"].as_u64().expect("the cloudtrail version is reported");

    // The same lake grows while serve runs: 500 more events, and the first flow logs.
    write_trail_object(&archive, ACCOUNT, "eu-west-1", "2026-11-19", &events("2026-11-19", 500));
    write_flow_object(
        &archive,
        "2026-11-19",
        &[flow_line("10.0.1.5", "10.0.2.9", 443, epoch("2026-11-19T03:00:00Z"), "ACCEPT")],
    );
    ok(&["ingest", "--from", path(&archive), "--lake", path(&lake), "--no-detect"]);

    let after = count();
    assert_eq!(after["rows"], serde_json::json!([[504, 1]]), "the count did not grow: {after}");
    let trail_after = after["versions"]["cloudtrail"].as_u64().expect("the cloudtrail version is reported");
    assert!(trail_after > trail_before, "{before} then {after}");
    assert!(after["versions"]["vpcflow"].as_u64().is_some(), "{after}");

    drop(to_client);
    assert!(client.wait().expect("client exits").success());
    drop(server);
    // Each statement's log line names the versions it read.
    let log: Vec<String> = stderr.map_while(Result::ok).filter(|l| l.contains("bunker serve: statement")).collect();
    assert!(log.iter().any(|l| l.contains(&format!("cloudtrail={trail_after}"))), "{log:#?}");
}
