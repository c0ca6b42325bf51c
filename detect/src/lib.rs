//! Detections over the lake: rule files, the built-in rule pack, running rules on committed batches
//! and over history, and the alerts they produce.
//!
//! A rule is a YAML file with a DataFusion SQL query whose rows are alerts ([`rule`]). Rules are
//! validated by planning their SQL against the table schemas ([`engine::validate`]), run over new
//! rows or a date range of the lake ([`engine`]), folded into alerts by dedup key and window
//! ([`alert`]), and proven by their own labelled examples run through the real parser
//! ([`testing`]). The built-in pack ships inside the binary ([`pack`]). The same examples, moved
//! into a synthetic archive, are the labelled attacks an end-to-end test checks alerts against
//! ([`inject`]).
#![deny(missing_docs)]

pub mod alert;
pub mod engine;
pub mod inject;
pub mod pack;
pub mod rule;
pub mod testing;

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
    /// Running SQL failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// An Arrow operation failed.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// Reading result rows failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
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
