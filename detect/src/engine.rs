//! Running rules: planning them against the table schemas (validation), over batches of new rows
//! (row rules, as the worker commits), over a look-back of the lake (window rules on a schedule) and
//! over a date range of it (`bunker detect`).
//!
//! A rule's SQL names the tables as they are (`FROM cloudtrail`); what those names hold is decided
//! here — the batch just committed, or the lake restricted to the days asked for — so the same SQL
//! runs live and over history.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use bunker_query::LakeSession;
use bunker_schemas::{LogTable, baseline, ingest_log};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::logical_expr::LogicalPlan;

use crate::alert::{Alert, NothingRecorded, RecordedAlerts, alerts_from_rows_with, is_string_or_list};
use crate::regions::Regions;
use crate::rows::RowRunner;
use crate::rule::Rule;
use crate::shared::SharedRead;
use crate::{DetectError, Result};

/// A session where every table exists with its schema and holds nothing — enough to plan — with
/// the region relations: `baseline` as `region_baseline` (empty if `None`) and `regions`.
pub(crate) async fn empty_session(regions: &Regions, baseline: Option<RecordBatch>) -> Result<SessionContext> {
    let ctx = rule_session()?;
    for table in LogTable::ALL {
        ctx.register_table(table.name(), Arc::new(MemTable::try_new(table.schema(), vec![vec![]])?))?;
    }
    let rows = baseline.into_iter().collect();
    ctx.register_table(baseline::VIEW_NAME, Arc::new(MemTable::try_new(baseline::view_schema(), vec![rows])?))?;
    regions.register(&ctx).await?;
    Ok(ctx)
}

/// A session with the functions an analyst has (JSON, IP/CIDR), so a query from `bunker sql` can
/// become a rule unchanged, and the memory limit every bunker session has.
fn rule_session() -> Result<SessionContext> {
    // The memory limit of every bunker session: a rule over all of history spills, not dies.
    let mut ctx = SessionContext::new_with_config_rt(bunker_query::lake_config(), bunker_query::memory::runtime()?);
    bunker_query::udf::register(&mut ctx)?;
    Ok(ctx)
}

/// The options every rule's SQL is planned under: it reads, never writes.
pub(crate) fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// Checks that each rule's SQL plans against the table schemas, returns `event_time` as a
/// timestamp, returns its dedup key columns, and gives evidence columns usable types.
pub async fn validate(rules: &[Rule]) -> Result<()> {
    let ctx = empty_session(&Regions::default(), None).await?;
    let mut seen = std::collections::HashSet::new();
    for rule in rules {
        let bad = |reason: String| DetectError::Rule { origin: rule.origin.clone(), reason };
        if !seen.insert(rule.id.clone()) {
            return Err(bad(format!("another rule already has the id {:?}", rule.id)));
        }
        crate::materialize::check(rule)?;
        let frame = ctx.sql_with_options(&rule.sql, read_only()).await.map_err(|e| bad(format!("sql: {e}")))?;
        // The tables a rule lists decide when it runs (a row rule on the commits of its table, a
        // window rule over what was committed to its tables): its SQL must read no other.
        for read in tables_read(frame.logical_plan())? {
            if !rule.tables.contains(&read) {
                let listed: Vec<&str> = rule.tables.iter().map(|t| t.name()).collect();
                let advice = match rule.mode {
                    crate::rule::Mode::Row => {
                        "; a row rule runs on the rows of one table's commit, so one reading two tables \
                         must be `mode: window`"
                    }
                    crate::rule::Mode::Window => "",
                };
                return Err(bad(format!(
                    "the sql reads {}, which tables ({}) does not list{advice}",
                    read.name(),
                    listed.join(", ")
                )));
            }
        }
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let column = |name: &str| schema.field_with_name(name).ok().map(|f| f.data_type().clone());
        match column("event_time") {
            Some(DataType::Timestamp(_, _)) => {}
            Some(other) => return Err(bad(format!("event_time must be a timestamp, not {other}"))),
            None => return Err(bad("the sql must return an event_time column (the time of the match)".into())),
        }
        for key in &rule.dedup.key {
            if column(key).is_none() {
                return Err(bad(format!("dedup key {key:?} is not a column the sql returns")));
            }
        }
        for name in ["account", "region", "principal", "source_ip", "event_id", "source_key"] {
            if let Some(data_type) = column(name)
                && !matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            {
                return Err(bad(format!("{name} must be text, not {data_type}")));
            }
        }
        for name in ["event_ids", "source_keys"] {
            if let Some(data_type) = column(name)
                && !is_string_or_list(&data_type)
            {
                return Err(bad(format!("{name} must be a list of text, not {data_type}")));
            }
        }
    }
    Ok(())
}

/// The log tables a plan reads, subqueries included.
fn tables_read(plan: &LogicalPlan) -> Result<Vec<LogTable>> {
    let mut read = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(table) = LogTable::from_name(scan.table_name.table())
            && !read.contains(&table)
        {
            read.push(table);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(read)
}

/// Runs rules in a session whose tables are already what they should see. The CloudTrail rules
/// that look only at rare rows (named calls, failed calls, the root user) share one read of
/// `cloudtrail` ([`SharedRead`]).
pub async fn run_rules(ctx: &SessionContext, rules: &[&Rule]) -> Result<Vec<Alert>> {
    run_rules_with(ctx, rules, &NothingRecorded).await
}

/// [`run_rules`], the matches joining the alerts already `recorded` they fit in.
pub async fn run_rules_with(
    ctx: &SessionContext,
    rules: &[&Rule],
    recorded: &(dyn RecordedAlerts + Sync),
) -> Result<Vec<Alert>> {
    let sharing = SharedRead::plan(rules, crate::shared::Scope::History).await?;
    let shared = match sharing.rules.is_empty() {
        true => None,
        false => sharing.session(ctx, crate::shared::MAX_SHARED_BYTES).await?,
    };
    let mut alerts = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let session = match &shared {
            Some(shared) if sharing.rules.contains(&index) => shared,
            _ => ctx,
        };
        let started = std::time::Instant::now();
        let batches = crate::materialize::collect(session, rule).await?;
        let found = alerts_from_rows_with(rule, &batches, recorded)?;
        let shared = !std::ptr::eq(session, ctx);
        tracing::debug!(rule = %rule.id, alerts = found.len(), ms = started.elapsed().as_millis(), shared, "rule ran");
        alerts.extend(found);
    }
    Ok(alerts)
}

/// The row rules of `rules` that read `table`.
pub fn row_rules(rules: &[Rule], table: LogTable) -> Vec<&Rule> {
    rules.iter().filter(|r| r.mode == crate::rule::Mode::Row && r.tables == [table]).collect()
}

/// Whether a rule reads the region baseline, itself or through a relation over it (so a row run
/// must be given it).
pub fn reads_baseline(rule: &Rule) -> bool {
    [baseline::VIEW_NAME, crate::regions::ACCOUNT_BASELINE, crate::org::KNOWN_ACCOUNTS]
        .iter()
        .any(|name| rule.sql.contains(name))
}

/// Runs the row rules that read `table` over freshly committed rows of it, planning them for
/// this one run (a detector keeps a [`RowRunner`] instead). `baseline` is the region baseline as
/// it is with these rows (see `bunker_ingest::baseline`).
pub async fn run_on_batches(
    rules: &[Rule],
    table: LogTable,
    batches: Vec<RecordBatch>,
    regions: &Regions,
    baseline: Option<RecordBatch>,
) -> Result<Vec<Alert>> {
    if row_rules(rules, table).is_empty() || batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    RowRunner::new(rules, table, regions).await?.run(batches, baseline).await
}

/// Runs every rule over the lake, seeing only the days from `since` to `until` (inclusive; open
/// ends when absent). Partition pruning on `date` keeps this to the files of those days.
pub async fn run_over_lake(
    lake: &LakeSession,
    rules: &[Rule],
    regions: &Regions,
    since: Option<NaiveDate>,
    until: Option<NaiveDate>,
) -> Result<Vec<Alert>> {
    let mut filters = Vec::new();
    if let Some(since) = since {
        filters.push(format!("date >= DATE '{since}'"));
    }
    if let Some(until) = until {
        filters.push(format!("date <= DATE '{until}'"));
    }
    let ctx = lake_views(lake, regions, |_| filters.clone()).await?;
    let all: Vec<&Rule> = rules.iter().collect();
    run_rules(&ctx, &all).await
}

/// Runs window rules over the events from `from` to `to` (on, when `to` is absent): the span a
/// scheduled run looks at. The date filter prunes partitions; the time filter keeps the span exact
/// inside its first and last days. Matches join the alerts already `recorded` they fit in.
pub async fn run_lookback(
    lake: &LakeSession,
    rules: &[&Rule],
    regions: &Regions,
    (from, to): (DateTime<Utc>, Option<DateTime<Utc>>),
    recorded: &(dyn RecordedAlerts + Sync),
) -> Result<Vec<Alert>> {
    let ctx = lake_views(lake, regions, |table| {
        let mut filters = vec![format!("date >= DATE '{}'", from.date_naive())];
        if let Some(table) = table {
            let column = table.time_column();
            filters.push(format!("{column} >= to_timestamp_micros({})", from.timestamp_micros()));
            if let Some(to) = to {
                filters.push(format!("date <= DATE '{}'", to.date_naive()));
                filters.push(format!("{column} <= to_timestamp_micros({})", to.timestamp_micros()));
            }
        }
        filters
    })
    .await?;
    run_rules_with(&ctx, rules, recorded).await
}

/// A session where each lake table is a view of the lake's table restricted by `filters_for` it
/// (`None` for `ingest_log`), so rules written against whole tables see only a span of time. The
/// region baseline is the whole of it: a first use is first against all of history.
async fn lake_views(
    lake: &LakeSession,
    regions: &Regions,
    filters_for: impl Fn(Option<LogTable>) -> Vec<String>,
) -> Result<SessionContext> {
    let ctx = rule_session()?;
    let names = LogTable::ALL.iter().map(|t| (t.name(), Some(*t))).chain([(ingest_log::TABLE_NAME, None)]);
    for (name, table) in names {
        let provider = lake.context().table_provider(name).await?;
        let raw = format!("__lake_{name}");
        ctx.register_table(raw.as_str(), provider)?;
        let filters = filters_for(table);
        let filter = if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) };
        ctx.sql(&format!("CREATE VIEW {name} AS SELECT * FROM {raw}{filter}")).await?;
    }
    ctx.register_table(baseline::TABLE_NAME, lake.context().table_provider(baseline::TABLE_NAME).await?)?;
    ctx.register_table(baseline::VIEW_NAME, ctx.sql(&baseline::earliest_sql()).await?.into_view())?;
    regions.register(&ctx).await?;
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(sql: &str, key: &str) -> Rule {
        let text = format!(
            "id: t\ntitle: T\ndescription: D\nseverity: low\ntables: [cloudtrail]\ndedup: {{ key: [{key}], window: 1h }}\nsql: \"{sql}\"\n"
        );
        Rule::parse("rules/t.yaml", &text).expect("rule file parses")
    }

    async fn error(sql: &str, key: &str) -> String {
        match validate(&[rule(sql, key)]).await {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{sql} should not validate"),
        }
    }

    #[tokio::test]
    async fn sql_is_planned_against_the_schemas() {
        let good = "SELECT eventtime AS event_time, recipientaccountid AS account FROM cloudtrail";
        validate(&[rule(good, "account")]).await.expect("valid");
        assert!(error("SELEC nonsense", "account").await.starts_with("rules/t.yaml: sql:"));
        let unknown = error("SELECT eventtime AS event_time, nosuchcolumn AS account FROM cloudtrail", "account").await;
        assert!(unknown.contains("nosuchcolumn"), "{unknown}");
        let no_time = error("SELECT recipientaccountid AS account FROM cloudtrail", "account").await;
        assert!(no_time.contains("event_time"), "{no_time}");
        let bad_key = error(good, "principal").await;
        assert!(bad_key.contains("dedup key \"principal\""), "{bad_key}");
        let bad_type = error("SELECT eventtime AS event_time, readonly AS account FROM cloudtrail", "account").await;
        assert!(bad_type.contains("account must be text"), "{bad_type}");
        let writes = error("DROP TABLE cloudtrail", "account").await;
        assert!(writes.contains("sql"), "{writes}");
        let joins = "SELECT c.eventtime AS event_time, c.recipientaccountid AS account FROM cloudtrail c \
                     WHERE c.sourceipaddress IN (SELECT srcaddr FROM dns)";
        let unlisted = error(joins, "account").await;
        assert!(unlisted.contains("the sql reads dns, which tables (cloudtrail) does not list"), "{unlisted}");
        assert!(unlisted.contains("must be `mode: window`"), "{unlisted}");
        let twice = validate(&[rule(good, "account"), rule(good, "account")]).await.expect_err("duplicate ids");
        assert!(twice.to_string().contains("already has the id"), "{twice}");
    }

    /// Rules have the analyst's functions: a query from `bunker sql` becomes a rule unchanged.
    #[tokio::test]
    async fn rules_can_use_the_json_and_address_functions() {
        let sql = "SELECT eventtime AS event_time, recipientaccountid AS account, \
                   json_extract_scalar(requestparameters, '$.bucketName') AS bucket FROM cloudtrail \
                   WHERE is_public_ip(sourceipaddress) AND NOT cidr_contains('198.51.100.0/24', sourceipaddress)";
        validate(&[rule(sql, "account")]).await.expect("the functions plan in a rule");
    }
}
