//! Hostile input through the worker: objects, keys and message bodies written by whoever controls a
//! logged account (or can send to the queue). Each ends in a recorded error, or is read as the
//! plain data it is, and the worker keeps going; what was good lands exactly once.

use super::*;

const CT_DAY: &str = "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/03";

fn ct(name: &str) -> String {
    format!("{CT_DAY}/111122223333_CloudTrail_us-east-1_20250303T1000Z_{name}.json.gz")
}

fn gz(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

/// One good CloudTrail record with its own event id.
fn record(event_id: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","eventTime":"2025-03-03T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","eventID":"{event_id}","recipientAccountId":"111122223333","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/ana"}}}}"#
    )
}

/// Digits that do not compress much: a fixed xorshift stream.
fn noise(len: usize, seed: u64) -> String {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'0' + (state % 10) as u8)
        })
        .collect()
}

/// An S3 event notification for one key, URL-encoded as S3 writes it.
fn s3_event(key: &str) -> serde_json::Value {
    let encoded: String = url_encode(key);
    serde_json::json!({"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2025-03-03T10:00:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{"s3SchemaVersion":"1.0","bucket":{"name":ARCHIVE},"object":{"key":encoded,"size":100}}})
}

fn url_encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The rows of `sql` over the lake, one JSON object each.
fn json_rows(moto: &Moto, sql: &str) -> Vec<serde_json::Value> {
    let out = run_ok(moto, &["query", "--lake", LAKE, "--format", "json", sql]);
    out.lines().map(|line| serde_json::from_str(line).expect("a JSON row")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_objects_keys_and_bodies_are_recorded_and_the_worker_keeps_going() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");

    // Objects that must fail, each with the reason its ingest_log row must give.
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let tiny_values: String = {
        // `{"x":N}` records: 3 tape nodes per 10 bytes, past the tape budget; 18 MB of them.
        let digits = noise(6_000_000, 7);
        let mut text = String::from(r#"{"Records":["#);
        for (i, chunk) in digits.as_bytes().chunks(3).take(1_800_000).enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(r#"{"x":"#);
            text.push_str(std::str::from_utf8(chunk).expect("digits"));
            text.push('}');
        }
        text.push_str("]}");
        text
    };
    let failing: Vec<(String, Vec<u8>, &str, &str)> = vec![
        // 64 MiB of zeros at best compression: under the size cap, over the ratio cap.
        (ct("ratio-bomb"), gz(&vec![0u8; 64 << 20], 9), "too_large", "gzip bomb"),
        (
            ct("deep"),
            gz(
                format!(r#"{{"Records":[{{"eventTime":"2025-03-03T10:00:00Z","requestParameters":{deep}}}]}}"#)
                    .as_bytes(),
                6,
            ),
            "malformed",
            "deeper",
        ),
        (ct("tiny-values"), gz(tiny_values.as_bytes(), 6), "malformed", "JSON values"),
    ];
    for (key, body, _, _) in &failing {
        moto.put(ARCHIVE, key, body.clone()).await;
    }

    // Objects that are hostile but legal: they land as data.
    let mut good_ids = vec![];
    // A 20 MiB string that does not compress much, in an event name.
    let enormous = noise(20 << 20, 11);
    let big_record =
        record("e-enormous").replace(r#""eventName":"ListUsers""#, &format!(r#""eventName":"{enormous}""#));
    moto.put(ARCHIVE, &ct("enormous"), gz(format!(r#"{{"Records":[{big_record}]}}"#).as_bytes(), 6)).await;
    good_ids.push("e-enormous".to_owned());
    // A million tiny records, none of them usable: counted, a few quoted, the one good one kept.
    let mut many = String::from(r#"{"Records":["#);
    many.push_str(&record("e-among-many"));
    for digits in noise(6_000_000, 13).as_bytes().chunks(6) {
        many.push_str(r#",{"eventID":""#);
        many.push_str(std::str::from_utf8(digits).expect("digits"));
        many.push_str(r#""}"#);
    }
    many.push_str("]}");
    moto.put(ARCHIVE, &ct("many-tiny"), gz(many.as_bytes(), 6)).await;
    good_ids.push("e-among-many".to_owned());
    // Keys S3 allows that look like paths, encodings and terminal escapes: plain names to bunker.
    let odd_keys = [
        format!("{CT_DAY}/../../../../../../etc/passwd.json.gz"),
        format!("{CT_DAY}/a%2Fb%252F..%2F.json.gz"),
        // (moto_server cannot store a line break in a key, which S3 can; the log writer's own test
        // covers that one.)
        format!("{CT_DAY}/tab\tescape\x1b[31mred\x07bell.json.gz"),
    ];
    for (i, key) in odd_keys.iter().enumerate() {
        let id = format!("e-odd-{i}");
        moto.put(ARCHIVE, key, gz(format!(r#"{{"Records":[{}]}}"#, record(&id)).as_bytes(), 6)).await;
        good_ids.push(id);
    }

    // Bodies sent straight to the queue.
    // A key longer than S3 allows: forged.
    let long_key = format!("{CT_DAY}/{}.json.gz", "k".repeat(1100));
    moto.send(&queue, &serde_json::json!({"Records": [s3_event(&long_key)]}).to_string()).await;
    // A bucket name S3 could not have sent.
    let mut wrong_bucket = s3_event(&ct("x"));
    wrong_bucket["s3"]["bucket"]["name"] = "../other-bucket".into();
    moto.send(&queue, &serde_json::json!({"Records": [wrong_bucket]}).to_string()).await;
    // Nearly 256 KB: one object named hundreds of times in one message lands once.
    moto.put(ARCHIVE, &ct("repeated"), gz(format!(r#"{{"Records":[{}]}}"#, record("e-repeated")).as_bytes(), 6)).await;
    good_ids.push("e-repeated".to_owned());
    let one = s3_event(&ct("repeated"));
    let copies = 250_000 / one.to_string().len();
    let repeated = serde_json::json!({"Records": vec![one; copies]}).to_string();
    assert!(repeated.len() > 200_000 && repeated.len() <= 256 * 1024, "{} bytes", repeated.len());
    moto.send(&queue, &repeated).await;
    // Nearly 256 KB of JSON that is no notification.
    moto.send(&queue, &serde_json::json!({"padding": "p".repeat(255_000)}).to_string()).await;

    let mut worker = Worker::start(&moto, &queue, LAKE, dir.path().join("worker.log"), &[]);
    wait_for(&moto, &queue, LAKE, (good_ids.len() as u64, 0, 0), &mut [&mut worker]).await;

    // Every good record once, under the key it was stored with.
    let rows =
        json_rows(&moto, "SELECT eventid, source_key, length(eventname) AS name_len FROM cloudtrail ORDER BY eventid");
    let mut want = good_ids.clone();
    want.sort();
    assert_eq!(rows.iter().map(|r| r["eventid"].as_str().unwrap_or_default()).collect::<Vec<_>>(), want);
    for (i, key) in odd_keys.iter().enumerate() {
        let row = rows.iter().find(|r| r["eventid"] == format!("e-odd-{i}")).expect("odd key row");
        assert_eq!(row["source_key"].as_str(), Some(key.as_str()), "the key is kept as S3 has it");
    }
    let enormous_row = rows.iter().find(|r| r["eventid"] == "e-enormous").expect("enormous row");
    assert_eq!(enormous_row["name_len"].as_u64(), Some(20 << 20));

    // Every failure recorded with its kind and reason.
    let entries = json_rows(&moto, "SELECT source_key, status, error_kind, reason, rejected_records FROM ingest_log");
    let entry = |needle: &str| {
        entries
            .iter()
            .find(|e| e["source_key"].as_str().unwrap_or_default().contains(needle))
            .unwrap_or_else(|| panic!("no ingest_log row for {needle}: {entries:#?}"))
    };
    for (key, _, kind, reason) in &failing {
        let e = entry(key);
        assert_eq!((e["status"].as_str(), e["error_kind"].as_str()), (Some("failed"), Some(*kind)), "{e}");
        assert!(e["reason"].as_str().unwrap_or_default().contains(reason), "{e}");
    }
    let many = entry("many-tiny");
    assert_eq!(many["status"], "committed");
    assert_eq!(many["rejected_records"].as_u64(), Some(1_000_000), "{many}");
    let notifications: Vec<&serde_json::Value> = entries.iter().filter(|e| e["error_kind"] == "notification").collect();
    assert_eq!(notifications.len(), 3, "{notifications:#?}");
    let reasons: String = notifications.iter().map(|e| e["reason"].as_str().unwrap_or_default()).collect();
    assert!(reasons.contains("longer than S3 allows"), "{reasons}");
    assert!(reasons.contains("not a valid S3 bucket name"), "{reasons}");
    for e in &entries {
        assert!(
            e.to_string().len() < 8 * 1024,
            "an ingest_log row that large quotes too much: {}",
            e.to_string().len()
        );
    }

    // The worker's own log cannot be recoloured through a key.
    let text = worker.log();
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "a terminal escape from a key reached the log");
    worker.assert_running();
    assert!(worker.terminate().success());
}
