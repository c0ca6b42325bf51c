//! CTEs a window rule runs once: the rule file's `materialize: [name, …]`.
//!
//! DataFusion inlines a CTE at each place it is named, so a rule whose `reads` CTE over the lake
//! is referenced five times scans the lake five times (aws-secrets-bulk-retrieval over the
//! 10M-event lake: one scan 2.7 s, the rule 8.7 s). A CTE the rule lists under `materialize` is
//! run first, with the CTEs before it, and its rows are held in memory as a table that every
//! reference reads, the way `WITH … AS MATERIALIZED` works in PostgreSQL. It is for CTEs whose
//! rows are few next to what they read: what is held is held whole, within the session's memory
//! limit. Row rules run over one commit's rows, where this would gain nothing, so they cannot
//! ask for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{Query, Statement, With};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::engine::read_only;
use crate::rule::Rule;
use crate::{DetectError, Result};

/// Names the tables that hold materialized rows apart, across rules and runs.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The rule's statement, parsed; an error names the rule.
fn statement(rule: &Rule) -> Result<Box<Query>> {
    let bad = |reason: String| DetectError::Rule { origin: rule.origin.clone(), reason };
    let mut statements = Parser::parse_sql(&GenericDialect {}, &rule.sql).map_err(|e| bad(format!("sql: {e}")))?;
    match (statements.pop(), statements.is_empty()) {
        (Some(Statement::Query(query)), true) => Ok(query),
        _ => Err(bad("materialize needs the sql to be one query".into())),
    }
}

/// Checks that every name under `materialize` is a CTE of the rule's outermost `WITH`.
pub fn check(rule: &Rule) -> Result<()> {
    if rule.materialize.is_empty() {
        return Ok(());
    }
    let query = statement(rule)?;
    let ctes: Vec<String> =
        query.with.iter().flat_map(|w| &w.cte_tables).map(|c| c.alias.name.value.to_lowercase()).collect();
    for name in &rule.materialize {
        if !ctes.contains(&name.to_lowercase()) {
            return Err(DetectError::Rule {
                origin: rule.origin.clone(),
                reason: format!("materialize names {name:?}, which is not a CTE of the sql's outermost WITH"),
            });
        }
    }
    Ok(())
}

/// Runs `rule` in `ctx` and collects its rows, its `materialize` CTEs run once first.
pub async fn collect(ctx: &SessionContext, rule: &Rule) -> Result<Vec<RecordBatch>> {
    let sql_error = |e: datafusion::error::DataFusionError| DetectError::Rule {
        origin: rule.origin.clone(),
        reason: format!("sql: {e}"),
    };
    if rule.materialize.is_empty() {
        let frame = ctx.sql_with_options(&rule.sql, read_only()).await.map_err(sql_error)?;
        return Ok(frame.collect().await?);
    }
    let mut query = statement(rule)?;
    let mut held = Vec::new();
    let result = async {
        for name in &rule.materialize {
            let with = query.with.as_mut().expect("checked: the query has the CTE");
            let at = with
                .cte_tables
                .iter()
                .position(|c| c.alias.name.value.eq_ignore_ascii_case(name))
                .expect("checked: the query has the CTE");
            // The CTE's own query, with the CTEs it may read (those before it) in front.
            let mut own = (*with.cte_tables[at].query).clone();
            let mut before: Vec<_> = with.cte_tables[..at].to_vec();
            if let Some(inner) = own.with.take() {
                before.extend(inner.cte_tables);
            }
            if !before.is_empty() {
                own.with = Some(With { cte_tables: before, ..with.clone() });
            }
            let frame = ctx.sql_with_options(&own.to_string(), read_only()).await.map_err(sql_error)?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            let table = format!("__bunker_materialized_{}", NEXT.fetch_add(1, Ordering::Relaxed));
            ctx.register_table(table.as_str(), Arc::new(MemTable::try_new(schema, vec![batches])?))?;
            held.push(table.clone());
            let reading = Parser::parse_sql(&GenericDialect {}, &format!("SELECT * FROM {table}"))
                .map_err(|e| DetectError::Lake(format!("materialize: {e}")))?;
            let Some(Statement::Query(reading)) = reading.into_iter().next() else {
                unreachable!("a SELECT parses as a query");
            };
            with.cte_tables[at].query = reading;
        }
        let frame = ctx.sql_with_options(&query.to_string(), read_only()).await.map_err(sql_error)?;
        Ok(frame.collect().await?)
    }
    .await;
    for table in held {
        ctx.deregister_table(table.as_str())?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(sql: &str, materialize: &str) -> Rule {
        let text = format!(
            "id: t\ntitle: T\ndescription: D\nseverity: low\ntables: [cloudtrail]\nmode: window\nschedule: 5m\n\
             lookback: 1h\nmaterialize: [{materialize}]\ndedup: {{ key: [n], window: 1h }}\nsql: \"{sql}\"\n"
        );
        Rule::parse("rules/t.yaml", &text).expect("rule file parses")
    }

    /// A session with a table `base` of three rows.
    async fn session() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE base AS VALUES (1), (2), (3)").await.expect("table").collect().await.expect("create");
        ctx
    }

    #[tokio::test]
    async fn a_materialized_cte_gives_the_same_rows_and_is_gone_afterwards() {
        let ctx = session().await;
        let sql = "WITH a AS (SELECT column1 AS x FROM base), b AS (SELECT x * 10 AS y FROM a WHERE x > 1) \
                   SELECT count(*) AS n, sum(b1.y) AS s FROM b b1 JOIN b b2 ON b1.y = b2.y";
        let plain = collect(&ctx, &rule(sql, "")).await.expect("plain");
        for materialize in ["a", "b", "a, b"] {
            let held = collect(&ctx, &rule(sql, materialize)).await.expect("materialized");
            assert_eq!(
                arrow::util::pretty::pretty_format_batches(&held).expect("format").to_string(),
                arrow::util::pretty::pretty_format_batches(&plain).expect("format").to_string(),
                "{materialize}"
            );
        }
        let names = ctx.catalog("datafusion").expect("catalog").schema("public").expect("schema").table_names();
        assert!(!names.iter().any(|n| n.starts_with("__bunker_materialized")), "{names:?}");
    }

    #[test]
    fn a_name_that_is_no_cte_is_refused() {
        let err = check(&rule("WITH a AS (SELECT 1 AS n) SELECT n FROM a", "nope")).unwrap_err().to_string();
        assert!(err.contains("rules/t.yaml") && err.contains("\"nope\""), "{err}");
        assert!(check(&rule("WITH a AS (SELECT 1 AS n) SELECT n FROM a", "A")).is_ok());
    }
}
