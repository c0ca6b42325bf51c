//! A generated archive through ingest: the lake holds exactly what was generated, a second ingest
//! adds nothing, two writers racing on one lake still commit each object once, and the files are
//! partitioned zstd Parquet.

use bunker_ingest::synth::{SynthConfig, generate};
use bunker_schemas::LogTable;

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::support::{count, ingest, ingest_with, order_breaks, rows, stored_batches};

#[tokio::test]
async fn generated_archive_lands_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let generated = generate(&archive, &SynthConfig::new(4000, 11)).expect("generate");

    let first = ingest(&archive, &lake).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(first.rows.get(&LogTable::CloudTrail).copied(), Some(generated.cloudtrail_events));
    assert_eq!(first.rows.get(&LogTable::VpcFlow).copied(), Some(generated.vpcflow_records));
    assert_eq!(first.rows.get(&LogTable::Dns).copied(), Some(generated.dns_records));
    assert_eq!(first.skipped_objects, generated.digest_objects + generated.unknown_objects);
    assert_eq!(first.objects, generated.objects);

    for (table, expected) in [
        ("cloudtrail", generated.cloudtrail_events),
        ("vpcflow", generated.vpcflow_records),
        ("dns", generated.dns_records),
    ] {
        assert_eq!(count(&lake, &format!("SELECT count(*) FROM {table}")).await, expected as i64, "{table}");
        // Every row knows the object it came from, and no two objects' rows were mixed up.
        assert_eq!(
            count(&lake, &format!("SELECT count(*) FROM {table} WHERE source_key IS NULL OR date IS NULL")).await,
            0,
            "{table}"
        );
    }

    let second = ingest(&archive, &lake).await;
    assert_eq!(second.total_rows(), 0);
    assert_eq!(second.committed_objects, 0);
    assert_eq!(second.duplicate_objects, first.committed_objects);
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail").await, generated.cloudtrail_events as i64);

    // The ingest log tells the story of both runs.
    let statuses = rows(&lake, "SELECT status, count(*) FROM ingest_log GROUP BY status ORDER BY status").await;
    let committed = first.committed_objects;
    let skipped = first.skipped_objects;
    assert_eq!(
        statuses,
        vec![format!("committed|{committed}"), format!("duplicate|{committed}"), format!("skipped|{}", 2 * skipped)]
    );
}

#[tokio::test]
async fn two_writers_racing_on_one_lake_commit_each_object_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let generated = generate(&archive, &SynthConfig::new(3000, 5)).expect("generate");
    // Small commits, so the two runs interleave many commits on the same tables.
    let options =
        bunker_ingest::pipeline::IngestOptions { commit_bytes: 256 << 10, chunk_bytes: 64 << 10, ..Default::default() };
    let (a, b) = tokio::join!(ingest_with(&archive, &lake, &options), ingest_with(&archive, &lake, &options));
    assert!(a.failed.is_empty() && b.failed.is_empty());
    assert_eq!(
        a.total_rows() + b.total_rows(),
        generated.cloudtrail_events + generated.vpcflow_records + generated.dns_records
    );
    assert_eq!(count(&lake, "SELECT count(*) FROM cloudtrail").await, generated.cloudtrail_events as i64);
    assert_eq!(count(&lake, "SELECT count(*) FROM vpcflow").await, generated.vpcflow_records as i64);
    assert_eq!(count(&lake, "SELECT count(*) FROM dns").await, generated.dns_records as i64);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM (SELECT eventid, count(*) FROM cloudtrail GROUP BY eventid HAVING count(*) > 1)"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn files_are_date_partitioned_zstd_parquet_sorted_by_account_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let mut config = SynthConfig::new(2000, 9);
    config.days = 3;
    generate(&archive, &config).expect("generate");
    ingest(&archive, &lake).await;

    let parquet_files: Vec<_> = walkdir::WalkDir::new(lake.join("cloudtrail"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .collect();
    assert!(parquet_files.len() >= 3, "one file per day at least: {parquet_files:?}");
    for file in &parquet_files {
        let partition =
            file.path().parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).expect("partition dir");
        assert!(partition.starts_with("date="), "{}", file.path().display());
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(file.path()).expect("open"),
        )
        .expect("parquet");
        use parquet::file::reader::FileReader;
        let column = reader.metadata().row_group(0).column(0);
        assert!(matches!(column.compression(), parquet::basic::Compression::ZSTD(_)), "{:?}", column.compression());
    }
    // Read as stored, each file holds every object's rows in one stretch sorted by account and
    // time, the stretches in the order of their first rows, the accounts in order.
    let mut rows_checked = 0;
    for file in &parquet_files {
        let batches = stored_batches(file.path());
        rows_checked += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        let breaks = order_breaks(&batches, "source_key", &["recipientaccountid", "eventtime"]);
        assert!(breaks.is_empty(), "{}: {:?}", file.path().display(), &breaks[..breaks.len().min(5)]);
    }
    assert_eq!(rows_checked as i64, count(&lake, "SELECT count(*) FROM cloudtrail").await);
    let days = rows(&lake, "SELECT DISTINCT date FROM cloudtrail ORDER BY date").await;
    assert_eq!(days.len(), 3, "{days:?}");
}

/// (source object, account, seconds) rows in the order given, as CloudTrail's key columns.
fn trail_rows(rows: &[(&str, &str, i64)]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("source_key", DataType::Utf8, false),
        Field::new("recipientaccountid", DataType::Utf8, true),
        Field::new("eventtime", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
    ]);
    let keys = StringArray::from_iter_values(rows.iter().map(|r| r.0));
    let accounts = StringArray::from_iter_values(rows.iter().map(|r| r.1));
    let times = TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2 * 1_000_000)).with_timezone("UTC");
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(keys), Arc::new(accounts), Arc::new(times)]).expect("batch")
}

/// The order check of `files_are_date_partitioned_…` once compared each time with the one before
/// it in a window `ORDER BY` that same time, which can never find one smaller: it must catch
/// every way a file can be out of order, in a real Parquet file too.
#[test]
fn the_stored_order_check_catches_each_way_rows_can_be_out_of_order() {
    let keys = ["recipientaccountid", "eventtime"];
    let breaks = |rows: &[(&str, &str, i64)]| order_breaks(&[trail_rows(rows)], "source_key", &keys);
    let sorted = [("a", "1", 1), ("a", "1", 2), ("b", "1", 2), ("b", "1", 9), ("c", "2", 0)];
    assert_eq!(breaks(&sorted), Vec::<String>::new());
    // Split across batches, the order still holds.
    let (head, tail) = sorted.split_at(3);
    assert_eq!(order_breaks(&[trail_rows(head), trail_rows(tail)], "source_key", &keys), Vec::<String>::new());
    let cases: [(&[(&str, &str, i64)], &str); 4] = [
        (&[("a", "1", 2), ("a", "1", 1)], "row 1: out of order inside a"),
        (&[("a", "1", 1), ("b", "1", 2), ("a", "1", 3)], "row 2: the rows of a are not in one stretch"),
        (&[("b", "1", 5), ("a", "1", 1)], "row 1: a starts before the stretch ahead of it"),
        (&[("a", "1", 1), ("a", "2", 2), ("b", "1", 3)], "row 2: the account goes back"),
    ];
    for (rows, expected) in cases {
        let found = breaks(rows);
        assert!(found.iter().any(|b| b == expected), "{rows:?}: want {expected:?} in {found:?}");
    }
    // Across a batch boundary too.
    let found = order_breaks(&[trail_rows(&[("a", "1", 5)]), trail_rows(&[("a", "1", 4)])], "source_key", &keys);
    assert_eq!(found, ["row 1: out of order inside a"]);

    // And read from a Parquet file written out of order, as the lake's files are read.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("unsorted.parquet");
    let batch = trail_rows(&[("a", "1", 1), ("a", "1", 3), ("a", "1", 2)]);
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).expect("create"), batch.schema(), None)
            .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    let found = order_breaks(&stored_batches(&path), "source_key", &keys);
    assert_eq!(found, ["row 2: out of order inside a"]);
}
