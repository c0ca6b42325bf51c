//! Shared set-up: temporary lakes, running an ingest, querying counts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{OwnedRow, RowConverter, SortField};
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

/// A Parquet file's rows in the order they are stored: read straight from the file, not through
/// a query, whose plan is free to reorder rows (and whose `ORDER BY` would hide the stored order).
pub fn stored_batches(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|batch| batch.expect("batch"))
        .collect()
}

/// Where rows, in the order given, break the order the lake writes a file in: each source
/// object's rows (`run`) in one stretch, sorted by `keys`; the stretches in the order of their
/// first rows; and the first key (the account) never going back. Empty when the order holds.
pub fn order_breaks(batches: &[RecordBatch], run: &str, keys: &[&str]) -> Vec<String> {
    let Some(first) = batches.first() else { return Vec::new() };
    let converter = |names: &[&str]| {
        let fields = names
            .iter()
            .map(|name| {
                let field = first.schema().field_with_name(name).cloned().unwrap_or_else(|e| panic!("{name}: {e}"));
                let options = SortOptions { descending: false, nulls_first: false };
                SortField::new_with_options(field.data_type().clone(), options)
            })
            .collect();
        RowConverter::new(fields).expect("row converter")
    };
    let (by_keys, by_account) = (converter(keys), converter(&keys[..1]));
    let columns = |batch: &RecordBatch, names: &[&str]| -> Vec<ArrayRef> {
        names.iter().map(|name| batch.column_by_name(name).expect("key column").clone()).collect()
    };
    let mut breaks = Vec::new();
    let mut runs_seen: HashSet<String> = HashSet::new();
    let (mut current_run, mut previous, mut run_start, mut previous_account): (
        Option<String>,
        Option<OwnedRow>,
        Option<OwnedRow>,
        Option<OwnedRow>,
    ) = (None, None, None, None);
    let mut position = 0usize;
    for batch in batches {
        let rows = by_keys.convert_columns(&columns(batch, keys)).expect("rows");
        let accounts = by_account.convert_columns(&columns(batch, &keys[..1])).expect("rows");
        let run_column = arrow::compute::cast(batch.column_by_name(run).expect("run column"), &DataType::Utf8)
            .expect("run column as text");
        let run_names = run_column.as_string::<i32>();
        for i in 0..batch.num_rows() {
            let name = run_names.value(i);
            let row = rows.row(i);
            if current_run.as_deref() != Some(name) {
                if !runs_seen.insert(name.to_owned()) {
                    breaks.push(format!("row {position}: the rows of {name} are not in one stretch"));
                }
                if run_start.as_ref().is_some_and(|start| row < start.row()) {
                    breaks.push(format!("row {position}: {name} starts before the stretch ahead of it"));
                }
                run_start = Some(row.owned());
                current_run = Some(name.to_owned());
            } else if previous.as_ref().is_some_and(|before| row < before.row()) {
                breaks.push(format!("row {position}: out of order inside {name}"));
            }
            if previous_account.as_ref().is_some_and(|before| accounts.row(i) < before.row()) {
                breaks.push(format!("row {position}: the account goes back"));
            }
            previous = Some(row.owned());
            previous_account = Some(accounts.row(i).owned());
            position += 1;
        }
    }
    breaks
}
