//! Queries from AWS's Athena documentation for CloudTrail, VPC Flow Logs and Resolver query logs
//! run as written (table names aside) over a lake bunker wrote, and give the answers bunker's own
//! SQL gives for the same question.
//!
//! Each query is adapted from the Athena User Guide's example queries ("Query AWS CloudTrail
//! logs", "Query Amazon VPC flow logs", "Query Amazon Route 53 Resolver query logs"): Athena's
//! functions and literals are kept, the table names are bunker's, and the dates are the archive's.

use std::path::Path;

use bunker_ingest::synth::{SynthConfig, generate};

use crate::support::{count, ingest, rows};

/// Runs the Athena form and bunker's own form of one question, and checks they agree on rows
/// that are there.
async fn same_answer(lake: &Path, athena: &str, native: &str) -> Vec<String> {
    let got = rows(lake, athena).await;
    let want = rows(lake, native).await;
    assert!(!want.is_empty(), "the archive holds no rows for {native}");
    assert_eq!(got, want, "{athena}");
    got
}

/// Regression: Athena's functions (`from_iso8601_timestamp`, `date_add`, `date_format`,
/// `regexp_like`, `json_extract_scalar`, `from_unixtime`, `day_of_week`, `parse_datetime`,
/// `cardinality`, `count_if`...) were unknown, so the queries AWS documents failed when pasted.
#[tokio::test]
async fn athenas_documented_example_queries_run_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    generate(&archive, &SynthConfig::new(3000, 17)).expect("generate");
    let summary = ingest(&archive, &lake).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let first_day: String = rows(&lake, "SELECT CAST(min(date) AS varchar) FROM cloudtrail").await.remove(0);

    // CloudTrail: events of a week, by time ("Example queries for CloudTrail logs").
    same_answer(
        &lake,
        &format!(
            "SELECT count(*) FROM cloudtrail WHERE eventtime >= from_iso8601_timestamp('{first_day}T00:00:00Z') \
             AND eventtime < date_add('day', 7, from_iso8601_timestamp('{first_day}T00:00:00Z'))"
        ),
        &format!(
            "SELECT count(*) FROM cloudtrail WHERE eventtime >= TIMESTAMP '{first_day} 00:00:00' \
             AND eventtime < TIMESTAMP '{first_day} 00:00:00' + INTERVAL '7' DAY"
        ),
    )
    .await;
    // Events per day, the day written with Athena's date_format.
    same_answer(
        &lake,
        "SELECT date_format(eventtime, '%Y-%m-%d') AS day, count(*) AS n FROM cloudtrail GROUP BY 1 ORDER BY 1",
        "SELECT CAST(date AS varchar) AS day, count(*) AS n FROM cloudtrail GROUP BY 1 ORDER BY 1",
    )
    .await;
    // Errors of IAM calls, by regular expression.
    same_answer(
        &lake,
        "SELECT eventname, count(*) FROM cloudtrail WHERE regexp_like(eventsource, '^iam\\.') GROUP BY 1 ORDER BY 1",
        "SELECT eventname, count(*) FROM cloudtrail WHERE eventsource = 'iam.amazonaws.com' GROUP BY 1 ORDER BY 1",
    )
    .await;
    // S3 bucket names out of the request parameters ("Search for S3 activity").
    let buckets = same_answer(
        &lake,
        "SELECT DISTINCT json_extract_scalar(requestparameters, '$.bucketName') AS bucket FROM cloudtrail \
         WHERE eventsource = 's3.amazonaws.com' AND json_extract_scalar(requestparameters, '$.bucketName') IS NOT NULL \
         ORDER BY 1",
        "SELECT DISTINCT json_get_str(requestparameters, 'bucketName') AS bucket FROM cloudtrail \
         WHERE eventsource = 's3.amazonaws.com' AND json_get_str(requestparameters, 'bucketName') IS NOT NULL ORDER BY 1",
    )
    .await;
    assert!(buckets.iter().all(|b| !b.is_empty() && b != "NULL"), "{buckets:?}");
    // Console sign-ins that failed, counted with count_if.
    same_answer(
        &lake,
        "SELECT count_if(errorcode IS NOT NULL) FROM cloudtrail",
        "SELECT count(*) FROM cloudtrail WHERE errorcode IS NOT NULL",
    )
    .await;

    // VPC Flow Logs: rejected TCP traffic with its day of week ("Example queries for VPC flow logs";
    // bunker's `start` is a timestamp already, which from_unixtime takes as it is).
    same_answer(
        &lake,
        "SELECT day_of_week(from_unixtime(start)) AS day, count(*) FROM vpcflow \
         WHERE action = 'REJECT' AND protocol = 6 GROUP BY 1 ORDER BY 1",
        "SELECT CAST(CASE WHEN extract(dow FROM start) = 0 THEN 7 ELSE extract(dow FROM start) END AS BIGINT) AS day, \
         count(*) FROM vpcflow \
         WHERE action = 'REJECT' AND protocol = 6 GROUP BY 1 ORDER BY 1",
    )
    .await;
    // Traffic to HTTPS by source address, the last hour of the archive relative to its newest flow.
    same_answer(
        &lake,
        "SELECT srcaddr, count(*) AS n FROM vpcflow WHERE dstport = 443 \
         AND start >= date_add('hour', -24, (SELECT max(start) FROM vpcflow)) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
        "SELECT srcaddr, count(*) AS n FROM vpcflow WHERE dstport = 443 \
         AND start >= (SELECT max(start) FROM vpcflow) - INTERVAL '24' HOUR GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
    )
    .await;

    // Resolver query logs: NXDOMAIN answers after a time given as Joda text, and the answers per query.
    same_answer(
        &lake,
        &format!(
            "SELECT query_name, count(*) FROM dns WHERE rcode = 'NXDOMAIN' \
             AND query_timestamp >= parse_datetime('{first_day}T00:00:00Z', 'yyyy-MM-dd''T''HH:mm:ss''Z') \
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
        ),
        &format!(
            "SELECT query_name, count(*) FROM dns WHERE rcode = 'NXDOMAIN' \
             AND query_timestamp >= TIMESTAMP '{first_day} 00:00:00' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
        ),
    )
    .await;
    same_answer(
        &lake,
        "SELECT cardinality(answers) AS n, count(*) FROM dns GROUP BY 1 ORDER BY 1",
        "SELECT CASE WHEN answers IS NULL THEN NULL ELSE coalesce(CAST(array_length(answers) AS BIGINT), 0) END AS n, \
         count(*) FROM dns GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert!(count(&lake, "SELECT count(*) FROM dns WHERE split_part(query_name, '.', 1) <> ''").await > 0);
}

/// Regression: `CROSS JOIN UNNEST(t.resources) unnested (resources_entry)`, the form three of
/// AWS's examples use for CloudTrail's `resources` and Resolver's `answers`, failed to plan
/// (DataFusion has no lateral unnest); it now gives one row per element beside its event.
#[tokio::test]
async fn athenas_cross_join_unnest_gives_one_row_per_array_element() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    generate(&archive, &SynthConfig::new(3000, 23)).expect("generate");
    let summary = ingest(&archive, &lake).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);

    // One row per resource, the event's own columns beside it ("Query AWS CloudTrail logs").
    let per_event = same_answer(
        &lake,
        "SELECT t.eventid, count(*) FROM cloudtrail t CROSS JOIN UNNEST(t.resources) unnested (resources_entry) \
         GROUP BY 1 ORDER BY 1",
        "SELECT eventid, CAST(array_length(resources) AS BIGINT) FROM cloudtrail \
         WHERE array_length(resources) > 0 ORDER BY 1",
    )
    .await;
    assert!(per_event.len() > 10, "{per_event:?}");
    // The resource ARN filter and replace() of the S3 example, on an ARN the archive holds.
    let arn: String = rows(
        &lake,
        "SELECT min(r.arn) FROM (SELECT unnest(resources) AS r FROM cloudtrail) WHERE r.arn LIKE 'arn:aws:s3:::%'",
    )
    .await
    .remove(0);
    assert_ne!(arn, "NULL", "the archive holds no S3 resource");
    let tail = &arn[arn.len() - 8..];
    same_answer(
        &lake,
        &format!(
            "SELECT awsregion, replace(unnested.resources_entry.ARN, 'arn:aws:s3:::') AS s3_resource, eventname, eventtime \
             FROM cloudtrail t CROSS JOIN UNNEST(t.resources) unnested (resources_entry) \
             WHERE unnested.resources_entry.ARN LIKE '%{tail}' ORDER BY eventtime, eventname"
        ),
        &format!(
            "SELECT awsregion, substr(r.arn, 14) AS s3_resource, eventname, eventtime \
             FROM (SELECT awsregion, eventname, eventtime, unnest(resources) AS r FROM cloudtrail) \
             WHERE r.arn LIKE '%{tail}' ORDER BY eventtime, eventname"
        ),
    )
    .await;
    // The owner account out of the resource, in the comma form.
    same_answer(
        &lake,
        "SELECT DISTINCT u.e.accountid FROM cloudtrail t, UNNEST(t.resources) AS u(e) \
         WHERE u.e.accountid IS NOT NULL ORDER BY 1",
        "SELECT DISTINCT r.accountid FROM (SELECT unnest(resources) AS r FROM cloudtrail) \
         WHERE r.accountid IS NOT NULL ORDER BY 1",
    )
    .await;

    // Resolver: the queries that got a given answer ("Query Route 53 Resolver query logs", example 5).
    let rdata: String = rows(&lake, "SELECT min(a.rdata) FROM (SELECT unnest(answers) AS a FROM dns)").await.remove(0);
    assert_ne!(rdata, "NULL", "the archive holds no DNS answer");
    same_answer(
        &lake,
        &format!(
            "SELECT query_timestamp, srcaddr, srcport, query_name, rcode, answer.Rdata FROM dns \
             CROSS JOIN UNNEST(dns.answers) as st(answer) WHERE answer.Rdata = '{rdata}' ORDER BY 1, 2, 3, 4"
        ),
        &format!(
            "SELECT query_timestamp, srcaddr, srcport, query_name, rcode, a.rdata FROM \
             (SELECT query_timestamp, srcaddr, srcport, query_name, rcode, unnest(answers) AS a FROM dns) \
             WHERE a.rdata = '{rdata}' ORDER BY 1, 2, 3, 4"
        ),
    )
    .await;
}
