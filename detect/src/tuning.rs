//! Tuning without editing rules: which rules run, which only count (shadow mode), and which
//! matches are expected and suppressed (trusted addresses, break-glass principals, lab accounts).
//!
//! It is the `[detect]` section of `bunker.toml`:
//!
//! ```toml
//! [detect]
//! rules = "/etc/bunker/rules"          # more rule files, next to the built-in pack
//! builtin = true                       # load the built-in pack (default)
//! disabled = ["root-api-call"]         # never run
//! shadow = ["dns-nxdomain-burst"]      # run and count, emit nothing
//!
//! [[detect.suppress]]
//! rule = "console-login-without-mfa"   # a rule id, or "*" for every rule
//! field = "source_ip"                  # principal, source_ip, account, region, or a rule output column
//! values = ["203.0.113.0/24"]          # CIDRs for addresses; `*` wildcards elsewhere
//! reason = "office egress"
//! ```
//!
//! The `[detect.regions]` subsection (allowed regions, learning period) is described in
//! [`crate::regions`].
//!
//! Names are checked against the loaded rules, so a typo in a rule id is an error at start-up, not
//! a suppression that silently never applies.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use crate::alert::Alert;
use crate::org::{Org, OrgConfig};
use crate::regions::{RegionConfig, Regions};
use crate::rule::Rule;
use crate::{DetectError, Result};

/// The `[detect]` section of the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// A directory of extra rule files.
    #[serde(default)]
    pub rules: Option<PathBuf>,
    /// Whether the built-in pack is loaded.
    #[serde(default = "yes")]
    pub builtin: bool,
    /// Rule ids that never run.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Rule ids that run and are counted, but emit nothing.
    #[serde(default)]
    pub shadow: Vec<String>,
    /// Matches that are expected.
    #[serde(default)]
    pub suppress: Vec<Suppression>,
    /// The regions accounts may use (see [`crate::regions`]).
    #[serde(default)]
    pub regions: RegionConfig,
    /// Trusted accounts and expected instance types (see [`crate::org`]).
    #[serde(default)]
    pub org: OrgConfig,
}

fn yes() -> bool {
    true
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            rules: None,
            builtin: true,
            disabled: Vec::new(),
            shadow: Vec::new(),
            suppress: Vec::new(),
            regions: RegionConfig::default(),
            org: OrgConfig::default(),
        }
    }
}

/// One suppression: alerts of `rule` whose `field` matches one of `values` are dropped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// A rule id, or `*` for every rule.
    pub rule: String,
    /// `principal`, `source_ip`, `account`, `region`, or another output column of the rule.
    pub field: String,
    /// Values that suppress: CIDRs or addresses for `source_ip`, otherwise text where `*` matches
    /// any run of characters.
    pub values: Vec<String>,
    /// Why, for whoever reads the configuration next.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What tuning made of a set of alerts.
#[derive(Debug, Default)]
pub struct Triage {
    /// Alerts to record and send.
    pub emit: Vec<Alert>,
    /// Alerts of rules in shadow mode: counted only.
    pub shadow: Vec<Alert>,
    /// Alerts dropped by a suppression.
    pub suppressed: Vec<Alert>,
}

/// Tuning checked against the rules it names, ready to apply.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    regions: Regions,
    disabled: Vec<String>,
    shadow: Vec<String>,
    suppress: Vec<(Suppression, Vec<Matcher>)>,
}

#[derive(Debug, Clone)]
enum Matcher {
    Net(IpNet),
    Text(String),
}

impl Tuning {
    /// Checks the configuration against the loaded rules: every rule id it names must exist.
    pub fn new(config: &DetectConfig, rules: &[Rule]) -> Result<Tuning> {
        let bad = |reason: String| DetectError::Rule { origin: "[detect] in the configuration".into(), reason };
        let known = |id: &str| rules.iter().any(|r| r.id == id);
        for id in config.disabled.iter().chain(&config.shadow) {
            if !known(id) {
                return Err(bad(format!("no rule has the id {id:?} (see `bunker rules list`)")));
            }
        }
        let mut suppress = Vec::new();
        for s in &config.suppress {
            if s.rule != "*" && !known(&s.rule) {
                return Err(bad(format!("suppression for unknown rule {:?}", s.rule)));
            }
            if s.values.is_empty() {
                return Err(bad(format!("suppression for {:?} on {:?} lists no values", s.rule, s.field)));
            }
            let matchers = s
                .values
                .iter()
                .map(|v| {
                    if s.field == "source_ip" {
                        parse_net(v).map(Matcher::Net).ok_or_else(|| {
                            bad(format!("suppression for {:?}: {v:?} is not an IP address or CIDR", s.rule))
                        })
                    } else {
                        Ok(Matcher::Text(v.clone()))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            suppress.push((s.clone(), matchers));
        }
        Ok(Tuning {
            regions: Regions::new(&config.regions)?.with_org(Org::new(&config.org)?),
            disabled: config.disabled.clone(),
            shadow: config.shadow.clone(),
            suppress,
        })
    }

    /// The allowed regions and the learning period the region rules compare with.
    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    /// The rules that run: all but the disabled ones.
    pub fn enabled(&self, rules: Vec<Rule>) -> Vec<Rule> {
        rules.into_iter().filter(|r| !self.disabled.contains(&r.id)).collect()
    }

    /// Sorts alerts into emitted, shadowed and suppressed, counting each in the metrics.
    pub fn triage(&self, alerts: Vec<Alert>) -> Triage {
        let mut triage = Triage::default();
        for alert in alerts {
            if self.suppressed(&alert) {
                metrics::counter!("bunker_alerts_suppressed_total", "rule" => alert.rule_id.clone()).increment(1);
                triage.suppressed.push(alert);
            } else if self.shadow.contains(&alert.rule_id) {
                metrics::counter!("bunker_alerts_shadow_total", "rule" => alert.rule_id.clone()).increment(1);
                triage.shadow.push(alert);
            } else {
                triage.emit.push(alert);
            }
        }
        triage
    }

    fn suppressed(&self, alert: &Alert) -> bool {
        self.suppress.iter().any(|(s, matchers)| {
            if s.rule != "*" && s.rule != alert.rule_id {
                return false;
            }
            let Some(value) = evidence(alert, &s.field) else { return false };
            matchers.iter().any(|m| match m {
                Matcher::Net(net) => value.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
                Matcher::Text(pattern) => wildcard(pattern, &value),
            })
        })
    }
}

/// The value of an evidence field or rule output column of an alert.
fn evidence(alert: &Alert, field: &str) -> Option<String> {
    match field {
        "principal" => alert.principal.clone(),
        "source_ip" => alert.source_ip.clone(),
        "account" => alert.account.clone(),
        "region" => alert.region.clone(),
        other => alert.details.get(other).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        }),
    }
}

/// An address or a CIDR.
fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (case-sensitive:
/// ARNs and ids are).
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Severity;

    fn rule(id: &str) -> Rule {
        let text = format!(
            "id: {id}\ntitle: T\ndescription: D\nseverity: low\ntables: [cloudtrail]\ndedup: {{ key: [account], window: 1h }}\nsql: SELECT 1\n"
        );
        Rule::parse("t.yaml", &text).expect("rule")
    }

    fn alert(rule_id: &str, ip: &str, principal: &str) -> Alert {
        Alert {
            id: format!("{rule_id}-{ip}"),
            rule_id: rule_id.into(),
            title: "T".into(),
            description: "D".into(),
            severity: Severity::Low,
            mitre: Vec::new(),
            dedup_key: rule_id.into(),
            first_seen: chrono::Utc::now(),
            last_seen: chrono::Utc::now(),
            count: 1,
            account: Some("111122223333".into()),
            region: Some("us-east-1".into()),
            principal: Some(principal.into()),
            source_ip: Some(ip.into()),
            event_ids: Vec::new(),
            source_keys: Vec::new(),
            details: [("bucket".to_owned(), serde_json::json!("logs-prod"))].into_iter().collect(),
        }
    }

    fn config(text: &str) -> DetectConfig {
        toml::from_str(text).expect("config parses")
    }

    #[test]
    fn suppressions_match_cidrs_wildcards_and_output_columns() {
        let rules = [rule("a"), rule("b")];
        let tuning = Tuning::new(
            &config(
                r#"
shadow = ["b"]
[[suppress]]
rule = "a"
field = "source_ip"
values = ["203.0.113.0/24", "2001:db8::1"]
[[suppress]]
rule = "*"
field = "principal"
values = ["arn:aws:iam::*:role/breakglass-*"]
[[suppress]]
rule = "a"
field = "bucket"
values = ["logs-*"]
"#,
            ),
            &rules,
        )
        .expect("tuning");
        let t = tuning.triage(vec![
            alert("a", "203.0.113.9", "arn:aws:iam::1:user/x"),
            alert("a", "2001:db8::1", "arn:aws:iam::1:user/x"),
            alert("c", "198.51.100.1", "arn:aws:iam::1:role/breakglass-eu"),
            alert("b", "198.51.100.1", "arn:aws:iam::1:user/x"),
            alert("c", "198.51.100.1", "arn:aws:iam::1:user/x"),
        ]);
        assert_eq!(t.suppressed.len(), 3, "{:?}", t.suppressed);
        assert_eq!(t.shadow.iter().map(|a| a.rule_id.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(t.emit.iter().map(|a| a.rule_id.as_str()).collect::<Vec<_>>(), ["c"]);
        // The output-column suppression only applies where the column has a matching value.
        let mut other = alert("a", "198.51.100.1", "arn:aws:iam::1:user/x");
        other.details.insert("bucket".into(), serde_json::json!("data"));
        assert_eq!(tuning.triage(vec![other]).emit.len(), 1);
    }

    #[test]
    fn disabled_rules_do_not_run_and_unknown_names_are_errors() {
        let rules = vec![rule("a"), rule("b")];
        let tuning = Tuning::new(&config("disabled = [\"a\"]"), &rules).expect("tuning");
        assert_eq!(tuning.enabled(rules.clone()).iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b"]);
        for (text, expected) in [
            ("disabled = [\"nope\"]", "\"nope\""),
            ("shadow = [\"typo\"]", "\"typo\""),
            ("[[suppress]]\nrule = \"x\"\nfield = \"account\"\nvalues = [\"1\"]", "unknown rule \"x\""),
            ("[[suppress]]\nrule = \"a\"\nfield = \"source_ip\"\nvalues = [\"not-an-ip\"]", "not an IP"),
            ("[[suppress]]\nrule = \"a\"\nfield = \"account\"\nvalues = []", "lists no values"),
        ] {
            let error = Tuning::new(&config(text), &rules).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let unknown_key = toml::from_str::<DetectConfig>("disable = [\"a\"]").expect_err("unknown key").to_string();
        assert!(unknown_key.contains("disable"), "{unknown_key}");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abc") && wildcard("a*c", "ac") && wildcard("*", "") && wildcard("x", "x"));
        assert!(!wildcard("a*c", "ab") && !wildcard("ab*ba", "aba") && !wildcard("x", "xy"));
        assert!(wildcard("*:role/*-admin", "arn:aws:iam::1:role/eu-admin"));
    }
}
