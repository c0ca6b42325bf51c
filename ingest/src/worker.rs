//! The continuous worker: SQS notifications in, committed lake rows out, and only then the message
//! is deleted.
//!
//! Receivers long-poll the queue and hand messages to one processor. The processor reads each
//! message's notification, fetches the objects it names (a bounded number at once), parses them on
//! the CPU pool, and accumulates rows across messages until a commit is due — on size or on age,
//! whichever comes first — so that files are healthy even when objects are small. After the commit
//! (and the `ingest_log` rows that record every object, including the bad ones) it deletes every
//! message whose objects are all accounted for.
//!
//! The promises this module keeps (DESIGN.md, "Worker semantics"):
//! - a message is deleted only after every object it names is committed or recorded as bad;
//! - while a message is held, its visibility is extended, so nobody else processes it meanwhile;
//! - a transient failure (throttling, 5xx, a lost connection, a lake that cannot be written) leaves
//!   the message on the queue to come back after a back-off that grows with its receive count —
//!   the queue's redrive policy takes over after repeated failure; rows of its other objects that
//!   did commit are recognised on redelivery by the lake's ledger and not written twice;
//! - bad input (corrupt gzip, not JSON, a body that is no notification, an object that is gone) is
//!   recorded with the reason and acknowledged: nothing poisons the queue;
//! - memory is bounded by the number of messages in flight, the fetch concurrency, the object size
//!   cap and the commit size — never by the backlog;
//! - on shutdown (SIGTERM/SIGINT), receiving stops, what is in flight is finished and committed,
//!   its messages are deleted, and the worker returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::classify::{LogFormat, ObjectRef};
use crate::lake::Lake;
use crate::notification::{Notification, parse_notification};
use crate::pipeline::{IngestSummary, LakeHook, ObjectOutcome, Run, parse_on_pool};
use crate::s3::S3Source;
use crate::{IngestError, Result};

/// SQS hands out at most this many messages per receive, and takes this many per batch call.
const SQS_BATCH: usize = 10;

/// Settings of the worker (the `[worker]` section of `bunker.toml`, and command-line flags).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The queue the archive bucket's notifications arrive on.
    pub queue_url: String,
    /// Concurrent long-polling receivers.
    pub receivers: usize,
    /// Long-poll wait per receive (0–20 s).
    pub wait_time_seconds: i32,
    /// Visibility timeout given to received messages, and extended while they are in progress.
    pub visibility_timeout_seconds: i32,
    /// Messages held at once (received but not yet deleted or released): the backpressure bound.
    pub max_messages_in_flight: usize,
    /// Objects fetched and parsed at once.
    pub fetch_concurrency: usize,
    /// Commit once this many bytes of Arrow data wait.
    pub commit_bytes: usize,
    /// Commit at the latest this long after the first row or finished message waits.
    pub commit_interval: Duration,
    /// Caps on one object's stored and decompressed size and on its compression ratio.
    pub limits: crate::decode::Limits,
    /// How long a message that failed transiently stays invisible after its first failure; each
    /// later failure doubles it, up to [`MAX_RETRY_BACKOFF_SECS`]. Long enough that a throttled
    /// bucket or a lake being repaired is not hammered; tests shorten it.
    pub retry_backoff_seconds: i32,
    /// The detections: run on the rows of each commit before it, and ticked between commits.
    pub hook: Option<Arc<dyn LakeHook>>,
}

impl WorkerOptions {
    /// Defaults for a queue, sized for a small instance.
    pub fn new(queue_url: impl Into<String>) -> WorkerOptions {
        WorkerOptions {
            queue_url: queue_url.into(),
            receivers: 2,
            wait_time_seconds: 20,
            visibility_timeout_seconds: 300,
            max_messages_in_flight: 1000,
            fetch_concurrency: 16,
            commit_bytes: 64 << 20,
            commit_interval: Duration::from_secs(10),
            limits: crate::decode::Limits::default(),
            retry_backoff_seconds: 30,
            hook: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(IngestError::Config(what.to_owned()));
        if self.receivers == 0 || self.fetch_concurrency == 0 {
            return bad("receivers and fetch_concurrency must be at least 1");
        }
        if !(0..=20).contains(&self.wait_time_seconds) {
            return bad("wait_time_seconds must be between 0 and 20");
        }
        if !(10..=43_200).contains(&self.visibility_timeout_seconds) {
            return bad("visibility_timeout_seconds must be between 10 and 43200");
        }
        if self.max_messages_in_flight < SQS_BATCH {
            return bad("max_messages_in_flight must be at least 10");
        }
        if !(0..=MAX_RETRY_BACKOFF_SECS).contains(&self.retry_backoff_seconds) {
            return bad("retry_backoff_secs must be between 0 and 900");
        }
        Ok(())
    }
}

/// What a worker run did.
#[derive(Debug, Default, Clone)]
pub struct WorkerSummary {
    /// Objects, rows and failures, as for any ingest.
    pub ingest: IngestSummary,
    /// Messages received.
    pub messages_received: u64,
    /// Messages deleted after their work was committed.
    pub messages_deleted: u64,
    /// Messages left on the queue to be retried.
    pub messages_retried: u64,
}

/// Liveness of the processor loop, for `/healthz`.
#[derive(Debug, Default)]
pub struct Heartbeat {
    last_tick_unix: AtomicU64,
}

impl Heartbeat {
    /// Records that the loop is alive now.
    pub fn beat(&self) {
        self.last_tick_unix.store(now_unix(), Ordering::Relaxed);
    }

    /// Seconds since the processor loop last went round.
    pub fn age(&self) -> Duration {
        Duration::from_secs(now_unix().saturating_sub(self.last_tick_unix.load(Ordering::Relaxed)))
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How often the worker gives the detections a chance to run scheduled work.
const HOOK_TICK: Duration = Duration::from_secs(5);

/// One received message.
#[derive(Debug)]
struct Delivery {
    message_id: String,
    receipt: String,
    body: String,
    receive_count: u32,
}

/// A message the processor holds.
#[derive(Debug)]
struct Held {
    receipt: String,
    receive_count: u32,
    /// Objects still being fetched or parsed.
    outstanding: usize,
    /// Some object hit a transient failure: do not delete, let it come back.
    retry: bool,
    /// Some of its rows wait in the current (uncommitted) run.
    in_run: bool,
}

/// Runs the worker until `shutdown` resolves, then drains and returns.
pub async fn run_worker(
    sqs: aws_sdk_sqs::Client,
    source: S3Source,
    lake: &mut Lake,
    options: WorkerOptions,
    heartbeat: Arc<Heartbeat>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<WorkerSummary> {
    options.validate()?;
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let budget = Arc::new(Semaphore::new(options.max_messages_in_flight));
    let (tx, mut rx) = mpsc::channel::<Delivery>(options.receivers * SQS_BATCH);
    let held_receipts: Arc<Mutex<HashMap<String, String>>> = Arc::default();

    let mut background = JoinSet::new();
    for _ in 0..options.receivers {
        background.spawn(receive_loop(
            sqs.clone(),
            options.clone(),
            tx.clone(),
            budget.clone(),
            held_receipts.clone(),
            stop_rx.clone(),
        ));
    }
    drop(tx);
    let extender = tokio::spawn(extend_visibility(sqs.clone(), options.clone(), held_receipts.clone()));

    let mut processor = Processor {
        sqs,
        source,
        options: options.clone(),
        run: Run::new(options.commit_bytes, options.hook.clone()),
        held: HashMap::new(),
        held_receipts,
        budget,
        fetch_permits: Arc::new(Semaphore::new(options.fetch_concurrency)),
        tasks: JoinSet::new(),
        task_messages: HashMap::new(),
        waiting_since: None,
        summary: WorkerSummary::default(),
    };
    // Only a head start for recognising redeliveries: every commit refreshes the ledger anyway,
    // so a storage hiccup here is no reason to stop the worker.
    if let Err(error) = lake.refresh().await {
        tracing::warn!(error = %error, "could not refresh the lake's ledger at start; every commit refreshes it");
        metrics::counter!("bunker_errors_total", "kind" => error.kind()).increment(1);
    }
    heartbeat.beat();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tokio::pin!(shutdown);
    let mut stopping = false;
    let mut channel_open = true;
    let mut last_hook_tick = Instant::now();
    loop {
        heartbeat.beat();
        // Messages already received are taken even while stopping: they are in flight, and the
        // receivers close the channel once they have stopped.
        let can_take = channel_open && processor.tasks.len() < options.fetch_concurrency;
        tokio::select! {
            () = &mut shutdown, if !stopping => {
                tracing::info!("shutting down: receiving stops, work in flight is finished and committed");
                stopping = true;
                let _ = stop_tx.send(true);
            }
            delivery = rx.recv(), if can_take => match delivery {
                Some(delivery) => processor.take(delivery, lake),
                None => channel_open = false,
            },
            Some(done) = processor.tasks.join_next_with_id(), if !processor.tasks.is_empty() => {
                processor.finish_object(done);
            }
            _ = tick.tick() => {}
        }
        let drained = !channel_open && processor.tasks.is_empty();
        let anything_held = processor.run.has_pending() || !processor.held.is_empty();
        if processor.commit_due() || (drained && anything_held) {
            processor.commit(lake).await;
        }
        if drained && !processor.run.has_pending() && processor.held.is_empty() {
            break;
        }
        if let Some(hook) = &options.hook
            && !stopping
            && last_hook_tick.elapsed() >= HOOK_TICK
        {
            last_hook_tick = Instant::now();
            if let Err(error) = hook.tick(lake).await {
                tracing::warn!(error = %error, "scheduled detections failed; they run again at the next tick");
                metrics::counter!("bunker_errors_total", "kind" => error.kind()).increment(1);
            }
        }
    }
    while background.join_next().await.is_some() {}
    extender.abort();
    // Objects, rows and failures were counted by the run every message went through.
    let mut summary = processor.summary;
    summary.ingest = processor.run.summary;
    summary.ingest.elapsed = started.elapsed();
    Ok(summary)
}

struct Processor {
    sqs: aws_sdk_sqs::Client,
    source: S3Source,
    options: WorkerOptions,
    run: Run,
    held: HashMap<String, Held>,
    /// message id → receipt handle of every held message, for the visibility extender.
    held_receipts: Arc<Mutex<HashMap<String, String>>>,
    budget: Arc<Semaphore>,
    /// Objects fetched or parsed at once, however many objects one message names.
    fetch_permits: Arc<Semaphore>,
    tasks: JoinSet<(ObjectRef, Result<ObjectOutcome>)>,
    /// The message each running object task belongs to, so a task that dies still finishes its
    /// object (as a retry) instead of leaving its message held for ever.
    task_messages: HashMap<tokio::task::Id, String>,
    /// When the oldest uncommitted row or finished-but-undeleted message started waiting.
    waiting_since: Option<Instant>,
    summary: WorkerSummary,
}

impl Processor {
    /// Takes a received message in: reads its notification and starts its objects.
    fn take(&mut self, delivery: Delivery, lake: &Lake) {
        self.summary.messages_received += 1;
        metrics::counter!("bunker_messages_received_total").increment(1);
        let Delivery { message_id, receipt, body, receive_count } = delivery;
        // The receiver recorded it already; again here, because a copy of this message that
        // finished while this one waited in the channel has since removed it.
        lock(&self.held_receipts).insert(message_id.clone(), receipt.clone());
        let mut held = Held { receipt, receive_count, outstanding: 0, retry: false, in_run: false };
        match parse_notification(&body) {
            Ok(Notification::Objects(objects)) => {
                for object in objects {
                    if let Some(version) = lake.committed_version(&object) {
                        // A redelivery of something already in the lake: no need to fetch it.
                        self.run.accept(ObjectOutcome::Duplicate { object, lake_version: Some(version) });
                        held.in_run = true;
                        continue;
                    }
                    held.outstanding += 1;
                    let source = self.source.clone();
                    let limits = self.options.limits;
                    let permits = self.fetch_permits.clone();
                    let task = self.tasks.spawn(async move {
                        // The semaphore is never closed, so this only waits.
                        let _permit = permits.acquire_owned().await;
                        let outcome = fetch_and_parse(&source, object.clone(), limits).await;
                        (object, outcome)
                    });
                    self.task_messages.insert(task.id(), message_id.clone());
                }
            }
            Ok(Notification::Ignore { reason }) => {
                tracing::debug!(message_id, reason, "message needs no work");
                metrics::counter!("bunker_messages_ignored_total").increment(1);
            }
            Err(error) => {
                tracing::warn!(message_id, reason = %error.reason, "unrecognised message recorded and acknowledged");
                metrics::counter!("bunker_messages_unrecognised_total").increment(1);
                let key = format!("sqs:{}/{message_id}", queue_name(&self.options.queue_url));
                let object = ObjectRef::new("", key, body.len() as u64);
                let error = IngestError::Notification { message_id: message_id.clone(), reason: error.reason };
                self.run.accept(ObjectOutcome::Failed { object, format: LogFormat::Unknown, error });
                held.in_run = true;
            }
        }
        self.held.insert(message_id, held);
        self.waiting_since.get_or_insert_with(Instant::now);
    }

    /// One object of a held message is done.
    fn finish_object(
        &mut self,
        done: std::result::Result<(tokio::task::Id, (ObjectRef, Result<ObjectOutcome>)), tokio::task::JoinError>,
    ) {
        let (task, finished) = match done {
            Ok((task, finished)) => (task, Some(finished)),
            Err(e) => (e.id(), {
                // A task cannot panic on input (process_object never does); if it does anyway,
                // its message is not acknowledged and comes back.
                tracing::error!(error = %e, "object task failed; the message will be retried");
                None
            }),
        };
        let Some(message_id) = self.task_messages.remove(&task) else { return };
        let Some(held) = self.held.get_mut(&message_id) else { return };
        held.outstanding = held.outstanding.saturating_sub(1);
        // A finished message is deleted or released at the next commit.
        self.waiting_since.get_or_insert_with(Instant::now);
        let Some((object, outcome)) = finished else {
            held.retry = true;
            return;
        };
        match outcome {
            Ok(outcome) => {
                self.run.accept(outcome);
                held.in_run = true;
            }
            Err(error) => {
                tracing::warn!(key = %object.id(), error = %error, "transient failure; the message will be retried");
                metrics::counter!("bunker_errors_total", "kind" => error.kind()).increment(1);
                held.retry = true;
            }
        }
    }

    fn commit_due(&self) -> bool {
        self.run.pending_bytes() >= self.options.commit_bytes
            || self.waiting_since.is_some_and(|t| t.elapsed() >= self.options.commit_interval)
    }

    /// Commits what waits, then deletes the messages that are fully accounted for and releases
    /// the ones to retry.
    async fn commit(&mut self, lake: &mut Lake) {
        self.waiting_since = None;
        let committed = if self.run.has_pending() {
            match self.run.flush(lake, true).await {
                Ok(()) => true,
                Err(error) => {
                    // The lake's location is in the line: the cause (a full disk, a read-only
                    // volume, a denied S3 prefix) is usually outside bunker, and that is where the
                    // operator has to look.
                    tracing::error!(lake = %lake.location(), error = %error, "commit failed; the messages involved will be retried");
                    metrics::counter!("bunker_errors_total", "kind" => error.kind()).increment(1);
                    // What the failed flush held is gone; every message that had rows in it must
                    // come back (rows that did commit are recognised by the ledger then, and
                    // their `ingest_log` entries are still written with the next flush).
                    self.run.discard_after_failed_flush();
                    false
                }
            }
        } else {
            true
        };
        let finished: Vec<String> =
            self.held.iter().filter(|(_, h)| h.outstanding == 0).map(|(id, _)| id.clone()).collect();
        let mut delete = Vec::new();
        for id in finished {
            let Some(held) = self.held.remove(&id) else { continue };
            lock(&self.held_receipts).remove(&id);
            if held.retry || (held.in_run && !committed) {
                self.release(&held.receipt, held.receive_count).await;
            } else {
                delete.push((id, held.receipt));
            }
        }
        for (id, held) in self.held.iter_mut() {
            if held.in_run && !committed {
                // Still has objects in flight, but rows of it were lost with the failed commit.
                tracing::debug!(message_id = id, "message marked for retry after a failed commit");
                held.retry = true;
            }
            held.in_run = false;
        }
        self.delete(delete).await;
    }

    /// Deletes messages whose work is committed, ten per call.
    async fn delete(&mut self, messages: Vec<(String, String)>) {
        for chunk in messages.chunks(SQS_BATCH) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (_, receipt))| {
                    DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(receipt).build().ok()
                })
                .collect();
            let result = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.options.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            let deleted = match result {
                Ok(out) => {
                    for failed in out.failed() {
                        // The message comes back and is recognised as a duplicate then.
                        tracing::warn!(code = failed.code(), message = ?failed.message(), "delete failed; the message will be redelivered");
                    }
                    out.successful().len()
                }
                Err(e) => {
                    let error = IngestError::Queue {
                        operation: "DeleteMessageBatch",
                        reason: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
                    };
                    tracing::warn!(error = %error, "delete failed; the messages will be redelivered");
                    metrics::counter!("bunker_errors_total", "kind" => error.kind()).increment(1);
                    0
                }
            };
            self.summary.messages_deleted += deleted as u64;
            metrics::counter!("bunker_messages_deleted_total").increment(deleted as u64);
            self.budget.add_permits(chunk.len());
        }
    }

    /// Gives a message back to the queue after a back-off that grows with how often it came.
    async fn release(&mut self, receipt: &str, receive_count: u32) {
        let backoff = retry_backoff(receive_count, self.options.retry_backoff_seconds);
        self.summary.messages_retried += 1;
        metrics::counter!("bunker_messages_retried_total").increment(1);
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.options.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(backoff)
            .send()
            .await;
        if let Err(e) = result {
            // Then it comes back when its current visibility timeout runs out.
            tracing::debug!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not shorten visibility");
        }
        self.budget.add_permits(1);
    }
}

/// The longest back-off of a failed message, in seconds (15 minutes).
pub const MAX_RETRY_BACKOFF_SECS: i32 = 900;

/// Seconds before a failed message is seen again: 0 for a message never processed, then `first`
/// seconds (30 by default) doubling per receive, at most [`MAX_RETRY_BACKOFF_SECS`].
fn retry_backoff(receive_count: u32, first: i32) -> i32 {
    if receive_count == 0 {
        return 0;
    }
    first.saturating_mul(1 << receive_count.saturating_sub(1).min(5)).min(MAX_RETRY_BACKOFF_SECS)
}

/// Fetches and parses one object. `Err` only for transient failures; bad input is an outcome.
async fn fetch_and_parse(source: &S3Source, object: ObjectRef, limits: crate::decode::Limits) -> Result<ObjectOutcome> {
    let data = match source.fetch(&object).await {
        Ok(data) => data,
        Err(error @ IngestError::Fetch { transient: true, .. }) => return Err(error),
        Err(error) => return Ok(ObjectOutcome::Failed { object, format: LogFormat::Unknown, error }),
    };
    Ok(parse_on_pool(object, data, limits, None).await)
}

/// One receiver: long-polls while there is room in the in-flight budget.
///
/// A message's receipt goes to `held` (whose visibility the extender keeps extending) as soon as
/// it is received, not when the processor takes it: while a commit keeps the processor busy,
/// received messages wait in the channel, and their visibility timeout runs all the same.
async fn receive_loop(
    sqs: aws_sdk_sqs::Client,
    options: WorkerOptions,
    tx: mpsc::Sender<Delivery>,
    budget: Arc<Semaphore>,
    held: Arc<Mutex<HashMap<String, String>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let permits = tokio::select! {
            permits = budget.clone().acquire_many_owned(SQS_BATCH as u32) => match permits { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let request = sqs
            .receive_message()
            .queue_url(&options.queue_url)
            .max_number_of_messages(SQS_BATCH as i32)
            .wait_time_seconds(options.wait_time_seconds)
            .visibility_timeout(options.visibility_timeout_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        // Stopping abandons a receive in progress: anything it would have returned stays
        // invisible until its timeout and is then delivered again, never lost.
        let response = tokio::select! {
            response = request => response,
            _ = stop.changed() => return,
        };
        let messages = match response {
            Ok(out) => {
                failures = 0;
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                failures += 1;
                let error = IngestError::Queue {
                    operation: "ReceiveMessage",
                    reason: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
                };
                tracing::warn!(error = %error, failures, "receive failed; backing off");
                metrics::counter!("bunker_errors_total", "kind" => error.kind()).increment(1);
                drop(permits);
                let pause = Duration::from_millis(500u64 << failures.min(6));
                tokio::select! { () = tokio::time::sleep(pause) => continue, _ = stop.changed() => return }
            }
        };
        // Each message keeps one permit until it is deleted or released; the rest go back.
        permits.forget();
        budget.add_permits(SQS_BATCH - messages.len().min(SQS_BATCH));
        for message in messages {
            let (Some(message_id), Some(receipt)) = (message.message_id.clone(), message.receipt_handle.clone()) else {
                budget.add_permits(1);
                continue;
            };
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            lock(&held).insert(message_id.clone(), receipt.clone());
            let delivery = Delivery { message_id, receipt, body: message.body.unwrap_or_default(), receive_count };
            if tx.send(delivery).await.is_err() {
                return;
            }
        }
    }
}

/// Keeps every held message invisible to other consumers while it is in progress.
async fn extend_visibility(
    sqs: aws_sdk_sqs::Client,
    options: WorkerOptions,
    held: Arc<Mutex<HashMap<String, String>>>,
) {
    let every = Duration::from_secs((options.visibility_timeout_seconds as u64 / 3).max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let receipts: Vec<String> = lock(&held).values().cloned().collect();
        for chunk in receipts.chunks(SQS_BATCH) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(options.visibility_timeout_seconds)
                        .build()
                        .ok()
                })
                .collect();
            let result = sqs
                .change_message_visibility_batch()
                .queue_url(&options.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not extend visibility");
            }
        }
        metrics::gauge!("bunker_messages_in_flight").set(receipts.len() as f64);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this map cannot leave it inconsistent (single inserts and removes).
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The queue's name, the last segment of its URL.
fn queue_name(queue_url: &str) -> &str {
    queue_url.rsplit('/').next().unwrap_or(queue_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_grows_and_is_capped() {
        assert_eq!(retry_backoff(0, 30), 0);
        assert_eq!(retry_backoff(1, 30), 30);
        assert_eq!(retry_backoff(2, 30), 60);
        assert_eq!(retry_backoff(4, 30), 240);
        assert_eq!(retry_backoff(50, 30), 900);
        // A shorter first back-off (tests) grows the same way; zero means "at once".
        assert_eq!(retry_backoff(1, 1), 1);
        assert_eq!(retry_backoff(3, 1), 4);
        assert_eq!(retry_backoff(9, 0), 0);
        assert_eq!(retry_backoff(60, 900), 900);
    }

    #[test]
    fn options_are_validated() {
        let ok = WorkerOptions::new("https://sqs.us-east-1.amazonaws.com/111122223333/bunker");
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.wait_time_seconds = 21;
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.receivers = 0;
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.visibility_timeout_seconds = 5;
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.retry_backoff_seconds = -1;
        assert!(bad.validate().is_err());
        assert_eq!(queue_name("https://sqs.us-east-1.amazonaws.com/111122223333/bunker"), "bunker");
    }
}
