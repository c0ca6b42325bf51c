//! Every kind of bad input the foundation promises to survive, in one archive beside good objects:
//! each bad object is recorded in `ingest_log` with its key and the reason, the good ones (and the
//! good records of partly bad ones) are ingested, and nothing panics.

use std::io::Write;
use std::path::Path;

use bunker_ingest::classify::{LogFormat, ObjectRef};
use bunker_ingest::decode::Limits;
use bunker_ingest::pipeline::{ObjectOutcome, process_object};
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::support::{count, ingest, rows};

const CT: &str = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01";
const FLOW: &str = "AWSLogs/111122223333/vpcflowlogs/us-east-1/2024/05/01";
const DNS: &str = "AWSLogs/111122223333/vpcdnsquerylogs/vpc-0a1b2c3d/2024/05/01";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn event(id: &str, time: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/ana","accountId":"111122223333","userName":"ana"}},"eventTime":"{time}","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0","requestParameters":{{"maxResults":5}},"responseElements":null,"requestID":"r-{id}","eventID":"{id}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#
    )
}

fn records(events: &[String]) -> String {
    format!("{{\"Records\":[{}]}}", events.join(","))
}

fn put(root: &Path, key: &str, data: &[u8]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

/// Events in the single-line file: enough for more than 50 MB.
const BIG_EVENTS: i64 = 90_000;

const FLOW_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
const FLOW_LINE: &str =
    "2 111122223333 eni-0a1b2c3d4e5f60718 10.0.1.5 203.0.113.9 44321 443 6 10 8400 1714521600 1714521660 ACCEPT OK";
const DNS_LINE: &str = r#"{"version":"1.100000","account_id":"111122223333","region":"us-east-1","vpc_id":"vpc-0a1b2c3d","query_timestamp":"2024-05-01T10:00:00Z","query_name":"example.com.","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[{"Rdata":"93.184.216.34","Type":"A","Class":"IN"}],"srcaddr":"10.0.1.5","srcport":"53211","transport":"UDP","srcids":{"instance":"i-0123456789abcdef0"}}"#;

#[tokio::test]
async fn bad_objects_are_recorded_and_the_rest_is_ingested() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let good = gz(records(&[event("e-1", "2024-05-01T10:00:00Z"), event("e-2", "2024-05-01T10:01:00Z")]).as_bytes());
    put(&archive, &format!("{CT}/good.json.gz"), &good);
    put(&archive, &format!("{CT}/truncated.json.gz"), &good[..good.len() / 2]);
    let mut corrupt = good.clone();
    corrupt[12..40].iter_mut().for_each(|b| *b ^= 0xa5);
    put(&archive, &format!("{CT}/corrupt.json.gz"), &corrupt);
    put(&archive, &format!("{CT}/empty.json.gz"), b"");
    put(&archive, &format!("{CT}/notjson.json.gz"), &gz(b"this is not JSON at all\n"));
    put(&archive, &format!("{CT}/norecords.json.gz"), &gz(br#"{"Logs":[{"eventName":1}],"foo":"bar"}"#));
    put(
        &archive,
        &format!("{CT}/badtime.json.gz"),
        &gz(records(&[event("e-3", "2024-05-01T10:02:00Z"), event("e-4", "yesterday at noon")]).as_bytes()),
    );
    let wrong_types = records(&[event("e-5", "2024-05-01T10:03:00Z")
        .replace(r#""readOnly":true"#, r#""readOnly":"sometimes""#)
        .replace(r#""eventName":"DescribeInstances""#, r#""eventName":42"#)]);
    put(&archive, &format!("{CT}/wrongtypes.json.gz"), &gz(wrong_types.as_bytes()));
    let mut non_utf8 = records(&[event("e-6", "2024-05-01T10:04:00Z")]).into_bytes();
    let at = non_utf8.windows(3).position(|w| w == b"ana").expect("name");
    non_utf8[at] = 0xff;
    put(&archive, &format!("{CT}/nonutf8.json.gz"), &gz(&non_utf8));
    // More than 50 MB on one line.
    let many: Vec<String> = (0..BIG_EVENTS).map(|i| event(&format!("big-{i}"), "2024-05-01T11:00:00Z")).collect();
    let huge = records(&many);
    assert!(huge.len() > 50 << 20 && !huge.contains('\n'), "{} bytes", huge.len());
    put(&archive, &format!("{CT}/huge.json.gz"), &gz(huge.as_bytes()));

    put(
        &archive,
        &format!("{FLOW}/unknownfield.log.gz"),
        &gz(format!("{FLOW_HEADER} flow-colour\n{FLOW_LINE} blue\n").as_bytes()),
    );
    put(
        &archive,
        &format!("{FLOW}/shortline.log.gz"),
        &gz(format!("{FLOW_HEADER}\n{FLOW_LINE}\n2 111122223333 eni-0a1b 10.0.1.5\n{FLOW_LINE}\n").as_bytes()),
    );
    put(
        &archive,
        &format!("{DNS}/notjsonline.log.gz"),
        &gz(format!("{DNS_LINE}\nthis line is not JSON\n{DNS_LINE}\n").as_bytes()),
    );

    let summary = ingest(&archive, &lake).await;

    // Rows: good (2) + badtime (1 of 2) + wrongtypes (1) + huge; 2 + 1 flow rows; 2 DNS rows.
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail").await, 4 + BIG_EVENTS);
    assert_eq!(count(&lake, "SELECT count(*) FROM vpcflow").await, 3);
    assert_eq!(count(&lake, "SELECT count(*) FROM dns").await, 2);

    let failed: Vec<(&str, &str, &str)> = vec![
        ("truncated.json.gz", "gzip", "truncated"),
        ("corrupt.json.gz", "gzip", ""),
        ("empty.json.gz", "malformed", "empty object"),
        ("notjson.json.gz", "malformed", "not JSON"),
        ("norecords.json.gz", "malformed", "Records"),
        ("nonutf8.json.gz", "malformed", "UTF-8"),
    ];
    assert_eq!(summary.failed.len(), failed.len(), "{:#?}", summary.failed);
    for (name, kind, reason) in failed {
        let key = format!("{CT}/{name}");
        let found =
            rows(&lake, &format!("SELECT status, error_kind, reason FROM ingest_log WHERE source_key = '{key}'")).await;
        assert_eq!(found.len(), 1, "{key}: {found:?}");
        let parts: Vec<&str> = found[0].splitn(3, '|').collect();
        assert_eq!(parts[0], "failed", "{key}");
        assert_eq!(parts[1], kind, "{key}: {found:?}");
        // The reason names the object, and says what is wrong with it.
        assert!(parts[2].contains(&key) && parts[2].contains(reason), "{key}: {}", parts[2]);
    }

    let partial = rows(&lake, "SELECT source_key, status, rows, rejected_records, reason FROM ingest_log WHERE rejected_records > 0 ORDER BY source_key").await;
    assert_eq!(partial.len(), 4, "{partial:#?}");
    let expect = [
        (format!("{CT}/badtime.json.gz"), "1|1", "yesterday at noon"),
        (format!("{FLOW}/shortline.log.gz"), "2|1", "line 3"),
        (format!("{FLOW}/unknownfield.log.gz"), "1|1", "flow-colour"),
        (format!("{DNS}/notjsonline.log.gz"), "2|1", "line 2"),
    ];
    for (key, counts, reason) in &expect {
        let row = partial
            .iter()
            .find(|r| r.starts_with(&format!("{key}|")))
            .unwrap_or_else(|| panic!("{key} missing: {partial:#?}"));
        assert!(row.contains(&format!("committed|{counts}|")) && row.contains(reason), "{row}");
    }

    // Wrong types lose nothing: the value that did not fit is kept in additionalfields.
    let kept = rows(&lake, "SELECT eventname, readonly, additionalfields FROM cloudtrail WHERE eventid = 'e-5'").await;
    assert_eq!(kept.len(), 1);
    assert!(kept[0].starts_with("42|NULL|") && kept[0].contains("sometimes"), "{kept:?}");
}

#[test]
fn a_zero_byte_folder_object_is_skipped_not_failed() {
    let folder = ObjectRef::new("archive", "AWSLogs/111122223333/CloudTrail/", 0);
    match process_object(&folder, Vec::new(), Limits::bytes(1 << 20)) {
        ObjectOutcome::Skipped { format: LogFormat::Unknown, reason, .. } => {
            assert!(reason.contains("folder"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

// An empty `.keep` in a folder of exports is not a broken log, while an empty object under an AWS log
// key is (AWS never writes one; the empty-file case above covers that).
#[test]
fn an_empty_file_outside_the_aws_layout_is_skipped() {
    let keep = ObjectRef::new("", "exports/.keep", 0);
    match process_object(&keep, Vec::new(), Limits::bytes(1 << 20)) {
        ObjectOutcome::Skipped { format: LogFormat::Unknown, reason, .. } => assert_eq!(reason, "empty file"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_gzip_bomb_is_refused_by_the_size_cap() {
    let bomb = gz(&vec![b' '; 8 << 20]);
    let object = ObjectRef::new("", format!("{CT}/bomb.json.gz"), bomb.len() as u64);
    match process_object(&object, bomb, Limits::bytes(1 << 20)) {
        ObjectOutcome::Failed { error, .. } => assert_eq!(error.kind(), "too_large", "{error}"),
        other => panic!("{other:?}"),
    }
}
