//! The rules Security Hub holds an ASFF finding to in `BatchImportFindings`, as a checker the
//! tests run rendered findings through.
//!
//! Written from the AWS Security Hub user guide (required top-level attributes, the `Types`
//! taxonomy, `Resources`, `FindingProviderFields`) and the `AwsSecurityFinding` API reference
//! (field lengths, array sizes, the 240 KB finding limit). Security Hub rejects a finding that
//! breaks one of them, and it rejects a custom integration's finding whose `ProductArn` is not
//! `product/<account>/default` of the account and region importing it — so the checker is told
//! which importer and region to expect.

use chrono::DateTime;
use serde_json::Value;

/// The importer a finding must name in its `ProductArn`.
pub(crate) struct Importer<'a> {
    pub(crate) account: &'a str,
    pub(crate) region: &'a str,
}

const SEVERITY_LABELS: [&str; 5] = ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// The `Types` taxonomy: every namespace, and the categories defined under it.
const TYPE_TAXONOMY: [(&str, &[&str]); 5] = [
    (
        "Software and Configuration Checks",
        &["Vulnerabilities", "AWS Security Best Practices", "Industry and Regulatory Standards"],
    ),
    (
        "TTPs",
        &[
            "Initial Access",
            "Execution",
            "Persistence",
            "Privilege Escalation",
            "Defense Evasion",
            "Credential Access",
            "Discovery",
            "Lateral Movement",
            "Collection",
            "Command and Control",
        ],
    ),
    (
        "Effects",
        &["Data Exposure", "Data Exfiltration", "Data Destruction", "Denial of Service", "Resource Consumption"],
    ),
    (
        "Unusual Behaviors",
        &[
            "Application",
            "Network Flow",
            "IP address",
            "User",
            "VM",
            "Container",
            "Serverless",
            "Process",
            "Database",
            "Data",
        ],
    ),
    ("Sensitive Data Identifications", &["PII", "Passwords", "Legal", "Financial", "Security", "Business"]),
];

/// Every rule `finding` breaks, as readable sentences; empty when Security Hub would take it.
pub(crate) fn violations(finding: &Value, importer: &Importer<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(object) = finding.as_object() else {
        return vec!["a finding is a JSON object".into()];
    };
    let text = |field: &str| object.get(field).and_then(Value::as_str);
    let bounded = |out: &mut Vec<String>, field: &str, max: usize| match text(field) {
        Some(value) if value.trim().is_empty() => out.push(format!("{field} is empty")),
        Some(value) if value.chars().count() > max => {
            out.push(format!("{field} is {} characters, over {max}", value.chars().count()))
        }
        Some(_) => {}
        None => out.push(format!("{field} is required and must be a string")),
    };
    bounded(&mut out, "Id", 512);
    bounded(&mut out, "GeneratorId", 512);
    bounded(&mut out, "Title", 256);
    bounded(&mut out, "Description", 1024);

    if text("SchemaVersion") != Some("2018-10-08") {
        out.push(format!("SchemaVersion must be 2018-10-08, not {:?}", object.get("SchemaVersion")));
    }
    match text("AwsAccountId") {
        Some(account) if is_account(account) => {}
        other => out.push(format!("AwsAccountId must be 12 digits, not {other:?}")),
    }
    check_product_arn(text("ProductArn"), importer, &mut out);

    let mut times = Vec::new();
    for field in ["CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt"] {
        let required = matches!(field, "CreatedAt" | "UpdatedAt");
        match object.get(field) {
            None if !required => {}
            Some(Value::String(time)) => match DateTime::parse_from_rfc3339(time) {
                Ok(parsed) => times.push((field, parsed)),
                Err(e) => out.push(format!("{field} {time:?} is not an ISO 8601 time ({e})")),
            },
            other => out.push(format!("{field} must be an ISO 8601 time string, not {other:?}")),
        }
    }
    let time = |name: &str| times.iter().find(|(field, _)| *field == name).map(|(_, t)| *t);
    if let (Some(created), Some(updated)) = (time("CreatedAt"), time("UpdatedAt"))
        && updated < created
    {
        out.push("UpdatedAt is before CreatedAt".into());
    }
    if let (Some(first), Some(last)) = (time("FirstObservedAt"), time("LastObservedAt"))
        && last < first
    {
        out.push("LastObservedAt is before FirstObservedAt".into());
    }

    check_severity("Severity", object.get("Severity"), &mut out);
    check_types("Types", object.get("Types"), &mut out);
    match object.get("FindingProviderFields") {
        Some(Value::Object(fields)) => {
            check_severity("FindingProviderFields.Severity", fields.get("Severity"), &mut out);
            check_types("FindingProviderFields.Types", fields.get("Types"), &mut out);
        }
        other => out.push(format!("FindingProviderFields must be an object with Severity and Types, not {other:?}")),
    }
    check_resources(object.get("Resources"), &mut out);
    check_product_fields(object.get("ProductFields"), &mut out);

    if let Some(state) = object.get("RecordState")
        && !matches!(state.as_str(), Some("ACTIVE" | "ARCHIVED"))
    {
        out.push(format!("RecordState must be ACTIVE or ARCHIVED, not {state}"));
    }
    if let Some(status) = object.get("Workflow").map(|w| &w["Status"])
        && !matches!(status.as_str(), Some("NEW" | "NOTIFIED" | "RESOLVED" | "SUPPRESSED"))
    {
        out.push(format!("Workflow.Status must be NEW, NOTIFIED, RESOLVED or SUPPRESSED, not {status}"));
    }
    if let Some(network) = object.get("Network") {
        for (field, v4) in [("SourceIpV4", true), ("SourceIpV6", false)] {
            if let Some(ip) = network.get(field) {
                let parsed = ip.as_str().and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
                if parsed.is_none_or(|ip| ip.is_ipv4() != v4) {
                    out.push(format!("Network.{field} {ip} is not an IPv{} address", if v4 { 4 } else { 6 }));
                }
            }
        }
    }
    let size = finding.to_string().len();
    if size > 240 * 1024 {
        out.push(format!("the finding is {size} bytes, over 240 KB"));
    }
    out
}

fn is_account(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:<partition>:securityhub:<region>:<account>:product/<account>/default`, of the importer.
fn check_product_arn(arn: Option<&str>, importer: &Importer<'_>, out: &mut Vec<String>) {
    let Some(arn) = arn else {
        out.push("ProductArn is required and must be a string".into());
        return;
    };
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        out.push(format!("ProductArn {arn:?} is not arn:<partition>:securityhub:<region>:<account>:<resource>"));
        return;
    };
    let expected_partition = match region {
        r if r.starts_with("cn-") => "aws-cn",
        r if r.starts_with("us-gov-") => "aws-us-gov",
        _ => "aws",
    };
    if prefix != "arn" || service != "securityhub" || partition != expected_partition {
        out.push(format!("ProductArn {arn:?} is not a Security Hub ARN of partition {expected_partition}"));
    }
    if resource != format!("product/{account}/default") {
        out.push(format!("ProductArn {arn:?} is not a custom integration's product/<account>/default"));
    }
    if account != importer.account {
        out.push(format!("ProductArn names account {account}, not the importing account {}", importer.account));
    }
    if region != importer.region {
        out.push(format!("ProductArn names region {region}, not the region imported into, {}", importer.region));
    }
}

fn check_severity(field: &str, severity: Option<&Value>, out: &mut Vec<String>) {
    match severity.and_then(|s| s.get("Label")).and_then(Value::as_str) {
        Some(label) if SEVERITY_LABELS.contains(&label) => {}
        other => out.push(format!("{field}.Label must be one of {SEVERITY_LABELS:?}, not {other:?}")),
    }
}

fn check_types(field: &str, types: Option<&Value>, out: &mut Vec<String>) {
    let Some(types) = types.and_then(Value::as_array) else {
        out.push(format!("{field} is required and must be an array"));
        return;
    };
    if types.is_empty() || types.len() > 50 {
        out.push(format!("{field} holds {} types, not 1 to 50", types.len()));
    }
    for kind in types {
        let Some(kind) = kind.as_str() else {
            out.push(format!("{field} holds {kind}, not a string"));
            continue;
        };
        let mut path = kind.splitn(3, '/');
        let namespace = path.next().unwrap_or_default();
        let category = path.next();
        let classifier = path.next();
        let Some((_, categories)) = TYPE_TAXONOMY.iter().find(|(name, _)| *name == namespace) else {
            out.push(format!("{field}: {kind:?} is not in a defined namespace"));
            continue;
        };
        if let Some(category) = category
            && !categories.contains(&category)
        {
            out.push(format!("{field}: {kind:?}: {category:?} is not a category of {namespace}"));
        }
        if classifier.is_some_and(str::is_empty) {
            out.push(format!("{field}: {kind:?} has an empty classifier"));
        }
    }
}

fn check_resources(resources: Option<&Value>, out: &mut Vec<String>) {
    let Some(resources) = resources.and_then(Value::as_array) else {
        out.push("Resources is required and must be an array".into());
        return;
    };
    if resources.is_empty() || resources.len() > 32 {
        out.push(format!("Resources holds {} resources, not 1 to 32", resources.len()));
    }
    for resource in resources {
        for field in ["Type", "Id"] {
            if resource.get(field).and_then(Value::as_str).is_none_or(|v| v.trim().is_empty()) {
                out.push(format!("a resource has no {field}: {resource}"));
            }
        }
        if let Some(partition) = resource.get("Partition")
            && !matches!(partition.as_str(), Some("aws" | "aws-cn" | "aws-us-gov"))
        {
            out.push(format!("a resource's Partition {partition} is not aws, aws-cn or aws-us-gov"));
        }
    }
}

fn check_product_fields(fields: Option<&Value>, out: &mut Vec<String>) {
    let Some(fields) = fields else { return };
    let Some(fields) = fields.as_object() else {
        out.push("ProductFields must be a map of strings".into());
        return;
    };
    if fields.len() > 50 {
        out.push(format!("ProductFields holds {} entries, over 50", fields.len()));
    }
    for (key, value) in fields {
        if key.chars().count() > 128 {
            out.push(format!("ProductFields key {key:?} is over 128 characters"));
        }
        match value.as_str() {
            Some(value) if value.chars().count() <= 2048 => {}
            Some(_) => out.push(format!("ProductFields value of {key:?} is over 2048 characters")),
            None => out.push(format!("ProductFields value of {key:?} is not a string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bunker_ingest::ObjectContext;
    use bunker_ingest::pipeline::parse_content;
    use bunker_schemas::LogTable;
    use serde_json::json;

    use crate::render::{Format, RenderContext, render};
    use crate::rule::Expect;
    use crate::testing::{raw_object, run_example};

    const IMPORTER: Importer<'static> = Importer { account: "999988887777", region: "eu-west-1" };

    /// A finding Security Hub takes, written by hand from the user guide's examples.
    fn valid() -> Value {
        json!({
            "SchemaVersion": "2018-10-08",
            "Id": "eu-west-1/111122223333/4f1c0e8d",
            "ProductArn": "arn:aws:securityhub:eu-west-1:999988887777:product/999988887777/default",
            "GeneratorId": "aws-cloudtrail-stop-logging",
            "AwsAccountId": "111122223333",
            "Types": ["TTPs/Defense Evasion/T1562.008"],
            "CreatedAt": "2025-03-03T10:05:00.000Z",
            "UpdatedAt": "2025-03-03T10:50:30.000Z",
            "Severity": {"Label": "CRITICAL", "Original": "critical"},
            "Title": "CloudTrail logging stopped",
            "Description": "Someone stopped a trail.",
            "Resources": [{"Type": "AwsIamUser", "Id": "arn:aws:iam::111122223333:user/mallory", "Partition": "aws", "Region": "eu-west-1"}],
            "ProductFields": {"bunker/count": "2"},
            "FindingProviderFields": {"Severity": {"Label": "CRITICAL"}, "Types": ["TTPs/Defense Evasion/T1562.008"]},
            "Network": {"Direction": "IN", "SourceIpV4": "203.0.113.7"},
            "Workflow": {"Status": "NEW"},
            "RecordState": "ACTIVE",
        })
    }

    /// The checker has teeth: each broken rule is caught, by a message naming it.
    #[test]
    fn each_rule_broken_is_a_violation_naming_it() {
        assert_eq!(violations(&valid(), &IMPORTER), Vec::<String>::new());
        let cases: Vec<(&str, Value, &str)> = vec![
            ("SchemaVersion", json!("2019-01-01"), "SchemaVersion"),
            ("Id", json!("x".repeat(513)), "Id is 513 characters"),
            ("Id", json!(" "), "Id is empty"),
            ("GeneratorId", json!("g".repeat(513)), "GeneratorId is 513"),
            ("Title", json!("t".repeat(257)), "Title is 257"),
            ("Description", json!("d".repeat(1025)), "Description is 1025"),
            ("Description", Value::Null, "Description is required"),
            ("AwsAccountId", json!("11112222333"), "AwsAccountId must be 12 digits"),
            ("AwsAccountId", json!("11112222333x"), "AwsAccountId must be 12 digits"),
            ("CreatedAt", json!("2025-03-03 10:05"), "CreatedAt \"2025-03-03 10:05\" is not an ISO 8601"),
            ("UpdatedAt", json!("2025-03-03T10:00:00Z"), "UpdatedAt is before CreatedAt"),
            ("UpdatedAt", Value::Null, "UpdatedAt must be an ISO 8601"),
            ("Severity", json!({"Label": "SEVERE"}), "Severity.Label"),
            ("Types", json!([]), "Types holds 0 types"),
            ("Types", json!(["Threats/Initial Access"]), "not in a defined namespace"),
            ("Types", json!(["TTPs/Data Exfiltration/T1048"]), "\"Data Exfiltration\" is not a category of TTPs"),
            ("Types", json!(["TTPs/Initial Access/"]), "empty classifier"),
            ("Resources", json!([]), "Resources holds 0 resources"),
            ("Resources", json!(vec![json!({"Type": "Other", "Id": "x"}); 33]), "Resources holds 33"),
            ("Resources", json!([{"Type": "AwsIamUser"}]), "a resource has no Id"),
            ("Resources", json!([{"Type": "Other", "Id": "x", "Partition": "aws-eu"}]), "Partition"),
            ("FindingProviderFields", json!({"Types": ["TTPs"]}), "FindingProviderFields.Severity.Label"),
            ("FindingProviderFields", json!({"Severity": {"Label": "LOW"}}), "FindingProviderFields.Types is required"),
            (
                "ProductArn",
                json!("arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default"),
                "ProductArn names account 111122223333, not the importing account 999988887777",
            ),
            (
                "ProductArn",
                json!("arn:aws:securityhub:us-east-1:999988887777:product/999988887777/default"),
                "ProductArn names region us-east-1, not the region imported into, eu-west-1",
            ),
            (
                "ProductArn",
                json!("arn:aws:securityhub:eu-west-1:999988887777:product/acme/scanner"),
                "not a custom integration's product/<account>/default",
            ),
            (
                "ProductArn",
                json!("arn:aws-cn:securityhub:eu-west-1:999988887777:product/999988887777/default"),
                "partition aws",
            ),
            ("ProductFields", json!({"k": "v".repeat(2049)}), "over 2048"),
            ("RecordState", json!("LIVE"), "RecordState"),
            ("Workflow", json!({"Status": "OPEN"}), "Workflow.Status"),
            ("Network", json!({"SourceIpV4": "2001:db8::1"}), "Network.SourceIpV4"),
            ("ProductFields", json!({"padding": "p".repeat(2048), "more": "m".repeat(250 * 1024)}), "over 240 KB"),
        ];
        for (field, value, expected) in cases {
            let mut finding = valid();
            if value.is_null() {
                finding.as_object_mut().expect("object").remove(field);
            } else {
                finding[field] = value;
            }
            let found = violations(&finding, &IMPORTER);
            assert!(found.iter().any(|v| v.contains(expected)), "{field}: want {expected:?} in {found:?}");
        }
    }

    /// Every alert the built-in rules raise on their own labelled examples, rendered as ASFF for
    /// an importer, is a finding Security Hub takes — and names that importer, not the member.
    #[tokio::test]
    async fn every_builtin_rules_alerts_render_to_findings_security_hub_accepts() {
        let rules = crate::pack::builtin().expect("built-in rules");
        let ctx = RenderContext { account: Some(IMPORTER.account.into()), region: Some(IMPORTER.region.into()) };
        let mut rules_alerting = 0;
        let mut findings = 0;
        for rule in &rules {
            let mut alerts = Vec::new();
            for test in rule.tests.iter().filter(|t| t.expect == Expect::Alert) {
                let table = test.table.as_deref().and_then(LogTable::from_name).unwrap_or(rule.tables[0]);
                let mut content = raw_object(table, &test.events).expect("raw object");
                let key = format!("rule-tests/{}/asff", rule.id);
                let object = ObjectContext { bucket: "", key: &key, key_date: None };
                let parsed = parse_content(table, &mut content, &object).expect("parses");
                let raised = run_example(rule, table, vec![parsed.batch], test.regions.as_ref(), test.org.as_ref())
                    .await
                    .expect("runs");
                alerts.extend(raised);
            }
            assert!(!alerts.is_empty(), "{}: no labelled example raised an alert to check", rule.id);
            rules_alerting += 1;
            for alert in &alerts {
                let finding = render(alert, Format::Asff, &ctx);
                let found = violations(&finding, &IMPORTER);
                assert!(found.is_empty(), "{}: {found:#?}\n{finding:#}", rule.id);
                if let Some(member) = alert.account.as_deref().filter(|a| is_account(a)) {
                    assert_eq!(finding["AwsAccountId"], member, "{}", rule.id);
                }
                findings += 1;
            }
        }
        assert_eq!(rules_alerting, rules.len());
        assert!(rules.len() >= 30 && findings >= rules.len(), "{} rules, {findings} findings", rules.len());
    }
}
