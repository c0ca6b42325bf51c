//! A generated archive through ingest: the lake holds exactly what was generated, a second ingest
//! adds nothing, two writers racing on one lake still commit each object once, and the files are
//! partitioned zstd Parquet.

use bunker_ingest::synth::{SynthConfig, generate};
use bunker_schemas::LogTable;

use crate::support::{count, ingest, ingest_with, rows};

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
    // Inside the lake, rows of one day and account come out in time order.
    let unsorted = count(
        &lake,
        "SELECT count(*) FROM (SELECT eventtime < lag(eventtime) OVER (PARTITION BY source_key ORDER BY eventtime) AS bad FROM cloudtrail) WHERE bad",
    )
    .await;
    assert_eq!(unsorted, 0);
    let days = rows(&lake, "SELECT DISTINCT date FROM cloudtrail ORDER BY date").await;
    assert_eq!(days.len(), 3, "{days:?}");
}
