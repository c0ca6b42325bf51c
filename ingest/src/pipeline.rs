//! The ingest driver: from objects to committed rows and a record of every object.
//!
//! [`process_object`] is the pure CPU step the worker and the backfill share: classify, gunzip,
//! sniff, parse — bytes in, an [`ObjectOutcome`] out, never a panic or an early return on bad input.
//! [`ingest_directory`] walks a local archive: a producer thread reads and processes objects on the
//! rayon pool in chunks (each cut into groups whose CloudTrail objects share one set of column
//! buffers), and sends their outcomes over a bounded channel (memory is bounded by the
//! bytes allowed in flight and by the commit size, not by the archive) to the async side. That side
//! groups rows per table, commits them to the lake, and appends one `ingest_log` row per object.
//! [`ingest_s3`] does the same for an S3 prefix, fetching objects concurrently.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bunker_schemas::{LogTable, ingest_log::status};
use rayon::prelude::*;

use crate::classify::{LogFormat, ObjectRef, classify_key, sniff};
use crate::cloudtrail::CloudTrailParser;
use crate::decode::{Limits, decompress_into};
use crate::dns::DnsLogParser;
use crate::lake::{Lake, LogEntry, PendingObject};
use crate::ledger::Ledger;
use crate::parsed::{ObjectContext, Parsed, Rejections, split_group};
use crate::s3::S3Source;
use crate::vpcflow::FlowLogParser;
use crate::{IngestError, Result};

/// How many parsed chunks may wait for the committer.
const PARSED_CHUNKS_AHEAD: usize = 4;

/// Compressed bytes of objects being parsed or waiting, parsed, for the committer: as many as
/// the chunks ahead and the one being parsed hold when objects are small. A chunk ends at the
/// object that takes it past its size, so one object of 10 MB makes a chunk five times the usual,
/// whose rows (~55 MB of Arrow) then waited with three more such chunks: counting bytes instead of
/// chunks keeps the wait bounded on archives of busy accounts.
struct InFlight {
    bytes: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
    limit: u64,
}

impl InFlight {
    fn new(limit: u64) -> InFlight {
        InFlight { bytes: std::sync::Mutex::new(0), freed: std::sync::Condvar::new(), limit }
    }

    /// Waits until `n` more bytes fit (or nothing else is in flight: a chunk larger than the
    /// limit goes alone), then counts them.
    fn acquire(&self, n: u64) {
        let mut bytes = self.bytes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *bytes > 0 && *bytes + n > self.limit {
            bytes = self.freed.wait(bytes).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *bytes += n;
    }

    /// Counts `n` bytes out: the committer has taken their rows.
    fn release(&self, n: u64) {
        let mut bytes = self.bytes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *bytes = bytes.saturating_sub(n);
        self.freed.notify_all();
    }
}

/// How many rejected records are quoted in an object's `ingest_log` reason.
const QUOTED_REJECTIONS: usize = 3;

/// What became of one object.
#[derive(Debug)]
pub enum ObjectOutcome {
    /// Parsed into rows of a table (some records may have been rejected).
    Parsed {
        /// The object.
        object: ObjectRef,
        /// What it was classified as.
        format: LogFormat,
        /// The table its rows go to.
        table: LogTable,
        /// The rows and the rejected records.
        parsed: Parsed,
        /// Decompressed size.
        content_bytes: u64,
        /// The Arrow memory its rows account for: the size of their batch, or their share of the
        /// buffers they live in when the rows of several objects were parsed into one set.
        arrow_bytes: usize,
    },
    /// Not a log bunker ingests (another AWS log type, a digest, a folder marker).
    Skipped {
        /// The object.
        object: ObjectRef,
        /// What it was classified as.
        format: LogFormat,
        /// Why it was skipped.
        reason: String,
    },
    /// Already committed by an earlier run; not read again.
    Duplicate {
        /// The object.
        object: ObjectRef,
        /// The lake version whose commit holds its rows, when the ledger knows it.
        lake_version: Option<u64>,
    },
    /// Could not be ingested at all.
    Failed {
        /// The object.
        object: ObjectRef,
        /// What it was classified as, as far as that got.
        format: LogFormat,
        /// Why.
        error: IngestError,
    },
}

thread_local! {
    // One parser per pool thread, so their scratch buffers are reused across objects.
    static CLOUDTRAIL: RefCell<CloudTrailParser> = RefCell::new(CloudTrailParser::new());
    static FLOW: RefCell<FlowLogParser> = RefCell::new(FlowLogParser::new());
    static DNS: RefCell<DnsLogParser> = RefCell::new(DnsLogParser::new());
}

/// Classifies, decompresses and parses one object's stored bytes.
pub fn process_object(object: &ObjectRef, data: Vec<u8>, limits: Limits) -> ObjectOutcome {
    process_read(&object.clone().read_as(&data), data, limits)
}

/// [`process_object`], unless the bytes read show the lake already holds the object: a copy read
/// from another root or bucket, or a redelivery that a listing or notification could not tell.
pub fn process_unless_held(object: &ObjectRef, data: Vec<u8>, limits: Limits, held: &Ledger) -> ObjectOutcome {
    let object = object.clone().read_as(&data);
    match held.holds(&object) {
        Some(version) => ObjectOutcome::Duplicate { object, lake_version: Some(version) },
        None => process_read(&object, data, limits),
    }
}

/// [`process_object`] for an object whose bytes have been hashed.
fn process_read(object: &ObjectRef, data: Vec<u8>, limits: Limits) -> ObjectOutcome {
    match prepare_object(object, data, limits) {
        Step::Parse(prepared) => parse_prepared(object, prepared),
        Step::Done(outcome) => outcome,
    }
}

/// Runs the table's parser (the thread's) over a prepared object.
fn parse_prepared(object: &ObjectRef, mut prepared: Prepared) -> ObjectOutcome {
    let Prepared { format, table, key_date, .. } = prepared;
    let content_bytes = prepared.content.0.len() as u64;
    let ctx = ObjectContext { bucket: &object.bucket, key: &object.key, key_date };
    match parse_content(table, &mut prepared.content.0, &ctx) {
        Ok(parsed) => {
            let arrow_bytes = parsed.batch.get_array_memory_size();
            ObjectOutcome::Parsed { object: object.clone(), format, table, parsed, content_bytes, arrow_bytes }
        }
        Err(error) => ObjectOutcome::Failed { object: object.clone(), format, error },
    }
}

/// How far [`prepare_object`] took an object.
enum Step {
    /// On to its parser.
    Parse(Prepared),
    /// No further: skipped or failed.
    Done(ObjectOutcome),
}

/// An object ready for its parser: classified, decompressed, and sniffed where its key did not say.
struct Prepared {
    format: LogFormat,
    table: LogTable,
    key_date: Option<chrono::NaiveDate>,
    content: Content,
}

/// Takes an object as far as its parser, or to what became of it when it goes no further.
fn prepare_object(object: &ObjectRef, data: Vec<u8>, limits: Limits) -> Step {
    let skip = |format: LogFormat, reason: &str| ObjectOutcome::Skipped {
        object: object.clone(),
        format,
        reason: reason.to_owned(),
    };
    let fail = |format: LogFormat, error: IngestError| ObjectOutcome::Failed { object: object.clone(), format, error };
    if object.is_folder_marker() {
        return Step::Done(skip(LogFormat::Unknown, "folder marker"));
    }
    let class = classify_key(&object.key);
    match class.format {
        Some(LogFormat::Unknown) => {
            return Step::Done(skip(LogFormat::Unknown, "not a log type bunker ingests (by key)"));
        }
        Some(LogFormat::CloudTrailDigest) => {
            return Step::Done(skip(LogFormat::CloudTrailDigest, "CloudTrail digest file"));
        }
        _ => {}
    }
    let guessed = class.format.unwrap_or(LogFormat::Unknown);
    // An empty file is only bad input when its key says it is a log (AWS never writes one); in a
    // folder of exports it is just another file that is not ours.
    if data.is_empty() && class.format.is_none() {
        return Step::Done(skip(LogFormat::Unknown, "empty file"));
    }
    let malformed =
        |reason: &str| IngestError::Malformed { key: object.key.clone(), format: guessed, reason: reason.into() };
    if data.is_empty() {
        return Step::Done(fail(guessed, malformed("empty object (0 bytes)")));
    }
    let content = match decompress_into(&object.key, data, limits, SPARE_CONTENT.take()) {
        Ok(content) => Content(content),
        Err(error) => return Step::Done(fail(guessed, error)),
    };
    if content.0.iter().all(u8::is_ascii_whitespace) {
        return Step::Done(fail(guessed, malformed("no content (empty after decompression)")));
    }
    let format = match class.format {
        Some(format) => format,
        None => match sniff(&content.0) {
            LogFormat::Unknown => {
                return Step::Done(skip(LogFormat::Unknown, "content is not a log type bunker ingests"));
            }
            LogFormat::CloudTrailDigest => {
                return Step::Done(skip(LogFormat::CloudTrailDigest, "CloudTrail digest file"));
            }
            format => format,
        },
    };
    let Some(table) = format.table() else {
        return Step::Done(skip(format, &format!("{format} objects are not ingested")));
    };
    Step::Parse(Prepared { format, table, key_date: class.date, content })
}

/// Runs the table's parser over decompressed content.
pub fn parse_content(table: LogTable, content: &mut [u8], ctx: &ObjectContext<'_>) -> Result<Parsed> {
    match table {
        LogTable::CloudTrail => CLOUDTRAIL.with_borrow_mut(|p| p.parse(content, ctx)),
        LogTable::VpcFlow => FLOW.with_borrow_mut(|p| p.parse(content, ctx)),
        LogTable::Dns => DNS.with_borrow_mut(|p| p.parse(content, ctx)),
    }
}

/// Content buffers larger than this are freed after their object rather than kept for the next.
/// Most objects are well under it; one of tens of MB is rare enough to allocate afresh, and
/// keeping it would hold that much per thread for the rest of the run.
const RETAINED_CONTENT_BYTES: usize = 8 << 20;

thread_local! {
    /// The buffer the last object on this thread was decompressed into, for the next one.
    static SPARE_CONTENT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An object's decompressed content, whose buffer goes back to [`SPARE_CONTENT`] when dropped.
struct Content(Vec<u8>);

impl Drop for Content {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() <= RETAINED_CONTENT_BYTES {
            buffer.clear();
            SPARE_CONTENT.set(buffer);
        }
    }
}

/// Runs [`process_object`] on the rayon pool, off the I/O runtime; with a ledger,
/// [`process_unless_held`].
pub async fn parse_on_pool(
    object: ObjectRef,
    data: Vec<u8>,
    limits: Limits,
    held: Option<Arc<Ledger>>,
) -> ObjectOutcome {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let for_pool = object.clone();
    rayon::spawn(move || {
        let outcome = match &held {
            Some(held) => process_unless_held(&for_pool, data, limits, held),
            None => process_object(&for_pool, data, limits),
        };
        let _ = tx.send(outcome);
    });
    rx.await.unwrap_or_else(|_| ObjectOutcome::Failed {
        object,
        format: LogFormat::Unknown,
        error: IngestError::Config("the parser stopped without an answer".into()),
    })
}

/// What the detections plug into ingestion: work on the rows of every commit just before it, and
/// (in the worker) a periodic tick for work over the lake, both with the lake at hand.
///
/// It runs before the commit, not after, because of what comes after: once the rows are
/// committed, a redelivered object is a duplicate and its rows are never seen again — so alerts
/// emitted after the commit could be lost to a crash in between. Run before, a crash means the
/// hook runs again on the same rows, which it must tolerate (alerts have stable ids). An error
/// leaves the rows uncommitted and, in the worker, the messages on the queue for a retry.
pub trait LakeHook: Send + Sync + std::fmt::Debug {
    /// Handles the rows about to be committed to `table` (objects the lake already holds are
    /// left out).
    fn before_commit<'a>(
        &'a self,
        lake: &'a mut Lake,
        table: LogTable,
        batches: Vec<RecordBatch>,
    ) -> futures::future::BoxFuture<'a, Result<()>>;

    /// Called by the worker between commits, at least every few seconds while it runs: a chance
    /// to run scheduled work (window rules) over the lake. Errors are logged, not fatal.
    fn tick<'a>(&'a self, lake: &'a mut Lake) -> futures::future::BoxFuture<'a, Result<()>> {
        let _ = lake;
        Box::pin(async { Ok(()) })
    }
}

/// Settings of an ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Caps on one object's decompressed size and compression ratio.
    pub limits: Limits,
    /// Commit a table once this many bytes of Arrow data are waiting for it.
    pub commit_bytes: usize,
    /// Objects are read and parsed in chunks of about this many stored bytes.
    pub chunk_bytes: u64,
    /// Objects fetched from S3 at once.
    pub fetch_concurrency: usize,
    /// What runs on the rows of each commit (detections), if anything.
    pub hook: Option<Arc<dyn LakeHook>>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            commit_bytes: 48 << 20,
            chunk_bytes: 2 << 20,
            fetch_concurrency: 16,
            hook: None,
        }
    }
}

/// Receives progress while an ingest runs (the CLI draws a progress bar with it).
pub trait ProgressSink {
    /// The run has found `objects` objects totalling `bytes` stored bytes.
    fn start(&self, objects: u64, bytes: u64);
    /// One more object is done.
    fn object_done(&self, bytes: u64);
    /// The run is over.
    fn finish(&self);
}

/// A [`ProgressSink`] that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn start(&self, _: u64, _: u64) {}
    fn object_done(&self, _: u64) {}
    fn finish(&self) {}
}

/// One object that could not be ingested, for the run's summary.
#[derive(Debug, Clone)]
pub struct FailedObject {
    /// The object's key.
    pub key: String,
    /// Kind of failure.
    pub kind: &'static str,
    /// The full message.
    pub message: String,
}

/// What an ingest run did.
#[derive(Debug, Default, Clone)]
pub struct IngestSummary {
    /// Objects looked at.
    pub objects: u64,
    /// Objects whose rows were committed.
    pub committed_objects: u64,
    /// Objects skipped because an earlier commit already holds them.
    pub duplicate_objects: u64,
    /// Objects skipped as not ours (other logs, digests, folders).
    pub skipped_objects: u64,
    /// Objects that failed.
    pub failed: Vec<FailedObject>,
    /// Rows committed per table.
    pub rows: BTreeMap<LogTable, u64>,
    /// Records or lines rejected inside otherwise good objects.
    pub rejected_records: u64,
    /// Stored (compressed) bytes read.
    pub bytes: u64,
    /// Decompressed bytes parsed.
    pub content_bytes: u64,
    /// Delta commits made to data tables.
    pub commits: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Thread time spent reading, decompressing and parsing objects (summed over threads).
    pub parse_time: Duration,
    /// Wall time spent committing to data tables (sort, Parquet encoding, Delta commit, and the
    /// hook over the rows, which runs while they are encoded).
    pub commit_time: Duration,
}

impl IngestSummary {
    /// Rows committed across all tables.
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }

    /// Rows committed per second of wall time.
    pub fn events_per_second(&self) -> f64 {
        self.total_rows() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Lists the files under a local archive directory as objects, in a stable order.
pub fn list_directory(root: &Path) -> Result<Vec<(ObjectRef, PathBuf)>> {
    if !root.is_dir() {
        return Err(IngestError::Io {
            path: root.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let mut objects = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| IngestError::Io {
            path: e.path().map(Path::to_owned).unwrap_or_else(|| root.to_owned()),
            source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed")),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let key = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        objects.push((ObjectRef::new("", key, size), entry.path().to_owned()));
    }
    Ok(objects)
}

/// Reads and processes one object of a local archive, unless the lake already holds it: what
/// [`read_and_process_group`] must give each object of a group.
#[cfg(test)]
fn read_and_process(object: &ObjectRef, path: &Path, already: &Ledger, limits: Limits) -> (ObjectOutcome, Duration) {
    let started = Instant::now();
    let outcome = match std::fs::read(path) {
        Ok(data) => process_unless_held(object, data, limits, already),
        Err(source) => ObjectOutcome::Failed {
            object: object.clone(),
            format: LogFormat::Unknown,
            error: IngestError::Io { path: path.to_owned(), source },
        },
    };
    (outcome, started.elapsed())
}

thread_local! {
    /// CloudTrail records per stored (compressed) byte in the groups this thread has read, a moving
    /// average: what a group's stored size says of the rows it will hold. A single object's
    /// ratio is a poor guide (small files compress less): sized from its first object's, a group
    /// outgrew a quarter of its text columns' buffers.
    static RECORDS_PER_STORED_BYTE: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// Slack on the records a group is expected to hold: too few and every column of the group is
/// copied to grow, too many and the unused room is held until the commit.
const GROUP_RECORDS_HEADROOM: f64 = 1.1;

/// How many groups a chunk's objects are cut into per pool thread: enough that a thread left
/// without work finds some to take, few enough that each group holds a few dozen objects.
const GROUPS_PER_THREAD: usize = 4;

/// Reads and processes consecutive objects of a local archive, as [`read_and_process`] does each,
/// except that the rows of its CloudTrail objects are parsed into one set of column buffers and
/// finished once for the group (see [`CloudTrailParser::append`]); each object's rows are then a
/// slice of the group's.
fn read_and_process_group(
    group: &[(ObjectRef, PathBuf)],
    already: &Ledger,
    limits: Limits,
) -> Vec<(ObjectOutcome, Duration)> {
    /// A CloudTrail object whose rows are in the group's buffers.
    struct Waiting {
        at: usize,
        object: ObjectRef,
        format: LogFormat,
        rows: usize,
        rejected: Rejections,
        content_bytes: u64,
    }
    /// Empties the parser if the group is left halfway by a panic: the next group or object on
    /// this thread must not inherit its rows.
    struct Abandon<'a>(&'a mut CloudTrailParser);
    impl Drop for Abandon<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.discard_group();
            }
        }
    }
    CLOUDTRAIL.with_borrow_mut(|parser| {
        let guard = Abandon(parser);
        let parser = &mut *guard.0;
        let mut outcomes: Vec<Option<(ObjectOutcome, Duration)>> = Vec::with_capacity(group.len());
        let mut waiting: Vec<Waiting> = Vec::new();
        // Stored bytes of this object and those after it in the group.
        let mut remaining: u64 = group.iter().map(|(o, _)| o.size).sum();
        let per_stored_byte = RECORDS_PER_STORED_BYTE.get();
        for (object, path) in group {
            let started = Instant::now();
            // The parser sizes its buffers for the rest of the group when it starts a set.
            parser.expect_records((per_stored_byte * remaining as f64 * GROUP_RECORDS_HEADROOM) as usize);
            remaining = remaining.saturating_sub(object.size);
            let data = match std::fs::read(path) {
                Ok(data) => data,
                Err(source) => {
                    let error = IngestError::Io { path: path.to_owned(), source };
                    let failed = ObjectOutcome::Failed { object: object.clone(), format: LogFormat::Unknown, error };
                    outcomes.push(Some((failed, started.elapsed())));
                    continue;
                }
            };
            let object = &object.clone().read_as(&data);
            if let Some(version) = already.holds(object) {
                let duplicate = ObjectOutcome::Duplicate { object: object.clone(), lake_version: Some(version) };
                outcomes.push(Some((duplicate, started.elapsed())));
                continue;
            }
            let prepared = prepare_object(object, data, limits);
            let outcome = match prepared {
                Step::Done(outcome) => outcome,
                Step::Parse(mut prepared) if prepared.table == LogTable::CloudTrail => {
                    let content_bytes = prepared.content.0.len() as u64;
                    let ctx = ObjectContext { bucket: &object.bucket, key: &object.key, key_date: prepared.key_date };
                    match parser.append(&mut prepared.content.0, &ctx) {
                        Ok(appended) => {
                            waiting.push(Waiting {
                                at: outcomes.len(),
                                object: object.clone(),
                                format: prepared.format,
                                rows: appended.rows,
                                rejected: appended.rejected,
                                content_bytes,
                            });
                            outcomes.push(None);
                            continue;
                        }
                        Err(error) => ObjectOutcome::Failed { object: object.clone(), format: prepared.format, error },
                    }
                }
                // Flow and DNS logs, one by one with their own parsers (not the borrowed one).
                Step::Parse(prepared) => parse_prepared(object, prepared),
            };
            outcomes.push(Some((outcome, started.elapsed())));
        }
        let started = Instant::now();
        let rows: Vec<usize> = waiting.iter().map(|w| w.rows).collect();
        let stored: u64 = waiting.iter().map(|w| w.object.size).sum();
        if stored > 0 {
            let seen = rows.iter().sum::<usize>() as f64 / stored as f64;
            let learnt = if per_stored_byte > 0.0 { per_stored_byte + (seen - per_stored_byte) / 4.0 } else { seen };
            RECORDS_PER_STORED_BYTE.set(learnt);
        }
        let cut = parser.finish_group().and_then(|batches| {
            let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
            Ok((split_group(&batches, &rows)?, bytes))
        });
        let total_rows = rows.iter().sum::<usize>().max(1);
        let took = started.elapsed() / waiting.len().max(1) as u32;
        let (slices, bytes) = match cut {
            Ok((slices, bytes)) => (slices.into_iter().map(Ok).collect(), bytes),
            Err(error) => {
                let reason = format!("finishing the rows of a group of objects: {error}");
                (waiting.iter().map(|_| Err(IngestError::Config(reason.clone()))).collect::<Vec<_>>(), 0)
            }
        };
        for (w, slice) in waiting.into_iter().zip(slices) {
            let outcome = match slice {
                Ok(batch) => ObjectOutcome::Parsed {
                    object: w.object,
                    format: w.format,
                    table: LogTable::CloudTrail,
                    parsed: Parsed { batch, rejected: w.rejected },
                    content_bytes: w.content_bytes,
                    arrow_bytes: bytes.saturating_mul(w.rows).div_ceil(total_rows),
                },
                Err(error) => ObjectOutcome::Failed { object: w.object, format: w.format, error },
            };
            outcomes[w.at] = Some((outcome, took));
        }
        outcomes.into_iter().flatten().collect()
    })
}

/// Ingests every object under a local archive directory into the lake.
pub async fn ingest_directory(
    root: &Path,
    lake: &mut Lake,
    options: &IngestOptions,
    progress: &dyn ProgressSink,
) -> Result<IngestSummary> {
    let started = Instant::now();
    let objects = list_directory(root)?;
    progress.start(objects.len() as u64, objects.iter().map(|(o, _)| o.size).sum());
    lake.refresh().await?;
    let already = lake.ledger();

    // While a commit encodes Parquet, the parser threads keep going into this queue; without room
    // for a few chunks they would sit idle for most of every commit. Its size bounds the memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<(ObjectOutcome, Duration)>, u64)>(PARSED_CHUNKS_AHEAD);
    let limits = options.limits;
    let chunk_bytes = options.chunk_bytes.max(1);
    let in_flight = Arc::new(InFlight::new(chunk_bytes * (PARSED_CHUNKS_AHEAD as u64 + 1)));
    let producer_in_flight = in_flight.clone();
    let producer = std::thread::Builder::new()
        .name("bunker-parse".into())
        .spawn(move || {
            // One chunk at a time. Handing a chunk to the pool before the one ahead of it had
            // finished kept both cores busier (~5% on 1M CloudTrail events in release, nothing
            // measurable with LTO) but parsed several chunks at once, and the 25M-row archive then
            // peaked at 936-1,047 MiB against 907-949 (three runs each; the peak moves by ~100 MiB
            // from run to run, and the budget is 1 GiB).
            for chunk in chunks_by_bytes(&objects, chunk_bytes) {
                let weight: u64 = chunk.iter().map(|(o, _)| o.size.max(1)).sum();
                producer_in_flight.acquire(weight);
                let started = Instant::now();
                let per_group = chunk.len().div_ceil(rayon::current_num_threads() * GROUPS_PER_THREAD).max(1);
                let groups: Vec<Vec<(ObjectOutcome, Duration)>> =
                    chunk.par_chunks(per_group).map(|group| read_and_process_group(group, &already, limits)).collect();
                let outcomes: Vec<(ObjectOutcome, Duration)> = groups.into_iter().flatten().collect();
                tracing::debug!(objects = chunk.len(), wall = ?started.elapsed(), "chunk parsed");
                if tx.blocking_send((outcomes, weight)).is_err() {
                    return; // The consumer stopped (a lake error); it reports why.
                }
            }
        })
        .map_err(|e| IngestError::Config(format!("cannot start parser thread: {e}")))?;

    let mut run = Run::new(options.commit_bytes, options.hook.clone());
    let mut result = Ok(());
    while let Some((outcomes, weight)) = rx.recv().await {
        for (outcome, took) in outcomes {
            run.summary.parse_time += took;
            if let Some(bytes) = run.accept(outcome) {
                progress.object_done(bytes);
            }
        }
        in_flight.release(weight);
        if let Err(e) = run.flush(lake, false).await {
            result = Err(e);
            break;
        }
    }
    drop(rx);
    // A producer waiting for room must see the channel closed, not wait forever.
    in_flight.release(u64::MAX);
    let _ = producer.join();
    result?;
    run.flush(lake, true).await?;
    progress.finish();
    run.summary.elapsed = started.elapsed();
    Ok(run.summary)
}

/// Ingests every object under an S3 prefix (optionally only the days of a date range) into the
/// lake: objects are fetched `fetch_concurrency` at a time, parsed on the CPU pool, and committed
/// exactly once, like the worker does — an object the lake already holds is not even fetched.
pub async fn ingest_s3(
    source: &S3Source,
    bucket: &str,
    prefix: &str,
    dates: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    lake: &mut Lake,
    options: &IngestOptions,
    progress: &dyn ProgressSink,
) -> Result<IngestSummary> {
    use futures::StreamExt as _;

    let started = Instant::now();
    let objects = source.list(bucket, prefix, dates).await?;
    progress.start(objects.len() as u64, objects.iter().map(|o| o.size).sum());
    lake.refresh().await?;
    let already = Arc::new(lake.ledger());
    let limits = options.limits;
    let mut outcomes = futures::stream::iter(objects)
        .map(|object| {
            // Known from the listing (name, size, ETag), or else from the bytes once fetched.
            let duplicate = already.holds(&object);
            let already = already.clone();
            async move {
                let started = Instant::now();
                let outcome = if let Some(version) = duplicate {
                    ObjectOutcome::Duplicate { object, lake_version: Some(version) }
                } else {
                    match source.fetch(&object).await {
                        Ok(data) => parse_on_pool(object, data, limits, Some(already)).await,
                        Err(error) => ObjectOutcome::Failed { object, format: LogFormat::Unknown, error },
                    }
                };
                (outcome, started.elapsed())
            }
        })
        .buffer_unordered(options.fetch_concurrency.max(1));
    let mut run = Run::new(options.commit_bytes, options.hook.clone());
    while let Some((outcome, took)) = outcomes.next().await {
        run.summary.parse_time += took;
        if let Some(bytes) = run.accept(outcome) {
            progress.object_done(bytes);
        }
        if run.pending_bytes() >= options.commit_bytes {
            run.flush(lake, false).await?;
        }
    }
    run.flush(lake, true).await?;
    progress.finish();
    run.summary.elapsed = started.elapsed();
    Ok(run.summary)
}

/// Splits objects into consecutive chunks of about `limit` stored bytes each.
fn chunks_by_bytes<T>(objects: &[(ObjectRef, T)], limit: u64) -> Vec<&[(ObjectRef, T)]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (object, _)) in objects.iter().enumerate() {
        bytes += object.size.max(1);
        if bytes >= limit {
            chunks.push(&objects[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < objects.len() {
        chunks.push(&objects[start..]);
    }
    chunks
}

/// Rows of one table waiting for a commit, with the log entries of their objects.
#[derive(Debug, Default)]
struct PendingTable {
    objects: Vec<PendingObject>,
    entries: Vec<LogEntry>,
    bytes: usize,
}

/// The consumer side of an ingest run: outcomes in, commits and `ingest_log` rows out. The local
/// archive walk, the S3 backfill and the worker all account for objects through it.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) summary: IngestSummary,
    pending: BTreeMap<LogTable, PendingTable>,
    /// Log entries ready to be appended (their objects are committed, skipped or failed).
    log: Vec<LogEntry>,
    commit_bytes: usize,
    hook: Option<Arc<dyn LakeHook>>,
}

impl Run {
    pub(crate) fn new(commit_bytes: usize, hook: Option<Arc<dyn LakeHook>>) -> Run {
        Run { summary: IngestSummary::default(), pending: BTreeMap::new(), log: Vec::new(), commit_bytes, hook }
    }

    /// Bytes of Arrow data waiting for a commit.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending.values().map(|p| p.bytes).sum()
    }

    /// Whether anything (rows or log entries) waits to be written.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.log.is_empty()
    }

    /// Takes one outcome in; returns the object's stored size for progress.
    pub(crate) fn accept(&mut self, outcome: ObjectOutcome) -> Option<u64> {
        self.summary.objects += 1;
        let entry = |object: ObjectRef, format, table, status| LogEntry {
            object,
            format,
            table,
            status,
            rows: 0,
            rejected_records: 0,
            error_kind: None,
            reason: None,
            lake_version: None,
        };
        match outcome {
            ObjectOutcome::Parsed { object, format, table, parsed, content_bytes, arrow_bytes } => {
                let size = object.size;
                self.summary.bytes += size;
                self.summary.content_bytes += content_bytes;
                metrics::counter!("bunker_object_bytes_total").increment(size);
                self.summary.rejected_records += parsed.rejected.len() as u64;
                let mut e = entry(object.clone(), format, Some(table), status::COMMITTED);
                e.rows = parsed.batch.num_rows() as u64;
                e.rejected_records = parsed.rejected.len() as u64;
                if !parsed.rejected.is_empty() {
                    let quoted: Vec<String> = parsed
                        .rejected
                        .iter()
                        .take(QUOTED_REJECTIONS)
                        .map(|r| format!("{}: {}", r.position, r.reason))
                        .collect();
                    e.reason = Some(format!("{} records rejected; {}", parsed.rejected.len(), quoted.join("; ")));
                    tracing::warn!(key = %object.key, rejected = parsed.rejected.len(), first = %quoted[0], "records rejected");
                }
                let pending = self.pending.entry(table).or_default();
                pending.bytes += arrow_bytes;
                pending.objects.push(PendingObject { object, batch: parsed.batch });
                pending.entries.push(e);
                Some(size)
            }
            ObjectOutcome::Skipped { object, format, reason } => {
                self.summary.skipped_objects += 1;
                metrics::counter!("bunker_objects_total", "status" => status::SKIPPED).increment(1);
                let size = object.size;
                let mut e = entry(object, format, None, status::SKIPPED);
                e.reason = Some(reason);
                self.log.push(e);
                Some(size)
            }
            ObjectOutcome::Duplicate { object, lake_version } => {
                self.summary.duplicate_objects += 1;
                metrics::counter!("bunker_objects_total", "status" => status::DUPLICATE).increment(1);
                let size = object.size;
                let format = classify_key(&object.key).format.unwrap_or(LogFormat::Unknown);
                let mut e = entry(object, format, format.table(), status::DUPLICATE);
                e.lake_version = lake_version;
                self.log.push(e);
                Some(size)
            }
            ObjectOutcome::Failed { object, format, error } => {
                tracing::warn!(key = %object.key, kind = error.kind(), error = %error, "object failed");
                metrics::counter!("bunker_errors_total", "kind" => error.kind()).increment(1);
                metrics::counter!("bunker_objects_total", "status" => status::FAILED).increment(1);
                self.summary.failed.push(FailedObject {
                    key: object.key.clone(),
                    kind: error.kind(),
                    message: error.to_string(),
                });
                let size = object.size;
                let mut e = entry(object, format, format.table(), status::FAILED);
                e.error_kind = Some(error.kind());
                e.reason = Some(error.to_string());
                self.log.push(e);
                Some(size)
            }
        }
    }

    /// Commits tables whose pending rows reached the commit size (all of them when `all`), then
    /// appends the log entries of everything committed, skipped or failed so far.
    ///
    /// The commit size bounds all tables together, not each one: when the waiting rows of every
    /// table add up to it, the biggest table is committed, so memory does not grow with the number
    /// of log types in the archive.
    pub(crate) async fn flush(&mut self, lake: &mut Lake, all: bool) -> Result<()> {
        let mut ready: Vec<LogTable> =
            self.pending.iter().filter(|(_, p)| all || p.bytes >= self.commit_bytes).map(|(t, _)| *t).collect();
        let waiting: usize = self.pending.values().map(|p| p.bytes).sum();
        if ready.is_empty() && waiting >= self.commit_bytes {
            ready.extend(self.pending.iter().max_by_key(|(_, p)| p.bytes).map(|(t, _)| *t));
        }
        for table in ready {
            let Some(pending) = self.pending.remove(&table) else { continue };
            let newest: Vec<i64> =
                pending.objects.iter().filter_map(|p| newest_event_micros(table, &p.batch)).collect();
            let started = Instant::now();
            // The rows' files are encoded while the hook runs over the same rows; they are
            // committed only once it has finished.
            let prepared = lake.prepare_commit(table, pending.objects).await?;
            if let Some(hook) = &self.hook {
                let fresh = prepared.fresh_batches();
                if !fresh.is_empty() {
                    hook.before_commit(lake, table, fresh).await?;
                }
            }
            let outcome = lake.finish_commit(prepared).await?;
            // Lag from each object's newest event to its commit: how far behind the lake runs.
            let now = chrono::Utc::now().timestamp_micros();
            for micros in newest {
                metrics::histogram!("bunker_event_lag_seconds", "table" => table.name())
                    .record((now - micros).max(0) as f64 / 1e6);
            }
            self.summary.commit_time += started.elapsed();
            if outcome.version.is_some() {
                self.summary.commits += 1;
                metrics::histogram!("bunker_commit_seconds", "table" => table.name()).record(started.elapsed());
            }
            metrics::counter!("bunker_rows_total", "table" => table.name()).increment(outcome.rows);
            // An object can wait here more than once (its message delivered again before the
            // commit): the commit holds it once, so exactly one of its entries is the committed
            // one and the others are duplicates.
            let mut committed: HashSet<&str> = outcome.committed.iter().map(String::as_str).collect();
            let replaced: HashMap<&str, &crate::ledger::Replaced> =
                outcome.replaced.iter().map(|(id, earlier)| (id.as_str(), earlier)).collect();
            for mut e in pending.entries {
                if !committed.remove(e.object.id().as_str()) {
                    e.status = status::DUPLICATE;
                    e.rows = 0;
                    e.lake_version = lake.committed_version(&e.object);
                    self.summary.duplicate_objects += 1;
                    metrics::counter!("bunker_objects_total", "status" => status::DUPLICATE).increment(1);
                } else {
                    e.lake_version = outcome.version;
                    if let Some(earlier) = replaced.get(e.object.id().as_str()) {
                        // An archive bucket is written once: other bytes under a name it already
                        // delivered are a replaced or altered log file, worth a responder's look.
                        let note = format!(
                            "replaces a different object of the same name committed at version {} ({} bytes, sha256 {})",
                            earlier.version, earlier.size, earlier.sha256
                        );
                        tracing::warn!(key = %e.object.id(), %note, "object differs from the one committed under its name");
                        e.reason = Some(match e.reason.take() {
                            Some(reason) => format!("{note}; {reason}"),
                            None => note,
                        });
                    }
                    self.summary.committed_objects += 1;
                    metrics::counter!("bunker_objects_total", "status" => status::COMMITTED).increment(1);
                    *self.summary.rows.entry(table).or_default() += e.rows;
                }
                self.log.push(e);
            }
        }
        // The log is appended after the data it describes, and in few large writes.
        if all || self.log.len() >= 50_000 {
            // Cleared only once written: a failed append keeps the entries of what did commit.
            lake.append_log(&self.log).await?;
            self.log.clear();
        }
        Ok(())
    }

    /// After a failed flush, forgets every waiting row and log entry — their objects come back
    /// with their messages — except the entries of objects whose commit did land: those objects
    /// return as duplicates of themselves, and these entries are the only record of the commit
    /// that holds them. The summary is kept.
    pub(crate) fn discard_after_failed_flush(&mut self) {
        self.pending.clear();
        self.log.retain(|e| e.status == status::COMMITTED && e.lake_version.is_some());
    }
}

/// The newest event time in an object's rows, in microseconds since the epoch.
fn newest_event_micros(table: LogTable, batch: &arrow::array::RecordBatch) -> Option<i64> {
    let column = batch.column_by_name(table.time_column())?;
    let times = column.as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>()?;
    arrow::compute::max(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes past the limit wait for the committer to take some; a chunk larger than the limit
    /// waits until nothing else is in flight and then goes alone; the end of the consumer frees
    /// a waiting producer.
    #[test]
    fn parsed_chunks_wait_by_their_bytes() {
        let in_flight = Arc::new(InFlight::new(10));
        in_flight.acquire(6);
        let waits = |n: u64| {
            let (done, taken) = std::sync::mpsc::channel();
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                in_flight.acquire(n);
                let _ = done.send(());
            });
            taken
        };
        let second = waits(4);
        second.recv_timeout(Duration::from_secs(5)).expect("10 bytes fit the limit");
        let big = waits(25);
        assert!(big.recv_timeout(Duration::from_millis(200)).is_err(), "25 bytes do not fit beside 10");
        in_flight.release(6);
        assert!(big.recv_timeout(Duration::from_millis(200)).is_err(), "nor beside 4");
        in_flight.release(4);
        big.recv_timeout(Duration::from_secs(5)).expect("alone, a chunk past the limit goes");
        let blocked = waits(1);
        assert!(blocked.recv_timeout(Duration::from_millis(200)).is_err());
        in_flight.release(u64::MAX);
        blocked.recv_timeout(Duration::from_secs(5)).expect("a stopped consumer frees the producer");
    }

    /// What an outcome says about its object, for comparing two ways of getting it.
    fn described(outcome: &ObjectOutcome) -> (String, &'static str, Option<&RecordBatch>, String) {
        match outcome {
            ObjectOutcome::Parsed { object, parsed, .. } => {
                (object.key.clone(), "parsed", Some(&parsed.batch), format!("{:?}", parsed.rejected))
            }
            ObjectOutcome::Skipped { object, reason, .. } => (object.key.clone(), "skipped", None, reason.clone()),
            ObjectOutcome::Duplicate { object, lake_version } => {
                (object.key.clone(), "duplicate", None, format!("{lake_version:?}"))
            }
            ObjectOutcome::Failed { object, error, .. } => (object.key.clone(), "failed", None, error.to_string()),
        }
    }

    /// Reading a chunk's objects as groups (their CloudTrail rows parsed into shared buffers) gives
    /// every object the outcome and rows it gets read on its own, in the same order, among flow
    /// and DNS logs, duplicates, skipped files and broken ones; and the rows' Arrow memory is
    /// counted once between them, not once per object.
    #[test]
    fn objects_read_as_a_group_get_what_each_gets_alone() {
        let archive = tempfile::tempdir().expect("tempdir");
        crate::synth::generate(archive.path(), &crate::synth::SynthConfig::new(3_000, 11)).expect("archive");
        let day = "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/03";
        std::fs::create_dir_all(archive.path().join(day)).expect("mkdir");
        let bad: [(&str, &[u8]); 4] = [
            ("111122223333_CloudTrail_us-east-1_20250303T1000Z_corrupt.json.gz", b"\x1f\x8b\x08\x00garbage"),
            ("111122223333_CloudTrail_us-east-1_20250303T1005Z_notjson.json", b"{\"Records\": [{"),
            ("111122223333_CloudTrail_us-east-1_20250303T1010Z_empty.json.gz", b""),
            ("111122223333_CloudTrail_us-east-1_20250303T1015Z_digest-like.json", b"{\"awsAccountId\": \"1\"}"),
        ];
        for (name, bytes) in bad {
            std::fs::write(archive.path().join(day).join(name), bytes).expect("write");
        }
        let objects = list_directory(archive.path()).expect("list");
        let mut already = Ledger::default();
        objects.iter().step_by(7).for_each(|(o, _)| already.record(o, 4));
        let limits = Limits::default();
        let alone: Vec<(ObjectOutcome, Duration)> =
            objects.iter().map(|(object, path)| read_and_process(object, path, &already, limits)).collect();
        let kinds: HashSet<&str> = alone.iter().map(|(o, _)| described(o).1).collect();
        assert_eq!(kinds.len(), 4, "parsed, skipped, duplicate and failed objects: {kinds:?}");
        for per_group in [1, 3, objects.len()] {
            let grouped: Vec<(ObjectOutcome, Duration)> =
                objects.chunks(per_group).flat_map(|group| read_and_process_group(group, &already, limits)).collect();
            assert_eq!(grouped.len(), alone.len());
            for ((grouped, _), (alone, _)) in grouped.iter().zip(&alone) {
                assert_eq!(described(grouped), described(alone), "{per_group} objects per group");
            }
            let arrow_bytes = |outcomes: &[(ObjectOutcome, Duration)]| -> usize {
                outcomes
                    .iter()
                    .map(|(o, _)| match o {
                        ObjectOutcome::Parsed { arrow_bytes, .. } => *arrow_bytes,
                        _ => 0,
                    })
                    .sum()
            };
            let (grouped, alone) = (arrow_bytes(&grouped), arrow_bytes(&alone));
            assert!(grouped > alone / 2 && grouped < alone * 2, "{per_group}: {grouped} bytes grouped, {alone} alone");
        }
    }

    fn entry(key: &str, status: &'static str, lake_version: Option<u64>) -> LogEntry {
        LogEntry {
            object: ObjectRef::new("archive", key, 1),
            format: LogFormat::CloudTrail,
            table: Some(LogTable::CloudTrail),
            status,
            rows: 1,
            rejected_records: 0,
            error_kind: None,
            reason: None,
            lake_version,
        }
    }

    /// A failed `ingest_log` append after a data commit landed once lost the only record that the
    /// commit holds those objects: they came back as duplicates of themselves.
    #[test]
    fn a_failed_flush_keeps_only_the_log_entries_of_commits_that_landed() {
        let mut run = Run::new(1 << 20, None);
        run.log = vec![
            entry("landed", status::COMMITTED, Some(3)),
            entry("not-yet-committed", status::COMMITTED, None),
            entry("duplicate", status::DUPLICATE, None),
            entry("failed", status::FAILED, None),
            entry("skipped", status::SKIPPED, None),
        ];
        run.summary.objects = 5;
        run.discard_after_failed_flush();
        let kept: Vec<&str> = run.log.iter().map(|e| e.object.key.as_str()).collect();
        assert_eq!(kept, ["landed"]);
        assert!(run.has_pending(), "the kept entry is written with the next flush");
        assert_eq!(run.summary.objects, 5);
    }

    /// A commit that fails ends the run with its error: the parsers, which run ahead of the
    /// committer, stop handing out chunks instead of parsing the rest of the archive or waiting
    /// for room forever.
    #[tokio::test]
    async fn a_failing_commit_stops_the_parsers_and_ends_the_run() {
        /// Fails every commit, counting them.
        #[derive(Debug, Default)]
        struct Refuse(std::sync::atomic::AtomicUsize);
        impl LakeHook for Refuse {
            fn before_commit<'a>(
                &'a self,
                _: &'a mut Lake,
                _: LogTable,
                _: Vec<RecordBatch>,
            ) -> futures::future::BoxFuture<'a, Result<()>> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Box::pin(async { Err(IngestError::Config("refused by the test".into())) })
            }
        }
        let archive = tempfile::tempdir().expect("tempdir");
        crate::synth::generate(archive.path(), &crate::synth::SynthConfig::new(20_000, 3)).expect("archive");
        let lake_dir = tempfile::tempdir().expect("tempdir");
        let mut lake = Lake::open(lake_dir.path(), crate::lake::LakeConfig::default()).await.expect("lake");
        let hook = Arc::new(Refuse::default());
        // Many small chunks, and a commit due after the first few: the parsers are far ahead of
        // the committer when it fails, and must neither hang the run nor carry on to the end.
        let options = IngestOptions {
            commit_bytes: 64 << 10,
            chunk_bytes: 16 << 10,
            hook: Some(hook.clone()),
            ..IngestOptions::default()
        };
        let run = ingest_directory(archive.path(), &mut lake, &options, &NoProgress);
        let result = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the run ends");
        let error = result.expect_err("the commit failed");
        assert!(error.to_string().contains("refused by the test"), "{error}");
        assert_eq!(hook.0.load(std::sync::atomic::Ordering::SeqCst), 1, "one commit tried, then the run stopped");
        lake.refresh().await.expect("refresh");
        assert_eq!(lake.version(LogTable::CloudTrail), Some(0), "nothing committed");
    }

    /// An object whose message came twice before one commit was logged as a duplicate twice, and
    /// nowhere as committed — though the commit held its rows.
    #[tokio::test]
    async fn an_object_waiting_twice_in_one_commit_is_logged_committed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = Lake::open(dir.path(), crate::lake::LakeConfig::default()).await.expect("lake");
        let object = ObjectRef::new(
            "archive",
            "AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/03/111122223333_CloudTrail_us-east-1_20250303T1000Z_a.json.gz",
            1,
        );
        let content = br#"{"Records":[{"eventVersion":"1.08","eventTime":"2025-03-03T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","eventID":"e-1","recipientAccountId":"111122223333"}]}"#;
        let mut run = Run::new(1 << 20, None);
        for _ in 0..2 {
            let outcome = process_object(&object, content.to_vec(), Limits::bytes(1 << 20));
            assert!(matches!(outcome, ObjectOutcome::Parsed { .. }), "{outcome:?}");
            run.accept(outcome);
        }
        run.flush(&mut lake, true).await.expect("flush");
        assert_eq!(run.summary.committed_objects, 1);
        assert_eq!(run.summary.duplicate_objects, 1);
        assert_eq!(run.summary.rows.get(&LogTable::CloudTrail), Some(&1));
    }
}
