//! One read of `cloudtrail` for the rules that look for rare events.
//!
//! Most CloudTrail rules look for a handful of rare calls — `StopLogging`, `CreateUser`,
//! `PutBucketPolicy` — or for calls that failed. Run over history one after another, each of them
//! decodes the columns it reads (`requestparameters` among them) from every file of the days asked
//! for, and that decoding is nearly all of its cost: twenty such rules read the same columns twenty
//! times. Here the rows any of them can match are read once, into memory, and each of those rules
//! runs over them.
//!
//! A rule takes part only when every read it makes of `cloudtrail` is limited to rare rows: its
//! pushed-down filters name a set of event names (`eventname = …`, `eventname IN (…)`), an error
//! (`errorcode LIKE …`, `= …`, `IN (…)`: most calls succeed), or the root user
//! (`useridentity.type = 'Root'`), possibly inside `AND`s and `OR`s. The shared read takes the rows
//! that meet any of those limits, so each rule sees every row it would have seen over the whole
//! table. If those rows turn out to be too many to hold, the rules run on their own after all.
//! Over history, a rule whose limits name a call every account makes all day (`BUSY_EVENT_NAMES`)
//! reads on its own from the start; over one commit's rows, which are held anyway, it takes part.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::BatchCoalescer;
use arrow::datatypes::SchemaRef;
use bunker_schemas::LogTable;
use datafusion::catalog::{MemoryCatalogProviderList, Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionContext;
use datafusion::functions::core::expr_ext::FieldAccessor;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TableProviderFilterPushDown, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::TryStreamExt;

use crate::engine::read_only;
use crate::org;
use crate::rule::Rule;
use crate::{DetectError, Result};

/// The most memory the shared rows may take; past it the rules read the table on their own.
pub(crate) const MAX_SHARED_BYTES: usize = 512 << 20;

/// Rows per batch of the shared rows.
const BATCH_ROWS: usize = 8192;

/// Calls every busy account makes all day: data-plane reads and writes, credential and key
/// plumbing, agents' polling. Over history, a rule reading one of them does not share: with the S3
/// object calls and the secret reads of the ransomware and bulk-retrieval rules among the limits,
/// the shared rows of a 10M-event lake outgrew their budget (548 MB) and every rule read on its own.
const BUSY_EVENT_NAMES: [&str; 22] = [
    "GetObject",
    "PutObject",
    "HeadObject",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
    "ListObjects",
    "ListObjectsV2",
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "AssumeRole",
    "AssumeRoleWithWebIdentity",
    "GetCallerIdentity",
    "PutLogEvents",
    "CreateLogStream",
    "Invoke",
    "GetSecretValue",
    "GetParameter",
    "GetParameters",
    "GetParametersByPath",
    "DescribeInstances",
];

/// The columns whose values can limit a read to rare rows.
const EVENT_NAME: &str = "eventname";
const ERROR_CODE: &str = "errorcode";
pub(crate) const IDENTITY: &str = "useridentity";

/// What the shared rows are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The lake over days or months: rules reading busy calls read on their own.
    History,
    /// One commit's rows, already in memory: every limited rule takes part.
    Commit,
}

/// What the rules that can share a read of `cloudtrail` need from it.
#[derive(Debug, Default)]
pub(crate) struct SharedRead {
    /// The rules that take part (indices into the rules given to [`SharedRead::plan`]).
    pub rules: BTreeSet<usize>,
    /// What limits each of their reads: a row meeting none of these is seen by none of them.
    limits: Vec<Expr>,
    /// Every column some of them read.
    columns: BTreeSet<String>,
    /// The fields of `useridentity` they read, if they only ever read fields of it by name: the
    /// identity is then read as a struct of those fields only (three of its dozens, typically).
    pub identity: Identity,
}

/// How the rules use `useridentity`.
#[derive(Debug, Clone)]
pub(crate) enum Identity {
    /// Only by these fields (`useridentity.arn`...).
    Fields(BTreeSet<String>),
    /// As a whole somewhere.
    Whole,
}

impl Default for Identity {
    fn default() -> Identity {
        Identity::Fields(BTreeSet::new())
    }
}

impl Identity {
    /// Notes how every expression of `plan` (and of its subqueries) uses the identity.
    pub(crate) fn note_plan(&mut self, plan: &LogicalPlan) -> Result<()> {
        plan.apply_with_subqueries(|node| {
            node.expressions().iter().for_each(|e| self.note(e));
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(())
    }

    /// The fields read, when it is only ever read by field.
    pub(crate) fn fields(&self) -> Option<&BTreeSet<String>> {
        match self {
            Identity::Fields(fields) => Some(fields),
            Identity::Whole => None,
        }
    }

    /// Notes how `expr` uses the identity.
    fn note(&mut self, expr: &Expr) {
        let _ = expr.apply(|e| {
            if let Some(field) = identity_field(e) {
                if let Identity::Fields(fields) = self {
                    fields.insert(field);
                }
                return Ok(TreeNodeRecursion::Jump);
            }
            if is_column(e, IDENTITY) {
                *self = Identity::Whole;
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
}

/// The field `expr` reads from the identity, if it is `useridentity.<field>` (or deeper).
fn identity_field(expr: &Expr) -> Option<String> {
    match expr {
        Expr::ScalarFunction(call) if call.name() == "get_field" => match &call.args[..] {
            [identity, field, ..] if is_column(identity, IDENTITY) => text(field),
            _ => None,
        },
        _ => None,
    }
}

impl SharedRead {
    /// Finds which of `rules` can share one read of `cloudtrail`, by planning each against a table
    /// that takes every filter, so the plan shows what each read of it asks for. Fewer than two
    /// such rules share nothing.
    pub async fn plan(rules: &[&Rule], scope: Scope) -> Result<SharedRead> {
        // One rule (a `--per-rule` timing, a schedule with one window rule) has no one to share with.
        if rules.len() < 2 {
            return Ok(SharedRead::default());
        }
        let mut ctx = SessionContext::new();
        bunker_query::udf::register(&mut ctx)?;
        for table in LogTable::ALL {
            ctx.register_table(table.name(), Arc::new(Shape(table.schema())))?;
        }
        // The organization's relations are a few configured rows, not a read of the table: rules
        // that compare with them (outside accounts, expected instance types) can share.
        for (name, column) in [(org::KNOWN_ACCOUNTS, "account"), (org::EXPECTED_INSTANCE_TYPES, "instance_type")] {
            let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
                column,
                arrow::datatypes::DataType::Utf8,
                false,
            )]));
            ctx.register_table(name, Arc::new(Shape(schema)))?;
        }
        let mut shared = SharedRead::default();
        for (index, rule) in rules.iter().enumerate() {
            // Rules that name other relations (the region baseline, the allow-list) are not
            // planned here; they read the table on their own.
            let Ok(frame) = ctx.sql_with_options(&rule.sql, read_only()).await else { continue };
            let plan = frame.into_optimized_plan()?;
            if let Some((limits, columns)) = limited_reads(&plan)? {
                if scope == Scope::History && limits.iter().any(names_busy_call) {
                    continue;
                }
                shared.identity.note_plan(&plan)?;
                shared.rules.insert(index);
                for limit in limits {
                    if !shared.limits.contains(&limit) {
                        shared.limits.push(limit);
                    }
                }
                shared.columns.extend(columns);
            }
        }
        if shared.rules.len() < 2 {
            return Ok(SharedRead::default());
        }
        Ok(shared)
    }

    /// What a row must meet for some of the rules to see it: any of their limits. `None` when no
    /// rule takes part.
    ///
    /// The limits name dozens of event names between them; as one OR each would be compared with
    /// every row, so the names (and the error codes) are gathered into one set each, which a row
    /// is looked up in once.
    pub fn filter(&self) -> Option<Expr> {
        let mut sets: [(&str, BTreeSet<String>); 2] = [(EVENT_NAME, BTreeSet::new()), (ERROR_CODE, BTreeSet::new())];
        let mut others: Vec<Expr> = Vec::new();
        let mut atoms = Vec::new();
        self.limits.iter().for_each(|limit| disjuncts(limit, &mut atoms));
        for atom in atoms {
            let (column, values) = match atom {
                Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
                    let (column, value) = if text(right).is_some() { (left, right) } else { (right, left) };
                    (column.as_ref(), text(value).into_iter().collect::<Vec<_>>())
                }
                Expr::InList(list) if !list.negated => {
                    (list.expr.as_ref(), list.list.iter().filter_map(text).collect())
                }
                _ => (atom, Vec::new()),
            };
            match sets.iter_mut().find(|(name, _)| is_column(column, name)) {
                Some((_, set)) if !values.is_empty() => set.extend(values),
                _ if !others.contains(atom) => others.push(atom.clone()),
                _ => {}
            }
        }
        for (name, set) in sets {
            if !set.is_empty() {
                let values = set.into_iter().map(lit).collect();
                others.push(Expr::Column(Column::new_unqualified(name)).in_list(values, false));
            }
        }
        others.into_iter().reduce(Expr::or)
    }

    /// A session like `ctx` whose `cloudtrail` holds only the rows some rule can match (of the
    /// columns they read), read once from `ctx`'s `cloudtrail`; `None` when they would take more
    /// than `max_bytes`.
    pub async fn session(&self, ctx: &SessionContext, max_bytes: usize) -> Result<Option<SessionContext>> {
        let table = LogTable::CloudTrail.name();
        let Some(filter) = self.filter() else { return Ok(None) };
        let columns: Vec<Expr> = self.columns.iter().map(|name| self.column(name)).collect();
        let frame = ctx.table(table).await?.filter(filter)?.select(columns)?;
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
                tracing::debug!(bytes, "the rows the rules can match are too many to share");
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

impl SharedRead {
    /// What is read of the column `name`: the identity as only the fields the rules read.
    fn column(&self, name: &str) -> Expr {
        let whole = Expr::Column(Column::new_unqualified(name));
        match &self.identity {
            Identity::Fields(fields) if name == IDENTITY && !fields.is_empty() => {
                let parts = fields.iter().flat_map(|f| [lit(f.as_str()), whole.clone().field(f.as_str())]);
                named_struct(parts.collect()).alias(IDENTITY)
            }
            _ => whole,
        }
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

/// What limits each read of `cloudtrail` in `plan` to rare rows, and the columns they read — if
/// every one of those reads is limited (and there is at least one).
fn limited_reads(plan: &LogicalPlan) -> Result<Option<(Vec<Expr>, BTreeSet<String>)>> {
    let mut limits = Vec::new();
    let mut columns = BTreeSet::new();
    let mut reads = 0;
    let mut limited = true;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == LogTable::CloudTrail.name()
        {
            reads += 1;
            // The filters of a read all hold: one limit among them limits the read.
            match scan.filters.iter().find_map(limit) {
                Some(found) => limits.push(found),
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
    Ok((limited && reads > 0).then_some((limits, columns)))
}

/// A condition every row meeting `filter` meets, and that only rare rows meet (see the module
/// docs), with its columns unqualified so it applies to the table under any alias.
fn limit(filter: &Expr) -> Option<Expr> {
    let rare = match filter {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            return limit(left).or_else(|| limit(right));
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            return Some(limit(left)?.or(limit(right)?));
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (column, value) = if text(right).is_some() { (left, right) } else { (right, left) };
            match text(value) {
                Some(value) => is_rare_column(column) || is_root(column, &value),
                None => false,
            }
        }
        Expr::InList(list) => {
            !list.negated && is_rare_column(&list.expr) && list.list.iter().all(|v| text(v).is_some())
        }
        Expr::Like(like) => !like.negated && is_column(&like.expr, ERROR_CODE) && text(&like.pattern).is_some(),
        _ => false,
    };
    rare.then(|| unqualified(filter.clone())).flatten()
}

/// The event name or the error code, as it is or lowercased: Sigma rules compare names
/// case-insensitively (`lower(eventname) IN ('stoplogging')`), and such a test is as rare as the
/// exact one. A lowercased test stays a test of its own in [`SharedRead::filter`], which gathers
/// only the exact names into its set.
fn is_rare_column(expr: &Expr) -> bool {
    let exact = |e: &Expr| is_column(e, EVENT_NAME) || is_column(e, ERROR_CODE);
    match expr {
        Expr::ScalarFunction(call) if call.name() == "lower" => matches!(&call.args[..], [inner] if exact(inner)),
        other => exact(other),
    }
}

/// Whether a limit names one of [`BUSY_EVENT_NAMES`] (its literals are event names, error codes
/// and `Root`, so any busy name among them is an event name), in any case.
fn names_busy_call(limit: &Expr) -> bool {
    limit
        .exists(|e| {
            Ok(text(e).is_some_and(|value| BUSY_EVENT_NAMES.iter().any(|busy| busy.eq_ignore_ascii_case(&value))))
        })
        .unwrap_or(false)
}

/// The terms of the ORs `expr` is made of (itself when it is no OR).
fn disjuncts<'a>(expr: &'a Expr, into: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            disjuncts(left, into);
            disjuncts(right, into);
        }
        other => into.push(other),
    }
}

/// Whether `expr` is `column` (possibly cast).
fn is_column(expr: &Expr, column: &str) -> bool {
    match expr {
        Expr::Column(c) => c.name == column,
        Expr::Cast(cast) => is_column(&cast.expr, column),
        _ => false,
    }
}

/// Whether `expr = value` asks for the root user: `useridentity.type = 'Root'`.
fn is_root(expr: &Expr, value: &str) -> bool {
    match expr {
        Expr::ScalarFunction(call) if call.name() == "get_field" && value == "Root" => {
            matches!(&call.args[..], [identity, field] if is_column(identity, IDENTITY) && text(field).as_deref() == Some("type"))
        }
        Expr::Cast(cast) => is_root(&cast.expr, value),
        _ => false,
    }
}

fn unqualified(expr: Expr) -> Option<Expr> {
    let renamed = expr.transform(|e| {
        Ok(match e {
            Expr::Column(column) => Transformed::yes(Expr::Column(Column::new_unqualified(column.name))),
            other => Transformed::no(other),
        })
    });
    renamed.ok().map(|t| t.data)
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
        let sharing = SharedRead::plan(&refs, Scope::History).await.expect("planned");
        sharing.rules.iter().map(|&i| rules[i].id.clone()).collect()
    }

    #[tokio::test]
    async fn only_reads_limited_to_rare_rows_are_shared() {
        let select = "SELECT eventtime AS event_time, eventid AS event_id FROM cloudtrail";
        let rules = [
            rule("equal", &format!("{select} WHERE eventname = 'A' AND errorcode IS NULL")),
            rule(
                "listed",
                &format!("{select} WHERE (eventname IN ('B', 'C') AND eventsource = 's') OR eventname = 'D'"),
            ),
            rule("or-other", &format!("{select} WHERE eventname = 'E' OR eventsource = 'x'")),
            rule("negated", &format!("{select} WHERE eventname NOT IN ('F')")),
            rule("unfiltered", select),
            rule("denied", &format!("{select} WHERE errorcode LIKE '%AccessDenied%' OR errorcode = 'Throttling'")),
            rule("succeeded", &format!("{select} WHERE errorcode IS NULL")),
            rule("root", &format!("{select} WHERE useridentity.type = 'Root' AND eventtype = 'AwsApiCall'")),
            rule("iam-user", &format!("{select} WHERE useridentity.type = 'IAMUser'")),
            rule("busy", &format!("{select} WHERE eventname = 'GetObject' AND errorcode IS NULL")),
            rule("busy-listed", &format!("{select} WHERE eventname IN ('StopLogging', 'GetSecretValue')")),
            // A Sigma rule's names, lowercased: rare, unless they name a busy call.
            rule("lowered", &format!("{select} WHERE lower(eventname) IN ('deletebucket', 'stoplogging')")),
            rule("lowered-busy", &format!("{select} WHERE lower(eventname) = 'getobject'")),
            rule(
                "join-one-side",
                "SELECT a.eventtime AS event_time, a.eventid AS event_id FROM cloudtrail a \
                 JOIN cloudtrail b ON a.eventid = b.eventid WHERE a.eventname = 'G'",
            ),
            rule(
                "join-both-sides",
                "SELECT a.eventtime AS event_time, a.eventid AS event_id FROM cloudtrail a \
                 JOIN cloudtrail b ON a.eventid = b.eventid WHERE a.eventname = 'H' AND b.errorcode = 'I'",
            ),
        ];
        assert_eq!(shared_ids(&rules).await, ["equal", "listed", "denied", "root", "lowered", "join-both-sides"]);
        // One commit's rows are held anyway: there, reads of busy calls are limited reads too.
        let refs: Vec<&Rule> = rules.iter().collect();
        let commit = SharedRead::plan(&refs, Scope::Commit).await.expect("planned");
        let commit: Vec<&str> = commit.rules.iter().map(|&i| rules[i].id.as_str()).collect();
        assert_eq!(
            commit,
            ["equal", "listed", "denied", "root", "busy", "busy-listed", "lowered", "lowered-busy", "join-both-sides"]
        );
        let refs: Vec<&Rule> = rules.iter().collect();
        let sharing = SharedRead::plan(&refs, Scope::History).await.expect("planned");
        let limits: Vec<String> = sharing.limits.iter().map(ToString::to_string).collect();
        for part in
            ["eventname = Utf8(\"A\")", "errorcode LIKE Utf8(\"%AccessDenied%\")", "Utf8(\"Root\")", "Utf8(\"H\")"]
        {
            assert!(limits.iter().any(|l| l.contains(part)), "{part} not in {limits:?}");
        }
        assert!(!limits.iter().any(|l| l.contains("eventsource") || l.contains("cloudtrail.")), "{limits:?}");
        // Together, the names are one set and the error codes another, each looked up once a row.
        let filter = sharing.filter().expect("a filter").to_string();
        for part in [
            "eventname IN ([Utf8(\"A\"), Utf8(\"B\"), Utf8(\"C\"), Utf8(\"D\"), Utf8(\"H\")])",
            "errorcode IN ([Utf8(\"I\"), Utf8(\"Throttling\")])",
            "errorcode LIKE Utf8(\"%AccessDenied%\")",
            "Utf8(\"Root\")",
        ] {
            assert!(filter.contains(part), "{part} not in {filter}");
        }
        // The lowercased names stay a test of their own: folded into the exact set they would
        // miss `DeleteBucket`.
        assert!(filter.contains("lower(eventname) IN ([Utf8(\"deletebucket\")"), "{filter}");
        assert!(!filter.contains("Utf8(\"deletebucket\"), Utf8(\"H\")"), "{filter}");
        assert_eq!(filter.matches(" OR ").count(), 4, "{filter}");
        assert!(sharing.columns.contains("eventtime") && sharing.columns.contains("eventid"));
        assert!(!sharing.columns.contains("requestparameters"), "{:?}", sharing.columns);
        // One such rule alone has nothing to share with.
        assert!(shared_ids(&rules[..1]).await.is_empty());
        // The identity is read as the fields the rules name, unless one reads it whole.
        let arn = rule("arn", &format!("{select} WHERE eventname = 'J' AND useridentity.arn LIKE '%admin%'"));
        let whole = rule("whole", &format!("{select} WHERE eventname = 'K' AND useridentity IS NOT NULL"));
        let fields = |identity: Identity| match identity {
            Identity::Fields(fields) => Some(fields.into_iter().collect::<Vec<String>>()),
            Identity::Whole => None,
        };
        let narrow = SharedRead::plan(&[&rules[7], &arn], Scope::History).await.expect("planned").identity;
        assert_eq!(fields(narrow), Some(vec!["arn".to_string(), "type".to_string()]));
        let whole = SharedRead::plan(&[&rules[7], &arn, &whole], Scope::History).await.expect("planned").identity;
        assert_eq!(fields(whole), None);
    }

    #[tokio::test]
    async fn most_of_the_builtin_cloudtrail_rules_share_one_read() {
        let pack = crate::pack::builtin().expect("pack");
        let shared = shared_ids(&pack).await;
        for id in [
            "aws-cloudtrail-stop-logging",
            "aws-iam-credentials-created",
            "aws-root-console-login-failures",
            "aws-access-denied-burst",
            "aws-root-api-call",
        ] {
            assert!(shared.iter().any(|s| s == id), "{id} not in {shared:?}");
        }
        for id in ["aws-region-first-use", "aws-region-not-allowed", "aws-dns-many-subdomains"] {
            assert!(!shared.iter().any(|s| s == id), "{id} in {shared:?}");
        }
        assert!(shared.len() >= 15, "{shared:?}");
    }

    /// A session whose `cloudtrail` holds every CloudTrail example of the built-in pack.
    async fn examples_session(pack: &[Rule]) -> SessionContext {
        let mut batches = Vec::new();
        for rule in pack.iter().filter(|r| r.tables == [LogTable::CloudTrail]) {
            for test in rule.tests.iter().filter(|t| t.regions.is_none() && t.org.is_none() && t.table.is_none()) {
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
        let sharing = SharedRead::plan(&rules, Scope::History).await.expect("planned");
        assert!(sharing.session(&ctx, 100).await.expect("read").is_none());
        let shared = sharing.session(&ctx, MAX_SHARED_BYTES).await.expect("read").expect("shared");
        // The pack reads a few fields of the identity, and only those are held.
        let Identity::Fields(fields) = &sharing.identity else { panic!("the pack reads the identity whole") };
        assert!(fields.contains("arn") && fields.contains("type") && !fields.contains("sessioncontext"), "{fields:?}");
        let table = shared.table_provider(LogTable::CloudTrail.name()).await.expect("table");
        let identity = table.schema().field_with_name(IDENTITY).expect("identity").data_type().clone();
        let arrow::datatypes::DataType::Struct(held) = identity else { panic!("{identity}") };
        assert_eq!(held.len(), fields.len());
    }
}
