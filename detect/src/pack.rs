//! The built-in rule pack, compiled into the binary from `detect/rules/*.yaml`.
//!
//! The files are ordinary rule files — the same format a team writes its own rules in — so the pack
//! is also the reference for writing rules. Each carries its own labelled examples, which
//! `bunker rules test` (and this crate's tests) run through the real parser.

use crate::rule::Rule;
use crate::{Result, engine};

/// The pack's files: name and text.
pub const FILES: &[(&str, &str)] = &[
    ("access-denied-burst.yaml", include_str!("../rules/access-denied-burst.yaml")),
    ("account-protections-weakened.yaml", include_str!("../rules/account-protections-weakened.yaml")),
    ("cloudtrail-stop-logging.yaml", include_str!("../rules/cloudtrail-stop-logging.yaml")),
    ("cloudtrail-weakened.yaml", include_str!("../rules/cloudtrail-weakened.yaml")),
    ("cloudwatch-logs-deleted.yaml", include_str!("../rules/cloudwatch-logs-deleted.yaml")),
    ("console-login-without-mfa.yaml", include_str!("../rules/console-login-without-mfa.yaml")),
    ("dns-crypto-mining-pool.yaml", include_str!("../rules/dns-crypto-mining-pool.yaml")),
    ("dns-many-subdomains.yaml", include_str!("../rules/dns-many-subdomains.yaml")),
    ("dns-nxdomain-burst.yaml", include_str!("../rules/dns-nxdomain-burst.yaml")),
    ("dns-tunnelling-long-names.yaml", include_str!("../rules/dns-tunnelling-long-names.yaml")),
    ("ec2-snapshot-or-image-public.yaml", include_str!("../rules/ec2-snapshot-or-image-public.yaml")),
    ("enable-region.yaml", include_str!("../rules/enable-region.yaml")),
    (
        "flow-admin-port-accepted-from-internet.yaml",
        include_str!("../rules/flow-admin-port-accepted-from-internet.yaml"),
    ),
    ("flow-large-egress.yaml", include_str!("../rules/flow-large-egress.yaml")),
    ("flow-port-scan.yaml", include_str!("../rules/flow-port-scan.yaml")),
    ("iam-admin-policy-attached.yaml", include_str!("../rules/iam-admin-policy-attached.yaml")),
    ("iam-credentials-created.yaml", include_str!("../rules/iam-credentials-created.yaml")),
    ("iam-mfa-removed.yaml", include_str!("../rules/iam-mfa-removed.yaml")),
    ("iam-role-trust-opened.yaml", include_str!("../rules/iam-role-trust-opened.yaml")),
    ("kms-key-deletion.yaml", include_str!("../rules/kms-key-deletion.yaml")),
    ("network-logging-deleted.yaml", include_str!("../rules/network-logging-deleted.yaml")),
    ("organizations-guardrails-removed.yaml", include_str!("../rules/organizations-guardrails-removed.yaml")),
    ("region-first-use.yaml", include_str!("../rules/region-first-use.yaml")),
    ("region-not-allowed.yaml", include_str!("../rules/region-not-allowed.yaml")),
    ("root-access-key-created.yaml", include_str!("../rules/root-access-key-created.yaml")),
    ("root-api-call.yaml", include_str!("../rules/root-api-call.yaml")),
    ("root-console-login-failures.yaml", include_str!("../rules/root-console-login-failures.yaml")),
    ("root-console-login.yaml", include_str!("../rules/root-console-login.yaml")),
    ("s3-bucket-protections-removed.yaml", include_str!("../rules/s3-bucket-protections-removed.yaml")),
    ("s3-public-access.yaml", include_str!("../rules/s3-public-access.yaml")),
    ("security-group-open-admin-ports.yaml", include_str!("../rules/security-group-open-admin-ports.yaml")),
    ("security-services-disabled.yaml", include_str!("../rules/security-services-disabled.yaml")),
];

/// The built-in rules, parsed (their SQL is not yet planned: see [`builtin_validated`]).
pub fn builtin() -> Result<Vec<Rule>> {
    FILES.iter().map(|(name, text)| Rule::parse(&format!("builtin:{name}"), text)).collect()
}

/// The built-in rules, parsed and planned against the table schemas.
pub async fn builtin_validated() -> Result<Vec<Rule>> {
    let rules = builtin()?;
    engine::validate(&rules).await?;
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Expect, Mode};
    use crate::testing::run_tests;

    #[tokio::test]
    async fn every_builtin_rule_plans_and_passes_its_examples() {
        let rules = builtin_validated().await.expect("the built-in pack is valid");
        let outcomes = run_tests(&rules).await.expect("rule tests run");
        let failures: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| format!("{} / {}: {}", o.rule_id, o.name, o.message))
            .collect();
        assert!(failures.is_empty(), "failing rule examples:\n{}", failures.join("\n"));
    }

    #[test]
    fn every_builtin_rule_has_a_positive_and_a_negative_example() {
        for rule in builtin().expect("pack") {
            assert!(rule.tests.iter().any(|t| t.expect == Expect::Alert), "{} has no positive example", rule.id);
            assert!(rule.tests.iter().any(|t| t.expect == Expect::None), "{} has no negative example", rule.id);
            assert!(!rule.mitre.is_empty(), "{} names no MITRE technique", rule.id);
            if rule.mode == Mode::Window {
                assert!(rule.schedule.is_some() && rule.lookback.is_some(), "{}", rule.id);
            }
        }
    }
}
