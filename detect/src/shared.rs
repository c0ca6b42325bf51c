//! One read of `cloudtrail` for the rules that look for a few API calls.
//!
//! Most CloudTrail rules look for a handful of rare calls — `StopLogging`, `CreateUser`,
//! `PutBucketPolicy`. Run over history one after another, each of them decodes the columns it
//! reads (`requestparameters` among them) from every file of the days asked for, and that decoding
//! is nearly all of its cost: twenty such rules read the same columns twenty times. Here the rows
//! of all their event names are read once, into memory, and each of those rules runs over them.
//!
//! A rule takes part only when every read it makes of `cloudtrail` is limited to a known set of
//! event names — its pushed-down filters say `eventname = …` or `eventname IN (…)`, possibly
//! inside `AND`s and `OR`s — so it sees exactly the rows it would have seen over the whole table.
//! If the rows of those names turn out to be too many to hold, the rules run on their own after all.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::BatchCoalescer;
use arrow::datatypes::SchemaRef;
use bunker_schemas::LogTable;
use datafusion::catalog::{MemoryCatalogProviderList, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TableProviderFilterPushDown, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::TryStreamExt;

use crate::engine::read_only;
use crate::rule::Rule;
use crate::{DetectError, Result};

/// The most memory the shared rows may take; past it the rules read the table on their own.
pub(crate) const MAX_SHARED_BYTES: usize = 512 << 20;

/// Rows per batch of the shared rows.
const BATCH_ROWS: usize = 8192;

/// The column the rules' reads are limited by.
const EVENT_NAME: &str = "eventname";

/// What the rules that can share a read of `cloudtrail` need from it.
#[derive(Debug, Default)]
pub(crate) struct SharedRead {
    /// The rules that take part (indices into the rules given to [`SharedRead::plan`]).
    pub rules: BTreeSet<usize>,
    /// Every event name some of them look at.
    names: BTreeSet<String>,
    /// Every column some of them read.
    columns: BTreeSet<String>,
}

impl SharedRead {
    /// Finds which of `rules` can share one read of `cloudtrail`, by planning each against a table
    /// that takes every filter, so the plan shows what each read of it asks for. Fewer than two
    /// such rules share nothing.
    pub async fn plan(rules: &[&Rule]) -> Result<SharedRead> {
        let mut ctx = SessionContext::new();
        bunker_query::udf::register(&mut ctx)?;
        for table in LogTable::ALL {
            ctx.register_table(table.name(), Arc::new(Shape(table.schema())))?;
        }
        let mut shared = SharedRead::default();
        for (index, rule) in rules.iter().enumerate() {
            // Rules that name other relations (the region baseline, the allow-list) are not
            // planned here; they read the table on their own.
            let Ok(frame) = ctx.sql_with_options(&rule.sql, read_only()).await else { continue };
            let plan = frame.into_optimized_plan()?;
            if let Some((names, columns)) = reads_of_event_names(&plan)? {
                shared.rules.insert(index);
                shared.names.extend(names);
                shared.columns.extend(columns);
            }
        }
        if shared.rules.len() < 2 {
            return Ok(SharedRead::default());
        }
        Ok(shared)
    }

    /// A session like `ctx` whose `cloudtrail` holds only the rows of the names the rules look
    /// at (of the columns they read), read once from `ctx`'s `cloudtrail`; `None` when they would
    /// take more than `max_bytes`.
    pub async fn session(&self, ctx: &SessionContext, max_bytes: usize) -> Result<Option<SessionContext>> {
        let table = LogTable::CloudTrail.name();
        let names: Vec<Expr> = self.names.iter().map(|n| lit(n.as_str())).collect();
        let columns: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        let frame = ctx.table(table).await?.filter(col(EVENT_NAME).in_list(names, false))?.select_columns(&columns)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let started = std::time::Instant::now();
        let mut stream = frame.execute_stream().await?;
        // The scan's batches are the few rows left of big decoded pages, sharing their buffers:
        // copied into batches of their own, they hold (and count) only their rows.
        let mut coalescer = BatchCoalescer::new(schema.clone(), BATCH_ROWS);
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut bytes = 0;
        let mut done = false;
        while !done {
            match stream.try_next().await? {
                Some(batch) => coalescer.push_batch(batch)?,
                None => {
                    coalescer.finish_buffered_batch()?;
                    done = true;
                }
            }
            while let Some(batch) = coalescer.next_completed_batch() {
                bytes += batch.get_array_memory_size();
                batches.push(batch);
            }
            if bytes > max_bytes {
                tracing::debug!(bytes, "the rows of the rules' event names are too many to share");
                return Ok(None);
            }
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let ms = started.elapsed().as_millis();
        tracing::debug!(rows, bytes, ms, rules = self.rules.len(), "cloudtrail read once for its rules");
        let shared = SessionContext::new_with_state(copy_state(ctx));
        // Every other relation is the one `ctx` has: the lake's tables and views, the region
        // relations. Only `cloudtrail` is replaced.
        let catalog = ctx.catalog("datafusion").and_then(|c| c.schema("public"));
        let Some(schema_provider) = catalog else {
            return Err(DetectError::Lake("the rule session has no default schema".into()));
        };
        for name in schema_provider.table_names() {
            if name != table
                && let Some(provider) = schema_provider.table(&name).await?
            {
                shared.register_table(name.as_str(), provider)?;
            }
        }
        shared.register_table(table, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
        Ok(Some(shared))
    }
}

/// A session with `ctx`'s configuration, functions and runtime (so its memory limit) but a
/// catalog of its own.
fn copy_state(ctx: &SessionContext) -> datafusion::execution::SessionState {
    let state = ctx.state();
    // The configuration as it was, which asks for a default catalog: the new list gets its own.
    let config = state.config().clone();
    SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
        .build()
}

/// The event names and columns of every read of `cloudtrail` in `plan`, if each of those reads is
/// limited to a set of event names (and there is at least one).
fn reads_of_event_names(plan: &LogicalPlan) -> Result<Option<(BTreeSet<String>, BTreeSet<String>)>> {
    let mut names = BTreeSet::new();
    let mut columns = BTreeSet::new();
    let mut reads = 0;
    let mut limited = true;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == LogTable::CloudTrail.name()
        {
            reads += 1;
            match scan.filters.iter().filter_map(event_names).reduce(|a, b| &a & &b) {
                Some(found) => names.extend(found),
                None => limited = false,
            }
            let schema = scan.source.schema();
            match &scan.projection {
                Some(projection) => columns.extend(projection.iter().map(|&i| schema.field(i).name().clone())),
                None => columns.extend(schema.fields().iter().map(|f| f.name().clone())),
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok((limited && reads > 0).then_some((names, columns)))
}

/// The event names a row must have for `filter` to hold, if `filter` limits them to a set.
fn event_names(filter: &Expr) -> Option<BTreeSet<String>> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (column, value) = if is_event_name(left) { (left, right) } else { (right, left) };
            is_event_name(column).then(|| text(value)).flatten().map(|name| BTreeSet::from([name]))
        }
        Expr::InList(list) if !list.negated && is_event_name(&list.expr) => {
            list.list.iter().map(text).collect::<Option<BTreeSet<String>>>()
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            match (event_names(left), event_names(right)) {
                (Some(a), Some(b)) => Some(&a & &b),
                (a, b) => a.or(b),
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            Some(&event_names(left)? | &event_names(right)?)
        }
        _ => None,
    }
}

fn is_event_name(expr: &Expr) -> bool {
    match expr {
        Expr::Column(column) => column.name == EVENT_NAME,
        Expr::Cast(cast) => is_event_name(&cast.expr),
        _ => false,
    }
}

/// The text of a literal string (not null).
fn text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        Expr::Cast(cast) => text(&cast.expr),
        _ => None,
    }
}

/// A table with a schema and no rows that takes every filter, so a plan shows what a read of it
/// asks for.
#[derive(Debug)]
struct Shape(SchemaRef);

#[async_trait::async_trait]
impl TableProvider for Shape {
    fn schema(&self) -> SchemaRef {
        self.0.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(columns) => Arc::new(self.0.project(columns)?),
            None => self.0.clone(),
        };
        Ok(Arc::new(EmptyExec::new(schema)))
    }
}

#[cfg(test)]
mod tests {
    use bunker_ingest::ObjectContext;
    use bunker_ingest::pipeline::parse_content;

    use super::*;
    use crate::alert::Alert;
    use crate::engine::run_rules;
    use crate::regions::Regions;
    use crate::rule::Mode;

    fn rule(id: &str, sql: &str) -> Rule {
        let text = format!(
            "id: {id}\ntitle: T\ndescription: D\nseverity: low\ntables: [cloudtrail]\n\
             dedup: {{ key: [event_id], window: 1h }}\nsql: \"{sql}\"\n"
        );
        Rule::parse("rules/t.yaml", &text).expect("rule file parses")
    }

    async fn shared_ids(rules: &[Rule]) -> Vec<String> {
        let refs: Vec<&Rule> = rules.iter().collect();
        let sharing = SharedRead::plan(&refs).await.expect("planned");
        sharing.rules.iter().map(|&i| rules[i].id.clone()).collect()
    }

    #[tokio::test]
    async fn only_reads_limited_to_event_names_are_shared() {
        let select = "SELECT eventtime AS event_time, eventid AS event_id FROM cloudtrail";
        let rules = [
            rule("equal", &format!("{select} WHERE eventname = 'A' AND errorcode IS NULL")),
            rule(
                "listed",
                &format!("{select} WHERE (eventname IN ('B', 'C') AND eventsource = 's') OR eventname = 'D'"),
            ),
            rule("or-other", &format!("{select} WHERE eventname = 'E' OR errorcode = 'x'")),
            rule("negated", &format!("{select} WHERE eventname NOT IN ('F')")),
            rule("unfiltered", select),
            rule(
                "join-one-side",
                "SELECT a.eventtime AS event_time, a.eventid AS event_id FROM cloudtrail a \
                 JOIN cloudtrail b ON a.eventid = b.eventid WHERE a.eventname = 'G'",
            ),
            rule(
                "join-both-sides",
                "SELECT a.eventtime AS event_time, a.eventid AS event_id FROM cloudtrail a \
                 JOIN cloudtrail b ON a.eventid = b.eventid WHERE a.eventname = 'H' AND b.eventname = 'I'",
            ),
        ];
        assert_eq!(shared_ids(&rules).await, ["equal", "listed", "join-both-sides"]);
        let refs: Vec<&Rule> = rules.iter().collect();
        let sharing = SharedRead::plan(&refs).await.expect("planned");
        let names: Vec<&str> = sharing.names.iter().map(String::as_str).collect();
        assert_eq!(names, ["A", "B", "C", "D", "H", "I"]);
        assert!(sharing.columns.contains("eventtime") && sharing.columns.contains("eventid"));
        assert!(!sharing.columns.contains("requestparameters"), "{:?}", sharing.columns);
        // One such rule alone has nothing to share with.
        assert!(shared_ids(&rules[..1]).await.is_empty());
    }

    #[tokio::test]
    async fn most_of_the_builtin_cloudtrail_rules_share_one_read() {
        let pack = crate::pack::builtin().expect("pack");
        let shared = shared_ids(&pack).await;
        for id in ["aws-cloudtrail-stop-logging", "aws-iam-credentials-created", "aws-root-console-login-failures"] {
            assert!(shared.iter().any(|s| s == id), "{id} not in {shared:?}");
        }
        for id in ["aws-root-api-call", "aws-access-denied-burst", "aws-region-first-use", "aws-dns-many-subdomains"] {
            assert!(!shared.iter().any(|s| s == id), "{id} in {shared:?}");
        }
        assert!(shared.len() >= 15, "{shared:?}");
    }

    /// A session whose `cloudtrail` holds every CloudTrail example of the built-in pack.
    async fn examples_session(pack: &[Rule]) -> SessionContext {
        let mut batches = Vec::new();
        for rule in pack.iter().filter(|r| r.tables == [LogTable::CloudTrail]) {
            for test in rule.tests.iter().filter(|t| t.regions.is_none() && t.table.is_none()) {
                let mut content = crate::testing::raw_object(LogTable::CloudTrail, &test.events).expect("example");
                let ctx = ObjectContext { bucket: "", key: "example", key_date: None };
                batches.push(parse_content(LogTable::CloudTrail, &mut content, &ctx).expect("parses").batch);
            }
        }
        let ctx = crate::engine::empty_session(&Regions::default(), None).await.expect("session");
        let table = MemTable::try_new(LogTable::CloudTrail.schema(), vec![batches]).expect("table");
        ctx.deregister_table(LogTable::CloudTrail.name()).expect("deregistered");
        ctx.register_table(LogTable::CloudTrail.name(), Arc::new(table)).expect("registered");
        ctx
    }

    fn ids(alerts: &[Alert]) -> Vec<(String, String)> {
        let mut ids: Vec<(String, String)> = alerts.iter().map(|a| (a.rule_id.clone(), a.id.clone())).collect();
        ids.sort();
        ids
    }

    /// The rules that share the read raise exactly the alerts they raise on their own.
    #[tokio::test]
    async fn shared_rows_raise_the_alerts_of_the_whole_table() {
        let pack = crate::pack::builtin().expect("pack");
        let ctx = examples_session(&pack).await;
        let rules: Vec<&Rule> = pack.iter().filter(|r| r.tables == [LogTable::CloudTrail]).collect();
        assert!(rules.iter().any(|r| r.mode == Mode::Window), "window rules are among them");
        let together = run_rules(&ctx, &rules).await.expect("together");
        let mut alone = Vec::new();
        for rule in &rules {
            alone.extend(run_rules(&ctx, &[*rule]).await.expect("alone"));
        }
        assert!(together.len() > 20, "{} alerts", together.len());
        assert_eq!(ids(&together), ids(&alone));
        // Nothing is shared past the memory given: the rules read the table on their own.
        let sharing = SharedRead::plan(&rules).await.expect("planned");
        assert!(sharing.session(&ctx, 100).await.expect("read").is_none());
        assert!(sharing.session(&ctx, MAX_SHARED_BYTES).await.expect("read").is_some());
    }
}
