//! Detections over the lake: rule files, the built-in rule pack, running rules on committed batches
//! and over history, and the alerts they produce.
//!
//! A rule is a YAML file with a DataFusion SQL query whose rows are alerts ([`rule`]). Rules are
//! validated by planning their SQL against the table schemas ([`engine::validate`]), run over new
//! rows (planned once per table: [`rows`]) or a date range of the lake ([`engine`]), folded into
//! alerts by dedup key and window ([`alert`]), and proven by their own labelled examples run
//! through the real parser ([`testing`]). The built-in pack ships inside the binary ([`pack`]).
//! The same examples, moved into a synthetic archive, are the labelled attacks an end-to-end test
//! checks alerts against ([`inject`]). Inside ingestion the rules run through a [`live::Detector`]; their alerts are
//! folded into the lake's `alerts` table ([`store`]), tuned ([`tuning`]) and leave through the
//! configured sinks ([`sink`]: stdout, a JSON-lines file, an SQS queue, a webhook), each in the
//! shape its receiver expects ([`render`]: native, OCSF, ASFF, Slack).
#![deny(missing_docs)]

pub mod alert;
#[cfg(test)]
mod asff_check;
pub mod engine;
pub mod inject;
pub mod live;
mod materialize;
pub mod org;
pub mod pack;
pub mod regions;
pub mod render;
pub mod rows;
pub mod rule;
mod shared;
pub mod sigma;
pub mod sink;
pub mod store;
pub mod testing;
pub mod tuning;

pub use alert::Alert;
pub use rule::{Rule, Severity};

/// Everything that can go wrong in detection.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A rule file is wrong: named by its origin, with the reason.
    #[error("{origin}: {reason}")]
    Rule {
        /// The file (or `builtin:<name>`).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Sigma rule bunker cannot run as written: the file, the rule (by title) and why.
    #[error("{origin}: Sigma rule {rule:?}: {reason}")]
    Sigma {
        /// The file.
        origin: String,
        /// The rule's title (or id).
        rule: String,
        /// What bunker cannot do with it.
        reason: String,
    },
    /// Running SQL failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// An Arrow operation failed.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// Reading or writing the lake failed.
    #[error("lake: {0}")]
    Lake(String),
    /// Reading result rows failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A sink's configuration is wrong: named by its place in the `[[sinks]]` list, with the reason.
    #[error("{sink}: {reason}")]
    InvalidSink {
        /// `sinks[<index>] (<type>)`.
        sink: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A sink did not take every alert it was given; the caller must not acknowledge them.
    #[error("alert sink {sink} failed: {reason}")]
    Sink {
        /// The sink, named without secrets (a webhook by its host only).
        sink: String,
        /// What failed, and which alerts.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Result with [`DetectError`] as the default error.
pub type Result<T, E = DetectError> = std::result::Result<T, E>;
