//! Row rules over the rows of each commit, planned once.
//!
//! Planning a rule's SQL (parsing, optimising, choosing operators — and DataFusion measuring every
//! column of an in-memory table for its statistics while it does) cost more than running the rule
//! over a commit's rows. A [`RowRunner`] plans each row rule of one table once, against tables that
//! read whatever rows are in their slot when the plan executes; each commit only fills the slots
//! and executes the plans again, each time with fresh operator state (`reset_plan_states`).
//!
//! Parsers hand over one batch per object — tens of rows each for small objects — so the rows are
//! first gathered into batches of [`BATCH_ROWS`]: each operator then pays its per-batch cost a
//! few times per commit, not once per object. Only the columns some rule reads are gathered (the
//! scans note them while the rules are planned): the free-form JSON columns most rules never
//! look at are not copied. Batches already that big are only projected, not copied.
//!
//! Most CloudTrail row rules look for rare calls (`StopLogging`, `CreateUser`...) and read the
//! free-form JSON of those. Each of them scanning every row of a commit, and the JSON of every row
//! being gathered for them, cost more than the rest of the rules together. The rules whose every
//! read is limited to rare rows (see [`crate::shared`], which finds them the same way for runs
//! over history) read a second slot instead: it holds only the rows meeting one of their limits,
//! picked out once per commit.
//!
//! The identity (`useridentity`, a struct of dozens of fields) is gathered as a struct of the
//! fields the slot's rules read only, the others left behind without being copied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use bunker_schemas::{LogTable, baseline};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::TaskContext;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, collect};

use crate::alert::{Alert, alerts_from_rows};
use crate::engine::{read_only, row_rules};
use crate::regions::Regions;
use crate::rule::Rule;
use crate::shared::{IDENTITY, Identity, Scope, SharedRead};
use crate::{DetectError, Result};

/// Rows per batch the rules see.
const BATCH_ROWS: usize = 8192;

/// The row rules of one table, planned, ready to run over each commit's rows.
#[derive(Debug)]
pub struct RowRunner {
    /// Every row of the commit, for the rules that are not limited to rare rows.
    rows: Arc<Slot>,
    /// Only the rows some limited rule can match, if any rule is.
    limited: Option<Limited>,
    baseline: Arc<Slot>,
    plans: Vec<(Rule, Arc<dyn ExecutionPlan>)>,
    task: Arc<TaskContext>,
}

/// The slot of the rules limited to rare rows, and what picks those rows out.
#[derive(Debug)]
struct Limited {
    slot: Arc<Slot>,
    /// True for a row meeting one of the rules' limits.
    filter: Arc<dyn PhysicalExpr>,
}

impl RowRunner {
    /// Plans the row rules of `rules` that read `table`, with the region configuration `regions`.
    pub async fn new(rules: &[Rule], table: LogTable, regions: &Regions) -> Result<RowRunner> {
        let mut config = SessionConfig::new().with_target_partitions(1);
        // A plan is executed again and again, which DataFusion allows only without dynamic
        // filters; and one partition, because the rows are few and ingestion has the cores busy.
        config.options_mut().optimizer.enable_dynamic_filter_pushdown = false;
        let mut ctx = SessionContext::new_with_config_rt(config, bunker_query::memory::runtime()?);
        bunker_query::udf::register(&mut ctx)?;
        let baseline = Slot::new(baseline::view_schema(), &Identity::Whole);
        for other in LogTable::ALL {
            if other == table {
                // Planned against first to learn what the rules read; each rule's slot replaces it.
                ctx.register_table(table.name(), Arc::new(SlotTable(Slot::new(table.schema(), &Identity::Whole))))?;
            } else {
                ctx.register_table(other.name(), Arc::new(MemTable::try_new(other.schema(), vec![vec![]])?))?;
            }
        }
        ctx.register_table(baseline::VIEW_NAME, Arc::new(SlotTable(baseline.clone())))?;
        regions.register(&ctx).await?;
        let rules = row_rules(rules, table);
        // Only CloudTrail has rules limited to rare rows (event names, errors, the root user).
        let shared = if table == LogTable::CloudTrail {
            SharedRead::plan(&rules, Scope::Commit).await?
        } else {
            SharedRead::default()
        };
        let filter = match shared.filter() {
            Some(filter) => Some(ctx.create_physical_expr(filter, &DFSchema::try_from(table.schema())?)?),
            None => None,
        };
        let any_limited = filter.is_some();
        let is_limited = |index: usize| any_limited && shared.rules.contains(&index);
        // How the rules of each slot (every row, limited rows) read the identity, from their plans
        // over the whole table: each slot then holds only the fields its rules read. Finding the
        // limited rules has noted it for them already; planning each rule costs more than running
        // it over a commit's rows.
        let mut identity = [Identity::default(), shared.identity.clone()];
        for (_, rule) in rules.iter().enumerate().filter(|(index, _)| !is_limited(*index)) {
            let frame = ctx.sql_with_options(&rule.sql, read_only()).await.map_err(|e| sql_error(rule, e))?;
            let plan = frame.into_optimized_plan().map_err(|e| sql_error(rule, e))?;
            identity[0].note_plan(&plan)?;
        }
        let rows = Slot::new(table.schema(), &identity[0]);
        let limited = filter.map(|filter| Limited { slot: Slot::new(table.schema(), &identity[1]), filter });
        let mut plans = Vec::new();
        for (index, rule) in rules.into_iter().enumerate() {
            // A plan keeps the scan it was made with: the table's name can point elsewhere after.
            let slot = match &limited {
                Some(limited) if is_limited(index) => &limited.slot,
                _ => &rows,
            };
            ctx.deregister_table(table.name())?;
            ctx.register_table(table.name(), Arc::new(SlotTable(slot.clone())))?;
            let frame = ctx.sql_with_options(&rule.sql, read_only()).await.map_err(|e| sql_error(rule, e))?;
            let plan = frame.create_physical_plan().await.map_err(|e| sql_error(rule, e))?;
            plans.push((rule.clone(), plan));
        }
        Ok(RowRunner { rows, limited, baseline, plans, task: ctx.task_ctx() })
    }

    /// Runs the rules over `batches` (rows of the runner's table). `baseline` is the region
    /// baseline as it is with these rows (see `bunker_ingest::baseline`).
    pub async fn run(&mut self, batches: Vec<RecordBatch>, baseline: Option<RecordBatch>) -> Result<Vec<Alert>> {
        if self.plans.is_empty() || batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let baseline: Vec<RecordBatch> = baseline.into_iter().collect();
        // The plans were made for these schemas; rows of others would be misread.
        for (batch, slot) in batches.iter().map(|b| (b, &self.rows)).chain(baseline.iter().map(|b| (b, &self.baseline)))
        {
            slot.check(batch)?;
        }
        if let Some(limited) = &self.limited {
            limited.slot.fill_where(&batches, Some(limited.filter.as_ref()))?;
        }
        self.rows.fill_where(&batches, None)?;
        self.baseline.fill_where(&baseline, None)?;
        let filled = std::time::Instant::now();
        let alerts = self.run_plans().await;
        tracing::trace!(plans_in = ?filled.elapsed(), "row rules' plans ran");
        // The rows are the commit's: not kept until the next one.
        self.rows.clear();
        if let Some(limited) = &self.limited {
            limited.slot.clear();
        }
        self.baseline.clear();
        alerts
    }

    async fn run_plans(&self) -> Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        for (rule, plan) in &self.plans {
            let started = std::time::Instant::now();
            let plan = reset_plan_states(plan.clone()).map_err(|e| sql_error(rule, e))?;
            let batches = collect(plan, self.task.clone()).await.map_err(|e| sql_error(rule, e))?;
            alerts.extend(alerts_from_rows(rule, &batches)?);
            tracing::trace!(rule = %rule.id, took = ?started.elapsed(), "row rule ran");
        }
        Ok(alerts)
    }
}

/// A rule's SQL failing to plan or run, named by the rule's file.
fn sql_error(rule: &Rule, e: datafusion::error::DataFusionError) -> DetectError {
    DetectError::Rule { origin: rule.origin.clone(), reason: format!("sql: {e}") }
}

/// A table whose rows are whatever was last put in it, read when a plan executes. Only the columns
/// some plan reads are gathered: each scan records its projection while the rules are planned.
#[derive(Debug)]
struct Slot {
    /// The table's schema: what the rows put in the slot have.
    table: SchemaRef,
    /// The slot's: the table's, but for the identity, narrowed to the fields the rules read.
    schema: SchemaRef,
    /// The identity's column and the fields of it kept, when it is narrowed.
    narrowed: Option<(usize, Vec<usize>)>,
    /// The columns (indices into `schema`) some plan reads; `None` while no plan reads the slot.
    read: Mutex<Option<BTreeSet<usize>>>,
    rows: Mutex<Gathered>,
    /// Schemas of batches already found to be of the table (see [`Slot::check`]).
    accepted: Mutex<Vec<SchemaRef>>,
}

/// How many accepted schemas a slot remembers: one per parser thread is enough.
const MAX_ACCEPTED_SCHEMAS: usize = 16;

/// The rows in a slot. They are put in as they come (a batch per object, of the columns read,
/// filtered if the slot has a filter) and gathered into batches of [`BATCH_ROWS`] one column at a
/// time, when a plan first reads that column: a column only the probe side of a join reads is not
/// copied at all when the join's other side turns out empty (as it is for the region rules on
/// most commits).
#[derive(Debug, Default)]
struct Gathered {
    /// The columns held (indices into the slot's `schema`), in order.
    columns: Vec<usize>,
    /// The rows as put in: batches of `columns`.
    parts: Vec<RecordBatch>,
    /// The batches to gather: for each, the (part, offset, rows) ranges it is made of.
    layout: Vec<Vec<(usize, usize, usize)>>,
    /// The columns gathered so far, by index into `schema`: one array per batch of `layout`.
    gathered: BTreeMap<usize, Vec<ArrayRef>>,
}

impl Gathered {
    fn new(columns: Vec<usize>, parts: Vec<RecordBatch>) -> Gathered {
        // A part as big as a quarter batch is a batch of its own, sliced, not copied; smaller
        // ones are gathered together, split at BATCH_ROWS.
        let mut layout = Vec::new();
        let mut current: Vec<(usize, usize, usize)> = Vec::new();
        let mut rows = 0;
        for (index, part) in parts.iter().enumerate() {
            let n = part.num_rows();
            if n == 0 {
                continue;
            }
            if n >= BATCH_ROWS / 4 {
                layout.push(vec![(index, 0, n)]);
                continue;
            }
            let mut offset = 0;
            while offset < n {
                let take = (BATCH_ROWS - rows).min(n - offset);
                current.push((index, offset, take));
                (offset, rows) = (offset + take, rows + take);
                if rows == BATCH_ROWS {
                    layout.push(std::mem::take(&mut current));
                    rows = 0;
                }
            }
        }
        if !current.is_empty() {
            layout.push(current);
        }
        Gathered { columns, parts, layout, gathered: BTreeMap::new() }
    }

    /// The batches of the columns `wanted` (indices into `schema`, each one held), gathering
    /// those not gathered yet.
    fn batches(&mut self, wanted: &[usize], schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        if self.layout.is_empty() {
            return Ok(Vec::new());
        }
        for &column in wanted {
            if self.gathered.contains_key(&column) {
                continue;
            }
            let at = self.columns.binary_search(&column).map_err(|_| {
                DetectError::Lake(format!("the row rules read {}, which was not kept", schema.field(column).name()))
            })?;
            let arrays = self
                .layout
                .iter()
                .map(|ranges| -> Result<ArrayRef> {
                    let pieces: Vec<ArrayRef> = ranges
                        .iter()
                        .map(|&(part, offset, rows)| {
                            let array = self.parts[part].column(at);
                            if offset == 0 && rows == array.len() { array.clone() } else { array.slice(offset, rows) }
                        })
                        .collect();
                    Ok(match pieces.as_slice() {
                        [one] => one.clone(),
                        _ => arrow::compute::concat(&pieces.iter().map(AsRef::as_ref).collect::<Vec<&dyn Array>>())?,
                    })
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            self.gathered.insert(column, arrays);
        }
        let projected = Arc::new(schema.project(wanted)?);
        let mut batches = Vec::with_capacity(self.layout.len());
        for (index, ranges) in self.layout.iter().enumerate() {
            let rows = ranges.iter().map(|r| r.2).sum();
            let arrays = wanted.iter().map(|c| self.gathered[c][index].clone()).collect();
            let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
            batches.push(RecordBatch::try_new_with_options(projected.clone(), arrays, &options)?);
        }
        Ok(batches)
    }
}

impl Slot {
    /// A slot for rows of `table`, whose rules use the identity as `identity` says.
    fn new(table: SchemaRef, identity: &Identity) -> Arc<Slot> {
        let narrowed = identity.fields().and_then(|fields| {
            let column = table.index_of(IDENTITY).ok()?;
            let DataType::Struct(children) = table.field(column).data_type() else { return None };
            let keep: Vec<usize> = (0..children.len()).filter(|&i| fields.contains(children[i].name())).collect();
            (!keep.is_empty()).then_some((column, keep))
        });
        let schema = match &narrowed {
            Some((column, keep)) => {
                let mut fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
                if let DataType::Struct(children) = fields[*column].data_type() {
                    let kept: Fields = keep.iter().map(|&i| children[i].clone()).collect();
                    fields[*column] = fields[*column].clone().with_data_type(DataType::Struct(kept));
                }
                Arc::new(Schema::new_with_metadata(fields, table.metadata().clone()))
            }
            None => table.clone(),
        };
        Arc::new(Slot {
            table,
            schema,
            narrowed,
            read: Mutex::default(),
            rows: Mutex::default(),
            accepted: Mutex::default(),
        })
    }

    /// Refuses a batch that is not of the slot's table: names and types are compared (each parser's
    /// schema is its own copy, and the columns' docs need no comparing).
    ///
    /// Each parser makes its batches with one schema of its own: a schema once accepted is
    /// recognised by its address, not compared field by field for every object again.
    fn check(&self, batch: &RecordBatch) -> Result<()> {
        let mut accepted = lock(&self.accepted);
        if accepted.iter().any(|schema| Arc::ptr_eq(schema, batch.schema_ref())) {
            return Ok(());
        }
        let (given, expected) = (batch.schema_ref().fields(), self.table.fields());
        let same = given.len() == expected.len()
            && given
                .iter()
                .zip(expected.iter())
                .all(|(g, e)| g.name() == e.name() && g.data_type().equals_datatype(e.data_type()));
        if !same {
            return Err(DetectError::Lake(format!(
                "rows given to the row rules do not have the table's columns: {}",
                batch.schema()
            )));
        }
        if accepted.len() >= MAX_ACCEPTED_SCHEMAS {
            accepted.remove(0);
        }
        accepted.push(batch.schema());
        Ok(())
    }

    /// The columns `columns` of `batch` (a batch of the table), as the slot holds them.
    fn project(&self, batch: &RecordBatch, columns: &[usize], schema: &SchemaRef) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = columns.iter().map(|&c| batch.column(c).clone()).collect();
        if let Some((column, keep)) = &self.narrowed
            && let Ok(at) = columns.binary_search(column)
        {
            let (Some(identity), DataType::Struct(kept)) = (arrays[at].as_struct_opt(), schema.field(at).data_type())
            else {
                return Err(DetectError::Lake("the identity column is not a struct".into()));
            };
            let children = keep.iter().map(|&i| identity.column(i).clone()).collect();
            arrays[at] = Arc::new(StructArray::try_new(kept.clone(), children, identity.nulls().cloned())?);
        }
        Ok(RecordBatch::try_new(schema.clone(), arrays)?)
    }

    /// Puts the rows of `batches` (of the slot's table, checked) that meet `filter` (all of them without
    /// one) in the slot, in place of what it held. A slot no plan reads is left empty. Only the
    /// columns some plan reads are kept; they are gathered when a plan reads them.
    fn fill_where(&self, batches: &[RecordBatch], filter: Option<&dyn PhysicalExpr>) -> Result<()> {
        let Some(read) = lock(&self.read).clone() else { return Ok(()) };
        let mut columns: Vec<usize> = read.into_iter().collect();
        if columns.is_empty() {
            // Rules that only count rows still need a column to carry the row count.
            columns.push(0);
        }
        let schema = Arc::new(self.schema.project(&columns)?);
        let mut parts = Vec::with_capacity(batches.len());
        for batch in batches {
            let Some(filter) = filter else {
                parts.push(self.project(batch, &columns, &schema)?);
                continue;
            };
            let keep = filter.evaluate(batch)?.into_array(batch.num_rows())?;
            let Some(keep) = keep.as_boolean_opt() else {
                return Err(DetectError::Lake("the row rules' limits are not a condition".into()));
            };
            // Most objects hold no row the limited rules can match: nothing of them is kept,
            // not even a batch of empty columns.
            match keep.true_count() {
                0 => {}
                n if n == batch.num_rows() => parts.push(self.project(batch, &columns, &schema)?),
                _ => parts.push(filter_record_batch(&self.project(batch, &columns, &schema)?, keep)?),
            }
        }
        *lock(&self.rows) = Gathered::new(columns, parts);
        Ok(())
    }

    /// The rows held, as batches of the columns `columns` (indices into `schema`).
    fn batches(&self, columns: &[usize]) -> Result<Vec<RecordBatch>> {
        lock(&self.rows).batches(columns, &self.schema)
    }

    fn clear(&self) {
        *lock(&self.rows) = Gathered::default();
    }
}

/// A [`Slot`] as a table rules can name.
#[derive(Debug)]
struct SlotTable(Arc<Slot>);

#[async_trait::async_trait]
impl TableProvider for SlotTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let columns = projection.cloned().unwrap_or_else(|| (0..self.0.schema.fields().len()).collect());
        lock(&self.0.read).get_or_insert_default().extend(columns.iter().copied());
        let schema = Arc::new(self.0.schema.project(&columns)?);
        let stream = Arc::new(SlotStream { slot: self.0.clone(), columns, schema: schema.clone() });
        Ok(Arc::new(StreamingTableExec::try_new(schema, vec![stream], None, Vec::new(), false, limit)?))
    }
}

/// One scan's columns of a slot's rows.
#[derive(Debug)]
struct SlotStream {
    slot: Arc<Slot>,
    columns: Vec<usize>,
    schema: SchemaRef,
}

impl PartitionStream for SlotStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        // The columns are gathered on the first poll, not here: a plan executes all its scans up
        // front, and a join whose build side is empty never polls its probe side.
        let (slot, columns) = (self.slot.clone(), self.columns.clone());
        let batches = futures::StreamExt::flatten(futures::stream::once(async move {
            let batches = slot.batches(&columns).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)));
            futures::stream::iter(match batches {
                Ok(batches) => batches.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            })
        }));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A slot holds plain rows and column numbers: whatever a panicking holder left is usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use bunker_ingest::ObjectContext;
    use bunker_ingest::baseline::Sightings;
    use bunker_ingest::pipeline::parse_content;

    use super::*;
    use crate::regions::RegionConfig;
    use crate::rule::{Expect, Mode};

    /// The rows of one labelled example of the built-in pack, with the alerts it should raise.
    struct Example {
        rule: String,
        name: String,
        batch: RecordBatch,
        expect: Expect,
        count: Option<u64>,
    }

    fn cloudtrail_examples(pack: &[Rule]) -> Vec<Example> {
        let mut examples = Vec::new();
        for rule in row_rules(pack, LogTable::CloudTrail) {
            // Examples under their own region configuration need a runner of their own.
            for test in rule.tests.iter().filter(|t| t.regions.is_none() && t.org.is_none() && t.table.is_none()) {
                let mut content = crate::testing::raw_object(LogTable::CloudTrail, &test.events).expect("example");
                let ctx = ObjectContext { bucket: "", key: "example", key_date: None };
                let parsed = parse_content(LogTable::CloudTrail, &mut content, &ctx).expect("example parses");
                examples.push(Example {
                    rule: rule.id.clone(),
                    name: test.name.clone(),
                    batch: parsed.batch,
                    expect: test.expect,
                    count: test.count,
                });
            }
        }
        examples
    }

    /// One runner, its plans executed over example after example: each run sees its own rows
    /// only — nothing of an earlier run's rows, joins or aggregations is left in the plans.
    #[tokio::test]
    async fn plans_run_again_over_new_rows_see_only_those_rows() {
        let pack: Vec<Rule> = crate::pack::builtin().expect("pack");
        let examples = cloudtrail_examples(&pack);
        assert!(examples.len() >= 30, "{} examples", examples.len());
        let mut runner = RowRunner::new(&pack, LogTable::CloudTrail, &Regions::default()).await.expect("planned");
        // Twice through, the second time in the other order.
        for example in examples.iter().chain(examples.iter().rev()) {
            let mut sightings = Sightings::default();
            sightings.observe(std::slice::from_ref(&example.batch)).expect("baseline");
            let baseline = sightings.to_batch().expect("baseline");
            let alerts = runner.run(vec![example.batch.clone()], Some(baseline)).await.expect("run");
            let got = alerts.iter().filter(|a| a.rule_id == example.rule).count() as u64;
            let expected = match (example.expect, example.count) {
                (Expect::None, _) => got == 0,
                (Expect::Alert, Some(count)) => got == count,
                (Expect::Alert, None) => got > 0,
            };
            assert!(expected, "{} / {}: {got} alerts", example.rule, example.name);
        }
        assert!(pack.iter().any(|r| r.mode == Mode::Row && r.sql.contains("JOIN")), "a join rule is among them");
    }

    /// The columns a slot holds (indices into its schema) and its rows as batches of all of them.
    type Held = (Vec<usize>, Vec<RecordBatch>);

    fn held(slot: &Slot) -> Held {
        let columns = lock(&slot.rows).columns.clone();
        let batches = slot.batches(&columns).expect("gathered");
        (columns, batches)
    }

    /// Rows from many small objects are gathered into few batches, of the columns read only; the
    /// rules limited to rare rows get only the rows meeting their limits, with the JSON columns
    /// they read, which the other rules' rows are gathered without.
    #[tokio::test]
    async fn rows_are_gathered_into_few_batches_of_the_columns_read() {
        let pack: Vec<Rule> = crate::pack::builtin().expect("pack");
        let runner = RowRunner::new(&pack, LogTable::CloudTrail, &Regions::default()).await.expect("planned");
        let examples = cloudtrail_examples(&pack);
        let batches: Vec<RecordBatch> =
            std::iter::repeat_with(|| examples.iter().map(|e| e.batch.clone())).take(400).flatten().collect();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert!(rows > 2 * BATCH_ROWS, "{rows} rows");
        let on_their_own = runner.plans.len()
            - SharedRead::plan(&row_rules(&pack, LogTable::CloudTrail), Scope::Commit)
                .await
                .expect("planned")
                .rules
                .len();
        assert!((1..=4).contains(&on_their_own), "{on_their_own} rules read every row");
        let schema = LogTable::CloudTrail.schema();
        let names = |g: &Held| -> Vec<String> { g.0.iter().map(|&c| schema.field(c).name().clone()).collect() };

        runner.rows.fill_where(&batches, None).expect("fill");
        let gathered = held(&runner.rows);
        assert_eq!(gathered.1.iter().map(RecordBatch::num_rows).sum::<usize>(), rows);
        assert_eq!(gathered.1.len(), rows.div_ceil(BATCH_ROWS));
        let read = names(&gathered);
        assert!(read.contains(&"awsregion".to_owned()), "{read:?}");
        assert!(!read.contains(&"requestparameters".to_owned()) && !read.contains(&"requestid".to_owned()), "{read:?}");

        let limited = runner.limited.as_ref().expect("rules limited to rare rows");
        limited.slot.fill_where(&batches, Some(limited.filter.as_ref())).expect("fill");
        // Objects with no row to pick leave nothing behind, not a part of empty columns.
        let parts: Vec<usize> = lock(&limited.slot.rows).parts.iter().map(RecordBatch::num_rows).collect();
        assert!(parts.len() < batches.len() && parts.iter().all(|&n| n > 0), "{parts:?}");
        let picked = held(&limited.slot);
        let picked_rows = picked.1.iter().map(RecordBatch::num_rows).sum::<usize>();
        assert!(picked_rows > 0 && picked_rows < rows, "{picked_rows} of {rows} rows");
        let read = names(&picked);
        assert!(read.contains(&"eventname".to_owned()) && read.contains(&"requestparameters".to_owned()), "{read:?}");
        assert!(!read.contains(&"requestid".to_owned()), "{read:?}");
        // Either slot holds the identity as the few fields its rules read.
        for g in [&gathered, &picked] {
            let at = g.0.binary_search(&schema.index_of(IDENTITY).expect("identity")).expect("identity gathered");
            let DataType::Struct(held) = g.1[0].schema().field(at).data_type().clone() else { panic!("a struct") };
            let DataType::Struct(all) = schema.field_with_name(IDENTITY).expect("identity").data_type().clone() else {
                panic!("a struct")
            };
            // The session context (a struct of structs) is the costly part; the pack reads a
            // handful of the flat fields (arn, type, invokedby, the access key, the user name).
            assert!(
                held.find("arn").is_some() && held.find("sessioncontext").is_none() && held.len() <= all.len() / 2,
                "{held:?}"
            );
        }
    }

    /// Big batches are taken as they are (projected), not copied into new ones.
    #[tokio::test]
    async fn big_batches_are_not_copied() {
        let pack: Vec<Rule> = crate::pack::builtin().expect("pack");
        let runner = RowRunner::new(&pack, LogTable::CloudTrail, &Regions::default()).await.expect("planned");
        let examples: Vec<RecordBatch> = cloudtrail_examples(&pack).into_iter().map(|e| e.batch).collect();
        let one = arrow::compute::concat_batches(&LogTable::CloudTrail.schema(), &examples).expect("one batch");
        let many = std::iter::repeat_n(one.clone(), BATCH_ROWS / one.num_rows() + 1).collect::<Vec<_>>();
        let big = arrow::compute::concat_batches(&one.schema(), &many).expect("big batch");
        assert!(big.num_rows() >= BATCH_ROWS);
        runner.rows.fill_where(&[big.clone(), one.clone()], None).expect("fill");
        let (columns, batches) = held(&runner.rows);
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [big.num_rows(), one.num_rows()]);
        let region = big.schema().index_of("awsregion").expect("awsregion");
        let at = columns.binary_search(&region).expect("awsregion gathered");
        assert!(
            batches[0].column(at).to_data().buffers()[0].as_ptr() == big.column(region).to_data().buffers()[0].as_ptr(),
            "the big batch was copied"
        );
    }

    /// The columns of the slot of every row that the plans gathered, run over `batches` with
    /// `allowed` as the organization's regions and an empty region baseline; and how many alerts
    /// of events outside those regions they raised.
    async fn columns_gathered(pack: &[Rule], batches: &[RecordBatch], allowed: &[&str]) -> (Vec<String>, usize) {
        let allowed = allowed.iter().map(|r| r.to_string()).collect();
        let regions = Regions::new(&RegionConfig { allowed, ..RegionConfig::default() }).expect("regions");
        let runner = RowRunner::new(pack, LogTable::CloudTrail, &regions).await.expect("planned");
        runner.rows.fill_where(batches, None).expect("fill");
        let alerts = runner.run_plans().await.expect("run");
        let outside = alerts.iter().filter(|a| a.rule_id == "aws-region-not-allowed").count();
        let schema = LogTable::CloudTrail.schema();
        let names = lock(&runner.rows.rows).gathered.keys().map(|&c| schema.field(c).name().clone()).collect();
        (names, outside)
    }

    /// A column only the far side of a join reads is not gathered when the join's near side is
    /// empty: with every region allowed and no first use of one, the region rules (the rules that
    /// read every row) have two columns of the rows gathered, not a dozen.
    #[tokio::test]
    async fn columns_behind_an_empty_join_are_not_gathered() {
        let pack: Vec<Rule> = crate::pack::builtin().expect("pack");
        let batches: Vec<RecordBatch> = cloudtrail_examples(&pack).into_iter().map(|e| e.batch).collect();
        let column = LogTable::CloudTrail.schema().index_of("awsregion").expect("awsregion");
        let mut used: Vec<&str> =
            batches.iter().flat_map(|b| b.column(column).as_string::<i32>().iter().flatten()).collect();
        used.sort_unstable();
        used.dedup();
        assert!(used.len() > 1, "{used:?}");

        let (inside, alerts) = columns_gathered(&pack, &batches, &used).await;
        assert_eq!(alerts, 0);
        assert!(inside.contains(&"awsregion".to_owned()), "{inside:?}");
        assert!(
            !inside.contains(&"sourceipaddress".to_owned()) && !inside.contains(&"eventid".to_owned()),
            "{inside:?}"
        );
        // A region outside the list: its events are read whole, and alert.
        let (outside, alerts) = columns_gathered(&pack, &batches, &used[1..]).await;
        assert!(alerts > 0);
        assert!(outside.contains(&"sourceipaddress".to_owned()), "{outside:?}");
    }

    /// A batch that is not of the table's schema is refused, not misread.
    #[tokio::test]
    async fn rows_of_another_schema_are_refused() {
        let pack: Vec<Rule> = crate::pack::builtin().expect("pack");
        let mut runner = RowRunner::new(&pack, LogTable::CloudTrail, &Regions::default()).await.expect("planned");
        let example = cloudtrail_examples(&pack).swap_remove(0).batch;
        let fewer: Vec<usize> = (1..example.num_columns()).collect();
        let other = example.project(&fewer).expect("projected");
        let Err(e) = runner.run(vec![example, other], None).await else { panic!("rows of another schema ran") };
        assert!(e.to_string().contains("table's columns"), "{e}");
    }
}
