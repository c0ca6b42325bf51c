//! Every AWS technique of Stratus Red Team, as its detonation writes CloudTrail, in a generated
//! archive: the built-in pack raises exactly the alerts the coverage table (`docs/coverage.md`)
//! says, no more and no fewer.
//!
//! Each technique's whole sequence is a fixture in `tests/fixtures/stratus/<technique>.json`,
//! written in this project's own words from the catalogue's documentation and captured detonation
//! logs: the calls around the attack (role assumptions retried until IAM has propagated, the
//! Describe and List calls) and the failures the catalogue's calls really meet
//! (`Client.UnauthorizedOperation`, `AccessDenied`) included. The fixtures were written apart from
//! the rules, so a rule that passes only its own examples does not pass here.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;

use bunker_detect::engine::run_over_lake;
use bunker_detect::pack::builtin_validated;
use bunker_detect::regions::Regions;
use bunker_ingest::synth::{SynthConfig, generate};
use bunker_query::LakeSession;

use crate::support::ingest;

/// Which built-in rules each technique raises; an empty list is a technique the pack cannot see
/// in the events the fixture holds (the reason is in `docs/coverage.md`).
const EXPECTED: &[(&str, &[&str])] = &[
    ("aws.credential-access.ec2-get-password-data", &["aws-access-denied-burst", "aws-ec2-instance-secrets-harvest"]),
    ("aws.credential-access.ec2-steal-instance-credentials", &["aws-ec2-instance-credentials-used-elsewhere"]),
    ("aws.credential-access.secretsmanager-batch-retrieve-secrets", &["aws-secrets-bulk-retrieval"]),
    ("aws.credential-access.secretsmanager-retrieve-secrets", &["aws-secrets-bulk-retrieval"]),
    ("aws.credential-access.ssm-retrieve-securestring-parameters", &["aws-secrets-bulk-retrieval"]),
    ("aws.defense-evasion.cloudtrail-delete", &["aws-cloudtrail-stop-logging"]),
    ("aws.defense-evasion.cloudtrail-event-selectors", &["aws-cloudtrail-logging-weakened"]),
    ("aws.defense-evasion.cloudtrail-lifecycle-rule", &["aws-s3-log-bucket-lifecycle-shortened"]),
    ("aws.defense-evasion.cloudtrail-stop", &["aws-cloudtrail-stop-logging"]),
    ("aws.defense-evasion.dns-delete-logs", &["aws-network-logging-deleted"]),
    ("aws.defense-evasion.organizations-leave", &["aws-guardrail-change-denied"]),
    ("aws.defense-evasion.vpc-remove-flow-logs", &["aws-network-logging-deleted"]),
    ("aws.discovery.ec2-download-user-data", &["aws-ec2-instance-secrets-harvest"]),
    ("aws.discovery.ec2-enumerate-from-instance", &["aws-ec2-instance-role-discovery"]),
    ("aws.discovery.ses-enumerate", &["aws-ses-enumeration"]),
    ("aws.execution.ec2-launch-unusual-instances", &["aws-ec2-unusual-instance-type"]),
    ("aws.execution.ec2-user-data", &["aws-ec2-user-data-modified"]),
    ("aws.execution.sagemaker-update-lifecycle-config", &["aws-sagemaker-notebook-lifecycle-attached"]),
    ("aws.execution.ssm-send-command", &["aws-ssm-remote-execution-many-instances"]),
    ("aws.execution.ssm-start-session", &["aws-ssm-remote-execution-many-instances"]),
    ("aws.exfiltration.ec2-security-group-open-port-22-ingress", &["aws-security-group-admin-ports-open"]),
    ("aws.exfiltration.ec2-share-ami", &["aws-ec2-snapshot-or-image-made-public"]),
    ("aws.exfiltration.ec2-share-ebs-snapshot", &["aws-ec2-snapshot-or-image-made-public"]),
    ("aws.exfiltration.rds-share-snapshot", &["aws-ec2-snapshot-or-image-made-public"]),
    ("aws.exfiltration.s3-backdoor-bucket-policy", &["aws-s3-bucket-policy-external-account"]),
    ("aws.impact.bedrock-invoke-model", &["aws-bedrock-model-invoked"]),
    ("aws.impact.ec2-deregister-ami", &["aws-ec2-image-deregistered"]),
    ("aws.impact.s3-ransomware-batch-deletion", &["aws-s3-ransomware-object-destruction"]),
    ("aws.impact.s3-ransomware-client-side-encryption", &["aws-s3-ransomware-object-destruction"]),
    ("aws.impact.s3-ransomware-individual-deletion", &["aws-s3-ransomware-object-destruction"]),
    ("aws.initial-access.console-login-without-mfa", &["aws-console-login-without-mfa"]),
    ("aws.lateral-movement.ec2-instance-connect", &["aws-ec2-ssh-key-pushed"]),
    ("aws.lateral-movement.ec2-serial-console-send-ssh-public-key", &["aws-ec2-ssh-key-pushed"]),
    ("aws.persistence.iam-backdoor-role", &["aws-iam-role-trust-opened"]),
    ("aws.persistence.iam-backdoor-user", &["aws-iam-credentials-created"]),
    ("aws.persistence.iam-create-admin-user", &["aws-iam-admin-policy-attached", "aws-iam-credentials-created"]),
    ("aws.persistence.iam-create-backdoor-role", &["aws-iam-admin-policy-attached", "aws-iam-role-trust-opened"]),
    ("aws.persistence.iam-create-user-login-profile", &["aws-iam-credentials-created"]),
    ("aws.persistence.lambda-backdoor-function", &["aws-lambda-function-public"]),
    ("aws.persistence.lambda-layer-extension", &["aws-lambda-code-or-layers-changed"]),
    ("aws.persistence.lambda-overwrite-code", &["aws-lambda-code-or-layers-changed"]),
    ("aws.persistence.rolesanywhere-create-trust-anchor", &["aws-rolesanywhere-trust-anchor-created"]),
    ("aws.persistence.sts-federation-token", &["aws-sts-federation-token"]),
    ("aws.privilege-escalation.iam-update-user-login-profile", &["aws-iam-credentials-created"]),
];

/// Writes `records` as the objects an organization trail delivers: one per region and day.
fn write_trail(archive: &Path, technique: &str, records: &[serde_json::Value]) {
    let mut objects: BTreeMap<(String, String, String), Vec<&serde_json::Value>> = BTreeMap::new();
    for record in records {
        let text =
            |field: &str| record[field].as_str().unwrap_or_else(|| panic!("{technique}: a record without {field}"));
        let day = text("eventTime")[..10].to_owned();
        objects
            .entry((text("recipientAccountId").to_owned(), text("awsRegion").to_owned(), day))
            .or_default()
            .push(record);
    }
    for ((account, region, day), records) in objects {
        let (year, month, date) = (&day[..4], &day[5..7], &day[8..10]);
        let dir = archive.join(format!("AWSLogs/o-stratus01/{account}/CloudTrail/{region}/{year}/{month}/{date}"));
        std::fs::create_dir_all(&dir).expect("archive folder");
        let name = format!("{account}_CloudTrail_{region}_{}T2355Z_{technique}.json.gz", day.replace('-', ""));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(serde_json::json!({ "Records": records }).to_string().as_bytes()).expect("gzip");
        std::fs::write(dir.join(name), gz.finish().expect("gzip")).expect("write object");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let target = to.join(entry.path().strip_prefix(from).expect("inside"));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn every_stratus_technique_raises_exactly_the_alerts_the_coverage_table_names() {
    let rules = builtin_validated().await.expect("the built-in pack");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/stratus");
    let mut techniques: Vec<(String, Vec<serde_json::Value>)> = std::fs::read_dir(&fixtures)
        .expect("the fixtures folder")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let fixture: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).expect("read fixture")).expect("fixture is JSON");
            let id = fixture["technique"].as_str().expect("technique").to_owned();
            (id, fixture["records"].as_array().expect("records").clone())
        })
        .collect();
    techniques.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: BTreeMap<&str, BTreeSet<String>> =
        EXPECTED.iter().map(|(t, rules)| (*t, rules.iter().map(|r| r.to_string()).collect())).collect();
    let ids: BTreeSet<&str> = techniques.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, expected.keys().copied().collect(), "a fixture for every technique of the table, and no other");

    // One benign background, ingested once; each technique goes into a copy of it.
    let dir = tempfile::tempdir().expect("tempdir");
    let (background, base) = (dir.path().join("background"), dir.path().join("base-lake"));
    let config = SynthConfig { days: 2, accounts: 2, benign: true, ..SynthConfig::new(3000, 29) };
    generate(&background, &config).expect("generate");
    let summary = ingest(&background, &base).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);

    let mut wrong = Vec::new();
    for (technique, records) in &techniques {
        let (archive, lake) =
            (dir.path().join(format!("{technique}-archive")), dir.path().join(format!("{technique}-lake")));
        copy_dir(&base, &lake);
        write_trail(&archive, technique, records);
        let summary = ingest(&archive, &lake).await;
        assert!(summary.failed.is_empty() && summary.rejected_records == 0, "{technique}: {summary:?}");
        let session = LakeSession::open(&lake).await.expect("open session");
        let alerts = run_over_lake(&session, &rules, &Regions::default(), None, None).await.expect("run the pack");
        let fired: BTreeSet<String> = alerts.iter().map(|a| a.rule_id.clone()).collect();
        if fired != expected[technique.as_str()] {
            wrong.push(format!("{technique}: raised {fired:?}, the table says {:?}", expected[technique.as_str()]));
        }
    }
    assert!(wrong.is_empty(), "techniques whose alerts differ from the coverage table:\n{}", wrong.join("\n"));
}
