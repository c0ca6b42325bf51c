//! Finding renderers: an [`Alert`] as the JSON a receiver expects.
//!
//! One alert goes in, one `serde_json::Value` comes out, in one of four shapes ([`Format`]):
//! bunker's own ([`Format::Native`]), an OCSF 1.1 Detection Finding for data lakes and SIEMs
//! ([`Format::Ocsf`]), an AWS Security Finding Format finding for Security Hub's
//! `BatchImportFindings` ([`Format::Asff`]), or a Slack incoming-webhook message
//! ([`Format::Slack`]). Rendering does no I/O and always succeeds; it is deterministic, so the
//! same alert renders to the same bytes and receivers can deduplicate redeliveries.

use std::collections::BTreeSet;
use std::net::IpAddr;

use bunker_ingest::classify::{LogFormat, classify_key};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::alert::Alert;
use crate::rule::Severity;

/// The OCSF schema version the [`Format::Ocsf`] shape follows.
pub const OCSF_VERSION: &str = "1.1.0";
/// The ASFF schema version Security Hub accepts.
pub const ASFF_SCHEMA_VERSION: &str = "2018-10-08";

/// OCSF Detection Finding.
const OCSF_CLASS_UID: u32 = 2004;
/// OCSF Findings category.
const OCSF_CATEGORY_UID: u32 = 2;

// Security Hub rejects a whole finding when one field is over its limit, so the ASFF renderer
// truncates to these instead.
const ASFF_TITLE_CHARS: usize = 256;
const ASFF_DESCRIPTION_CHARS: usize = 1024;
const ASFF_ID_CHARS: usize = 512;
const ASFF_PRODUCT_FIELDS: usize = 50;
const ASFF_PRODUCT_FIELD_KEY_CHARS: usize = 128;
const ASFF_PRODUCT_FIELD_VALUE_CHARS: usize = 2048;
const ASFF_TYPES: usize = 50;

// Slack Block Kit limits.
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_FIELD_CHARS: usize = 2000;
const SLACK_SECTION_CHARS: usize = 3000;

/// The shape an alert is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The [`Alert`] serialized as it is.
    #[default]
    Native,
    /// An OCSF 1.1 Detection Finding (class 2004).
    Ocsf,
    /// An AWS Security Finding Format finding, ready for Security Hub `BatchImportFindings`.
    Asff,
    /// A Slack incoming-webhook message body.
    Slack,
}

impl Format {
    /// The lowercase name, as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Ocsf => "ocsf",
            Format::Asff => "asff",
            Format::Slack => "slack",
        }
    }
}

/// Where the findings are imported: what an alert alone does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderContext {
    /// The account that imports findings (the log-archive or security account). ASFF's
    /// `ProductArn` names it; it is also the `AwsAccountId` of alerts without a usable account.
    /// Without it, each finding's own account is taken to import it: [`crate::sink::Sinks`]
    /// always sets it for an `asff` sink.
    pub account: Option<String>,
    /// The region findings are imported into. ASFF's `ProductArn` names it; alerts without a
    /// region fall back to it.
    pub region: Option<String>,
}

/// Renders one alert in `format`.
pub fn render(alert: &Alert, format: Format, ctx: &RenderContext) -> Value {
    match format {
        // `Alert` holds only strings, numbers, times and JSON maps: serializing it cannot fail.
        Format::Native => serde_json::to_value(alert).unwrap_or(Value::Null),
        Format::Ocsf => ocsf(alert),
        Format::Asff => asff(alert, ctx),
        Format::Slack => slack(alert),
    }
}

fn ocsf(alert: &Alert) -> Value {
    // A finding seen once is new; one that has folded more matches is the same finding updated.
    let (activity_id, activity_name) = if alert.count <= 1 { (1, "Create") } else { (2, "Update") };
    let (severity_id, severity) = match alert.severity {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    };
    let first_seen = alert.first_seen.timestamp_millis();
    let last_seen = alert.last_seen.timestamp_millis();
    let attacks: Vec<Value> = alert.mitre.iter().map(|t| json!({ "technique": { "uid": t } })).collect();
    let related_events: Vec<Value> = alert.event_ids.iter().map(|id| json!({ "uid": id })).collect();

    let mut finding_info = Map::new();
    finding_info.insert("uid".into(), json!(alert.id));
    finding_info.insert("title".into(), json!(alert.title));
    finding_info.insert("desc".into(), json!(alert.description));
    finding_info.insert("types".into(), json!([alert.rule_id]));
    finding_info.insert("first_seen_time".into(), json!(first_seen));
    finding_info.insert("last_seen_time".into(), json!(last_seen));
    finding_info
        .insert("analytic".into(), json!({ "uid": alert.rule_id, "name": alert.title, "type_id": 1, "type": "Rule" }));
    if !attacks.is_empty() {
        finding_info.insert("attacks".into(), Value::Array(attacks));
    }
    let sources = data_sources(&alert.source_keys);
    if !sources.is_empty() {
        finding_info.insert("data_sources".into(), json!(sources));
    }
    if !related_events.is_empty() {
        finding_info.insert("related_events".into(), Value::Array(related_events));
    }

    let mut finding = Map::new();
    finding.insert("class_uid".into(), json!(OCSF_CLASS_UID));
    finding.insert("class_name".into(), json!("Detection Finding"));
    finding.insert("category_uid".into(), json!(OCSF_CATEGORY_UID));
    finding.insert("category_name".into(), json!("Findings"));
    finding.insert("activity_id".into(), json!(activity_id));
    finding.insert("activity_name".into(), json!(activity_name));
    finding.insert("type_uid".into(), json!(OCSF_CLASS_UID * 100 + activity_id));
    finding.insert("type_name".into(), json!(format!("Detection Finding: {activity_name}")));
    finding.insert("severity_id".into(), json!(severity_id));
    finding.insert("severity".into(), json!(severity));
    finding.insert("status_id".into(), json!(1));
    finding.insert("status".into(), json!("New"));
    finding.insert("time".into(), json!(last_seen));
    finding.insert("start_time".into(), json!(first_seen));
    finding.insert("end_time".into(), json!(last_seen));
    finding.insert("count".into(), json!(alert.count));
    finding.insert("message".into(), json!(alert.title));
    finding.insert("finding_info".into(), Value::Object(finding_info));
    finding.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "product": { "name": "bunker", "vendor_name": "bunker", "version": env!("CARGO_PKG_VERSION") },
        }),
    );
    let mut cloud = Map::new();
    cloud.insert("provider".into(), json!("AWS"));
    if let Some(account) = &alert.account {
        cloud.insert("account".into(), json!({ "uid": account }));
    }
    if let Some(region) = &alert.region {
        cloud.insert("region".into(), json!(region));
    }
    finding.insert("cloud".into(), Value::Object(cloud));
    if let Some(principal) = &alert.principal {
        finding.insert("actor".into(), json!({ "user": { "uid": principal, "name": principal } }));
    }
    if let Some(ip) = &alert.source_ip {
        // CloudTrail's sourceIPAddress is sometimes a service name (`ec2.amazonaws.com`), not an IP.
        let endpoint = if ip.parse::<IpAddr>().is_ok() { json!({ "ip": ip }) } else { json!({ "domain": ip }) };
        finding.insert("src_endpoint".into(), endpoint);
    }
    if !alert.event_ids.is_empty() || !alert.source_keys.is_empty() {
        finding.insert(
            "evidences".into(),
            json!([{ "data": { "event_ids": alert.event_ids, "source_keys": alert.source_keys } }]),
        );
    }
    let mut unmapped = alert.details.clone();
    unmapped.insert("dedup_key".into(), json!(alert.dedup_key));
    finding.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(finding)
}

/// The logs the alert's evidence came from, named as the analyst knows them.
fn data_sources(source_keys: &[String]) -> Vec<&'static str> {
    let formats: BTreeSet<LogFormat> = source_keys.iter().filter_map(|key| classify_key(key).format).collect();
    formats
        .into_iter()
        .filter_map(|format| match format {
            LogFormat::CloudTrail => Some("AWS CloudTrail"),
            LogFormat::CloudTrailInsight => Some("AWS CloudTrail Insights"),
            LogFormat::VpcFlow => Some("Amazon VPC Flow Logs"),
            LogFormat::Dns => Some("Amazon Route 53 Resolver query logs"),
            LogFormat::CloudTrailDigest | LogFormat::Unknown => None,
        })
        .collect()
}

fn asff(alert: &Alert, ctx: &RenderContext) -> Value {
    let is_account = |s: &&String| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
    // The finding belongs to the account the activity happened in; the product (and the import)
    // to the account that runs bunker.
    let finding_account = alert
        .account
        .as_ref()
        .filter(is_account)
        .or(ctx.account.as_ref().filter(is_account))
        .or(alert.account.as_ref())
        .or(ctx.account.as_ref())
        .cloned()
        .unwrap_or_default();
    let import_account = ctx.account.clone().unwrap_or_else(|| finding_account.clone());
    let import_region = ctx.region.clone().or_else(|| alert.region.clone()).unwrap_or_else(|| "us-east-1".into());
    let resource_region = alert.region.clone().unwrap_or_else(|| import_region.clone());
    let partition = partition(&import_region);
    let severity = asff_label(alert.severity);
    let types = asff_types(&alert.mitre);
    let description = if alert.description.trim().is_empty() { &alert.title } else { &alert.description };

    let mut finding = Map::new();
    finding.insert("SchemaVersion".into(), json!(ASFF_SCHEMA_VERSION));
    finding.insert("Id".into(), json!(truncate(&alert.id, ASFF_ID_CHARS)));
    finding.insert(
        "ProductArn".into(),
        json!(format!("arn:{partition}:securityhub:{import_region}:{import_account}:product/{import_account}/default")),
    );
    finding.insert("ProductName".into(), json!("bunker"));
    finding.insert("CompanyName".into(), json!("bunker"));
    finding.insert("GeneratorId".into(), json!(truncate(&alert.rule_id, ASFF_ID_CHARS)));
    finding.insert("AwsAccountId".into(), json!(finding_account));
    finding.insert("Types".into(), json!(types));
    finding.insert("FirstObservedAt".into(), json!(asff_time(alert.first_seen)));
    finding.insert("LastObservedAt".into(), json!(asff_time(alert.last_seen)));
    // Derived from the evidence, not the clock, so a re-rendered alert is byte-identical and
    // Security Hub sees a redelivery as no change; a grown alert has a later last_seen.
    finding.insert("CreatedAt".into(), json!(asff_time(alert.first_seen)));
    finding.insert("UpdatedAt".into(), json!(asff_time(alert.last_seen)));
    finding.insert("Severity".into(), json!({ "Label": severity, "Original": alert.severity.name() }));
    finding.insert("Title".into(), json!(truncate(&alert.title, ASFF_TITLE_CHARS)));
    finding.insert("Description".into(), json!(truncate(description, ASFF_DESCRIPTION_CHARS)));
    finding.insert("Resources".into(), json!([asff_resource(alert, &finding_account, partition, &resource_region)]));
    finding.insert("ProductFields".into(), Value::Object(product_fields(alert)));
    if let Some(network) = alert.source_ip.as_deref().and_then(asff_network) {
        finding.insert("Network".into(), network);
    }
    finding.insert(
        "FindingProviderFields".into(),
        json!({ "Severity": { "Label": severity, "Original": alert.severity.name() }, "Types": types }),
    );
    finding.insert("Workflow".into(), json!({ "Status": "NEW" }));
    finding.insert("RecordState".into(), json!("ACTIVE"));
    Value::Object(finding)
}

fn asff_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn asff_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "INFORMATIONAL",
        Severity::Low => "LOW",
        Severity::Medium => "MEDIUM",
        Severity::High => "HIGH",
        Severity::Critical => "CRITICAL",
    }
}

/// The AWS partition a region belongs to.
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// ASFF finding types (`namespace/category/classifier`) for MITRE ATT&CK techniques: the
/// technique's primary tactic as the category, the technique id as the classifier.
fn asff_types(mitre: &[String]) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    for technique in mitre {
        let base = technique.split('.').next().unwrap_or(technique);
        let Some(kind) = asff_type_of(base) else { continue };
        let full = format!("{kind}/{technique}");
        if !types.contains(&full) && types.len() < ASFF_TYPES {
            types.push(full);
        }
    }
    if types.is_empty() {
        types.push("Unusual Behaviors/User".into());
    }
    types
}

/// The ASFF namespace and category for an ATT&CK technique (without sub-technique).
///
/// ASFF's TTP categories are ATT&CK's tactics without Exfiltration and Impact; those techniques
/// map to the `Effects` namespace. Techniques that serve several tactics take the one the built-in rules
/// mean by them.
fn asff_type_of(technique: &str) -> Option<&'static str> {
    Some(match technique {
        "T1078" | "T1133" | "T1190" | "T1199" => "TTPs/Initial Access",
        "T1059" | "T1648" | "T1651" => "TTPs/Execution",
        "T1098" | "T1136" | "T1546" => "TTPs/Persistence",
        "T1484" | "T1548" => "TTPs/Privilege Escalation",
        "T1070" | "T1535" | "T1562" | "T1578" | "T1666" | "T1550" => "TTPs/Defense Evasion",
        "T1110" | "T1528" | "T1552" | "T1556" | "T1606" => "TTPs/Credential Access",
        "T1046" | "T1069" | "T1082" | "T1087" | "T1526" | "T1538" | "T1580" | "T1619" => "TTPs/Discovery",
        "T1021" | "T1563" => "TTPs/Lateral Movement",
        "T1005" | "T1119" | "T1530" => "TTPs/Collection",
        "T1071" | "T1090" | "T1095" | "T1568" | "T1572" => "TTPs/Command and Control",
        // ASFF files exfiltration under Effects, not TTPs (Security Hub's own insight on data
        // exfiltration filters on `Effects/Data Exfiltration/`).
        "T1020" | "T1041" | "T1048" | "T1537" | "T1567" => "Effects/Data Exfiltration",
        "T1485" | "T1486" | "T1490" => "Effects/Data Destruction",
        "T1496" => "Effects/Resource Consumption",
        "T1498" | "T1499" => "Effects/Denial of Service",
        "T1531" => "Effects/Data Exposure",
        _ => return None,
    })
}

/// The resource the finding is about: the principal when there is one, else the account.
fn asff_resource(alert: &Alert, account: &str, partition: &str, region: &str) -> Value {
    let account_resource = || ("AwsAccount", format!("AWS::::Account:{account}"));
    let (kind, id) = match alert.principal.as_deref() {
        Some(arn) if arn.starts_with("arn:") => {
            let resource = arn.splitn(6, ':').nth(5).unwrap_or("");
            if resource == "root" {
                account_resource()
            } else if resource.starts_with("user/") {
                ("AwsIamUser", arn.to_owned())
            } else if resource.starts_with("role/") || resource.starts_with("assumed-role/") {
                ("AwsIamRole", arn.to_owned())
            } else {
                ("Other", arn.to_owned())
            }
        }
        Some(name) => ("Other", name.to_owned()),
        None => account_resource(),
    };
    json!({ "Type": kind, "Id": truncate(&id, ASFF_ID_CHARS), "Partition": partition, "Region": region })
}

fn asff_network(source_ip: &str) -> Option<Value> {
    match source_ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(json!({ "Direction": "IN", "SourceIpV4": source_ip })),
        IpAddr::V6(_) => Some(json!({ "Direction": "IN", "SourceIpV6": source_ip })),
    }
}

/// bunker's own fields, as ASFF's flat string map: at most 50 entries, bounded keys and values.
fn product_fields(alert: &Alert) -> Map<String, Value> {
    let mut fields: Vec<(String, String)> = vec![
        ("bunker/rule_id".into(), alert.rule_id.clone()),
        ("bunker/dedup_key".into(), alert.dedup_key.clone()),
        ("bunker/count".into(), alert.count.to_string()),
        ("bunker/severity".into(), alert.severity.name().into()),
    ];
    let mut optional = |key: &str, value: String| {
        if !value.is_empty() {
            fields.push((key.into(), value));
        }
    };
    optional("bunker/mitre", alert.mitre.join(","));
    optional("bunker/principal", alert.principal.clone().unwrap_or_default());
    optional("bunker/source_ip", alert.source_ip.clone().unwrap_or_default());
    optional("bunker/event_ids", joined_within(&alert.event_ids, ASFF_PRODUCT_FIELD_VALUE_CHARS));
    optional("bunker/source_keys", joined_within(&alert.source_keys, ASFF_PRODUCT_FIELD_VALUE_CHARS));
    for (key, value) in &alert.details {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        fields.push((format!("bunker/details/{key}"), text));
    }
    fields
        .into_iter()
        .take(ASFF_PRODUCT_FIELDS)
        .map(|(key, value)| {
            (
                truncate(&key, ASFF_PRODUCT_FIELD_KEY_CHARS),
                Value::String(truncate(&value, ASFF_PRODUCT_FIELD_VALUE_CHARS)),
            )
        })
        .collect()
}

/// As many whole items, comma-separated, as fit in `max_chars`, then how many were left out.
fn joined_within(items: &[String], max_chars: usize) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let left = items.len() - i;
        // Room for this item, its separator and a "(+N more)" note should more follow.
        let note_room = if left > 1 { format!(",(+{} more)", left - 1).len() } else { 0 };
        let needed = out.chars().count() + usize::from(!out.is_empty()) + item.chars().count() + note_room;
        if needed > max_chars {
            let note = format!("(+{left} more)");
            if out.is_empty() {
                return truncate(item, max_chars);
            }
            out.push(',');
            out.push_str(&note);
            return out;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

fn slack(alert: &Alert) -> Value {
    let severity = alert.severity.name().to_uppercase();
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    let field = |name: &str, value: &str| {
        let budget = SLACK_FIELD_CHARS - name.chars().count() - 3;
        json!({ "type": "mrkdwn", "text": format!("*{name}*\n{}", escape_slack(value, budget)) })
    };
    let mut summary = format!(
        "[{severity}] {}: account {}, principal {}",
        alert.title,
        or_dash(&alert.account),
        or_dash(&alert.principal)
    );
    if alert.count > 1 {
        summary.push_str(&format!(", {} matches", alert.count));
    }
    let mut description = alert.description.clone();
    if !alert.mitre.is_empty() {
        description.push_str(&format!("\nMITRE ATT&CK: {}", alert.mitre.join(", ")));
    }
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({
        "text": escape_slack(&summary, SLACK_SECTION_CHARS),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": escape_slack(&format!("{severity}: {}", alert.title), SLACK_HEADER_CHARS),
                },
            },
            {
                "type": "section",
                "text": { "type": "mrkdwn", "text": escape_slack(&description, SLACK_SECTION_CHARS) },
            },
            {
                "type": "section",
                "fields": [
                    field("Rule", &alert.rule_id),
                    field("Account", &or_dash(&alert.account)),
                    field("Region", &or_dash(&alert.region)),
                    field("Principal", &or_dash(&alert.principal)),
                    field("Source IP", &or_dash(&alert.source_ip)),
                    field("Count", &alert.count.to_string()),
                    field("First seen", &time(alert.first_seen)),
                    field("Last seen", &time(alert.last_seen)),
                ],
            },
            {
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": escape_slack(&format!("alert {}", alert.id), SLACK_FIELD_CHARS) }],
            },
        ],
    })
}

/// Slack treats `&`, `<` and `>` as markup (links, `<!channel>` mentions); text from the logs
/// must not trigger it. The escaped text is cut to `max_chars` without splitting an entity.
fn escape_slack(text: &str, max_chars: usize) -> String {
    let escaped = |c: char| match c {
        '&' => "&amp;".to_owned(),
        '<' => "&lt;".to_owned(),
        '>' => "&gt;".to_owned(),
        other => other.to_string(),
    };
    let pieces: Vec<String> = text.chars().map(escaped).collect();
    let total: usize = pieces.iter().map(|p| p.chars().count()).sum();
    if total <= max_chars {
        return pieces.concat();
    }
    let mut out = String::new();
    let mut used = 0;
    for piece in pieces {
        let len = piece.chars().count();
        if used + len > max_chars.saturating_sub(1) {
            break;
        }
        out.push_str(&piece);
        used += len;
    }
    out.push('…');
    out
}

/// At most `max_chars` characters, ending in `…` when cut.
fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Alert {
        let time = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
        let mut details = Map::new();
        details.insert("event_name".into(), json!("StopLogging"));
        details.insert("trail".into(), json!("arn:aws:cloudtrail:eu-west-1:111122223333:trail/org"));
        Alert {
            id: "4f1c0e8d2b7a4c6e9f0a1b2c3d4e5f60".into(),
            rule_id: "aws-cloudtrail-stop-logging".into(),
            title: "CloudTrail logging stopped".into(),
            description: "Someone stopped a trail; what happens next is not recorded.".into(),
            severity: Severity::Critical,
            mitre: vec!["T1562.008".into()],
            dedup_key: "aws-cloudtrail-stop-logging|account=111122223333".into(),
            first_seen: time("2025-03-03T10:05:00Z"),
            last_seen: time("2025-03-03T10:50:30Z"),
            count: 2,
            account: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
            principal: Some("arn:aws:iam::111122223333:user/mallory".into()),
            source_ip: Some("203.0.113.7".into()),
            event_ids: vec!["6e1f5a2c-0d1b-4e8a-9c3f-1a2b3c4d5e6f".into(), "7a2b6c3d-1e2f-4a5b-8c9d-0e1f2a3b4c5d".into()],
            source_keys: vec![
                "AWSLogs/111122223333/CloudTrail/eu-west-1/2025/03/03/111122223333_CloudTrail_eu-west-1_20250303T1005Z_a1b2.json.gz"
                    .into(),
            ],
            details,
        }
    }

    fn ctx() -> RenderContext {
        RenderContext { account: Some("999988887777".into()), region: Some("us-east-1".into()) }
    }

    #[test]
    fn native_is_the_alert_as_serialized() {
        let alert = sample();
        let value = render(&alert, Format::Native, &ctx());
        assert_eq!(value, serde_json::to_value(&alert).expect("json"));
        assert_eq!(value["severity"], "critical");
        assert_eq!(value["description"], alert.description);
        assert_eq!(value["first_seen"], "2025-03-03T10:05:00Z");
    }

    #[test]
    fn ocsf_is_a_detection_finding() {
        let value = render(&sample(), Format::Ocsf, &ctx());
        assert_eq!((value["class_uid"].as_u64(), value["category_uid"].as_u64()), (Some(2004), Some(2)));
        // count 2: the finding was updated.
        assert_eq!((value["activity_id"].as_u64(), value["type_uid"].as_u64()), (Some(2), Some(200402)));
        assert_eq!((value["severity_id"].as_u64(), value["severity"].as_str()), (Some(5), Some("Critical")));
        assert_eq!(value["time"], 1740999030000i64);
        assert_eq!(value["metadata"]["version"], OCSF_VERSION);
        assert_eq!(value["metadata"]["product"]["name"], "bunker");
        assert_eq!(value["metadata"]["product"]["version"], env!("CARGO_PKG_VERSION"));
        let info = &value["finding_info"];
        assert_eq!(info["uid"], "4f1c0e8d2b7a4c6e9f0a1b2c3d4e5f60");
        assert_eq!(info["first_seen_time"], 1740996300000i64);
        assert_eq!(
            info["analytic"],
            json!({"uid": "aws-cloudtrail-stop-logging", "name": "CloudTrail logging stopped", "type_id": 1, "type": "Rule"})
        );
        assert_eq!(info["attacks"], json!([{"technique": {"uid": "T1562.008"}}]));
        assert_eq!(info["data_sources"], json!(["AWS CloudTrail"]));
        assert_eq!(info["related_events"][1]["uid"], "7a2b6c3d-1e2f-4a5b-8c9d-0e1f2a3b4c5d");
        assert_eq!(
            value["cloud"],
            json!({"provider": "AWS", "account": {"uid": "111122223333"}, "region": "eu-west-1"})
        );
        assert_eq!(value["src_endpoint"], json!({"ip": "203.0.113.7"}));
        assert_eq!(value["actor"]["user"]["uid"], "arn:aws:iam::111122223333:user/mallory");
        assert_eq!(value["evidences"][0]["data"]["source_keys"].as_array().map(Vec::len), Some(1));
        assert_eq!(value["unmapped"]["event_name"], "StopLogging");

        let mut once = sample();
        once.count = 1;
        once.severity = Severity::Info;
        let value = render(&once, Format::Ocsf, &ctx());
        assert_eq!((value["activity_id"].as_u64(), value["type_uid"].as_u64()), (Some(1), Some(200401)));
        assert_eq!(value["severity_id"], 1);
    }

    #[test]
    fn ocsf_severity_ids_follow_the_severity_order() {
        let ids: Vec<u64> = [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical]
            .into_iter()
            .map(|severity| {
                let alert = Alert { severity, ..sample() };
                render(&alert, Format::Ocsf, &ctx())["severity_id"].as_u64().expect("severity_id")
            })
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn asff_has_every_required_field() {
        let value = render(&sample(), Format::Asff, &ctx());
        for field in [
            "SchemaVersion",
            "Id",
            "ProductArn",
            "GeneratorId",
            "AwsAccountId",
            "Types",
            "CreatedAt",
            "UpdatedAt",
            "Severity",
            "Title",
            "Description",
            "Resources",
        ] {
            assert!(!value[field].is_null(), "{field} missing in {value:#}");
        }
        assert_eq!(value["SchemaVersion"], "2018-10-08");
        assert_eq!(value["ProductArn"], "arn:aws:securityhub:us-east-1:999988887777:product/999988887777/default");
        assert_eq!(value["AwsAccountId"], "111122223333");
        assert_eq!(value["GeneratorId"], "aws-cloudtrail-stop-logging");
        assert_eq!(value["Types"], json!(["TTPs/Defense Evasion/T1562.008"]));
        assert_eq!(value["FirstObservedAt"], "2025-03-03T10:05:00.000Z");
        assert_eq!(value["UpdatedAt"], "2025-03-03T10:50:30.000Z");
        assert_eq!(value["Severity"], json!({"Label": "CRITICAL", "Original": "critical"}));
        assert_eq!(
            value["Resources"],
            json!([{"Type": "AwsIamUser", "Id": "arn:aws:iam::111122223333:user/mallory", "Partition": "aws", "Region": "eu-west-1"}])
        );
        assert_eq!(value["Network"], json!({"Direction": "IN", "SourceIpV4": "203.0.113.7"}));
        assert_eq!(value["ProductFields"]["bunker/count"], "2");
        assert_eq!(value["ProductFields"]["bunker/details/event_name"], "StopLogging");
        assert_eq!(value["FindingProviderFields"]["Severity"]["Label"], "CRITICAL");
        assert_eq!(value["RecordState"], "ACTIVE");
        assert_eq!(value["Workflow"]["Status"], "NEW");
    }

    #[test]
    fn asff_truncates_to_security_hub_limits() {
        let mut alert = sample();
        alert.title = "t".repeat(300);
        alert.description = "d".repeat(2000);
        alert.event_ids = (0..100).map(|i| format!("{i:04}-{}", "e".repeat(60))).collect();
        for i in 0..80 {
            alert.details.insert(format!("column_{i:02}"), json!("x".repeat(3000)));
        }
        let value = render(&alert, Format::Asff, &ctx());
        let chars = |v: &Value| v.as_str().expect("string").chars().count();
        assert_eq!(chars(&value["Title"]), 256);
        assert!(value["Title"].as_str().is_some_and(|t| t.ends_with('…')));
        assert_eq!(chars(&value["Description"]), 1024);
        let fields = value["ProductFields"].as_object().expect("fields");
        assert_eq!(fields.len(), 50);
        assert!(fields.iter().all(|(k, v)| k.chars().count() <= 128 && chars(v) <= 2048));
        let ids = fields["bunker/event_ids"].as_str().expect("ids");
        assert!(ids.ends_with("more)") && ids.chars().count() <= 2048, "{ids}");
        // The ids kept are whole ids.
        assert!(ids.split(',').rev().skip(1).all(|id| id.len() == 65), "{ids}");
    }

    #[test]
    fn asff_falls_back_on_the_context_and_types_without_mitre() {
        let mut alert = sample();
        alert.account = None;
        alert.region = None;
        alert.principal = None;
        alert.source_ip = Some("ec2.amazonaws.com".into());
        alert.mitre.clear();
        let value = render(&alert, Format::Asff, &ctx());
        assert_eq!(value["AwsAccountId"], "999988887777");
        assert_eq!(value["Types"], json!(["Unusual Behaviors/User"]));
        assert_eq!(value["Resources"][0]["Type"], "AwsAccount");
        assert_eq!(value["Resources"][0]["Id"], "AWS::::Account:999988887777");
        assert_eq!(value["Resources"][0]["Region"], "us-east-1");
        assert!(value.get("Network").is_none(), "a service name is not an IP: {value:#}");

        // No context: the alert's own account and region name the product.
        let value = render(&sample(), Format::Asff, &RenderContext::default());
        assert_eq!(value["ProductArn"], "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default");
    }

    #[test]
    fn slack_escapes_markup_from_the_logs() {
        let mut alert = sample();
        alert.title = "Login <script> & <!channel>".into();
        alert.principal = Some("<@U123>&friends".into());
        let value = render(&alert, Format::Slack, &ctx());
        let text = value["text"].as_str().expect("text");
        assert!(text.starts_with("[CRITICAL] Login &lt;script&gt; &amp; &lt;!channel&gt;"), "{text}");
        let body = value.to_string();
        assert!(!body.contains("<!channel>") && !body.contains("<@U123>") && !body.contains("<script>"), "{body}");
        assert_eq!(value["blocks"][0]["type"], "header");
        let fields = value["blocks"][2]["fields"].as_array().expect("fields");
        let field_texts: Vec<&str> = fields.iter().filter_map(|f| f["text"].as_str()).collect();
        assert_eq!(field_texts.len(), 8);
        assert!(field_texts.contains(&"*Principal*\n&lt;@U123&gt;&amp;friends"), "{field_texts:?}");
        assert!(field_texts.contains(&"*Source IP*\n203.0.113.7"));
        assert!(field_texts.contains(&"*Count*\n2"));
        assert!(field_texts.contains(&"*First seen*\n2025-03-03T10:05:00Z"));
    }

    #[test]
    fn slack_cuts_long_text_without_splitting_an_entity() {
        let mut alert = sample();
        alert.title = "&".repeat(200);
        let value = render(&alert, Format::Slack, &ctx());
        let header = value["blocks"][0]["text"]["text"].as_str().expect("header");
        assert!(header.chars().count() <= 150, "{header}");
        assert!(header.ends_with("&amp;…"), "{header}");
        assert_eq!(escape_slack("a<b", 10), "a&lt;b");
        assert_eq!(escape_slack("a<b", 4), "a…");
    }

    #[test]
    fn rendering_is_deterministic() {
        for format in [Format::Native, Format::Ocsf, Format::Asff, Format::Slack] {
            assert_eq!(render(&sample(), format, &ctx()), render(&sample(), format, &ctx()), "{format:?}");
        }
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(joined_within(&["a".into(), "b".into()], 100), "a,b");
    }
}
