//! Credentials never reach a log: the worker and the S3 backfill run with every log target at
//! `trace` (bunker's own, the AWS SDK's signing and HTTP layers, hyper, deltalake, object_store),
//! in text and in JSON, with a session token set, and neither the secret access key nor the
//! session token may appear anywhere in what they print. The worker also sends its alerts to a
//! webhook whose URL path and `Authorization` header are secrets (as a Slack webhook's are): those
//! may not appear either.
//!
//! The access key id is not a secret (AWS puts it in every signed request's `Authorization`
//! header, and CloudTrail records it as `useridentity.accesskeyid`), so the test only reports
//! whether it shows up.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::moto::{ACCESS_KEY, Moto, SECRET_KEY};
use super::{
    ARCHIVE, LAKE, LAKE_BUCKET, Worker, bunker, expected, generate_archive, trail_record, wait_for, worker_command,
};

/// A session token as STS hands them out, recognisable in any output.
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEBUNKERSESSIONTOKENNEVERLOGMEaCXVzLWVhc3QtMSJHMEUCIQ";

/// The secret part of the webhook's URL, and its bearer token.
const WEBHOOK_PATH: &str = "/services/T0BUNKER/B0BUNKER/webhookpathsecretNEVERLOGME";
const WEBHOOK_TOKEN: &str = "bearer-secret-NEVERLOGME-0123456789";

/// Everything, at the most verbose level.
const TRACE_ALL: &str = "trace";

/// Every place a credential could leak to: the text, and where it came from.
fn assert_no_credentials(what: &str, text: &str) {
    let secrets = [
        ("secret access key", SECRET_KEY),
        ("session token", SESSION_TOKEN),
        ("webhook URL path", WEBHOOK_PATH),
        ("webhook token", WEBHOOK_TOKEN),
    ];
    for (name, secret) in secrets {
        if let Some(at) = text.find(secret) {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("the {name} leaked into {what}:\n{}", &text[start..end]);
        }
    }
}

/// Shows that the trace level really reached the SDK and the lake's store: without their lines,
/// finding no secret would prove nothing.
fn assert_traced(what: &str, text: &str) {
    for target in ["aws_smithy_runtime", "aws_sigv4", "hyper"] {
        assert!(text.contains(target), "{what} has no {target} trace lines; the test would prove nothing");
    }
}

/// A webhook receiver on a free loopback port that answers 200 to every request; returns its
/// address and the number of requests it has had.
fn webhook_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let address = listener.local_addr().expect("local addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || answer_requests(stream, &counter));
        }
    });
    (format!("http://{address}"), requests)
}

/// Reads HTTP/1.1 requests off one (kept-alive) connection and answers each with 200.
fn answer_requests(stream: TcpStream, requests: &AtomicUsize) {
    let Ok(mut out) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        if out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_aws_secret_session_token_or_webhook_secret_reaches_any_log_even_at_trace() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate_archive(&dir.path().join("archive"), 150, 111);
    moto.upload_dir(&dir.path().join("archive"), ARCHIVE).await;
    // A root sign-in, so that at least one alert goes to the webhook.
    let now = chrono::Utc::now();
    let root = serde_json::json!({"type": "Root", "principalId": "111122223333", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"});
    let login = trail_record(
        &now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "evt-root-login",
        "ConsoleLogin",
        root,
        serde_json::json!({"responseElements": {"ConsoleLogin": "Success"}}),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(serde_json::json!({ "Records": [login] }).to_string().as_bytes()).expect("gzip");
    let key = format!(
        "AWSLogs/111122223333/CloudTrail/us-east-1/{}/111122223333_CloudTrail_us-east-1_{}_root.json.gz",
        now.format("%Y/%m/%d"),
        now.format("%Y%m%dT%H%MZ")
    );
    moto.put(ARCHIVE, &key, gz.finish().expect("gzip")).await;
    let (webhook, webhook_requests) = webhook_receiver();
    let config = dir.path().join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[[sinks]]\ntype = \"webhook\"\nurl = \"{webhook}{WEBHOOK_PATH}\"\n\
             headers = {{ Authorization = \"Bearer {WEBHOOK_TOKEN}\" }}\n"
        ),
    )
    .expect("config");

    // The worker, JSON logs, lake on S3 (so the Delta/object_store client signs requests too).
    let config_arg = config.to_str().expect("utf-8");
    let mut command = worker_command(&moto, &queue, LAKE, &["--log-json", "--config", config_arg], TRACE_ALL);
    command.env("AWS_SESSION_TOKEN", SESSION_TOKEN).env("RUST_LOG", TRACE_ALL);
    let log = dir.path().join("worker.log");
    let mut worker = Worker::spawn(command, log.clone());
    let (ct, flow, dns) = expected(&summary);
    wait_for(&moto, &queue, LAKE, (ct + 1, flow, dns), &mut [&mut worker]).await;
    let sent = webhook_requests.load(Ordering::SeqCst);
    assert!(sent > 0, "no alert reached the webhook; the test would prove nothing about its secrets");
    let status = worker.terminate();
    let text = std::fs::read_to_string(&log).expect("worker log");
    assert!(status.success(), "worker exit {status}");
    assert_traced("the worker's log", &text);
    assert!(text.contains("object_store") || text.contains("deltalake"), "no lake store trace lines");
    assert_no_credentials("the worker's log", &text);
    let worker_key_ids = text.matches(ACCESS_KEY).count();

    // The backfill from S3, text logs, local lake; stdout too.
    let from = format!("s3://{ARCHIVE}/AWSLogs/");
    let lake = dir.path().join("backfill-lake");
    let output = bunker(&moto)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("BUNKER_LOG", TRACE_ALL)
        .env("RUST_LOG", TRACE_ALL)
        .args(["ingest", "--no-detect", "--from", &from, "--lake", lake.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .output()
        .expect("run bunker ingest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ingest failed:\n{stdout}\n{}", &stderr[stderr.len().saturating_sub(4000)..]);
    assert_traced("the backfill's log", &stderr);
    assert_no_credentials("the backfill's stdout", &stdout);
    assert_no_credentials("the backfill's log", &stderr);
    let backfill_key_ids = stderr.matches(ACCESS_KEY).count();
    println!(
        "credentials: no secret key, session token or webhook secret in {} log bytes ({sent} webhook requests); \
         the access key id appears {worker_key_ids} times in the worker's log and {backfill_key_ids} times in the \
         backfill's",
        text.len() + stderr.len() + stdout.len()
    );
}
