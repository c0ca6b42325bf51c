//! The built-in rule pack, compiled into the binary from every `detect/rules/*.yaml`.
//!
//! The files are ordinary rule files — the same format a team writes its own rules in — so the pack
//! is also the reference for writing rules. Each carries its own labelled examples, which
//! `bunker rules test` (and this crate's tests) run through the real parser.

use crate::rule::Rule;
use crate::{Result, engine};

/// The pack's files, name and text, in name order: every `rules/*.yaml` (listed by `build.rs`).
pub const FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/pack_files.rs"));

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
