//! SQL over the lake: a DataFusion `SessionContext` with every lake table registered by name, and
//! the renderers that turn results into a terminal table, CSV or JSON lines.
//!
//! Tables enter as Delta tables under the lake root (`cloudtrail`, `vpcflow`, `dns`, `ingest_log`,
//! `alert_updates`, `region_sightings`), with the views derived from them (`alerts`,
//! `region_baseline`); a table the lake does not have yet is registered empty with its schema, so
//! queries written for the full lake still plan. Results leave as Arrow record batches.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bunker_schemas::location::LakeLocation;
use bunker_schemas::{LogTable, alerts, baseline, ingest_log};
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::prelude::SessionConfig;
use deltalake::DeltaTable;
use url::Url;

/// Everything that can go wrong while querying.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The lake directory does not exist.
    #[error("no lake at {0} (create one with `bunker ingest --lake {0}`)")]
    NoLake(String),
    /// A lake table could not be opened.
    #[error("opening lake table {table}: {source}")]
    Table {
        /// The table.
        table: String,
        /// The underlying error.
        source: Box<deltalake::DeltaTableError>,
    },
    /// The SQL failed to plan or run.
    #[error("{0}")]
    Sql(#[from] datafusion::error::DataFusionError),
    /// Rendering the results failed.
    #[error("rendering results: {0}")]
    Render(#[from] arrow::error::ArrowError),
    /// Writing the results failed.
    #[error("writing results: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with [`QueryError`] as the default error.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// A DataFusion session over one lake.
#[derive(Clone)]
pub struct LakeSession {
    ctx: SessionContext,
}

impl std::fmt::Debug for LakeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeSession").field("session_id", &self.ctx.session_id()).finish()
    }
}

/// Names of every table a lake session registers.
pub fn table_names() -> Vec<&'static str> {
    LogTable::ALL
        .iter()
        .map(|t| t.name())
        .chain([
            ingest_log::TABLE_NAME,
            alerts::TABLE_NAME,
            alerts::VIEW_NAME,
            baseline::TABLE_NAME,
            baseline::VIEW_NAME,
        ])
        .collect()
}

impl LakeSession {
    /// Opens the lake at a local directory and registers its tables.
    pub async fn open(lake: &Path) -> Result<LakeSession> {
        LakeSession::open_at(&LakeLocation::Local(lake.to_owned()), HashMap::new()).await
    }

    /// Opens the lake at a local directory or an S3 prefix and registers its tables; a table the
    /// lake does not have yet is an empty table of the right schema.
    pub async fn open_at(location: &LakeLocation, storage_options: HashMap<String, String>) -> Result<LakeSession> {
        let root = match location {
            LakeLocation::Local(lake) => {
                let root = std::fs::canonicalize(lake).map_err(|_| QueryError::NoLake(lake.display().to_string()))?;
                if !root.is_dir() {
                    return Err(QueryError::NoLake(lake.display().to_string()));
                }
                Url::from_directory_path(&root).map_err(|()| QueryError::NoLake(lake.display().to_string()))?
            }
            LakeLocation::S3(url) => url.clone(),
        };
        // Information schema lets analysts run `SHOW TABLES` / `SHOW COLUMNS FROM cloudtrail`.
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        let tables = LogTable::ALL.iter().map(|t| (t.name(), t.schema())).chain([
            (ingest_log::TABLE_NAME, ingest_log::schema()),
            (alerts::TABLE_NAME, alerts::schema()),
            (baseline::TABLE_NAME, baseline::schema()),
        ]);
        for (name, schema) in tables {
            let url = root.join(&format!("{name}/")).map_err(|_| QueryError::NoLake(location.to_string()))?;
            // A local table that was never created has no folder, which the Delta reader refuses.
            let exists = url.to_file_path().map_or(true, |dir| dir.join("_delta_log").is_dir());
            let table = if exists {
                let table = DeltaTable::try_from_url_with_storage_options(url, storage_options.clone())
                    .await
                    .map_err(|e| table_error(name, e))?;
                table.version().is_some().then_some(table)
            } else {
                None
            };
            if let Some(table) = table {
                table.update_datafusion_session(&ctx.state()).map_err(|e| table_error(name, e))?;
                let provider = table.table_provider().await?;
                ctx.register_table(name, provider)?;
            } else {
                ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
            }
        }
        // The current state of each alert: the newest of its updates.
        let view = ctx.sql(&alerts::newest_sql("")).await?.into_view();
        ctx.register_table(alerts::VIEW_NAME, view)?;
        // The first time each account acted in each region: the earliest of its sightings.
        let view = ctx.sql(&baseline::earliest_sql()).await?.into_view();
        ctx.register_table(baseline::VIEW_NAME, view)?;
        Ok(LakeSession { ctx })
    }

    /// The underlying DataFusion context, for callers that register more (UDFs, views).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only SQL statement and returns its schema and rows.
    ///
    /// DDL and DML are refused: the lake is written only by ingestion.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(true);
        let frame = self.ctx.sql_with_options(sql, options).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok((schema, batches))
    }
}

fn table_error(table: &str, source: deltalake::DeltaTableError) -> QueryError {
    QueryError::Table { table: table.to_owned(), source: Box::new(source) }
}

/// How results are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned table for a terminal.
    Table,
    /// CSV with a header row; nested values as their JSON-like text.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Writes results in the chosen format.
pub fn render(schema: &SchemaRef, batches: &[RecordBatch], format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    match format {
        OutputFormat::Table => {
            if batches.iter().all(|b| b.num_rows() == 0) {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(out, "(no rows; columns: {})", names.join(", "))?;
            } else {
                writeln!(out, "{}", arrow::util::pretty::pretty_format_batches(batches)?)?;
            }
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            if batches.is_empty() {
                writer.write(&RecordBatch::new_empty(flat_schema(schema)))?;
            }
            for batch in batches {
                writer.write(&flatten_nested(batch)?)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

fn is_nested(data_type: &DataType) -> bool {
    data_type.is_nested()
}

fn flat_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(
                |f| {
                    if is_nested(f.data_type()) {
                        Field::new(f.name(), DataType::Utf8, true)
                    } else {
                        f.as_ref().clone()
                    }
                },
            )
            .collect::<Vec<_>>(),
    ))
}

/// CSV cannot hold structs and lists: render them as text, the way the table format shows them.
fn flatten_nested(batch: &RecordBatch) -> Result<RecordBatch> {
    if !batch.schema().fields().iter().any(|f| is_nested(f.data_type())) {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let columns = batch
        .columns()
        .iter()
        .map(|column| -> Result<ArrayRef> {
            if !is_nested(column.data_type()) {
                return Ok(column.clone());
            }
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
            let text: StringArray =
                (0..column.len()).map(|i| column.is_valid(i).then(|| formatter.value(i).to_string())).collect();
            Ok(Arc::new(text))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(flat_schema(&batch.schema()), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_lake_directory_still_has_every_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = LakeSession::open(dir.path()).await.expect("open");
        for name in table_names() {
            let (_, batches) = session.sql(&format!("SELECT count(*) AS n FROM {name}")).await.expect(name);
            let mut out = Vec::new();
            render(&batches[0].schema(), &batches, OutputFormat::Csv, &mut out).expect("csv");
            assert_eq!(String::from_utf8_lossy(&out), "n\n0\n", "{name}");
        }
    }

    #[tokio::test]
    async fn a_missing_lake_is_a_clear_error() {
        let err = LakeSession::open(Path::new("/nonexistent/bunker-lake")).await.expect_err("missing");
        assert!(err.to_string().contains("no lake at /nonexistent/bunker-lake"), "{err}");
    }

    #[tokio::test]
    async fn writes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = LakeSession::open(dir.path()).await.expect("open");
        for sql in ["CREATE TABLE t AS SELECT 1", "INSERT INTO dns SELECT * FROM dns", "DROP TABLE cloudtrail"] {
            assert!(session.sql(sql).await.is_err(), "{sql} was allowed");
        }
    }

    #[tokio::test]
    async fn renders_nested_values_in_every_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = LakeSession::open(dir.path()).await.expect("open");
        let sql = "SELECT 1 AS n, 'a,b' AS s, named_struct('arn', 'arn:aws:iam::1:root') AS who";
        let (schema, batches) = session.sql(sql).await.expect("sql");
        let text = |format| {
            let mut out = Vec::new();
            render(&schema, &batches, format, &mut out).expect("render");
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(text(OutputFormat::Csv), "n,s,who\n1,\"a,b\",{arn: arn:aws:iam::1:root}\n");
        assert_eq!(text(OutputFormat::Json), "{\"n\":1,\"s\":\"a,b\",\"who\":{\"arn\":\"arn:aws:iam::1:root\"}}\n");
        assert!(
            text(OutputFormat::Table).contains("| 1 | a,b | {arn: arn:aws:iam::1:root} |"),
            "{}",
            text(OutputFormat::Table)
        );
    }
}
