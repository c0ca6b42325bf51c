//! Exactly-once holds for the AWS object, wherever it is read from: the same bytes read from two
//! roots of one folder, or from a copy elsewhere, add their rows once; other bytes under a name
//! the lake holds are a different object; lakes written before identities were recorded still
//! know their objects.

use std::path::Path;

use bunker_ingest::synth::{SynthConfig, generate};
use bunker_schemas::LogTable;

use crate::support::{count, ingest, rows};

/// Copies every file under `from` to the same relative path under `to`.
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let target = to.join(entry.path().strip_prefix(from).expect("under root"));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

async fn total_rows(lake: &Path) -> i64 {
    count(
        lake,
        "SELECT (SELECT count(*) FROM cloudtrail) + (SELECT count(*) FROM vpcflow) + (SELECT count(*) FROM dns)",
    )
    .await
}

/// Regression: an object's identity was its path under `--from`, so ingesting `archive/` and
/// then `archive/AWSLogs/` into one lake put every row in twice.
#[tokio::test]
async fn two_roots_of_one_folder_add_each_object_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let generated = generate(&archive, &SynthConfig::new(1500, 3)).expect("generate");
    let expected = (generated.cloudtrail_events + generated.vpcflow_records + generated.dns_records) as i64;

    let first = ingest(&archive, &lake).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(total_rows(&lake).await, expected);

    let again = ingest(&archive.join("AWSLogs"), &lake).await;
    assert_eq!(again.total_rows(), 0, "{again:?}");
    assert_eq!(again.committed_objects, 0);
    assert_eq!(again.duplicate_objects, first.committed_objects);
    assert_eq!(total_rows(&lake).await, expected);
    assert_eq!(
        count(&lake, "SELECT count(*) FROM (SELECT eventid FROM cloudtrail GROUP BY eventid HAVING count(*) > 1)")
            .await,
        0
    );
}

/// Regression: a synced copy of the archive somewhere else (`aws s3 sync … ./copy`, without the
/// `AWSLogs/` folder above it) was a new set of objects to the lake, and doubled every row.
#[tokio::test]
async fn a_copy_under_another_folder_adds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake, copy) = (dir.path().join("archive"), dir.path().join("lake"), dir.path().join("copy"));
    let generated = generate(&archive, &SynthConfig::new(1000, 8)).expect("generate");
    let first = ingest(&archive, &lake).await;
    assert_eq!(first.rows.get(&LogTable::CloudTrail).copied(), Some(generated.cloudtrail_events));
    // The files land straight under ./copy/<account>/..., the AWSLogs/ segment gone.
    copy_tree(&archive.join("AWSLogs"), &copy);

    let again = ingest(&copy, &lake).await;
    assert_eq!(again.total_rows(), 0, "{again:?}");
    assert_eq!(again.duplicate_objects, first.committed_objects);
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail").await, generated.cloudtrail_events as i64);
    // Each duplicate's ingest_log row points at the commit holding its rows.
    assert_eq!(
        count(&lake, "SELECT count(*) FROM ingest_log WHERE status = 'duplicate' AND lake_version IS NULL").await,
        0
    );
}

const KEY: &str =
    "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/03/111122223333_CloudTrail_us-east-1_20250303T1000Z_Xy7.json";

fn trail_file(event_ids: &[&str]) -> String {
    let records: Vec<String> = event_ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"eventVersion":"1.08","eventTime":"2025-03-03T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","eventID":"{id}","eventType":"AwsApiCall","recipientAccountId":"111122223333","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/ops","accountId":"111122223333"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"Records":[{}]}}"#, records.join(","))
}

/// A different object under a name the lake holds — a log file rewritten in the archive — is not
/// mistaken for a copy: its rows are committed, and its `ingest_log` row says what it replaces.
#[tokio::test]
async fn the_same_key_with_other_bytes_is_another_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let path = archive.join(KEY);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");

    std::fs::write(&path, trail_file(&["a-1", "a-2"])).expect("write");
    assert_eq!(ingest(&archive, &lake).await.total_rows(), 2);
    // The same bytes again: nothing. Other bytes, same key and same size: a new object.
    assert_eq!(ingest(&archive, &lake).await.total_rows(), 0);
    std::fs::write(&path, trail_file(&["b-1", "b-2"])).expect("write");
    let replaced = ingest(&archive, &lake).await;
    assert_eq!((replaced.total_rows(), replaced.committed_objects), (2, 1), "{replaced:?}");

    assert_eq!(rows(&lake, "SELECT eventid FROM cloudtrail ORDER BY eventid").await, ["a-1", "a-2", "b-1", "b-2"]);
    let notes = rows(&lake, "SELECT reason FROM ingest_log WHERE status = 'committed' AND reason IS NOT NULL").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("replaces a different object of the same name committed at version"), "{notes:?}");
}

/// Lakes written before commits recorded identities list objects by where they were read; they
/// are recognised by name, so re-ingesting from another root still adds nothing.
#[tokio::test]
async fn a_lake_written_with_the_old_identity_still_knows_its_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let generated = generate(&archive, &SynthConfig::new(600, 21)).expect("generate");
    let first = ingest(&archive, &lake).await;
    assert_eq!(first.rows.get(&LogTable::CloudTrail).copied(), Some(generated.cloudtrail_events));

    // Take the identities out of every commit, as bunker wrote them before (and drop the
    // checkpoints, which hold no commit records and would only be read first).
    let mut rewritten = 0;
    for table in ["cloudtrail", "vpcflow", "dns"] {
        let log = lake.join(table).join("_delta_log");
        for entry in std::fs::read_dir(&log).expect("log") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).expect("read");
                let lines: Vec<String> = text
                    .lines()
                    .map(|line| {
                        let mut action: serde_json::Value = serde_json::from_str(line).expect("json");
                        if let Some(info) = action.pointer_mut("/commitInfo/bunker").and_then(|v| v.as_object_mut()) {
                            rewritten += info.remove("identities").is_some() as usize;
                        }
                        action.to_string()
                    })
                    .collect();
                std::fs::write(&path, lines.join("\n") + "\n").expect("write");
            }
        }
    }
    assert!(rewritten > 0, "no commit recorded identities");

    let again = ingest(&archive.join("AWSLogs"), &lake).await;
    assert_eq!(again.total_rows(), 0, "{again:?}");
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail").await, generated.cloudtrail_events as i64);
}
