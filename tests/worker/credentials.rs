//! Credentials never reach a log: the worker and the S3 backfill run with every log target at
//! `trace` (bunker's own, the AWS SDK's signing and HTTP layers, hyper, deltalake, object_store),
//! in text and in JSON, with a session token set, and neither the secret access key nor the
//! session token may appear anywhere in what they print.
//!
//! The access key id is not a secret (AWS puts it in every signed request's `Authorization`
//! header, and CloudTrail records it as `useridentity.accesskeyid`), so the test only reports
//! whether it shows up.

use std::process::Stdio;

use super::moto::{ACCESS_KEY, Moto, SECRET_KEY};
use super::{ARCHIVE, LAKE, LAKE_BUCKET, Worker, bunker, expected, generate_archive, wait_for, worker_command};

/// A session token as STS hands them out, recognisable in any output.
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEBUNKERSESSIONTOKENNEVERLOGMEaCXVzLWVhc3QtMSJHMEUCIQ";

/// Everything, at the most verbose level.
const TRACE_ALL: &str = "trace";

/// Every place a credential could leak to: the text, and where it came from.
fn assert_no_credentials(what: &str, text: &str) {
    for (name, secret) in [("secret access key", SECRET_KEY), ("session token", SESSION_TOKEN)] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_key_or_session_token_reaches_any_log_even_at_trace() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate_archive(&dir.path().join("archive"), 150, 111);
    moto.upload_dir(&dir.path().join("archive"), ARCHIVE).await;

    // The worker, JSON logs, lake on S3 (so the Delta/object_store client signs requests too).
    let mut command = worker_command(&moto, &queue, LAKE, &["--log-json"], TRACE_ALL);
    command.env("AWS_SESSION_TOKEN", SESSION_TOKEN).env("RUST_LOG", TRACE_ALL);
    let log = dir.path().join("worker.log");
    let mut worker = Worker::spawn(command, log.clone());
    wait_for(&moto, &queue, LAKE, expected(&summary), &mut [&mut worker]).await;
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
        "credentials: no secret key or session token in {} log bytes; the access key id appears {worker_key_ids} \
         times in the worker's log and {backfill_key_ids} times in the backfill's",
        text.len() + stderr.len() + stdout.len()
    );
}
