//! The one error type of the ingest crate.
//!
//! Variants for bad input (`Gzip`, `TooLarge`, `TooCompressed`, `Malformed`) always name the object; they are expected
//! outcomes that get recorded, not bugs. The others are failures of our own machinery or storage.

use std::path::PathBuf;

use crate::classify::LogFormat;

/// Everything that can go wrong while ingesting.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The object is not a readable gzip stream (corrupt or truncated).
    #[error("{key}: not valid gzip: {reason}")]
    Gzip {
        /// Key of the object.
        key: String,
        /// What the decoder said.
        reason: String,
    },
    /// The object decompresses to more than the configured limit.
    #[error("{key}: decompressed size exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        /// Key of the object.
        key: String,
        /// The limit that was hit.
        limit_bytes: u64,
    },
    /// The object decompresses to more than `max_ratio` times its stored size: a gzip bomb, stopped
    /// before it reaches the size limit. Real log files compress 5 to 30 times.
    #[error(
        "{key}: decompresses to more than {max_ratio} times its {stored_bytes} stored bytes; refused as a likely \
         gzip bomb (the limit is the max_ratio setting)"
    )]
    TooCompressed {
        /// Key of the object.
        key: String,
        /// The object's stored (compressed) size.
        stored_bytes: u64,
        /// The ratio that was exceeded.
        max_ratio: u64,
    },
    /// The object's content is not what its format requires.
    #[error("{key}: not a valid {format} object: {reason}")]
    Malformed {
        /// Key of the object.
        key: String,
        /// The format the object was classified as.
        format: LogFormat,
        /// Why it was rejected.
        reason: String,
    },
    /// Reading a local file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A lake table could not be opened, read or committed.
    #[cfg(feature = "lake")]
    #[error("lake table {table}: {source}")]
    Lake {
        /// Name of the table.
        table: String,
        /// The underlying Delta error.
        source: Box<deltalake::DeltaTableError>,
    },
    /// Storing a file in the lake failed: a full disk, a read-only lake, access denied on the lake
    /// prefix. Names the file, so the operator knows which volume or prefix to look at.
    #[cfg(feature = "lake")]
    #[error("writing {location}: {source}")]
    LakeWrite {
        /// The file: a local path or an `s3://` URL.
        location: String,
        /// What the store said.
        source: Box<deltalake::ObjectStoreError>,
    },
    /// A data file of the lake could not be read back (compaction): names the file.
    #[cfg(feature = "lake")]
    #[error("reading {location}: {reason}")]
    LakeRead {
        /// The file: a local path or an `s3://` URL.
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing Parquet failed.
    #[cfg(feature = "lake")]
    #[error("writing parquet for {table}: {source}")]
    Parquet {
        /// Name of the table.
        table: String,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// An Arrow operation failed; this is a bug in bunker, not bad input.
    #[error("internal arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Reading from S3 failed. `transient` errors (throttling, 5xx, timeouts, denied access that a
    /// policy fix can cure) are retried by leaving the message on the queue; the others (the
    /// object is gone) are recorded like bad input.
    #[error("{object}: S3 {operation} failed: {reason}")]
    Fetch {
        /// `s3://bucket/key` or the prefix being listed.
        object: String,
        /// The S3 operation.
        operation: &'static str,
        /// What S3 or the connection said.
        reason: String,
        /// Whether trying again later can succeed.
        transient: bool,
    },
    /// A queue message is not a notification bunker understands.
    #[error("message {message_id}: {reason}")]
    Notification {
        /// The SQS message id.
        message_id: String,
        /// Why it was not understood.
        reason: String,
    },
    /// A queue operation failed.
    #[error("SQS {operation} failed: {reason}")]
    Queue {
        /// The SQS operation.
        operation: &'static str,
        /// What SQS or the connection said.
        reason: String,
    },
    /// Work on the rows before their commit (the detections and their alerts) failed; the rows
    /// are not committed and the messages naming them are retried.
    #[error("before commit of {table}: {reason}")]
    Hook {
        /// The table whose rows were being handled.
        table: String,
        /// What failed.
        reason: String,
    },
    /// A configuration or argument is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Result with [`IngestError`] as the default error.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

impl IngestError {
    /// Whether this error is about the input object (recorded and skipped) rather than our machinery.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            IngestError::Gzip { .. }
                | IngestError::TooLarge { .. }
                | IngestError::TooCompressed { .. }
                | IngestError::Malformed { .. }
                | IngestError::Fetch { transient: false, .. }
                | IngestError::Notification { .. }
        )
    }

    /// A short stable name for the kind of error, used in the ingest log and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Gzip { .. } => "gzip",
            IngestError::TooLarge { .. } | IngestError::TooCompressed { .. } => "too_large",
            IngestError::Malformed { .. } => "malformed",
            IngestError::Io { .. } => "io",
            IngestError::Fetch { transient: false, .. } => "not_found",
            IngestError::Fetch { transient: true, .. } => "fetch",
            IngestError::Queue { .. } => "queue",
            IngestError::Notification { .. } => "notification",
            #[cfg(feature = "lake")]
            IngestError::Lake { .. } => "lake",
            #[cfg(feature = "lake")]
            IngestError::LakeWrite { .. } => "lake",
            #[cfg(feature = "lake")]
            IngestError::LakeRead { .. } => "lake",
            #[cfg(feature = "lake")]
            IngestError::Parquet { .. } => "parquet",
            IngestError::Arrow(_) => "internal",
            IngestError::Hook { .. } => "alerts",
            IngestError::Config(_) => "config",
        }
    }
}
