//! The public samples of what AWS writes (`../shared/data/real`), ingested as one archive: every
//! CloudTrail, VPC Flow and Resolver sample lands with its rows, other AWS logs and non-log files are
//! skipped cleanly, and the known-broken samples fail with a recorded reason.

use crate::support::{ingest, real_samples_dir, rows};

/// Samples that must be committed, with their row counts.
const COMMITTED: &[(&str, u64)] = &[
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFile.json", 6),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileCompact.json", 6),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileCompact.json.gz", 6),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileLocation.json", 6),
    // One record's eventTime is "ThisIsAWrongEventTime": rejected, the other three kept.
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileMissField.json", 3),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileNewFieldAtRandomPlaces.json", 2),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileNewFieldsInRoot.json", 2),
    (
        "aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileNewFieldsInUserIdentity.json",
        2,
    ),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerVariousUserIdentityTestFile.json", 1),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerAllFieldsNull.json", 1),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileBadFieldName.json", 1),
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileNewFieldName.json", 1),
    ("awsdocs-cloudtrail/extracted/cloudtrail-event-reference-aws-console-sign-in-events__block00.json", 1),
    ("awsdocs-cloudtrail/extracted/cloudtrail-event-reference-aws-console-sign-in-events__block05.json", 1),
    ("awsdocs-cloudtrail/extracted/cloudtrail-event-reference-aws-console-sign-in-events__block09.json", 1),
    ("awsdocs-cloudtrail/extracted/cloudtrail-log-file-examples__block02.json", 1),
    ("awsdocs-cloudtrail/extracted/cloudtrail-log-file-examples__block08.json", 1),
    ("awsdocs-cloudtrail/extracted/cloudtrail-log-file-examples__block09.json", 2),
    ("awsdocs-cloudtrail/extracted/non-api-aws-service-events__block00.json", 1),
    ("awsdocs-vpc/extracted/flow-logs-records-examples__block00.log", 1),
    ("awsdocs-vpc/extracted/flow-logs-records-examples__block02.log", 1),
    ("awsdocs-vpc/extracted/flow-logs-records-examples__block03.log", 1),
    ("awsdocs-vpc/extracted/flow-logs-records-examples__block06.log", 1),
    ("cloudtrail2sightings/unzipped/aws.credential-access.secretsmanager-retrieve-secrets.json", 10),
    ("cloudtrail2sightings/unzipped/aws.defense-evasion.cloudtrail-delete.json", 1),
    ("cloudtrail2sightings/unzipped/aws.exfiltration.ec2-share-ebs-snapshot.json", 1),
    (
        "elastic-integrations/packages/aws/data_stream/cloudtrail/_dev/test/pipeline/test-authorize-security-group-ingress-json.log",
        1,
    ),
    ("elastic-integrations/packages/aws/data_stream/cloudtrail/_dev/test/pipeline/test-console-login-json.log", 3),
    ("elastic-integrations/packages/aws/data_stream/cloudtrail/_dev/test/pipeline/test-delete-detector-json.log", 1),
    ("elastic-integrations/packages/aws/data_stream/cloudtrail/_dev/test/pipeline/test-update-trail-json.log", 2),
    ("elastic-integrations/packages/aws/data_stream/cloudtrail/_dev/test/pipeline/test-us-gov-arn.log", 1),
    ("elastic-integrations/packages/aws/data_stream/cloudtrail/_dev/test/pipeline/test-user-authentication.log", 1),
    ("elastic-integrations/packages/aws/data_stream/route53_resolver_logs/_dev/test/pipeline/test-route53.log", 34),
    ("elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-ecs-samples.log", 10),
    ("elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-extra-samples.log", 7),
    ("elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-tcp-flag-sequence.log", 3),
    ("elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-tgw-samples.log", 10),
    ("elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-v5-all-fields.log", 1),
    ("elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-v8-samples.log", 1),
    ("elastic-integrations/packages/aws/data_stream/vpcflow/_dev/test/pipeline/test-with-message-field.log", 1),
    ("grafana-loki/tools/lambda-promtail/testdata/cloudtrail-log-file.json.gz", 2),
    ("grafana-loki/tools/lambda-promtail/testdata/vpcflowlog.log.gz", 3),
    ("otrf-security-datasets/unzipped/ec2_proxy_s3_exfiltration_2020-09-14011940.json", 103),
];

/// Samples that are broken on purpose (or are not log files although they look like one).
const FAILED: &[(&str, &str)] = &[
    ("aws-cloudtrail-processing-library/src/test/resources/resources/SerializerTestFileBadJsonFormat.json", "not JSON"),
    ("awsdocs-cloudtrail/extracted/cloudtrail-log-file-examples__block07.json.invalid", "not JSON"),
    ("cloudtrail2sightings/unzipped/aws.execution.ec2-user-data.json", "not JSON"),
    // `aws cloudtrail lookup-events` output, not a log file.
    ("awsdocs-cloudtrail/extracted/view-insights-events-cli__block02.json", "no \"Records\" array"),
];

/// Other AWS logs and non-log files that must be classified and skipped.
const SKIPPED: &[(&str, &str)] = &[
    ("grafana-loki/tools/lambda-promtail/testdata/albaccesslog.log.gz", "unknown"),
    ("grafana-loki/tools/lambda-promtail/testdata/nlbaccesslog.log.gz", "unknown"),
    ("grafana-loki/tools/lambda-promtail/testdata/cloudfront.log.gz", "unknown"),
    ("grafana-loki/tools/lambda-promtail/testdata/waflog.log.gz", "unknown"),
    ("grafana-loki/tools/lambda-promtail/testdata/eventbridge-s3-event.json", "unknown"),
    (
        "awsdocs-cloudtrail/extracted/cloudtrail-log-file-validation-digest-file-structure__block02.json",
        "cloudtrail-digest",
    ),
    (
        "elastic-integrations/packages/aws/data_stream/cloudtrail/_dev/test/pipeline/test-cloudtrail-digest-json.log",
        "cloudtrail-digest",
    ),
    // Rows in a custom field order whose header line is in another file: unreadable alone.
    ("awsdocs-vpc/extracted/flow-logs-records-examples__block08.log", "unknown"),
    ("README.md", "unknown"),
];

#[tokio::test]
async fn every_real_sample_is_ingested_skipped_or_recorded_as_bad() {
    let samples = real_samples_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let summary = ingest(&samples, &lake).await;

    let log = rows(
        &lake,
        "SELECT source_key, status, format, rows, coalesce(reason, '') FROM ingest_log ORDER BY source_key",
    )
    .await;
    let find = |key: &str| -> Vec<String> {
        let line = log
            .iter()
            .find(|l| l.starts_with(&format!("{key}|")))
            .unwrap_or_else(|| panic!("{key} is not in the ingest log"));
        line.splitn(5, '|').map(str::to_owned).collect()
    };
    for (key, expected_rows) in COMMITTED {
        let row = find(key);
        assert_eq!(
            (row[1].as_str(), row[3].parse::<u64>().expect("rows")),
            ("committed", *expected_rows),
            "{key}: {row:?}"
        );
    }
    for (key, reason) in FAILED {
        let row = find(key);
        assert_eq!(row[1], "failed", "{key}: {row:?}");
        assert!(row[4].contains(key) && row[4].contains(reason), "{key}: {row:?}");
    }
    for (key, format) in SKIPPED {
        let row = find(key);
        assert_eq!((row[1].as_str(), row[2].as_str()), ("skipped", *format), "{key}: {row:?}");
    }
    // Nothing else failed, and every object is accounted for exactly once.
    assert_eq!(summary.failed.len(), FAILED.len(), "{:#?}", summary.failed);
    let files =
        walkdir::WalkDir::new(&samples).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count();
    assert_eq!(log.len(), files);
    // Every committed row has its time and lineage.
    let nulls = rows(&lake, "SELECT count(*) FROM cloudtrail WHERE eventtime IS NULL OR source_key IS NULL").await;
    assert_eq!(nulls, vec!["0".to_owned()]);
}
