//! What the region rules compare activity with: the regions the organization allows (from
//! configuration) and how long an account must have been watched before its first use of a
//! region means anything.
//!
//! It is the `[detect.regions]` section of `bunker.toml`:
//!
//! ```toml
//! [detect.regions]
//! allowed = ["us-east-1", "eu-west-1"]     # every account may use these
//! learning = "7d"                          # first-use alerts start after a week of an account's history
//!
//! [detect.regions.accounts]
//! "111122223333" = ["ap-southeast-2"]      # and this account these too
//! ```
//!
//! Rules see it as two relations, registered in every session a rule runs in (live, over history,
//! in `bunker rules test`):
//! - `region_allowlist(account, region)`: one row per allowed pair, `account = '*'` for the
//!   organization-wide list. Without any list, nothing is "outside the allow-list".
//! - `account_baseline(account, first_seen, established)`: per account, its first event in the
//!   lake (from the `region_baseline` view, see [`bunker_schemas::baseline`]) and the moment the
//!   learning period after it ends. Before that, every region the account touches is new, and an
//!   alert for each would only be noise: a fresh lake must not flood its sinks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bunker_schemas::baseline;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use serde::Deserialize;

use crate::org::Org;
use crate::rule::parse_duration;
use crate::{DetectError, Result};

/// Name of the allow-list relation rules read.
pub const ALLOWLIST: &str = "region_allowlist";
/// Name of the per-account view rules read.
pub const ACCOUNT_BASELINE: &str = "account_baseline";
/// The learning period when the configuration does not set one.
pub const DEFAULT_LEARNING: Duration = Duration::from_secs(7 * 86_400);

/// The `[detect.regions]` section of the configuration file (also a rule test's `regions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Regions every account may use.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Regions particular accounts may use as well, by account id.
    #[serde(default)]
    pub accounts: BTreeMap<String, Vec<String>>,
    /// How much of an account's history the lake must hold before a region it uses for the first
    /// time is an alert (`7d`, `36h`…).
    #[serde(default)]
    pub learning: Option<String>,
}

/// The region configuration, checked and ready to register.
#[derive(Debug, Clone)]
pub struct Regions {
    allowed: Vec<(String, String)>,
    learning: Duration,
    /// What else the rules know of the organization; registered with the region relations,
    /// because it too is read beside `region_baseline`.
    org: Org,
}

impl Default for Regions {
    fn default() -> Self {
        Regions { allowed: Vec::new(), learning: DEFAULT_LEARNING, org: Org::default() }
    }
}

impl Regions {
    /// Checks region names, account ids and the learning period.
    pub fn new(config: &RegionConfig) -> Result<Regions> {
        let bad = |reason: String| DetectError::Rule { origin: "[detect.regions] in the configuration".into(), reason };
        let mut allowed = Vec::new();
        let lists = std::iter::once(("*", &config.allowed)).chain(config.accounts.iter().map(|(a, r)| (a.as_str(), r)));
        for (account, regions) in lists {
            if account != "*" && !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
                return Err(bad(format!("{account:?} is not a 12-digit account id")));
            }
            for region in regions {
                if !is_region_name(region) {
                    return Err(bad(format!("{region:?} is not a region name like us-east-1")));
                }
                allowed.push((account.to_owned(), region.clone()));
            }
        }
        let learning = match &config.learning {
            Some(text) => parse_duration(text).map_err(|e| bad(format!("learning: {e}")))?,
            None => DEFAULT_LEARNING,
        };
        Ok(Regions { allowed, learning, org: Org::default() })
    }

    /// These regions with `org` as what the rules know of the organization.
    pub fn with_org(self, org: Org) -> Regions {
        Regions { org, ..self }
    }

    /// The learning period.
    pub fn learning(&self) -> Duration {
        self.learning
    }

    /// Registers `region_allowlist` and `account_baseline` in a session that already has
    /// `region_baseline`, and the relations of [`crate::org`].
    pub async fn register(&self, ctx: &SessionContext) -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("account", DataType::Utf8, false),
            Field::new("region", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(self.allowed.iter().map(|(a, _)| Some(a.as_str())).collect::<StringArray>()),
                Arc::new(self.allowed.iter().map(|(_, r)| Some(r.as_str())).collect::<StringArray>()),
            ],
        )?;
        ctx.register_table(ALLOWLIST, Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))?;
        let seconds = self.learning.as_secs();
        let view = ctx
            .sql(&format!(
                "SELECT account, min(first_seen) AS first_seen, \
                        min(first_seen) + INTERVAL '{seconds} seconds' AS established \
                 FROM {} GROUP BY account",
                baseline::VIEW_NAME
            ))
            .await?
            .into_view();
        ctx.register_table(ACCOUNT_BASELINE, view)?;
        self.org.register(ctx).await
    }
}

/// `us-east-1`, `us-gov-west-1`, `ap-southeast-4`…: lowercase words and a number, dash-separated.
fn is_region_name(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> RegionConfig {
        toml::from_str(text).expect("region config parses")
    }

    #[tokio::test]
    async fn the_allowlist_and_the_learning_period_reach_sql() {
        let regions = Regions::new(&config(
            "allowed = [\"us-east-1\"]\nlearning = \"2d\"\n[accounts]\n\"111122223333\" = [\"us-gov-west-1\"]",
        ))
        .expect("valid");
        assert_eq!(regions.learning(), Duration::from_secs(2 * 86_400));
        let ctx = SessionContext::new();
        let sightings = "SELECT * FROM (VALUES ('111122223333', 'us-east-1', TIMESTAMP '2025-03-01T00:00:00Z'), \
                                               ('111122223333', 'eu-west-1', TIMESTAMP '2025-03-05T00:00:00Z')) \
                         AS t(account, region, first_seen)";
        ctx.register_table(baseline::VIEW_NAME, ctx.sql(sightings).await.expect("values").into_view()).expect("view");
        regions.register(&ctx).await.expect("register");
        let rows = ctx
            .sql("SELECT account || ' ' || region AS pair FROM region_allowlist ORDER BY pair")
            .await
            .expect("sql")
            .collect()
            .await
            .expect("rows");
        let pretty = arrow::util::pretty::pretty_format_batches(&rows).expect("format").to_string();
        assert!(pretty.contains("* us-east-1") && pretty.contains("111122223333 us-gov-west-1"), "{pretty}");
        let rows = ctx
            .sql("SELECT CAST(established AS VARCHAR) AS e FROM account_baseline")
            .await
            .expect("sql")
            .collect()
            .await
            .expect("rows");
        let pretty = arrow::util::pretty::pretty_format_batches(&rows).expect("format").to_string();
        assert!(pretty.contains("2025-03-03T00:00:00"), "{pretty}");
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("allowed = [\"US East\"]", "not a region name"),
            ("allowed = [\"us-east\"]", "not a region name"),
            ("[accounts]\n\"1234\" = [\"us-east-1\"]", "12-digit account id"),
            ("learning = \"soon\"", "learning"),
        ] {
            let error = Regions::new(&config(text)).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(toml::from_str::<RegionConfig>("allow = []").is_err(), "unknown keys are refused");
    }
}
