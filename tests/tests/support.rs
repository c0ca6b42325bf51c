//! Shared set-up: temporary lakes, running an ingest, querying counts.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use bunker_ingest::lake::{Lake, LakeConfig};
use bunker_ingest::pipeline::{IngestOptions, IngestSummary, NoProgress, ingest_directory};
use bunker_query::LakeSession;

/// Ingests `archive` into the lake at `lake` with default options.
pub async fn ingest(archive: &Path, lake: &Path) -> IngestSummary {
    ingest_with(archive, lake, &IngestOptions::default()).await
}

/// Ingests `archive` into the lake at `lake`.
pub async fn ingest_with(archive: &Path, lake: &Path, options: &IngestOptions) -> IngestSummary {
    let mut lake = Lake::open(lake, LakeConfig::default()).await.expect("open lake");
    ingest_directory(archive, &mut lake, options, &NoProgress).await.expect("ingest")
}

/// Runs a query whose result is a single integer.
pub async fn count(lake: &Path, sql: &str) -> i64 {
    let session = LakeSession::open(lake).await.expect("open session");
    let (_, batches) = session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let column = batches[0].column(0);
    assert!(!column.is_null(0), "{sql} returned NULL");
    column.as_primitive::<Int64Type>().value(0)
}

/// Runs a query and returns its rows as lines of `|`-separated text, for easy assertions.
pub async fn rows(lake: &Path, sql: &str) -> Vec<String> {
    let session = LakeSession::open(lake).await.expect("open session");
    let (_, batches) = session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let options = arrow::util::display::FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in &batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            out.push(formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join("|"));
        }
    }
    out
}

/// The folder of real AWS samples shared beside the repository; the tests that read it fail
/// loudly when it is missing rather than pass on nothing.
pub fn real_samples_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/real");
    assert!(
        dir.join("README.md").is_file(),
        "the real AWS samples are missing: expected {} (clone the shared folder beside the repository)",
        dir.display()
    );
    dir
}
