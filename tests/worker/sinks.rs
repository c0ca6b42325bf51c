//! Alert sinks against a real SQS endpoint (`moto_server`): the sinks the worker sends its alerts
//! through, built from `[[sinks]]` configuration with the same SDK configuration an operator's
//! environment gives, and the messages read back from the queues as a consumer would.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use bunker_detect::render::RenderContext;
use bunker_detect::sink::{SinkConfig, Sinks};
use bunker_detect::{Alert, Severity};
use chrono::DateTime;
use serde::Deserialize;

use crate::moto::{self, Moto};

/// The log-archive account that imports findings.
const IMPORT_ACCOUNT: &str = "999988887777";

const SEVERITIES: [Severity; 5] = [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];
const RULES: [&str; 2] = ["aws-root-console-login", "aws-iam-mfa-removed"];

#[derive(Deserialize)]
struct ConfigFile {
    sinks: Vec<SinkConfig>,
}

async fn build(moto: &Moto, toml_text: &str) -> Sinks {
    let configs = toml::from_str::<ConfigFile>(toml_text).expect("sinks config").sinks;
    let ctx = RenderContext { account: Some(IMPORT_ACCOUNT.into()), region: Some(moto::REGION.into()) };
    Sinks::build(&configs, Some(&moto.config), ctx).await.expect("build sinks")
}

/// `n` alerts as the built-in rules raise them: severities in turn, two rules, two accounts.
fn alerts(n: usize) -> Vec<Alert> {
    (0..n)
        .map(|i| {
            let time = DateTime::from_timestamp(1_741_000_000 + 60 * i as i64, 0).expect("time");
            let account = if i % 2 == 0 { "111122223333" } else { "444455556666" };
            Alert {
                id: format!("{:032x}", 0xa1e7_0000 + i),
                rule_id: RULES[i % 2].into(),
                title: format!("Alert number {i}"),
                description: "Raised by the sinks test.".into(),
                severity: SEVERITIES[i % 5],
                mitre: vec!["T1078.004".into()],
                dedup_key: format!("{}|account={account}|i={i}", RULES[i % 2]),
                first_seen: time,
                last_seen: time,
                count: 1 + (i as u64 % 3),
                account: Some(account.into()),
                region: Some("eu-west-1".into()),
                principal: Some(format!("arn:aws:iam::{account}:user/user-{i}")),
                source_ip: Some(format!("203.0.113.{i}")),
                event_ids: vec![format!("8f0c6c8e-0000-4000-8000-{i:012}")],
                source_keys: vec![format!(
                    "AWSLogs/{account}/CloudTrail/eu-west-1/2025/03/03/{account}_CloudTrail_eu-west-1_20250303T1000Z_{i:04}.json.gz"
                )],
                details: serde_json::Map::new(),
            }
        })
        .collect()
}

async fn create_fifo_queue(moto: &Moto, name: &str) -> String {
    let out = moto
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create FIFO queue");
    out.queue_url().expect("queue url").to_owned()
}

/// Receives and deletes messages until `want` have arrived, then makes sure no more follow.
async fn receive(moto: &Moto, queue_url: &str, want: usize) -> Vec<Message> {
    let mut messages: Vec<Message> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = moto
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(if messages.len() >= want { 1 } else { 0 })
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let batch = out.messages().to_vec();
        if batch.is_empty() && messages.len() >= want {
            break;
        }
        assert!(Instant::now() < deadline, "only {} of {want} messages arrived on {queue_url}", messages.len());
        // Deleting lets a FIFO queue hand out the next messages of the same group.
        for message in &batch {
            let handle = message.receipt_handle().expect("receipt handle");
            moto.sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await.expect("delete");
        }
        messages.extend(batch);
    }
    assert_eq!(messages.len(), want, "messages on {queue_url}");
    messages
}

fn body(message: &Message) -> serde_json::Value {
    serde_json::from_str(message.body().expect("body")).expect("the body is one JSON object")
}

fn attribute<'a>(message: &'a Message, name: &str) -> &'a str {
    message
        .message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
        .unwrap_or_else(|| panic!("message attribute {name} missing: {message:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_send_asff_findings_to_a_standard_queue_in_batches_above_min_severity() {
    let moto = Moto::start().await;
    let queue_url = moto.create_queue("security-findings").await;
    let sinks = build(
        &moto,
        &format!(
            "[[sinks]]\ntype = \"sqs\"\nqueue_url = \"{queue_url}\"\nformat = \"asff\"\nmin_severity = \"medium\"\n"
        ),
    )
    .await;
    let alerts = alerts(23);
    // 23 alerts, 13 of them medium or above: more than one SendMessageBatch (moto refuses > 10).
    sinks.send(&alerts).await.expect("send");

    let expected: BTreeMap<String, &Alert> =
        alerts.iter().filter(|a| a.severity >= Severity::Medium).map(|a| (a.id.clone(), a)).collect();
    assert_eq!(expected.len(), 13);
    let messages = receive(&moto, &queue_url, expected.len()).await;
    let mut seen = BTreeSet::new();
    for message in &messages {
        let finding = body(message);
        let id = finding["Id"].as_str().expect("Id").to_owned();
        let alert = expected.get(&id).unwrap_or_else(|| panic!("unexpected finding {finding:#}"));
        assert!(seen.insert(id), "finding sent twice");
        assert_eq!(finding["SchemaVersion"], "2018-10-08");
        assert_eq!(
            finding["ProductArn"],
            format!("arn:aws:securityhub:us-east-1:{IMPORT_ACCOUNT}:product/{IMPORT_ACCOUNT}/default")
        );
        assert_eq!(finding["AwsAccountId"], alert.account.as_deref().expect("account"));
        assert_eq!(finding["GeneratorId"], alert.rule_id);
        assert_eq!(finding["Title"], alert.title);
        assert_eq!(finding["Severity"]["Label"], alert.severity.name().to_uppercase());
        assert_eq!(finding["Types"], serde_json::json!(["TTPs/Initial Access/T1078.004"]));
        assert_eq!(finding["Resources"][0]["Type"], "AwsIamUser");
        assert_eq!(finding["Network"]["SourceIpV4"], alert.source_ip.as_deref().expect("ip"));
        assert_eq!(finding["ProductFields"]["bunker/count"], alert.count.to_string());
        assert_eq!(attribute(message, "severity"), alert.severity.name());
        assert_eq!(attribute(message, "rule_id"), alert.rule_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_on_a_fifo_queue_group_by_rule_and_drop_a_redelivered_alert() {
    let moto = Moto::start().await;
    let fifo_url = create_fifo_queue(&moto, "security-alerts.fifo").await;
    let sinks = build(&moto, &format!("[[sinks]]\ntype = \"sqs\"\nqueue_url = \"{fifo_url}\"\n")).await;
    let mut alerts = alerts(23);
    sinks.send(&alerts).await.expect("send");
    // The worker retries a batch when another sink failed: the same alerts again are duplicates.
    sinks.send(&alerts).await.expect("send again");
    // An alert that folded one more match is news.
    alerts[4].count += 1;
    sinks.send(&alerts[4..5]).await.expect("send the grown alert");

    let messages = receive(&moto, &fifo_url, 24).await;
    let mut order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for message in &messages {
        let alert = body(message);
        let rule_id = alert["rule_id"].as_str().expect("native alert").to_owned();
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .expect("MessageGroupId");
        assert_eq!(group, &rule_id);
        assert_eq!(attribute(message, "rule_id"), rule_id);
        assert_eq!(attribute(message, "severity"), alert["severity"].as_str().expect("severity"));
        let first_seen = DateTime::parse_from_rfc3339(alert["first_seen"].as_str().expect("first_seen")).expect("time");
        order.entry(rule_id).or_default().push(first_seen.timestamp() as u64);
    }
    let grown: Vec<_> = messages.iter().map(body).filter(|a| a["id"] == alerts[4].id).collect();
    assert_eq!(grown.iter().map(|a| a["count"].as_u64()).collect::<Vec<_>>(), [Some(2), Some(3)]);
    // Within a group the queue keeps the order they were sent in: the first 23 by time, then the grown one.
    for (rule, times) in &order {
        let first_pass = &times[..times.len() - usize::from(rule == &alerts[4].rule_id)];
        assert!(first_pass.is_sorted(), "{rule}: {times:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_report_a_missing_queue_as_an_error_naming_it() {
    let moto = Moto::start().await;
    let queue_url = moto.create_queue("deleted-alerts").await;
    moto.sqs.delete_queue().queue_url(&queue_url).send().await.expect("delete queue");
    let sinks = build(&moto, &format!("[[sinks]]\ntype = \"sqs\"\nqueue_url = \"{queue_url}\"\n")).await;
    let err = sinks.send(&alerts(3)).await.expect_err("the queue is gone");
    let text = err.to_string();
    assert!(text.contains(&queue_url) && text.contains("SendMessageBatch"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_refuse_an_sqs_sink_without_aws_configuration() {
    let configs = toml::from_str::<ConfigFile>(
        "[[sinks]]\ntype = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/alerts\"\n",
    )
    .expect("config")
    .sinks;
    let err = Sinks::build(&configs, None, RenderContext::default()).await.expect_err("no AWS configuration");
    assert!(err.to_string().contains("needs AWS configuration"), "{err}");
}

/// Issue 36: without `product_account`, an ASFF finding's `ProductArn` names the account bunker
/// runs as — asked of STS, as the worker does at start-up — and not the alert's member account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asff_sinks_without_product_account_name_the_account_sts_says_bunker_runs_as() {
    let moto = Moto::start().await;
    // moto's GetCallerIdentity answers its default account for any key that is not 12 digits.
    let caller = "123456789012";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("findings.jsonl");
    let configs = toml::from_str::<ConfigFile>(&format!(
        "[[sinks]]\ntype = \"file\"\nformat = \"asff\"\npath = {:?}\n",
        path.to_str().expect("utf-8")
    ))
    .expect("config")
    .sinks;
    // What main.rs passes: the region of the AWS configuration, no account.
    let ctx = RenderContext { account: None, region: Some(moto::REGION.into()) };
    let sinks = Sinks::build(&configs, Some(&moto.config), ctx).await.expect("build sinks");
    let alerts = alerts(2);
    sinks.send(&alerts).await.expect("send");
    let text = std::fs::read_to_string(&path).expect("findings");
    let findings: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(findings.len(), 2);
    for (finding, alert) in findings.iter().zip(&alerts) {
        let member = alert.account.as_deref().expect("account");
        assert_ne!(member, caller, "the test needs a member account other than the importer");
        assert_eq!(
            finding["ProductArn"],
            format!("arn:aws:securityhub:{}:{caller}:product/{caller}/default", moto::REGION)
        );
        assert_eq!(finding["AwsAccountId"], member);
    }
}
