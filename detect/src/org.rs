//! What rules know of the organization beyond its regions: the accounts outside the lake that it
//! trusts, and the EC2 instance types it runs that would otherwise look like a miner's.
//!
//! It is the `[detect.org]` section of `bunker.toml`:
//!
//! ```toml
//! [detect.org]
//! trusted_accounts = ["444455556666"]   # a partner or vendor the organization shares with
//! instance_types = ["p4d.24xlarge"]     # GPU types the ML team launches
//! ```
//!
//! Rules see it as two relations, registered next to the region relations in every session a rule
//! runs in:
//! - `known_accounts(account)`: the trusted accounts and every account the lake has seen
//!   deliver logs (the accounts of `region_baseline`). A snapshot shared with, or a role trusting,
//!   an account outside it is shared with a stranger. That needs no configuration for the
//!   organization's own accounts, because the archive already names them; an account of the
//!   organization that sends no logs to this archive belongs in `trusted_accounts`.
//! - `expected_instance_types(instance_type)`: the configured types, which the unusual-instance
//!   rule does not report.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bunker_schemas::baseline;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use serde::Deserialize;

use crate::{DetectError, Result};

/// Name of the relation of accounts that belong to, or are trusted by, the organization.
pub const KNOWN_ACCOUNTS: &str = "known_accounts";
/// Name of the relation of instance types the organization expects to launch.
pub const EXPECTED_INSTANCE_TYPES: &str = "expected_instance_types";
/// The configured relation behind `known_accounts`.
const TRUSTED_ACCOUNTS: &str = "org_trusted_accounts";

/// The `[detect.org]` section of the configuration file (also a rule test's `org`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrgConfig {
    /// Accounts outside the archive that may be shared with or trusted.
    #[serde(default)]
    pub trusted_accounts: Vec<String>,
    /// Instance types that are expected, however unusual they look.
    #[serde(default)]
    pub instance_types: Vec<String>,
}

/// The organization configuration, checked and ready to register.
#[derive(Debug, Clone, Default)]
pub struct Org {
    trusted_accounts: Vec<String>,
    instance_types: Vec<String>,
}

impl Org {
    /// Checks account ids and instance type names.
    pub fn new(config: &OrgConfig) -> Result<Org> {
        let bad = |reason: String| DetectError::Rule { origin: "[detect.org] in the configuration".into(), reason };
        for account in &config.trusted_accounts {
            if !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
                return Err(bad(format!("trusted_accounts: {account:?} is not a 12-digit account id")));
            }
        }
        for kind in &config.instance_types {
            let valid = kind.split_once('.').is_some_and(|(family, size)| {
                !family.is_empty()
                    && !size.is_empty()
                    && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            });
            if !valid {
                return Err(bad(format!("instance_types: {kind:?} is not an instance type like p4d.24xlarge")));
            }
        }
        Ok(Org { trusted_accounts: config.trusted_accounts.clone(), instance_types: config.instance_types.clone() })
    }

    /// Registers `known_accounts` and `expected_instance_types` in a session that already has
    /// `region_baseline`.
    pub async fn register(&self, ctx: &SessionContext) -> Result<()> {
        ctx.register_table(TRUSTED_ACCOUNTS, one_column("account", &self.trusted_accounts)?)?;
        ctx.register_table(EXPECTED_INSTANCE_TYPES, one_column("instance_type", &self.instance_types)?)?;
        let view = ctx
            .sql(&format!(
                "SELECT account FROM {TRUSTED_ACCOUNTS} UNION SELECT DISTINCT account FROM {}",
                baseline::VIEW_NAME
            ))
            .await?
            .into_view();
        ctx.register_table(KNOWN_ACCOUNTS, view)?;
        Ok(())
    }
}

fn one_column(name: &str, values: &[String]) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
    let column = values.iter().map(|v| Some(v.as_str())).collect::<StringArray>();
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)])?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn known_accounts_are_the_trusted_ones_and_those_the_lake_has_seen() {
        let org = Org::new(&OrgConfig { trusted_accounts: vec!["444455556666".into()], ..OrgConfig::default() })
            .expect("valid");
        let ctx = SessionContext::new();
        let sightings = "SELECT * FROM (VALUES ('111122223333', 'us-east-1'), ('111122223333', 'eu-west-1')) \
                         AS t(account, region)";
        ctx.register_table(baseline::VIEW_NAME, ctx.sql(sightings).await.expect("values").into_view()).expect("view");
        org.register(&ctx).await.expect("register");
        let rows = ctx
            .sql("SELECT account FROM known_accounts ORDER BY account")
            .await
            .expect("sql")
            .collect()
            .await
            .expect("rows");
        let pretty = arrow::util::pretty::pretty_format_batches(&rows).expect("format").to_string();
        assert_eq!(pretty.matches("111122223333").count(), 1, "{pretty}");
        assert!(pretty.contains("444455556666"), "{pretty}");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (OrgConfig { trusted_accounts: vec!["4444".into()], ..OrgConfig::default() }, "12-digit"),
            (OrgConfig { instance_types: vec!["GPU".into()], ..OrgConfig::default() }, "instance type"),
        ];
        for (config, expected) in cases {
            let error = Org::new(&config).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(toml::from_str::<OrgConfig>("trusted = []").is_err(), "unknown keys are refused");
    }
}
