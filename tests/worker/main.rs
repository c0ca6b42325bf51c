//! The worker and the S3 backfill against a real S3/SQS/KMS endpoint (`moto_server`), driven
//! through the `bunker` binary as an operator runs it: objects land in an Object-Locked, SSE-KMS
//! archive bucket, S3 notifies the queue, and the lake lives on an S3 prefix of another bucket.
//! The alert sinks are tested against the same endpoint's SQS ([`sinks`]); the worker under
//! injected S3 and SQS faults, through a fault-injecting proxy ([`proxy`]), in [`faults`]; process
//! faults (SIGKILL soak, a full or read-only lake) in [`soak`]; hostile objects, keys and bodies in
//! [`hostile`]; and the check that no credential reaches a log in [`credentials`].

mod credentials;
mod faults;
mod hostile;
mod moto;
mod proxy;
mod sinks;
mod soak;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bunker_ingest::synth::{SynthConfig, SynthSummary, generate};
use moto::Moto;

const ARCHIVE: &str = "org-log-archive";
const LAKE_BUCKET: &str = "security-lake";
const LAKE: &str = "s3://security-lake/bunker";

/// Rows per table: cloudtrail, vpcflow, dns.
type Counts = (u64, u64, u64);

fn expected(summary: &SynthSummary) -> Counts {
    (summary.cloudtrail_events, summary.vpcflow_records, summary.dns_records)
}

fn generate_archive(dir: &Path, events: u64, seed: u64) -> SynthSummary {
    let mut config = SynthConfig::new(events, seed);
    config.days = 2;
    config.accounts = 2;
    generate(dir, &config).expect("generate archive")
}

fn bunker(moto: &Moto) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bunker"));
    command.envs(moto.env());
    command
}

fn run_ok(moto: &Moto, args: &[&str]) -> String {
    let output: Output = bunker(moto).args(args).output().expect("run bunker");
    assert!(
        output.status.success(),
        "bunker {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One CSV value per line of a single-row result.
fn query_row(moto: &Moto, lake: &str, sql: &str) -> Vec<String> {
    let out = run_ok(moto, &["query", "--lake", lake, "--format", "csv", sql]);
    let row = out.lines().nth(1).unwrap_or_else(|| panic!("no row from {sql}: {out}"));
    row.split(',').map(str::to_owned).collect()
}

fn counts(moto: &Moto, lake: &str) -> Counts {
    let row = query_row(
        moto,
        lake,
        "SELECT (SELECT count(*) FROM cloudtrail) AS c, (SELECT count(*) FROM vpcflow) AS f, (SELECT count(*) FROM dns) AS d",
    );
    let n = |i: usize| row[i].parse::<u64>().expect("count");
    (n(0), n(1), n(2))
}

/// Rows that share a source object and a position with another row: duplicates.
fn duplicate_rows(moto: &Moto, lake: &str) -> u64 {
    let row = query_row(
        moto,
        lake,
        "SELECT (SELECT count(*) - count(DISTINCT eventid) FROM cloudtrail) + \
                (SELECT count(*) - count(DISTINCT concat(source_key, query_timestamp, query_name, srcport)) FROM dns) AS dups",
    );
    row[0].parse().expect("dups")
}

/// The `bunker worker` command line the tests run, logging at `filter`.
fn worker_command(moto: &Moto, queue_url: &str, lake: &str, extra: &[&str], filter: &str) -> Command {
    let mut command = bunker(moto);
    worker_args(&mut command, queue_url, lake, extra, filter);
    command
}

/// Makes `command` a `bunker worker` run with short intervals, so tests are quick; a test's own
/// flags win.
fn worker_args(command: &mut Command, queue_url: &str, lake: &str, extra: &[&str], filter: &str) {
    let defaults = [("--commit-interval-secs", "0.5"), ("--wait-time-secs", "1"), ("--visibility-timeout-secs", "10")];
    command
        .env("BUNKER_LOG", filter)
        .args(["worker", "--queue-url", queue_url, "--lake", lake, "--metrics-listen", "127.0.0.1:0"])
        .args(defaults.iter().filter(|(flag, _)| !extra.contains(flag)).flat_map(|(flag, value)| [*flag, *value]))
        .args(extra);
}

/// A `bunker worker` process with its log in a file.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(moto: &Moto, queue_url: &str, lake: &str, log: PathBuf, extra: &[&str]) -> Worker {
        Worker::start_logging(moto, queue_url, lake, log, extra, "info,buoyant_kernel=off,deltalake=warn")
    }

    /// [`Worker::start`] with `BUNKER_LOG` set to `filter`.
    fn start_logging(moto: &Moto, queue_url: &str, lake: &str, log: PathBuf, extra: &[&str], filter: &str) -> Worker {
        Worker::spawn(worker_command(moto, queue_url, lake, extra, filter), log)
    }

    /// Runs a worker command with its stderr (where it logs) in the file `log`.
    fn spawn(mut command: Command, log: PathBuf) -> Worker {
        let file = std::fs::File::create(&log).expect("log file");
        let child = command.stdout(Stdio::null()).stderr(file).spawn().expect("start worker");
        Worker { child, log }
    }

    /// A worker started from `command` (a `bunker` command with its environment set, the proxy's
    /// endpoint for instance), with the flags and log filter of [`Worker::start`].
    fn start_with(mut command: Command, queue_url: &str, lake: &str, log: PathBuf, extra: &[&str]) -> Worker {
        worker_args(&mut command, queue_url, lake, extra, "info,buoyant_kernel=off,deltalake=warn");
        Worker::spawn(command, log)
    }

    fn log(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// SIGTERM, then the exit status (within 60 s).
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "worker did not exit within 60 s of SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!("worker exited early with {status}:\n{}", self.log());
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the queue is empty and the lake holds `want`, or fails with what it saw.
async fn wait_for(moto: &Moto, queue_url: &str, lake: &str, want: Counts, workers: &mut [&mut Worker]) {
    wait_for_within(Duration::from_secs(240), moto, queue_url, lake, want, workers).await;
}

/// [`wait_for`], with a deadline of `within`.
async fn wait_for_within(
    within: Duration,
    moto: &Moto,
    queue_url: &str,
    lake: &str,
    want: Counts,
    workers: &mut [&mut Worker],
) {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        for w in workers.iter_mut() {
            w.assert_running();
        }
        if moto.queue_depth(queue_url).await == 0 {
            let got = counts(moto, lake);
            if got == want {
                return;
            }
            last = Some(got);
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
            panic!(
                "lake did not reach {want:?} (last {last:?}, queue depth {}):\n{}",
                moto.queue_depth(queue_url).await,
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The port the worker's metrics listener bound, from its log.
fn metrics_address(worker: &Worker) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = worker.log();
        if let Some(rest) = log.split("metrics=").nth(1) {
            return rest.split_whitespace().next().expect("address").trim_matches('"').to_owned();
        }
        assert!(Instant::now() < deadline, "worker never logged its metrics address:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).expect("connect metrics");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notified_object_lands_once_and_redelivery_in_any_shape_adds_nothing() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate_archive(dir.path(), 600, 11);
    let uploaded = moto.upload_dir(dir.path(), ARCHIVE).await;

    let mut worker = Worker::start(&moto, &queue, LAKE, dir.path().join("worker.log"), &[]);
    wait_for(&moto, &queue, LAKE, expected(&summary), &mut [&mut worker]).await;

    // Operations: health and metrics while running.
    let address = metrics_address(&worker);
    let (status, _) = http_get(&address, "/healthz");
    assert_eq!(status, 200);
    let (_, metrics) = http_get(&address, "/metrics");
    assert!(metric(&metrics, "bunker_messages_received_total") >= uploaded as f64, "{metrics}");
    assert!(metric(&metrics, "bunker_messages_deleted_total") >= uploaded as f64, "{metrics}");
    let rows = summary.cloudtrail_events + summary.vpcflow_records + summary.dns_records;
    assert_eq!(metric(&metrics, "bunker_rows_total"), rows as f64, "{metrics}");
    assert!(metrics.contains("bunker_event_lag_seconds"), "{metrics}");
    assert!(metrics.contains("bunker_commit_seconds"), "{metrics}");

    // Redelivery: the same objects announced again, in every shape a deployment sends.
    let keys = moto.keys(ARCHIVE).await;
    let log_key = keys.iter().find(|k| k.contains("/CloudTrail/")).expect("a CloudTrail key").clone();
    let encoded = log_key.replace(' ', "+");
    let s3_event = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": ARCHIVE}, "object": {"key": encoded, "size": 1}}
    }]})
    .to_string();
    let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:111122223333:t", "Message": s3_event}).to_string();
    let eventbridge = serde_json::json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
        "detail": {"bucket": {"name": ARCHIVE}, "object": {"key": log_key, "size": 1}}})
    .to_string();
    let cloudtrail = serde_json::json!({"s3Bucket": ARCHIVE, "s3ObjectKey": keys}).to_string();
    for body in [&s3_event, &sns, &eventbridge, &cloudtrail] {
        moto.send(&queue, body).await;
    }
    wait_for(&moto, &queue, LAKE, expected(&summary), &mut [&mut worker]).await;
    assert_eq!(duplicate_rows(&moto, LAKE), 0);
    let duplicates = query_row(&moto, LAKE, "SELECT count(*) FROM ingest_log WHERE status = 'duplicate'");
    let data_objects = summary.cloudtrail_objects + summary.vpcflow_objects + summary.dns_objects;
    assert!(duplicates[0].parse::<u64>().expect("n") >= data_objects + 3, "{duplicates:?} < {data_objects} + 3");

    // bunker never writes to the source bucket.
    assert_eq!(moto.keys(ARCHIVE).await.len() as u64, uploaded);

    let status = worker.terminate();
    assert!(status.success(), "worker exit: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_sqs_is_recorded_and_acknowledged_and_the_worker_keeps_going() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ct = |name: &str| {
        format!(
            "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/03/111122223333_CloudTrail_us-east-1_20250303T1000Z_{name}.json.gz"
        )
    };
    let gz = |data: &[u8]| {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).expect("gzip");
        encoder.finish().expect("gzip")
    };
    let good = br#"{"Records":[{"eventVersion":"1.08","eventTime":"2025-03-03T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","eventID":"e-1","recipientAccountId":"111122223333","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root"}}]}"#;
    let mut truncated = gz(good);
    truncated.truncate(truncated.len() / 2);
    let bad_objects: Vec<(String, Vec<u8>)> = vec![
        (ct("corrupt"), b"\x1f\x8b\x08\x00garbage that is not deflate".to_vec()),
        (ct("truncated"), truncated),
        (ct("notjson"), gz(b"this is not json at all")),
        (ct("norecords"), gz(br#"{"Something":[]}"#)),
        (ct("empty"), Vec::new()),
        // Decompresses to 64 MiB of zeros: over the 16 MiB cap the worker runs with.
        (ct("bomb"), gz(&vec![0u8; 64 << 20])),
        ("AWSLogs/111122223333/vpcflowlogs/us-east-1/2025/03/03/111122223333_vpcflowlogs_us-east-1_fl-1_20250303T1000Z_x.log.gz".into(), gz(b"version nosuchfield\n2 x\n")),
    ];
    for (key, body) in &bad_objects {
        moto.put(ARCHIVE, key, body.clone()).await;
    }
    // Bodies that are no notification, a test event, a delete, and an object that does not exist.
    for body in [
        "not json",
        r#"{"hello":"world"}"#,
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"org-log-archive"}"#,
        r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"org-log-archive"},"object":{"key":"x"}}}]}"#,
        r#"{"s3Bucket":"org-log-archive","s3ObjectKey":["AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/03/gone.json.gz"]}"#,
    ] {
        moto.send(&queue, body).await;
    }
    // And one good object after all of that.
    moto.put(ARCHIVE, &ct("good"), gz(good)).await;

    let mut worker = Worker::start(&moto, &queue, LAKE, dir.path().join("worker.log"), &["--max-object-mib", "16"]);
    // The flow file's one line is ingested; the unknown header field is reported, not fatal.
    wait_for(&moto, &queue, LAKE, (1, 1, 0), &mut [&mut worker]).await;
    let flow =
        query_row(&moto, LAKE, "SELECT status, rejected_records FROM ingest_log WHERE source_key LIKE '%vpcflowlogs%'");
    assert_eq!(flow, ["committed", "1"]);
    // Every bad object and body has a failed row naming it and the reason.
    let failed = run_ok(
        &moto,
        &[
            "query",
            "--lake",
            LAKE,
            "--format",
            "csv",
            "SELECT source_key, error_kind, reason FROM ingest_log WHERE status = 'failed' ORDER BY source_key",
        ],
    );
    for name in ["corrupt", "truncated", "notjson", "norecords", "empty", "bomb", "gone"] {
        assert!(failed.lines().any(|l| l.contains(name)), "no failure recorded for {name}:\n{failed}");
    }
    assert!(failed.contains("gzip") && failed.contains("too_large") && failed.contains("not_found"), "{failed}");
    assert_eq!(failed.lines().filter(|l| l.contains(",notification,")).count(), 2, "{failed}");
    let status = worker.terminate();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_then_restart_loses_and_duplicates_nothing() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate_archive(&dir.path().join("archive"), 3000, 21);
    moto.upload_dir(&dir.path().join("archive"), ARCHIVE).await;

    // Deterministic "random" kill points, so a failure can be replayed.
    let pauses_ms = [1400u64, 2300, 900, 3100];
    for (i, pause) in pauses_ms.iter().enumerate() {
        let mut worker =
            Worker::start(&moto, &queue, LAKE, dir.path().join(format!("worker-{i}.log")), &["--commit-mib", "1"]);
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        worker.assert_running();
        worker.kill9();
    }
    let mut worker = Worker::start(&moto, &queue, LAKE, dir.path().join("worker-final.log"), &[]);
    wait_for(&moto, &queue, LAKE, expected(&summary), &mut [&mut worker]).await;
    assert_eq!(duplicate_rows(&moto, LAKE), 0);
    assert!(worker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_queue_and_one_lake_commit_each_object_once() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate_archive(&dir.path().join("archive"), 2000, 31);
    let mut a = Worker::start(&moto, &queue, LAKE, dir.path().join("a.log"), &[]);
    let mut b = Worker::start(&moto, &queue, LAKE, dir.path().join("b.log"), &[]);
    moto.upload_dir(&dir.path().join("archive"), ARCHIVE).await;
    wait_for(&moto, &queue, LAKE, expected(&summary), &mut [&mut a, &mut b]).await;
    assert_eq!(duplicate_rows(&moto, LAKE), 0);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_what_is_in_flight_and_leaves_nothing_half_committed() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate_archive(&dir.path().join("archive"), 3000, 41);
    moto.upload_dir(&dir.path().join("archive"), ARCHIVE).await;
    // This time the lake is a local directory.
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.to_str().expect("utf-8");

    let worker = Worker::start(&moto, &queue, lake, dir.path().join("first.log"), &["--commit-interval-secs", "30"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = dir.path().join("first.log");
    let status = worker.terminate();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}:\n{text}");
    assert!(text.contains("worker stopped"), "{text}");
    // Whatever the first worker acknowledged is in the lake: the rest is still on the queue, and a
    // second worker finishes the job with exact counts.
    let mut worker = Worker::start(&moto, &queue, lake, dir.path().join("second.log"), &[]);
    wait_for(&moto, &queue, lake, expected(&summary), &mut [&mut worker]).await;
    let second = dir.path().join("second.log");
    let status = worker.terminate();
    assert!(status.success(), "exit {status}:\n{}", std::fs::read_to_string(&second).unwrap_or_default());
}

/// Regression: objects were identified by where they were read, so a local copy of what the
/// worker had ingested from S3 (`aws s3 sync`) put every row in a second time. And the worker's
/// shutdown line said `objects=0 rows=0` whatever it had committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_copy_of_what_the_worker_ingested_adds_nothing_and_its_shutdown_counts_it() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let summary = generate_archive(&archive, 800, 61);
    moto.upload_dir(&archive, ARCHIVE).await;
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.to_str().expect("utf-8");

    let log = dir.path().join("worker.log");
    let mut worker = Worker::start(&moto, &queue, lake, log.clone(), &[]);
    wait_for(&moto, &queue, lake, expected(&summary), &mut [&mut worker]).await;
    let status = worker.terminate();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}:\n{text}");
    let stopped = text.lines().find(|l| l.contains("worker stopped")).unwrap_or_else(|| panic!("{text}"));
    let rows = summary.cloudtrail_events + summary.vpcflow_records + summary.dns_records;
    assert!(stopped.contains(&format!("rows={rows}")), "{stopped}");
    assert!(!stopped.contains("objects=0"), "{stopped}");

    // The same objects from a local folder, once under its root and once under AWSLogs/.
    for from in [archive.clone(), archive.join("AWSLogs")] {
        let out = run_ok(&moto, &["ingest", "--from", from.to_str().expect("utf-8"), "--lake", lake]);
        assert!(out.contains(" 0 committed"), "{out}");
        assert_eq!(counts(&moto, lake), expected(&summary));
    }
    assert_eq!(duplicate_rows(&moto, lake), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_from_s3_reads_only_the_days_asked_for_and_commits_once() {
    let moto = Moto::start().await;
    moto.create_bucket(ARCHIVE).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let mut config = SynthConfig::new(1500, 51);
    config.days = 4;
    config.accounts = 2;
    let summary = generate(&archive, &config).expect("generate");
    moto.upload_dir(&archive, ARCHIVE).await;
    let local_lake = dir.path().join("local-lake");
    let local = local_lake.to_str().expect("utf-8");
    run_ok(&moto, &["ingest", "--from", archive.to_str().expect("utf-8"), "--lake", local]);

    // Two of the four days, from S3 into a local lake; the local ingest of the whole archive says
    // how many rows those days hold.
    let s3_lake = dir.path().join("s3-lake");
    let lake = s3_lake.to_str().expect("utf-8");
    let from = format!("s3://{ARCHIVE}/AWSLogs/");
    let out =
        run_ok(&moto, &["ingest", "--from", &from, "--lake", lake, "--since", "2025-03-04", "--until", "2025-03-05"]);
    assert!(out.contains("0 failed"), "{out}");
    let days_sql = |table: &str| {
        format!(
            "SELECT count(*) FROM {table} WHERE source_key LIKE '%/2025/03/04/%' OR source_key LIKE '%/2025/03/05/%'"
        )
    };
    for table in ["cloudtrail", "vpcflow", "dns"] {
        let want = query_row(&moto, local, &days_sql(table));
        let all = query_row(&moto, lake, &format!("SELECT count(*) FROM {table}"));
        assert_eq!(all, want, "{table}");
        assert_ne!(all[0], "0", "{table}");
    }
    // The whole prefix afterwards: exactly the archive, the two days not read twice.
    let out = run_ok(&moto, &["ingest", "--from", &from, "--lake", lake]);
    assert!(out.contains("already in the lake"), "{out}");
    assert_eq!(counts(&moto, lake), expected(&summary));
    let again = run_ok(&moto, &["ingest", "--from", &format!("s3://{ARCHIVE}"), "--lake", lake]);
    assert!(again.contains(" 0 committed"), "{again}");
    assert_eq!(counts(&moto, lake), expected(&summary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_longer_than_their_visibility_timeout_are_not_redelivered() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate_archive(&dir.path().join("archive"), 300, 61);
    let uploaded = moto.upload_dir(&dir.path().join("archive"), ARCHIVE).await;
    // Rows wait 25 s for their commit while messages are only invisible for 10 s at a time: the
    // worker must keep extending them, or SQS hands them out again.
    let mut worker = Worker::start(
        &moto,
        &queue,
        LAKE,
        dir.path().join("worker.log"),
        &["--commit-interval-secs", "25", "--visibility-timeout-secs", "10"],
    );
    wait_for(&moto, &queue, LAKE, expected(&summary), &mut [&mut worker]).await;
    let (_, metrics) = http_get(&metrics_address(&worker), "/metrics");
    // Every object's notification, plus the s3:TestEvent S3 sends when notifications are set up.
    assert_eq!(metric(&metrics, "bunker_messages_received_total"), (uploaded + 1) as f64, "{metrics}");
    assert_eq!(metric(&metrics, "bunker_messages_retried_total"), 0.0, "{metrics}");
    assert!(worker.terminate().success());
}

/// A CloudTrail record as AWS writes it, at `time`.
fn trail_record(
    time: &str,
    id: &str,
    event: &str,
    identity: serde_json::Value,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut record = serde_json::json!({
        "eventVersion": "1.08", "eventTime": time, "eventSource": "signin.amazonaws.com", "eventName": event,
        "eventType": "AwsConsoleSignIn", "awsRegion": "us-east-1", "eventID": id,
        "recipientAccountId": "111122223333", "sourceIPAddress": "198.51.100.23", "userIdentity": identity,
    });
    if let (Some(record), Some(extra)) = (record.as_object_mut(), extra.as_object()) {
        record.extend(extra.clone());
    }
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_recorded_and_sent_before_messages_are_deleted_and_window_rules_run_on_schedule() {
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let sink_queue = moto.create_queue("bunker-alerts").await;
    let dir = tempfile::tempdir().expect("tempdir");

    // A window rule of our own with a short schedule, next to the built-in pack.
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(
        rules.join("root-failures-fast.yaml"),
        "id: test-root-login-failures\ntitle: Root login failures (test)\ndescription: Three or more failed root logins.\n\
         severity: high\ntables: [cloudtrail]\nmode: window\nschedule: 2s\nlookback: 1h\n\
         dedup: { key: [account], window: 1h }\n\
         sql: |\n  SELECT max(eventtime) AS event_time, recipientaccountid AS account, count(*) AS failures\n  \
         FROM cloudtrail WHERE eventname = 'ConsoleLogin' AND useridentity.type = 'Root' AND errormessage IS NOT NULL\n  \
         GROUP BY recipientaccountid HAVING count(*) >= 3\n",
    )
    .expect("rule file");
    let alerts_file = dir.path().join("alerts.jsonl");
    let config = dir.path().join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[detect]\nrules = {rules:?}\nshadow = [\"aws-root-api-call\"]\n\n\
             [[detect.suppress]]\nrule = \"aws-console-login-without-mfa\"\nfield = \"source_ip\"\nvalues = [\"198.51.100.0/24\"]\n\n\
             [[sinks]]\ntype = \"sqs\"\nqueue_url = {sink_queue:?}\nformat = \"asff\"\nmin_severity = \"high\"\n\n\
             [[sinks]]\ntype = \"file\"\npath = {alerts_file:?}\n",
        ),
    )
    .expect("config");

    // Events of now, so the window rule's look-back sees them.
    let now = chrono::Utc::now();
    let time =
        |minutes_ago: i64| (now - chrono::Duration::minutes(minutes_ago)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let root = serde_json::json!({"type": "Root", "principalId": "111122223333", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"});
    let alice = serde_json::json!({"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333", "userName": "alice"});
    let success =
        serde_json::json!({"responseElements": {"ConsoleLogin": "Success"}, "additionalEventData": {"MFAUsed": "No"}});
    let failure = serde_json::json!({"errorMessage": "Failed authentication", "responseElements": {"ConsoleLogin": "Failure"}, "additionalEventData": {"MFAUsed": "No"}});
    let records = vec![
        // Root signs in (aws-root-console-login, high → the SQS sink too) ...
        trail_record(&time(9), "evt-root-login", "ConsoleLogin", root.clone(), success.clone()),
        // ... after three failures (our window rule).
        trail_record(&time(12), "evt-root-fail-1", "ConsoleLogin", root.clone(), failure.clone()),
        trail_record(&time(11), "evt-root-fail-2", "ConsoleLogin", root.clone(), failure.clone()),
        trail_record(&time(10), "evt-root-fail-3", "ConsoleLogin", root.clone(), failure),
        // A login without MFA from the office range: suppressed.
        trail_record(&time(8), "evt-alice-login", "ConsoleLogin", alice, success),
        // An API call by root: its rule is in shadow mode.
        trail_record(
            &time(7),
            "evt-root-api",
            "ListBuckets",
            root,
            serde_json::json!({"eventType": "AwsApiCall", "eventSource": "s3.amazonaws.com"}),
        ),
    ];
    let body = serde_json::json!({ "Records": records }).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, body.as_bytes()).expect("gzip");
    let day = now.format("%Y/%m/%d");
    let stamp = now.format("%Y%m%dT%H%MZ");
    let key = format!(
        "AWSLogs/111122223333/CloudTrail/us-east-1/{day}/111122223333_CloudTrail_us-east-1_{stamp}_attack.json.gz"
    );
    moto.put(ARCHIVE, &key, gz.finish().expect("gzip")).await;

    let config_arg = config.to_str().expect("utf-8");
    let mut worker = Worker::start(&moto, &queue, LAKE, dir.path().join("worker.log"), &["--config", config_arg]);
    wait_for(&moto, &queue, LAKE, (6, 0, 0), &mut [&mut worker]).await;

    // The row rules ran before the commit: their alerts are in the table as soon as the rows are.
    let alerts = |sql: &str| run_ok(&moto, &["query", "--lake", LAKE, "--format", "csv", sql]);
    let fired = alerts("SELECT rule_id, count, run FROM alerts ORDER BY rule_id");
    assert!(fired.contains("aws-root-console-login,1,worker"), "{fired}");
    assert!(!fired.contains("aws-root-api-call"), "shadowed rule emitted: {fired}");
    assert!(!fired.contains("aws-console-login-without-mfa"), "suppressed alert emitted: {fired}");

    // The window rule runs on the worker's schedule.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let window = alerts("SELECT rule_id, count, run FROM alerts WHERE rule_id = 'test-root-login-failures'");
        if window.contains("test-root-login-failures,1,schedule") {
            break;
        }
        assert!(Instant::now() < deadline, "the window rule never alerted: {window}\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Scheduled reruns over the same look-back update the alert; they do not add new ones.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let current = alerts("SELECT count(*) AS n FROM alerts WHERE rule_id = 'test-root-login-failures'");
    assert_eq!(current.lines().nth(1), Some("1"), "{current}");
    let updates = alerts("SELECT count(*) AS n FROM alert_updates WHERE rule_id = 'test-root-login-failures'");
    assert!(updates.lines().nth(1).and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 1), "{updates}");

    // The sinks: high and above to SQS as ASFF, everything to the file.
    let received = moto.receive_all(&sink_queue).await;
    let rule_ids: Vec<String> = received
        .iter()
        .map(|body| {
            let finding: serde_json::Value = serde_json::from_str(body).expect("ASFF JSON");
            assert_eq!(finding["SchemaVersion"], "2018-10-08", "{body}");
            finding["GeneratorId"].as_str().expect("GeneratorId").to_owned()
        })
        .collect();
    assert!(rule_ids.contains(&"aws-root-console-login".to_owned()), "{rule_ids:?}");
    assert!(rule_ids.contains(&"test-root-login-failures".to_owned()), "{rule_ids:?}");
    let written = std::fs::read_to_string(&alerts_file).expect("alerts file");
    assert!(written.lines().any(|l| l.contains("aws-root-console-login")), "{written}");
    assert!(!written.contains("aws-console-login-without-mfa"), "{written}");
    let (_, metrics) = http_get(&metrics_address(&worker), "/metrics");
    assert!(metric(&metrics, "bunker_alerts_total") >= 2.0, "{metrics}");
    assert!(metric(&metrics, "bunker_alerts_shadow_total") >= 1.0, "{metrics}");
    assert!(metric(&metrics, "bunker_alerts_suppressed_total") >= 1.0, "{metrics}");
    assert!(worker.terminate().success());
}
