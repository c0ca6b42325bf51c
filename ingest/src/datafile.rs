//! The Parquet data files of the log tables, and the Delta `add` actions that describe them.
//!
//! bunker writes these files itself instead of handing batches to delta-rs's writer, because that
//! writer costs a third of an ingest: it hash-repartitions its input by the partition column and
//! then splits every batch by partition again (two copies of every row), and it encodes all of a
//! file's columns on one thread while the parsers wait. Here a commit's rows, already in order,
//! are cut into one file per `date` by slicing (no copy), and each row group's columns are encoded
//! in parallel on the rayon pool. The `add` action carries the same statistics delta-rs would
//! record — row count, min/max and null count of the table's data-skipping columns — so readers
//! prune these files exactly as they would prune delta-rs's own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{max_string, min_string};
use arrow::datatypes::{
    DataType, Date32Type, FieldRef, Int32Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use bunker_schemas::DATE_COLUMN;
use chrono::NaiveDate;
use deltalake::kernel::Add;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, compute_leaves};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use serde_json::{Map, Value, json};

use crate::{IngestError, Result};

/// String statistics longer than this are shortened (a minimum) or left out (a maximum): a
/// hostile 1 MB event name must not end up in every reader's copy of the Delta log.
const MAX_STAT_STRING_BYTES: usize = 64;

/// One encoded data file, not yet stored.
#[derive(Debug)]
pub(crate) struct DataFile {
    /// Its path under the table root (`date=YYYY-MM-DD/part-….parquet`).
    pub(crate) path: String,
    /// The whole file.
    pub(crate) bytes: Vec<u8>,
    /// The action that adds it to the table.
    pub(crate) add: Add,
}

/// Cuts rows that are in commit order — each batch sorted by date first — into runs per day,
/// keeping their order. Slicing copies nothing.
pub(crate) fn runs_by_day(batches: &[RecordBatch]) -> Result<BTreeMap<NaiveDate, Vec<RecordBatch>>> {
    let date_column = DATE_COLUMN;
    let mut days: BTreeMap<NaiveDate, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        let Some(dates) = batch.column_by_name(date_column) else {
            return Err(IngestError::Config(format!("the rows have no {date_column} column")));
        };
        let dates = dates.as_primitive::<Date32Type>();
        let mut start = 0;
        while start < batch.num_rows() {
            if dates.is_null(start) {
                return Err(IngestError::Config(format!("a row has no {date_column}")));
            }
            let day = dates.value(start);
            // The batch is sorted by date: this day's rows end where a later day begins.
            let len = dates.values()[start..].partition_point(|d| *d == day);
            let date = days_to_date(day)?;
            // A whole batch is kept as it is: a slice recounts the nulls of every column.
            let run = if len == batch.num_rows() { batch.clone() } else { batch.slice(start, len) };
            days.entry(date).or_default().push(run);
            start += len;
        }
    }
    Ok(days)
}

/// Where a file's columns are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// In parallel on the rayon pool: for a commit's data files, encoded there anyway.
    Pool,
    /// One after another on the calling thread: for the few rows of an append. Handed to the
    /// pool from outside it, they would queue behind the parsers' chunks — 17 to 470 ms for a
    /// few hundred alerts (measured), on the path of every commit — for work of a few milliseconds.
    Caller,
}

/// Encodes one day's rows, in the order given, into a Parquet file of the table's schema without
/// its partition column, `rows_per_group` rows per row group; `stats_columns` are the columns
/// whose statistics go into the `add` action.
pub(crate) fn encode_day(
    table: &str,
    date: NaiveDate,
    runs: &[RecordBatch],
    stats_columns: &[&str],
    props: WriterProperties,
    rows_per_group: usize,
    threads: Threads,
) -> Result<DataFile> {
    let date_column = DATE_COLUMN;
    let Some(first) = runs.first() else {
        return Err(IngestError::Config("no rows to encode".into()));
    };
    // Delta keeps partition values in the log, not in the files. The runs are not projected: a
    // commit has hundreds of them, and each projection built and checked a schema of every column.
    let keep: Vec<usize> =
        first.schema().fields().iter().enumerate().filter(|(_, f)| f.name() != date_column).map(|(i, _)| i).collect();
    let schema: SchemaRef = Arc::new(first.schema().project(&keep)?);
    // Columns are taken by position, so every run must have the same column types in the same
    // places (names and metadata may differ, as between files a compaction reads back).
    let same_columns = |run: &RecordBatch| {
        Arc::ptr_eq(&run.schema(), &first.schema())
            || (run.num_columns() == first.num_columns()
                && run.columns().iter().zip(first.columns()).all(|(a, b)| a.data_type().equals_datatype(b.data_type())))
    };
    if let Some(run) = runs.iter().find(|run| !same_columns(run)) {
        return Err(IngestError::Config(format!(
            "rows of one file have different columns ({} and {})",
            first.num_columns(),
            run.num_columns()
        )));
    }
    let rows: usize = runs.iter().map(RecordBatch::num_rows).sum();
    let bytes = encode(&schema, &keep, runs, props, rows_per_group.max(1), threads)
        .map_err(|source| IngestError::Parquet { table: table.to_owned(), source })?;

    let path = format!("{date_column}={date}/part-00000-{}-c000.zstd.parquet", uuid::Uuid::new_v4());
    let stats = statistics(runs, stats_columns, rows);
    let add = Add {
        path: path.clone(),
        partition_values: HashMap::from([(date_column.to_owned(), Some(date.to_string()))]),
        size: bytes.len() as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(stats.to_string()),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    };
    Ok(DataFile { path, bytes, add })
}

/// Encodes rows in any order into one file per `date`, for the small tables bunker appends to
/// (ingest log, alerts, region sightings): the rows are put in date order first, each file is one
/// row group, encoded on the calling thread.
pub(crate) fn encode_rows(
    table: &str,
    batch: &RecordBatch,
    stats_columns: &[&str],
    props: WriterProperties,
) -> Result<Vec<DataFile>> {
    let Some(dates) = batch.column_by_name(DATE_COLUMN) else {
        return Err(IngestError::Config(format!("the rows of {table} have no {DATE_COLUMN} column")));
    };
    let order = arrow::compute::sort_to_indices(dates, None, None)?;
    let in_order = order.values().iter().enumerate().all(|(i, &v)| v as usize == i);
    let sorted = if in_order { batch.clone() } else { arrow::compute::take_record_batch(batch, &order)? };
    runs_by_day(&[sorted])?
        .into_iter()
        .map(|(date, day)| encode_day(table, date, &day, stats_columns, props.clone(), usize::MAX, Threads::Caller))
        .collect()
}

/// Writes columns `columns` of the runs (the fields of `schema`, in order) as consecutive rows of
/// one Parquet file, each row group's columns encoded in parallel on the rayon pool or one after
/// another on the calling thread, as `threads` says.
fn encode(
    schema: &SchemaRef,
    columns: &[usize],
    runs: &[RecordBatch],
    props: WriterProperties,
    rows_per_group: usize,
    threads: Threads,
) -> std::result::Result<Vec<u8>, ParquetError> {
    let props = without_empty_leaves(schema, columns, runs, props)?;
    // About an eighth of the rows' Arrow size, judged from the largest run: measuring every run
    // walks every column of hundreds of small batches.
    let rows: usize = runs.iter().map(RecordBatch::num_rows).sum();
    let estimate = runs
        .iter()
        .max_by_key(|run| run.num_rows())
        .filter(|run| run.num_rows() > 0)
        .map_or(0, |run| run.get_array_memory_size() / run.num_rows() * rows / 8);
    let writer = ArrowWriter::try_new(Vec::with_capacity(estimate), schema.clone(), Some(props))?;
    let (mut file, factory) = writer.into_serialized_writer()?;
    for (index, group) in row_groups(runs, rows_per_group).into_iter().enumerate() {
        // The writers of each top-level column: a struct column has one per leaf field.
        let mut writers = factory.create_column_writers(index)?.into_iter();
        let per_column: Vec<Vec<ArrowColumnWriter>> = schema
            .fields()
            .iter()
            .map(|field| writers.by_ref().take(leaf_count(field.data_type())).collect())
            .collect();
        if writers.next().is_some()
            || per_column.iter().zip(schema.fields()).any(|(w, f)| w.len() != leaf_count(f.data_type()))
        {
            return Err(ParquetError::General("the column writers do not match the schema's leaves".into()));
        }
        // Each column's runs are joined into one array, its leaves computed and written, all in
        // one task per column (its leaves in parallel again): a commit holds hundreds of objects
        // of a few dozen rows each, and feeding a column writer one small run at a time cost more
        // (level computation, page bookkeeping, statistics per call) than copying the column
        // once. One task per column, not a step for all columns and then another, so that no
        // core waits at a barrier for the slowest column while the parsers are held back.
        let column = |(at, (writers, field)): (usize, _)| encode_column(&group, columns[at], field, writers, threads);
        let chunks: std::result::Result<Vec<Vec<ArrowColumnChunk>>, ParquetError> = match threads {
            Threads::Pool => {
                per_column.into_par_iter().zip(schema.fields().par_iter()).enumerate().map(column).collect()
            }
            Threads::Caller => per_column.into_iter().zip(schema.fields().iter()).enumerate().map(column).collect(),
        };
        let chunks = chunks?;
        let mut row_group = file.next_row_group()?;
        for chunk in chunks.into_iter().flatten() {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    file.finish()?;
    Ok(std::mem::take(file.inner_mut()))
}

/// The writer properties for this file with compression turned off for the leaf columns that hold
/// no value in any run. A CloudTrail file has a third of its leaves empty (fields no event of the
/// day used): compressed, each cost a zstd compressor and decompressor, and their pages of
/// definition levels came out larger than they went in.
fn without_empty_leaves(
    schema: &SchemaRef,
    columns: &[usize],
    runs: &[RecordBatch],
    props: WriterProperties,
) -> std::result::Result<WriterProperties, ParquetError> {
    let mut empty = Vec::new();
    for (field, &at) in schema.fields().iter().zip(columns) {
        let arrays: Vec<&dyn Array> = runs.iter().map(|run| run.column(at).as_ref()).collect();
        empty_leaves(field.data_type(), &arrays, &mut empty);
    }
    if !empty.contains(&true) {
        return Ok(props);
    }
    let descriptor = ArrowSchemaConverter::new().with_coerce_types(props.coerce_types()).convert(schema)?;
    if descriptor.num_columns() != empty.len() {
        return Err(ParquetError::General(format!(
            "{} leaf columns in the Parquet schema, {} counted in the rows",
            descriptor.num_columns(),
            empty.len()
        )));
    }
    let mut builder = props.into_builder();
    for (column, _) in descriptor.columns().iter().zip(&empty).filter(|(_, empty)| **empty) {
        builder = builder.set_column_compression(column.path().clone(), Compression::UNCOMPRESSED);
    }
    Ok(builder.build())
}

/// Appends to `out`, for each Parquet leaf of a column of type `data_type` (in schema order),
/// whether none of `arrays` holds a value there. A leaf under a struct or list that is null in
/// every row is empty whatever its own array holds.
fn empty_leaves(data_type: &DataType, arrays: &[&dyn Array], out: &mut Vec<bool>) {
    let all_null = arrays.iter().all(|a| a.null_count() == a.len());
    match data_type {
        DataType::Struct(fields) => {
            let structs: Option<Vec<_>> = arrays.iter().map(|a| a.as_struct_opt()).collect();
            for (i, field) in fields.iter().enumerate() {
                match &structs {
                    _ if all_null => empty_leaves(field.data_type(), &[], out),
                    Some(structs) => {
                        let children: Vec<&dyn Array> = structs.iter().map(|s| s.column(i).as_ref()).collect();
                        empty_leaves(field.data_type(), &children, out);
                    }
                    None => out.extend(std::iter::repeat_n(false, leaf_count(field.data_type()))),
                }
            }
        }
        DataType::List(item) => {
            let values: Option<Vec<&dyn Array>> =
                arrays.iter().map(|a| a.as_list_opt::<i32>().map(|l| l.values().as_ref())).collect();
            match values {
                _ if all_null => empty_leaves(item.data_type(), &[], out),
                Some(values) => empty_leaves(item.data_type(), &values, out),
                None => out.extend(std::iter::repeat_n(false, leaf_count(item.data_type()))),
            }
        }
        other if leaf_count(other) == 1 => out.push(all_null),
        // Other nestings bunker's tables do not have: compressed as usual.
        other => out.extend(std::iter::repeat_n(false, leaf_count(other))),
    }
}

/// Joins column `at` of a row group's runs into one array and writes its leaves.
fn encode_column(
    group: &[RecordBatch],
    at: usize,
    field: &FieldRef,
    writers: Vec<ArrowColumnWriter>,
    threads: Threads,
) -> std::result::Result<Vec<ArrowColumnChunk>, ParquetError> {
    let parts: Vec<&dyn Array> = group.iter().map(|run| run.column(at).as_ref()).collect();
    let column = match parts.as_slice() {
        [_] => group[0].column(at).clone(),
        _ => arrow::compute::concat(&parts)?,
    };
    let leaves = compute_leaves(field, &column)?;
    if leaves.len() != writers.len() {
        return Err(ParquetError::General(format!(
            "{} has {} leaves for {} column writers",
            field.name(),
            leaves.len(),
            writers.len()
        )));
    }
    let write = |(mut writer, leaf): (ArrowColumnWriter, _)| {
        writer.write(&leaf)?;
        writer.close()
    };
    match threads {
        Threads::Pool => writers.into_par_iter().zip(leaves).map(write).collect(),
        Threads::Caller => writers.into_iter().zip(leaves).map(write).collect(),
    }
}

/// How many Parquet leaf columns an Arrow column of this type has.
fn leaf_count(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            leaf_count(item.data_type())
        }
        DataType::Map(entries, _) => leaf_count(entries.data_type()),
        _ => 1,
    }
}

/// Groups the runs into row groups of at most `limit` rows, slicing a run that straddles two.
fn row_groups(runs: &[RecordBatch], limit: usize) -> Vec<Vec<RecordBatch>> {
    let mut groups = Vec::new();
    let (mut group, mut rows) = (Vec::new(), 0);
    for run in runs {
        let mut offset = 0;
        while offset < run.num_rows() {
            let take = (limit - rows).min(run.num_rows() - offset);
            group.push(if take == run.num_rows() { run.clone() } else { run.slice(offset, take) });
            (offset, rows) = (offset + take, rows + take);
            if rows == limit {
                groups.push(std::mem::take(&mut group));
                rows = 0;
            }
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// The Delta statistics of the rows: `numRecords`, and `minValues`, `maxValues` and `nullCount`
/// of each statistics column, in the form delta-rs writes them (timestamps as UTC text truncated
/// to the millisecond, which Delta readers allow for when they prune).
fn statistics(runs: &[RecordBatch], columns: &[&str], rows: usize) -> Value {
    let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
    for &name in columns {
        let arrays: Vec<&ArrayRef> = runs.iter().filter_map(|r| r.column_by_name(name)).collect();
        if arrays.len() != runs.len() {
            continue;
        }
        nulls.insert(name.to_owned(), json!(arrays.iter().map(|a| a.null_count()).sum::<usize>()));
        if let Some((low, high)) = min_max(&arrays) {
            min.insert(name.to_owned(), low);
            if let Some(high) = high {
                max.insert(name.to_owned(), high);
            }
        }
    }
    json!({ "numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls })
}

/// The smallest and largest value over the arrays, as Delta statistics; `None` when they are all
/// null or of a type without statistics. The maximum is `None` when it cannot be written short.
fn min_max(arrays: &[&ArrayRef]) -> Option<(Value, Option<Value>)> {
    let data_type = arrays.first()?.data_type();
    match data_type {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let low = arrays
                .iter()
                .filter_map(|a| arrow::compute::min(a.as_primitive::<TimestampMicrosecondType>()))
                .min()?;
            let high = arrays
                .iter()
                .filter_map(|a| arrow::compute::max(a.as_primitive::<TimestampMicrosecondType>()))
                .max()?;
            Some((timestamp_stat(low)?, Some(timestamp_stat(high)?)))
        }
        DataType::Utf8 => {
            let low = arrays.iter().filter_map(|a| min_string(a.as_string::<i32>())).min()?;
            let high = arrays.iter().filter_map(|a| max_string(a.as_string::<i32>())).max()?;
            // A prefix of the minimum is still a lower bound; a prefix of the maximum is not an
            // upper bound, so a long maximum is left out (the file is then never pruned on it).
            let low = &low[..floor_char_boundary(low, MAX_STAT_STRING_BYTES)];
            let high = (high.len() <= MAX_STAT_STRING_BYTES).then(|| json!(high));
            Some((json!(low), high))
        }
        DataType::Int32 => {
            let low = arrays.iter().filter_map(|a| arrow::compute::min(a.as_primitive::<Int32Type>())).min()?;
            let high = arrays.iter().filter_map(|a| arrow::compute::max(a.as_primitive::<Int32Type>())).max()?;
            Some((json!(low), Some(json!(high))))
        }
        DataType::Int64 => {
            let low = arrays.iter().filter_map(|a| arrow::compute::min(a.as_primitive::<Int64Type>())).min()?;
            let high = arrays.iter().filter_map(|a| arrow::compute::max(a.as_primitive::<Int64Type>())).max()?;
            Some((json!(low), Some(json!(high))))
        }
        _ => None,
    }
}

/// A timestamp statistic as delta-rs writes one: UTC, truncated to the millisecond, without a
/// fraction when it is zero.
fn timestamp_stat(micros: i64) -> Option<Value> {
    let millis = micros.div_euclid(1000);
    let time = chrono::DateTime::from_timestamp_millis(millis)?;
    let format = if millis.rem_euclid(1000) == 0 { "%Y-%m-%dT%H:%M:%SZ" } else { "%Y-%m-%dT%H:%M:%S%.3fZ" };
    Some(json!(time.format(format).to_string()))
}

/// The largest index not above `limit` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, limit: usize) -> usize {
    if text.len() <= limit {
        return text.len();
    }
    (0..=limit).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
}

fn days_to_date(days: i32) -> Result<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .ok_or_else(|| IngestError::Config(format!("day {days} since 1970 is not a date")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bunker_schemas::LogTable;

    use arrow::array::{Date32Array, Int32Array, StringArray, StructArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::timestamp::{micros_to_days, parse_rfc3339_micros};

    fn micros(text: &str) -> i64 {
        parse_rfc3339_micros(text).expect("a time")
    }

    /// Rows with a date, a time, an account, a port and a struct, sorted by date as commits are.
    fn batch(times: &[&str], accounts: &[Option<&str>]) -> RecordBatch {
        let times: Vec<i64> = times.iter().map(|t| micros(t)).collect();
        let dates: Vec<i32> = times.iter().map(|t| micros_to_days(*t)).collect();
        let ports: Vec<i32> = (0..times.len() as i32).map(|i| 1000 + i).collect();
        let names = StringArray::from_iter_values(times.iter().map(|t| format!("user-{t}")));
        let identity =
            StructArray::from(vec![(Arc::new(Field::new("name", DataType::Utf8, true)), Arc::new(names) as ArrayRef)]);
        let schema = Schema::new(vec![
            Field::new("eventtime", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("recipientaccountid", DataType::Utf8, true),
            Field::new("port", DataType::Int32, true),
            Field::new("identity", identity.data_type().clone(), true),
            Field::new(DATE_COLUMN, DataType::Date32, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
                Arc::new(StringArray::from(accounts.to_vec())),
                Arc::new(Int32Array::from(ports)),
                Arc::new(identity),
                Arc::new(Date32Array::from(dates)),
            ],
        )
        .expect("a batch")
    }

    fn read_back(file: &DataFile) -> (Vec<RecordBatch>, usize) {
        let mut stored = tempfile::tempfile().expect("a temporary file");
        std::io::Write::write_all(&mut stored, &file.bytes).expect("written");
        let builder = ParquetRecordBatchReaderBuilder::try_new(stored).expect("a parquet file");
        let groups = builder.metadata().num_row_groups();
        (builder.build().expect("a reader").collect::<std::result::Result<_, _>>().expect("rows"), groups)
    }

    #[test]
    fn rows_are_cut_by_day_without_reordering() {
        let one = batch(&["2024-03-01T23:59:00Z", "2024-03-02T00:01:00Z", "2024-03-02T05:00:00Z"], &[Some("1"); 3]);
        let two = batch(&["2024-03-02T01:00:00Z"], &[Some("2")]);
        let days = runs_by_day(&[one, two]).expect("cut");
        let sizes: Vec<(String, Vec<usize>)> =
            days.iter().map(|(d, runs)| (d.to_string(), runs.iter().map(RecordBatch::num_rows).collect())).collect();
        assert_eq!(sizes, [("2024-03-01".to_owned(), vec![1]), ("2024-03-02".to_owned(), vec![2, 1])]);
    }

    #[test]
    fn a_day_becomes_one_file_with_its_rows_in_order_and_row_groups_of_the_size_asked() {
        let times: Vec<String> = (0..25).map(|i| format!("2024-03-02T00:00:{i:02}.123456Z")).collect();
        let times: Vec<&str> = times.iter().map(String::as_str).collect();
        let first = batch(&times[..10], &[Some("111111111111"); 10]);
        let second = batch(&times[10..], &[None; 15]);
        let date = NaiveDate::from_ymd_opt(2024, 3, 2).expect("a date");
        let file = encode_day(
            LogTable::CloudTrail.name(),
            date,
            &[first, second],
            &["eventtime", "recipientaccountid", "port", "identity"],
            WriterProperties::default(),
            8,
            Threads::Pool,
        )
        .expect("encoded");
        assert!(
            file.path.starts_with("date=2024-03-02/part-") && file.path.ends_with(".zstd.parquet"),
            "{}",
            file.path
        );
        assert_eq!(file.add.partition_values.get(DATE_COLUMN), Some(&Some("2024-03-02".to_owned())));
        assert_eq!(file.add.size as usize, file.bytes.len());

        let (rows, groups) = read_back(&file);
        assert_eq!(groups, 4, "25 rows in groups of 8");
        let rows = arrow::compute::concat_batches(&rows[0].schema(), &rows).expect("one batch");
        assert_eq!(rows.num_rows(), 25);
        assert!(rows.column_by_name(DATE_COLUMN).is_none(), "the partition column stays in the log");
        let ports = rows.column_by_name("port").expect("port").as_primitive::<Int32Type>();
        assert_eq!(ports.values().to_vec(), [(1000..1010).collect::<Vec<_>>(), (1000..1015).collect()].concat());
        let identity = rows.column_by_name("identity").expect("identity").as_struct();
        assert_eq!(identity.column(0).as_string::<i32>().value(0), format!("user-{}", micros(times[0])));

        let stats: Value = serde_json::from_str(file.add.stats.as_deref().expect("stats")).expect("json");
        assert_eq!(stats["numRecords"], 25);
        // Times are truncated to the millisecond, as delta-rs writes them.
        assert_eq!(stats["minValues"]["eventtime"], "2024-03-02T00:00:00.123Z");
        assert_eq!(stats["maxValues"]["eventtime"], "2024-03-02T00:00:24.123Z");
        assert_eq!(stats["minValues"]["recipientaccountid"], "111111111111");
        assert_eq!(stats["nullCount"]["recipientaccountid"], 15);
        assert_eq!(stats["minValues"]["port"], 1000);
        assert_eq!(stats["maxValues"]["port"], 1014);
        assert!(stats["minValues"].get("identity").is_none(), "no statistics for a struct");
    }

    /// Rows of a day whose `note`, `detail` (a struct) and `tags` (a list of structs) hold a value
    /// only where `valued` says; `detail.flag` never holds one.
    fn sparse(valued: &[bool]) -> RecordBatch {
        use arrow::array::{BooleanArray, ListArray};
        use arrow::buffer::{NullBuffer, OffsetBuffer};
        let n = valued.len();
        let time = micros("2024-03-02T10:00:00Z");
        let text = |v: &str| -> StringArray { valued.iter().map(|&x| x.then_some(v)).collect() };
        let detail_fields = arrow::datatypes::Fields::from(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("flag", DataType::Boolean, true),
        ]);
        let flags: BooleanArray = vec![None; n].into_iter().collect();
        let detail = StructArray::new(
            detail_fields.clone(),
            vec![Arc::new(text("d")), Arc::new(flags)],
            Some(NullBuffer::from(valued.to_vec())),
        );
        let key_fields = arrow::datatypes::Fields::from(vec![Field::new("key", DataType::Utf8, true)]);
        let items = valued.iter().filter(|&&x| x).count();
        let keys = StructArray::new(key_fields.clone(), vec![Arc::new(StringArray::from(vec!["k"; items]))], None);
        let item = Arc::new(Field::new("item", DataType::Struct(key_fields), true));
        let tags = ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths(valued.iter().map(|&x| usize::from(x))),
            Arc::new(keys),
            Some(NullBuffer::from(valued.to_vec())),
        );
        let schema = Schema::new(vec![
            Field::new("eventtime", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("note", DataType::Utf8, true),
            Field::new("detail", DataType::Struct(detail_fields), true),
            Field::new("tags", DataType::List(item), true),
            Field::new(DATE_COLUMN, DataType::Date32, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![time; n]).with_timezone("UTC")),
                Arc::new(text("a note")),
                Arc::new(detail),
                Arc::new(tags),
                Arc::new(Date32Array::from(vec![micros_to_days(time); n])),
            ],
        )
        .expect("a batch")
    }

    #[test]
    fn leaves_without_a_value_in_the_file_are_not_compressed() {
        let date = NaiveDate::from_ymd_opt(2024, 3, 2).expect("a date");
        let props = writer_props_zstd();
        let codecs = |runs: &[RecordBatch]| -> Vec<(String, String)> {
            let file = encode_day("t", date, runs, &[], props.clone(), 8, Threads::Pool).expect("encoded");
            let (rows, _) = read_back(&file);
            let rows = arrow::compute::concat_batches(&rows[0].schema(), &rows).expect("one batch");
            let expected: Vec<RecordBatch> =
                runs.iter().map(|r| r.project(&[0, 1, 2, 3]).expect("projected")).collect();
            let expected = arrow::compute::concat_batches(&expected[0].schema(), &expected).expect("one batch");
            assert_eq!(rows, expected, "the rows read back are the rows written");
            let mut stored = tempfile::tempfile().expect("a temporary file");
            std::io::Write::write_all(&mut stored, &file.bytes).expect("written");
            let builder = ParquetRecordBatchReaderBuilder::try_new(stored).expect("a parquet file");
            let group = builder.metadata().row_group(0);
            group.columns().iter().map(|c| (c.column_path().string(), format!("{:?}", c.compression()))).collect()
        };
        let codec = |codecs: &[(String, String)], path: &str| -> String {
            codecs.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("no column {path}: {codecs:?}")).1.clone()
        };

        // Nothing but times: every other leaf is stored as it is.
        let empty = codecs(&[sparse(&[false; 3]), sparse(&[false; 2])]);
        assert!(codec(&empty, "eventtime").starts_with("ZSTD"), "{empty:?}");
        for path in ["note", "detail.name", "detail.flag", "tags.list.item.key"] {
            assert_eq!(codec(&empty, path), "UNCOMPRESSED", "{path}: {empty:?}");
        }

        // One row of the second run has values: those leaves are compressed; `detail.flag`,
        // null in every row, is not.
        let valued = codecs(&[sparse(&[false; 3]), sparse(&[false, true])]);
        for path in ["eventtime", "note", "detail.name", "tags.list.item.key"] {
            assert!(codec(&valued, path).starts_with("ZSTD"), "{path}: {valued:?}");
        }
        assert_eq!(codec(&valued, "detail.flag"), "UNCOMPRESSED", "{valued:?}");
    }

    #[test]
    fn runs_with_other_columns_in_one_file_are_refused() {
        let date = NaiveDate::from_ymd_opt(2024, 3, 2).expect("a date");
        let rows = batch(&["2024-03-02T10:00:00Z"], &[Some("1")]);
        let fewer = rows.project(&[0, 4]).expect("projected");
        for other in [sparse(&[true]), fewer] {
            let refused = encode_day("t", date, &[rows.clone(), other], &[], writer_props_zstd(), 8, Threads::Caller);
            assert!(
                matches!(&refused, Err(IngestError::Config(reason)) if reason.contains("different columns")),
                "{refused:?}"
            );
        }
    }

    fn writer_props_zstd() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::default()))
            .build()
    }

    #[test]
    fn the_calling_thread_writes_the_same_file_as_the_pool() {
        let times: Vec<String> = (0..25).map(|i| format!("2024-03-02T00:00:{i:02}.123456Z")).collect();
        let times: Vec<&str> = times.iter().map(String::as_str).collect();
        let rows = batch(&times, &[Some("111111111111"), None, Some("222222222222"), None, None].repeat(5));
        let date = NaiveDate::from_ymd_opt(2024, 3, 2).expect("a date");
        let encode = |threads| {
            encode_day("alerts", date, std::slice::from_ref(&rows), &["port"], WriterProperties::default(), 8, threads)
                .expect("encoded")
        };
        let (pool, caller) = (encode(Threads::Pool), encode(Threads::Caller));
        assert_eq!(pool.bytes, caller.bytes);
        assert_eq!(pool.add.stats, caller.add.stats);
    }

    /// An append's few rows are encoded even while every thread of the rayon pool is busy (with
    /// the parsers' chunks, in an ingest): they do not wait for the pool.
    #[test]
    fn appended_rows_do_not_wait_for_a_busy_pool() {
        let threads = rayon::current_num_threads();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Arc::new(std::sync::Mutex::new(held));
        let (started_tx, started) = std::sync::mpsc::channel();
        for _ in 0..threads {
            let (held, started_tx) = (held.clone(), started_tx.clone());
            rayon::spawn(move || {
                started_tx.send(()).expect("test alive");
                // Each pool thread stays here until the test lets it go.
                let _ = held.lock().expect("lock").recv();
            });
        }
        // Only one pool thread can hold the lock and wait on the channel; the others wait on the
        // lock: either way, every pool thread is busy once each has started.
        for _ in 0..threads {
            started.recv_timeout(std::time::Duration::from_secs(30)).expect("pool threads started");
        }
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rows = batch(&["2024-03-02T00:00:00Z", "2024-03-01T00:00:00Z"], &[Some("1"), Some("2")]);
            let files = encode_rows("alerts", &rows, &["recipientaccountid"], WriterProperties::default());
            let _ = done_tx.send(files.map(|f| f.len()));
        });
        let encoded = done.recv_timeout(std::time::Duration::from_secs(30));
        for _ in 0..threads {
            let _ = release.send(());
        }
        assert_eq!(encoded.expect("encoded while the pool was busy").expect("encoded"), 2, "one file per day");
    }

    #[test]
    fn long_strings_give_a_short_minimum_and_no_maximum() {
        let long = "é".repeat(100);
        let rows = batch(&["2024-03-02T00:00:00Z", "2024-03-02T00:00:01Z"], &[Some(&long), Some("a")]);
        let date = NaiveDate::from_ymd_opt(2024, 3, 2).expect("a date");
        let file = encode_day(
            LogTable::CloudTrail.name(),
            date,
            &[rows],
            &["recipientaccountid"],
            WriterProperties::default(),
            10,
            Threads::Pool,
        )
        .expect("encoded");
        let stats: Value = serde_json::from_str(file.add.stats.as_deref().expect("stats")).expect("json");
        assert_eq!(stats["minValues"]["recipientaccountid"], "a");
        assert!(stats["maxValues"].get("recipientaccountid").is_none());
        let all_long = batch(&["2024-03-02T00:00:00Z"], &[Some(&long)]);
        let file = encode_day(
            LogTable::CloudTrail.name(),
            date,
            &[all_long],
            &["recipientaccountid"],
            WriterProperties::default(),
            10,
            Threads::Pool,
        )
        .expect("encoded");
        let stats: Value = serde_json::from_str(file.add.stats.as_deref().expect("stats")).expect("json");
        let min = stats["minValues"]["recipientaccountid"].as_str().expect("a minimum");
        assert!(min.len() <= MAX_STAT_STRING_BYTES && long.starts_with(min), "{min}");
    }
}
