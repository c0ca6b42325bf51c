//! The worker under injected S3 and SQS faults: every test puts a [`FaultProxy`] between a
//! `bunker worker` and `moto_server`, runs an ingestion of a generated archive under one mix of
//! faults, and proves the promises of DESIGN.md ("Worker semantics") held:
//! - the lake holds exactly the archive's rows — none lost, none twice — counted directly against
//!   moto, not through the proxy;
//! - every data object has exactly one `committed` row in `ingest_log` (its lineage survives too);
//! - the faults really happened (the proxy's tally) and the retries show in the worker's metrics
//!   (`bunker_aws_retries_total` for the SDK's own retries, `bunker_messages_retried_total` and
//!   `bunker_errors_total` for the ones bunker makes by leaving a message on the queue);
//! - the worker then stops cleanly on SIGTERM.
//!
//! The default run keeps to small archives and one seed per mix, so it fits the CI budget. With
//! `BUNKER_HARDENING=long` (what `scripts/hardening.sh` sets) each mix ingests a ten times larger
//! archive at higher rates, and runs under three seeds instead of one.
//!
//! Faults replay: the proxy's decisions depend only on the mix's seed and the requests, so a
//! failing mix can be rerun as it was (the seed is in the failure message).

use std::time::{Duration, Instant};

use crate::moto::Moto;
use crate::proxy::{Fault, FaultMix, FaultProxy, Target};
use crate::{
    ARCHIVE, LAKE, LAKE_BUCKET, Worker, bunker, counts, duplicate_rows, expected, generate_archive, http_get, metric,
    metrics_address, query_row, wait_for_within,
};

/// Whether the long version runs (`BUNKER_HARDENING=long`).
fn long() -> bool {
    std::env::var("BUNKER_HARDENING").is_ok_and(|v| v == "long")
}

/// CloudTrail events of the archive (flow rows as many, DNS half).
fn events() -> u64 {
    if long() { 3000 } else { 300 }
}

/// The seeds each mix runs under.
fn seeds(first: u64) -> Vec<u64> {
    if long() { vec![first, first + 100, first + 200] } else { vec![first] }
}

/// Rates are scaled up in the long run.
fn scaled(rates: &[(Fault, f64)]) -> Vec<(Fault, f64)> {
    let factor = if long() { 1.5 } else { 1.0 };
    rates.iter().map(|(f, r)| (*f, r * factor)).collect()
}

/// Attempts of an S3, SQS or lake request are cut off after this long (`--request-timeout-secs`):
/// longer than the tests' 1 s long poll, far shorter than a stalled response.
const REQUEST_TIMEOUT_SECS: &str = "4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_throttling_lose_and_duplicate_nothing() {
    for seed in seeds(1) {
        let mix = FaultMix::new(
            "5xx",
            seed,
            &scaled(&[
                (Fault::InternalError, 0.05),
                (Fault::SlowDown, 0.05),
                (Fault::Unavailable, 0.03),
                (Fault::ErrorAfterApply, 0.04),
            ]),
        );
        survive(mix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_truncated_responses_lose_and_duplicate_nothing() {
    for seed in seeds(2) {
        let mut mix = FaultMix::new(
            "resets+truncation",
            seed,
            &scaled(&[(Fault::Reset, 0.04), (Fault::ResetAfterApply, 0.04), (Fault::Truncate, 0.06)]),
        );
        // The hard case: moto applied the Delta commit, its answer never arrives, and the retried
        // conditional put finds the version taken — by the very commit it is retrying.
        mix.commit_reset_after_apply = 0.3;
        survive(mix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_never_come_are_timed_out_and_retried() {
    for seed in seeds(3) {
        let mut mix = FaultMix::new("stalls", seed, &scaled(&[(Fault::Stall, 0.04)]));
        // A black hole: far longer than the request timeout, and than the test's deadline.
        mix.stall = Duration::from_secs(600);
        survive(mix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_once_loses_and_duplicates_nothing() {
    for seed in seeds(4) {
        let mut mix = FaultMix::new(
            "everything",
            seed,
            &scaled(&[
                (Fault::InternalError, 0.02),
                (Fault::SlowDown, 0.02),
                (Fault::Unavailable, 0.02),
                (Fault::Reset, 0.02),
                (Fault::ErrorAfterApply, 0.02),
                (Fault::ResetAfterApply, 0.02),
                (Fault::Stall, 0.03),
                (Fault::Truncate, 0.03),
            ]),
        );
        // Slow answers, shorter than the request timeout: they only delay.
        mix.stall = Duration::from_millis(1500);
        mix.commit_reset_after_apply = 0.2;
        survive(mix).await;
    }
}

/// Ingests a fresh archive through a proxy injecting `mix`, and checks every promise.
async fn survive(mix: FaultMix) {
    let started = Instant::now();
    let moto = Moto::start().await;
    let queue = moto.create_archive(ARCHIVE, "archive-events").await;
    moto.create_bucket(LAKE_BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let summary = generate_archive(&archive, events(), mix.seed);
    let data_objects = summary.cloudtrail_objects + summary.vpcflow_objects + summary.dns_objects;

    let label = format!("mix {} (seed {})", mix.name, mix.seed);
    let rates = mix.rates.clone();
    let commit_faults = mix.commit_reset_after_apply > 0.0;
    let proxy = FaultProxy::start(&moto.endpoint, mix).await;
    let mut command = bunker(&moto);
    command.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    let mut worker = Worker::start_with(
        command,
        &queue,
        LAKE,
        dir.path().join("worker.log"),
        &["--retry-backoff-secs", "1", "--request-timeout-secs", REQUEST_TIMEOUT_SECS],
    );
    // Objects arrive while the worker runs, as in production.
    moto.upload_dir(&archive, ARCHIVE).await;
    // The long run's archives are ten times larger, and its mixes share the machine.
    let within = Duration::from_secs(if long() { 900 } else { 240 });
    wait_for_within(within, &moto, &queue, LAKE, expected(&summary), &mut [&mut worker]).await;
    let address = metrics_address(&worker);
    let (_, metrics) = http_get(&address, "/metrics");

    let report = format!("{label}, {:.0?}:\n{}{}", started.elapsed(), proxy.report(), retry_metrics(&metrics));
    eprintln!("{report}");
    // Exact counts were reached; now nothing beyond them, and each object's lineage once.
    assert_eq!(counts(&moto, LAKE), expected(&summary), "{report}");
    assert_eq!(duplicate_rows(&moto, LAKE), 0, "{report}");
    let committed = query_row(
        &moto,
        LAKE,
        "SELECT count(*), count(DISTINCT source_key) FROM ingest_log WHERE status = 'committed'",
    );
    if committed != [data_objects.to_string(), data_objects.to_string()] {
        let log = crate::run_ok(
            &moto,
            &[
                "query",
                "--lake",
                LAKE,
                "--format",
                "csv",
                "SELECT source_key, status, lake_version, ingested_at FROM ingest_log ORDER BY source_key, ingested_at",
            ],
        );
        panic!("{committed:?} of {data_objects} objects have their committed entry: {report}\n{log}\n{}", worker.log());
    }

    // The faults happened, each kind of the mix ...
    for (fault, rate) in &rates {
        if *rate > 0.0 {
            assert!(proxy.injected(*fault) > 0, "no {fault:?} was injected: {report}");
        }
    }
    if commit_faults {
        assert!(proxy.injected_on(Target::Commit) > 0, "no Delta commit was faulted: {report}");
    }
    assert!(proxy.injected_on(Target::Sqs) > 0 && proxy.injected_on(Target::S3Read) > 0, "{report}");
    // ... and the retries they caused are visible: the SDK's (S3 source reads, SQS) and the lake
    // store's own, and any message bunker left on the queue for a later try.
    assert!(metric(&metrics, "bunker_aws_retries_total") > 0.0, "{report}");
    assert!(metric(&metrics, "bunker_lake_retries_total") > 0.0, "{report}");

    let log = worker.log();
    assert!(!log.contains("panicked"), "{log}");
    let status = worker.terminate();
    assert!(status.success(), "{label}: worker exit {status}");
}

/// The retry and error counters of a metrics page, one per line.
fn retry_metrics(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|l| {
            [
                "bunker_aws_retries_total",
                "bunker_lake_retries_total",
                "bunker_lake_commits_recovered_total",
                "bunker_messages_retried_total",
                "bunker_errors_total",
            ]
            .iter()
            .any(|name| l.starts_with(name))
        })
        .map(|l| format!("  {l}\n"))
        .collect()
}
