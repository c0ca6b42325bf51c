//! Row-group and page pruning for equality on struct fields, which DataFusion does not do.
//!
//! DataFusion 55 builds its Parquet pruning predicates from top-level columns only
//! (apache/datafusion#20871, still open): `WHERE useridentity.arn = 'arn:…'` on `cloudtrail` is
//! `get_field(useridentity, 'arn') = 'arn:…'`, and every row group of every file is decoded,
//! although each file keeps the min and max of the leaf column `useridentity.arn` for every row
//! group and, in its column index, for every page. Once a lake is compacted (`bunker compact`) so
//! that rows are clustered by identity, account and time, those statistics rule out almost
//! everything: a responder's query over the benchmark's week then reads one page per file.
//!
//! [`FieldPruningTable`] wraps a lake table's Delta provider and closes the gap for the conditions
//! min/max can answer: `<struct>.<field>[.<field>…] = '<string>'` and `… IN ('<string>', …)` on a
//! string leaf, at any depth (an `OR` of equalities on one field counts as an `IN`). Filters enter
//! through [`TableProvider::scan`]; the Delta provider plans its scan as it would have; the footer
//! of every file the scan will read, and its page index when a row group survives, is loaded
//! through the session's shared Parquet metadata cache (so the scan then reads it from memory);
//! and each file leaves with a [`ParquetAccessPlan`] that skips the row groups and pages whose
//! min/max exclude every wanted value, which DataFusion's Parquet opener applies before its own
//! pruning. Only rows that cannot match are skipped: a file, row group or page without usable
//! statistics is read whole, an error while loading a footer leaves that file alone, and the
//! filters themselves stay in the plan, so a query's answer never changes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{ScanArgs, ScanResult, Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Constraints, DFSchemaRef, Result, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, ParquetRowSelection, RowGroupAccess};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::dml::{InsertOp, MergeIntoClause};
use datafusion::logical_expr::expr::{Cast, InList, ScalarFunction, TryCast};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use futures::StreamExt;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::basic::{ColumnOrder, SortOrder, Type as PhysicalType};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::OffsetIndexMetaData;

/// How many footers one scan loads at once: on S3 each is a round trip or two, so a query over
/// hundreds of files would otherwise wait for them one after another.
const CONCURRENT_FOOTERS: usize = 16;

/// A table whose scans skip the row groups and pages that struct-field equality rules out; in
/// every other respect it is the table it wraps.
#[derive(Debug, Clone)]
pub struct FieldPruningTable {
    inner: Arc<dyn TableProvider>,
}

impl FieldPruningTable {
    /// Wraps `inner`, whose column and struct-field names must be the names in its Parquet files.
    pub fn new(inner: Arc<dyn TableProvider>) -> FieldPruningTable {
        FieldPruningTable { inner }
    }

    /// The provider to register for the Delta table `table`: `provider` wrapped, unless the table
    /// sets a column mapping mode. With column mapping its files name columns by physical names,
    /// which a query's field names cannot be matched to (and an old file's leaf may even carry a
    /// name that now belongs to another column), so such a table is left as Delta plans it.
    pub fn for_delta(table: &DeltaTable, provider: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        let column_mapping = table.snapshot().map_or(true, |state| state.table_config().column_mapping_mode.is_some());
        if column_mapping { provider } else { Arc::new(FieldPruningTable::new(provider)) }
    }

    /// The table this one wraps.
    pub fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    /// `plan`, the inner table's scan, with an access plan on every Parquet file whose statistics
    /// rule out some of its rows for `filters`; `plan` itself when nothing can be skipped.
    async fn prune(
        &self,
        state: &dyn Session,
        plan: Arc<dyn ExecutionPlan>,
        filters: &[Expr],
    ) -> Arc<dyn ExecutionPlan> {
        let conditions = conditions(filters, &self.inner.schema());
        if conditions.is_empty() {
            return plan;
        }
        let files = parquet_files(&plan);
        if files.is_empty() {
            return plan;
        }
        let runtime = state.runtime_env().as_ref();
        let conditions = conditions.as_slice();
        let plans: HashMap<FileKey, ParquetAccessPlan> = futures::stream::iter(files)
            .map(|(store_url, file)| async move {
                let plan = file_access_plan(runtime, &store_url, &file, conditions).await;
                plan.map(|plan| (file_key(&store_url, &file), plan))
            })
            .buffer_unordered(CONCURRENT_FOOTERS)
            .filter_map(|plan| async move { plan })
            .collect()
            .await;
        if plans.is_empty() {
            return plan;
        }
        // Rebuilding the plan fails only if an operator refuses its own children back; the scan
        // is then run as planned.
        attach_access_plans(Arc::clone(&plan), plans).unwrap_or(plan)
    }
}

#[async_trait]
impl TableProvider for FieldPruningTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, LogicalPlan>> {
        self.inner.get_logical_plan()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        Ok(self.prune(state, plan, filters).await)
    }

    async fn scan_with_args<'a>(&self, state: &dyn Session, args: ScanArgs<'a>) -> Result<ScanResult> {
        let filters = args.filters().unwrap_or_default();
        let plan = self.inner.scan_with_args(state, args).await?.into_inner();
        Ok(ScanResult::new(self.prune(state, plan, filters).await))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, insert_op).await
    }

    async fn delete_from(&self, state: &dyn Session, filters: Vec<Expr>) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.delete_from(state, filters).await
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.update(state, assignments, filters).await
    }

    async fn truncate(&self, state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.truncate(state).await
    }

    async fn merge_into(
        &self,
        state: &dyn Session,
        source: Arc<dyn ExecutionPlan>,
        merge_schema: DFSchemaRef,
        on: Expr,
        clauses: Vec<MergeIntoClause>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.merge_into(state, source, merge_schema, on, clauses).await
    }
}

/// A condition min/max statistics can answer: the string leaf at `path` equals one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeafCondition {
    /// The leaf's path from its top-level column, as Parquet names it: `["useridentity", "arn"]`.
    path: Vec<String>,
    /// The wanted values' UTF-8 bytes, sorted, without duplicates, never empty.
    values: Vec<Vec<u8>>,
}

impl LeafCondition {
    /// Whether a chunk of values between `min` and `max` can hold a wanted value. Strings are
    /// ordered by their bytes, unsigned, which is Parquet's order for them. A `max` that arrow-rs
    /// truncated (to 64 bytes by default) is still an upper bound: the writer increments the last
    /// character it keeps (parquet 59 `truncate_max_value` / `increment_utf8`), and keeps the
    /// value whole when it cannot; a truncated `min` is a prefix, so a lower bound.
    fn may_hold(&self, min: &[u8], max: &[u8]) -> bool {
        let first_not_below = self.values.partition_point(|value| value.as_slice() < min);
        self.values.get(first_not_below).is_some_and(|value| value.as_slice() <= max)
    }
}

/// The conditions among a scan's filters that statistics can answer, for a table of `schema`.
fn conditions(filters: &[Expr], schema: &Schema) -> Vec<LeafCondition> {
    filters
        .iter()
        .flat_map(|filter| split_conjunction(filter))
        .filter_map(condition)
        .filter(|condition| is_string_leaf(schema, &condition.path))
        .collect()
}

/// `field = 'v'` (either way round), `field IN ('v', …)`, or an `OR` of those on one field.
fn condition(expr: &Expr) -> Option<LeafCondition> {
    let (path, mut values) = match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (path, value) = match (leaf_path(left), string_literal(right)) {
                (Some(path), Some(value)) => (path, value),
                _ => (leaf_path(right)?, string_literal(left)?),
            };
            // `= NULL` matches nothing, but it is not worth a special case.
            (path, vec![value?.as_bytes().to_vec()])
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let (left, right) = (condition(left)?, condition(right)?);
            if left.path != right.path {
                return None;
            }
            (left.path, left.values.into_iter().chain(right.values).collect())
        }
        Expr::InList(InList { expr, list, negated: false }) => {
            let path = leaf_path(expr)?;
            let items = list.iter().map(string_literal).collect::<Option<Vec<_>>>()?;
            // A NULL in the list makes the test NULL for the other rows, and no filter keeps a
            // NULL: only the list's strings can let a row through.
            (path, items.into_iter().flatten().map(|value| value.as_bytes().to_vec()).collect())
        }
        _ => return None,
    };
    values.sort_unstable();
    values.dedup();
    (!values.is_empty()).then_some(LeafCondition { path, values })
}

/// The path of a struct leaf read by `get_field`, through a cast to another string type, which
/// keeps the bytes the statistics describe.
fn leaf_path(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) if is_string(field.data_type()) => {
            field_path(expr)
        }
        _ => field_path(expr),
    }
}

/// `get_field(column, 'a', 'b')` and `get_field(get_field(column, 'a'), 'b')` are both
/// `["column", "a", "b"]`.
fn field_path(expr: &Expr) -> Option<Vec<String>> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = expr else {
        return None;
    };
    if func.name() != "get_field" {
        return None;
    }
    let (base, names) = args.split_first()?;
    if names.is_empty() {
        return None;
    }
    let mut path = match base {
        Expr::Column(column) => vec![column.name.clone()],
        nested => field_path(nested)?,
    };
    for name in names {
        path.push(string_literal(name)??.to_owned());
    }
    Some(path)
}

/// `Some(Some(text))` for a string literal, `Some(None)` for a NULL string, `None` otherwise.
fn string_literal(expr: &Expr) -> Option<Option<&str>> {
    match expr {
        Expr::Literal(value, _) => value.try_as_str(),
        _ => None,
    }
}

/// Whether `path` names a string field reached through structs only (a `get_field` on a map
/// looks up a key, which no Parquet leaf path describes).
fn is_string_leaf(schema: &Schema, path: &[String]) -> bool {
    let Some((column, fields)) = path.split_first() else {
        return false;
    };
    let Ok(mut field) = schema.field_with_name(column) else {
        return false;
    };
    for name in fields {
        let DataType::Struct(children) = field.data_type() else {
            return false;
        };
        let Some((_, child)) = children.find(name) else {
            return false;
        };
        field = child.as_ref();
    }
    is_string(field.data_type())
}

fn is_string(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_string(values),
        _ => false,
    }
}

/// A file of one scan: its store's URL and its path there.
type FileKey = (String, String);

fn file_key(store_url: &ObjectStoreUrl, file: &PartitionedFile) -> FileKey {
    (store_url.as_str().to_owned(), file.object_meta.location.to_string())
}

/// The file configuration of a Parquet scan this module may give access plans to.
fn prunable_scan(plan: &dyn ExecutionPlan) -> Option<(&DataSourceExec, &FileScanConfig)> {
    let exec = plan.downcast_ref::<DataSourceExec>()?;
    let (config, _) = exec.downcast_to_file_source::<ParquetSource>()?;
    // Delta applies deletion vectors by the row positions it reads as a virtual column, and sets
    // its own per-scan metadata cache for them: such scans are left as Delta planned them.
    config.file_source().table_schema().virtual_columns().is_empty().then_some((exec, config))
}

/// A file already given an access plan or a row selection (by Delta, or by whoever built the
/// scan) keeps it: DataFusion refuses a file with both, and would not intersect two plans.
fn has_access_plan(file: &PartitionedFile) -> bool {
    file.extensions.contains::<ParquetAccessPlan>() || file.extensions.contains::<ParquetRowSelection>()
}

/// Every Parquet file of every prunable scan in `plan` that has no access plan yet.
fn parquet_files(plan: &Arc<dyn ExecutionPlan>) -> Vec<(ObjectStoreUrl, PartitionedFile)> {
    let mut files = Vec::new();
    // The visitor never fails; an error would only mean fewer files to prune.
    let _ = plan.apply(|node| {
        if let Some((_, config)) = prunable_scan(node.as_ref()) {
            let unplanned = config.file_groups.iter().flat_map(|group| group.iter()).filter(|f| !has_access_plan(f));
            files.extend(unplanned.map(|file| (config.object_store_url.clone(), file.clone())));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    files
}

/// `plan` with each file of `plans` carrying its access plan, in rebuilt scans.
fn attach_access_plans(
    plan: Arc<dyn ExecutionPlan>,
    mut plans: HashMap<FileKey, ParquetAccessPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let rewritten = plan.transform_up(|node| {
        Ok(match with_access_plans(node.as_ref(), &mut plans) {
            Some(scan) => Transformed::yes(scan),
            None => Transformed::no(node),
        })
    })?;
    Ok(rewritten.data)
}

/// The scan `node` rebuilt with the access plans of its files taken from `plans`; `None` when it
/// is not a prunable scan or none of its files has one.
fn with_access_plans(
    node: &dyn ExecutionPlan,
    plans: &mut HashMap<FileKey, ParquetAccessPlan>,
) -> Option<Arc<dyn ExecutionPlan>> {
    let (exec, config) = prunable_scan(node)?;
    let mut attached = false;
    let mut groups = Vec::with_capacity(config.file_groups.len());
    for group in &config.file_groups {
        let mut files = Vec::with_capacity(group.len());
        for file in group.iter() {
            let mut file = file.clone();
            if !has_access_plan(&file)
                && let Some(access) = plans.remove(&file_key(&config.object_store_url, &file))
            {
                file.extensions.insert(access);
                attached = true;
            }
            files.push(file);
        }
        let mut rebuilt = FileGroup::new(files);
        if let Some(statistics) = group.file_statistics(None) {
            rebuilt = rebuilt.with_statistics(Arc::new(statistics.clone()));
        }
        groups.push(rebuilt);
    }
    if !attached {
        return None;
    }
    let mut config = config.clone();
    config.file_groups = groups;
    Some(Arc::new(exec.clone().with_data_source(Arc::new(config))))
}

/// Which row groups and pages of one file can hold a row the conditions let through; `None` when
/// the whole file must be read, its footer could not be loaded, or it has no usable statistics.
///
/// The footer comes from the session's metadata cache (and goes into it), so the scan that follows
/// does not read it again. The page index, often larger than the rest of the footer, is read only
/// when a row group survives and the file has one for a condition's leaf.
async fn file_access_plan(
    runtime: &RuntimeEnv,
    store_url: &ObjectStoreUrl,
    file: &PartitionedFile,
    conditions: &[LeafCondition],
) -> Option<ParquetAccessPlan> {
    let store = runtime.object_store(store_url).ok()?;
    let cache = runtime.cache_manager.get_file_metadata_cache();
    let fetch = |policy| {
        DFParquetMetadata::new(store.as_ref(), &file.object_meta)
            .with_metadata_size_hint(file.metadata_size_hint)
            .with_file_metadata_cache(Some(Arc::clone(&cache)))
            .with_page_index_policy(Some(policy))
    };
    let footer = fetch(PageIndexPolicy::Skip).fetch_metadata().await.ok()?;
    let leaves = usable_leaves(&footer, conditions);
    if leaves.is_empty() {
        return None;
    }
    let mut plan = row_group_plan(&footer, &leaves);
    let metadata = if wants_page_index(&footer, &plan, &leaves) {
        // Without its page index the file is still pruned by row group.
        fetch(PageIndexPolicy::Optional).fetch_metadata().await.unwrap_or(footer)
    } else {
        footer
    };
    narrow_to_pages(&metadata, &leaves, &mut plan);
    plan.inner().iter().any(|access| *access != RowGroupAccess::Scan).then_some(plan)
}

/// The conditions whose leaf the file has with statistics in byte order, with the leaf's index.
fn usable_leaves<'c>(metadata: &ParquetMetaData, conditions: &'c [LeafCondition]) -> Vec<(usize, &'c LeafCondition)> {
    let file = metadata.file_metadata();
    let schema = file.schema_descr();
    conditions
        .iter()
        .filter_map(|condition| {
            let leaf = schema.columns().iter().position(|column| column.path().parts() == condition.path.as_slice())?;
            let column = schema.column(leaf);
            // Byte-wise min/max holds for a non-repeated BYTE_ARRAY leaf whose file declares the
            // type-defined (unsigned) order; writers before that order compared bytes as signed.
            let usable = column.physical_type() == PhysicalType::BYTE_ARRAY
                && column.max_rep_level() == 0
                && file.column_order(leaf) == ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::UNSIGNED);
            usable.then_some((leaf, condition))
        })
        .collect()
}

/// Every row group, skipped where some condition's leaf statistics rule it out.
fn row_group_plan(metadata: &ParquetMetaData, leaves: &[(usize, &LeafCondition)]) -> ParquetAccessPlan {
    let mut plan = ParquetAccessPlan::new_all(metadata.num_row_groups());
    for (index, group) in metadata.row_groups().iter().enumerate() {
        let ruled_out = leaves.iter().any(|&(leaf, condition)| {
            let Some(statistics) = group.column(leaf).statistics() else {
                return false;
            };
            match (statistics.min_bytes_opt(), statistics.max_bytes_opt()) {
                (Some(min), Some(max)) => !statistics.is_min_max_deprecated() && !condition.may_hold(min, max),
                // No min/max because every value is null (the leaf is not repeated, so it has one
                // value per row): a null equals nothing.
                (None, None) => {
                    u64::try_from(group.num_rows()).is_ok_and(|rows| statistics.null_count_opt() == Some(rows))
                }
                _ => false,
            }
        });
        if ruled_out {
            plan.skip(index);
        }
    }
    plan
}

/// Whether reading the page index could skip pages: a row group is still read, a condition's
/// leaf has column and offset indexes there, and the metadata does not hold them yet.
fn wants_page_index(metadata: &ParquetMetaData, plan: &ParquetAccessPlan, leaves: &[(usize, &LeafCondition)]) -> bool {
    if metadata.column_index().is_some() && metadata.offset_index().is_some() {
        return false;
    }
    plan.row_group_index_iter().any(|index| {
        leaves.iter().any(|&(leaf, _)| {
            let column = metadata.row_group(index).column(leaf);
            column.column_index_offset().is_some() && column.offset_index_offset().is_some()
        })
    })
}

/// Narrows each row group still read to the pages every condition's column index lets through.
fn narrow_to_pages(metadata: &ParquetMetaData, leaves: &[(usize, &LeafCondition)], plan: &mut ParquetAccessPlan) {
    let (Some(column_indexes), Some(offset_indexes)) = (metadata.column_index(), metadata.offset_index()) else {
        return;
    };
    for index in 0..plan.len() {
        let Ok(rows) = usize::try_from(metadata.row_group(index).num_rows()) else {
            continue;
        };
        for &(leaf, condition) in leaves {
            if !plan.should_scan(index) {
                break;
            }
            let pages = column_indexes.get(index).and_then(|columns| columns.get(leaf));
            let offsets = offset_indexes.get(index).and_then(|columns| columns.get(leaf));
            let Some(selection) =
                pages.zip(offsets).and_then(|(pages, offsets)| page_selection(pages, offsets, rows, condition))
            else {
                continue;
            };
            if !selection.selects_any() {
                plan.skip(index);
            } else if selection.skipped_row_count() > 0 {
                plan.scan_selection(index, selection);
            }
        }
        // Two conditions' pages may not overlap at all.
        if let RowGroupAccess::Selection(selection) = &plan.inner()[index]
            && !selection.selects_any()
        {
            plan.skip(index);
        }
    }
}

/// The rows of one row group (of `rows` rows) on pages that can hold a wanted value; `None` when
/// the index cannot say (no min/max, or page locations that do not cover the row group).
fn page_selection(
    pages: &ColumnIndexMetaData,
    offsets: &OffsetIndexMetaData,
    rows: usize,
    condition: &LeafCondition,
) -> Option<RowSelection> {
    let ColumnIndexMetaData::BYTE_ARRAY(pages) = pages else {
        return None;
    };
    let locations = offsets.page_locations();
    if locations.is_empty() || usize::try_from(pages.num_pages()).ok()? != locations.len() {
        return None;
    }
    let mut selectors = Vec::with_capacity(locations.len());
    let mut next_row = 0;
    for (page, location) in locations.iter().enumerate() {
        let first = usize::try_from(location.first_row_index).ok()?;
        let end = match locations.get(page + 1) {
            Some(next) => usize::try_from(next.first_row_index).ok()?,
            None => rows,
        };
        if first != next_row || end < first {
            return None;
        }
        next_row = end;
        // A page of nulls only (the index says so: `null_pages`) holds no match; one with values
        // has its min and max.
        let keep = !pages.is_null_page(page)
            && match (pages.min_value(page), pages.max_value(page)) {
                (Some(min), Some(max)) => condition.may_hold(min, max),
                _ => true,
            };
        selectors.push(if keep { RowSelector::select(end - first) } else { RowSelector::skip(end - first) });
    }
    (next_row == rows).then(|| RowSelection::from(selectors))
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow::buffer::NullBuffer;
    use arrow::datatypes::{Field, Fields, Int64Type};
    use datafusion::common::ScalarValue;
    use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
    use datafusion::functions::core::expr_fn::{get_field, get_field_path};
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionContext, cast, col, lit, try_cast};
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// Rows per file, and the row group and page sizes the files are written with.
    const FILE_ROWS: usize = 1000;
    const GROUP_ROWS: usize = 100;
    const PAGE_ROWS: usize = 10;

    fn identity_fields() -> Fields {
        let session = Fields::from(vec![Field::new("issuer", DataType::Utf8, true)]);
        Fields::from(vec![
            Field::new("arn", DataType::Utf8, true),
            Field::new("session", DataType::Struct(session), true),
        ])
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("region", DataType::Utf8, true),
            Field::new("who", DataType::Struct(identity_fields()), true),
        ]))
    }

    /// Row `row`'s `who.arn`: sorted by row, as a compacted lake clusters them, with a row group of
    /// nulls, scattered nulls, and ARNs longer than the 64 bytes statistics keep at the end.
    fn arn(row: usize) -> Option<String> {
        match row {
            300..400 => None,
            _ if row % 250 == 7 => None,
            1900.. => Some(format!("arn:aws:sts::123456789012:assumed-role/AnalystRoleWithAVeryLongName/s{row:05}")),
            _ => Some(format!("arn:aws:iam::123456789012:user/u{row:05}")),
        }
    }

    /// Whether row `row` has a `who` at all.
    fn has_identity(row: usize) -> bool {
        row % 333 != 5
    }

    /// Row `row`'s `who.session.issuer`, a leaf two structs deep.
    fn issuer(row: usize) -> String {
        format!("issuer-{:03}", row / 50)
    }

    fn batch(rows: Range<usize>) -> RecordBatch {
        let ids: ArrayRef = Arc::new(rows.clone().map(|row| row as i64).collect::<Int64Array>());
        let regions: ArrayRef =
            Arc::new(rows.clone().map(|row| Some(["us-east-1", "eu-west-1"][row % 2])).collect::<StringArray>());
        let arns: ArrayRef = Arc::new(rows.clone().map(arn).collect::<StringArray>());
        let issuers: ArrayRef = Arc::new(rows.clone().map(|row| Some(issuer(row))).collect::<StringArray>());
        let session_fields = Fields::from(vec![Field::new("issuer", DataType::Utf8, true)]);
        let sessions: ArrayRef = Arc::new(StructArray::new(session_fields, vec![issuers], None));
        let valid = NullBuffer::from(rows.clone().map(has_identity).collect::<Vec<_>>());
        let who: ArrayRef = Arc::new(StructArray::new(identity_fields(), vec![arns, sessions], Some(valid)));
        RecordBatch::try_new(schema(), vec![ids, regions, who]).expect("batch")
    }

    /// A Delta table of two files of [`FILE_ROWS`] rows, in row groups of [`GROUP_ROWS`] and pages
    /// of [`PAGE_ROWS`].
    async fn lake_table(dir: &std::path::Path) -> DeltaTable {
        let properties = || {
            WriterProperties::builder()
                .set_max_row_group_row_count(Some(GROUP_ROWS))
                .set_data_page_row_count_limit(PAGE_ROWS)
                .set_write_batch_size(PAGE_ROWS)
                .build()
        };
        let url = url::Url::from_directory_path(dir).expect("url");
        let mut table = DeltaTable::try_from_url(url).await.expect("table");
        for file in 0..2 {
            let rows = file * FILE_ROWS..(file + 1) * FILE_ROWS;
            table = table.write(vec![batch(rows)]).with_writer_properties(properties()).await.expect("write");
        }
        table
    }

    /// A session over `table` as `t`, with or without [`FieldPruningTable`].
    async fn session(table: &DeltaTable, pruning: bool) -> SessionContext {
        let ctx = SessionContext::new_with_config(crate::lake_config());
        table.update_datafusion_session(&ctx.state()).expect("session");
        let provider = table.table_provider().await.expect("provider");
        let provider = if pruning { FieldPruningTable::for_delta(table, provider) } else { provider };
        ctx.register_table("t", provider).expect("register");
        ctx
    }

    /// Row `row`'s `who.arn` as a query sees it: null when the row has no `who`.
    fn who_arn(row: usize) -> Option<String> {
        arn(row).filter(|_| has_identity(row))
    }

    /// The user ARN of row `row`, present or not.
    fn user(row: usize) -> String {
        format!("arn:aws:iam::123456789012:user/u{row:05}")
    }

    /// The ids `SELECT id FROM t WHERE {condition}` returns, in order.
    async fn ids(ctx: &SessionContext, condition: &str) -> Vec<i64> {
        let sql = format!("SELECT id FROM t WHERE {condition} ORDER BY id");
        let batches = ctx.sql(&sql).await.expect(&sql).collect().await.expect(&sql);
        batches.iter().flat_map(|batch| batch.column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
    }

    /// The files the physical plan of `SELECT id FROM t WHERE {condition}` reads with an access
    /// plan, with the session's plan.
    async fn planned_files(ctx: &SessionContext, condition: &str) -> Vec<PartitionedFile> {
        let sql = format!("SELECT id FROM t WHERE {condition}");
        let plan = ctx.sql(&sql).await.expect(&sql).create_physical_plan().await.expect(&sql);
        let mut files = Vec::new();
        plan.apply(|node| {
            if let Some(config) = node
                .downcast_ref::<DataSourceExec>()
                .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
            {
                let planned = config.file_groups.iter().flat_map(|group| group.iter()).filter(|f| has_access_plan(f));
                files.extend(planned.cloned());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walk");
        files
    }

    /// The rows the scans decoded and tested against the filter pushed into them, when
    /// `SELECT id FROM t WHERE {condition}` ran.
    async fn decoded_rows(ctx: &SessionContext, condition: &str) -> usize {
        let sql = format!("SELECT id FROM t WHERE {condition}");
        let plan = ctx.sql(&sql).await.expect(&sql).create_physical_plan().await.expect(&sql);
        collect(Arc::clone(&plan), ctx.task_ctx()).await.expect(&sql);
        let mut rows = 0;
        plan.apply(|node| {
            if node.downcast_ref::<DataSourceExec>().is_some()
                && let Some(metrics) = node.metrics()
            {
                for name in ["pushdown_rows_pruned", "pushdown_rows_matched"] {
                    rows += metrics.sum_by_name(name).map_or(0, |value| value.as_usize());
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walk");
        rows
    }

    #[tokio::test]
    async fn answers_are_the_same_with_and_without_pruning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = lake_table(dir.path()).await;
        let (plain, pruned) = (session(&table, false).await, session(&table, true).await);
        let long = arn(1950).expect("long ARN");
        let nobody = "arn:aws:iam::123456789012:user/nobody";
        type Expected = Box<dyn Fn(usize) -> bool>;
        let is = |wanted: Vec<String>| -> Expected {
            Box::new(move |row| who_arn(row).is_some_and(|a| wanted.contains(&a)))
        };
        let cases: Vec<(String, Expected)> = vec![
            (format!("who.arn = '{}'", user(123)), is(vec![user(123)])),
            (format!("'{}' = who.arn", user(123)), is(vec![user(123)])),
            (
                format!("who.arn IN ('{}', '{}', '{long}', '{nobody}')", user(4), user(1500)),
                is(vec![user(4), user(1500), long.clone()]),
            ),
            (format!("who.arn = '{}' OR who.arn = '{}'", user(10), user(1800)), is(vec![user(10), user(1800)])),
            // Absent: between the values, below the smallest, above the largest.
            (format!("who.arn = '{nobody}'"), is(vec![])),
            ("who.arn = 'a'".to_owned(), is(vec![])),
            ("who.arn = 'zzz'".to_owned(), is(vec![])),
            // The first and last rows of a file, of a row group, of a page.
            (format!("who.arn = '{}'", user(0)), is(vec![user(0)])),
            (format!("who.arn IN ('{}', '{}')", user(999), user(1000)), is(vec![user(999), user(1000)])),
            (format!("who.arn = '{}'", user(199)), is(vec![user(199)])),
            (format!("who.arn = '{}'", user(200)), is(vec![user(200)])),
            (format!("who.arn IN ('{}', '{}')", user(209), user(210)), is(vec![user(209), user(210)])),
            // Longer than the 64 bytes the statistics keep, so the files' maxima are truncated.
            (format!("who.arn = '{long}'"), is(vec![long.clone()])),
            // Null leaves: a null ARN, a null `who` (row 5), a row group of null ARNs.
            (format!("who.arn = '{}'", user(257)), is(vec![])),
            (format!("who.arn = '{}'", user(5)), is(vec![])),
            (format!("who.arn = '{}'", user(350)), is(vec![])),
            ("who.arn IS NULL".to_owned(), Box::new(|row| who_arn(row).is_none())),
            (
                format!("who.arn = '{}' OR who.arn IS NULL", user(123)),
                Box::new(|row| who_arn(row).is_none() || row == 123),
            ),
            // With other predicates, and with a second field condition.
            (
                format!(
                    "who.arn IN ('{}', '{}', '{}') AND region = 'us-east-1' AND id > 122",
                    user(122),
                    user(123),
                    user(124)
                ),
                Box::new(|row| row == 124),
            ),
            (
                format!("who.arn IN ('{}', '{}') AND who.session.issuer = 'issuer-024'", user(1220), user(1230)),
                is(vec![user(1220), user(1230)]),
            ),
            (format!("who.arn = '{}' AND who.session.issuer = 'issuer-030'", user(1220)), is(vec![])),
            // A leaf two structs deep.
            (
                "who.session.issuer = 'issuer-007'".to_owned(),
                Box::new(|row| has_identity(row) && issuer(row) == "issuer-007"),
            ),
            (
                "who['session']['issuer'] IN ('issuer-000', 'issuer-039')".to_owned(),
                Box::new(|row| has_identity(row) && ["issuer-000", "issuer-039"].contains(&issuer(row).as_str())),
            ),
            (format!("arrow_cast(who.arn, 'LargeUtf8') = '{}'", user(321)), is(vec![user(321)])),
            // Conditions pruning does not use.
            ("who.arn LIKE '%u0012%'".to_owned(), Box::new(|row| who_arn(row).is_some_and(|a| a.contains("u0012")))),
            (
                format!("who.arn <> '{}' AND id < 20", user(1)),
                Box::new(|row| row < 20 && row != 1 && who_arn(row).is_some()),
            ),
            (
                format!("who.arn = '{}' OR who.session.issuer = 'issuer-030'", user(1)),
                Box::new(|row| row == 1 || (has_identity(row) && issuer(row) == "issuer-030")),
            ),
        ];
        for (condition, expected) in cases {
            let expected: Vec<i64> = (0..2 * FILE_ROWS).filter(|&row| expected(row)).map(|row| row as i64).collect();
            assert_eq!(ids(&plain, &condition).await, expected, "without pruning: {condition}");
            assert_eq!(ids(&pruned, &condition).await, expected, "with pruning: {condition}");
        }
    }

    #[tokio::test]
    async fn skips_the_row_groups_and_pages_that_cannot_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = lake_table(dir.path()).await;
        let (plain, pruned) = (session(&table, false).await, session(&table, true).await);
        let groups = FILE_ROWS / GROUP_ROWS;

        // Row 123 is on the third page of the second row group of the first file.
        let condition = format!("who.arn = '{}'", user(123));
        let files = planned_files(&pruned, &condition).await;
        assert_eq!(files.len(), 1, "{files:?}");
        let plan = files[0].extension::<ParquetAccessPlan>().expect("plan");
        assert_eq!(plan.len(), groups, "the file has {groups} row groups: {plan:?}");
        assert_eq!(plan.row_group_indexes(), vec![1], "{plan:?}");
        let RowGroupAccess::Selection(selection) = &plan.inner()[1] else { panic!("no page selection: {plan:?}") };
        assert_eq!((selection.skipped_row_count(), selection.row_count()), (GROUP_ROWS - PAGE_ROWS, PAGE_ROWS));

        // The footer and page index read for the plan are in the session's cache for the scan.
        let cache = pruned.runtime_env().cache_manager.get_file_metadata_cache();
        let cached = cache.get(&files[0].object_meta.location).expect("footer cached");
        let metadata = cached.file_metadata.as_any().downcast_ref::<CachedParquetMetaData>().expect("parquet footer");
        assert!(metadata.parquet_metadata().column_index().is_some(), "page index not cached");

        // DataFusion applies the plan: one page decoded instead of the whole file (DataFusion
        // does not prune by struct fields itself; when it does, this module can go).
        assert_eq!(decoded_rows(&pruned, &condition).await, PAGE_ROWS);
        assert_eq!(decoded_rows(&plain, &condition).await, FILE_ROWS);

        // A row group whose ARNs are all null is skipped too, although it has no min or max.
        let files = planned_files(&pruned, &format!("who.arn = '{}'", user(350))).await;
        let plans: Vec<_> = files.iter().filter_map(|f| f.extension::<ParquetAccessPlan>()).collect();
        assert!(!plans.is_empty() && plans.iter().all(|plan| plan.row_group_indexes().is_empty()), "{plans:?}");

        // Two ARNs on two pages of one row group, and one in the other file.
        let condition = format!("who.arn IN ('{}', '{}', '{}')", user(1201), user(1295), user(10));
        let files = planned_files(&pruned, &condition).await;
        let selected: usize = files
            .iter()
            .filter_map(|f| f.extension::<ParquetAccessPlan>())
            .flat_map(|plan| plan.inner().iter())
            .map(|access| match access {
                RowGroupAccess::Skip => 0,
                RowGroupAccess::Scan => GROUP_ROWS,
                RowGroupAccess::Selection(selection) => selection.row_count(),
            })
            .sum();
        assert_eq!((files.len(), selected), (2, 3 * PAGE_ROWS), "{files:?}");
        assert_eq!(decoded_rows(&pruned, &condition).await, 3 * PAGE_ROWS);
    }

    #[tokio::test]
    async fn lake_sessions_prune_the_log_tables() {
        // The wrapper only helps if `LakeSession` registers it for the log tables.
        let lake = tempfile::tempdir().expect("tempdir");
        let dir = lake.path().join("cloudtrail");
        std::fs::create_dir_all(&dir).expect("mkdir");
        lake_table(&dir).await;
        let session = crate::LakeSession::open(lake.path()).await.expect("open");
        let provider = session.context().table_provider("cloudtrail").await.expect("cloudtrail");
        assert!(provider.downcast_ref::<FieldPruningTable>().is_some(), "{provider:?}");
        let sql = format!("SELECT id FROM cloudtrail WHERE who.arn = '{}'", user(123));
        let plan = session.plan(&sql).await.expect("plan").create_physical_plan().await.expect("physical");
        let mut planned = 0;
        plan.apply(|node| {
            if let Some((_, config)) = prunable_scan(node.as_ref()) {
                planned +=
                    config.file_groups.iter().flat_map(|group| group.iter()).filter(|f| has_access_plan(f)).count();
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walk");
        assert_eq!(planned, 1);
        assert_eq!(session.sql(&sql).await.expect("sql").1.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }

    #[tokio::test]
    async fn leaves_the_scan_alone_for_filters_it_cannot_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = lake_table(dir.path()).await;
        let ctx = session(&table, false).await;
        let state = ctx.state();
        let inner = table.table_provider().await.expect("provider");
        let pruning = FieldPruningTable::new(Arc::clone(&inner));
        let arn = || get_field(col("who"), "arn");
        let unusable = [
            arn().like(lit("%u0012%")),
            arn().not_eq(lit(user(123))),
            arn().eq(lit(user(123))).or(get_field_path(col("who"), vec![lit("session"), lit("issuer")]).eq(lit("x"))),
            arn().in_list(vec![lit(user(123))], true),
            arn().gt(lit(user(123))),
            col("region").eq(lit("us-east-1")),
        ];
        for filter in unusable {
            let filters = [filter];
            let plan = inner.scan(&state, None, &filters, None).await.expect("scan");
            let scanned = pruning.prune(&state, Arc::clone(&plan), &filters).await;
            assert!(Arc::ptr_eq(&plan, &scanned), "{} changed the plan", filters[0]);
        }
        // The same scan with a condition it can use is rewritten, so the checks above can fail.
        let filters = [arn().eq(lit(user(123)))];
        let plan = inner.scan(&state, None, &filters, None).await.expect("scan");
        assert!(!Arc::ptr_eq(&plan, &pruning.prune(&state, Arc::clone(&plan), &filters).await));
    }

    #[tokio::test]
    async fn reads_the_filters_datafusion_plans_for_struct_fields() {
        // DataFusion 55 hands the scan `get_field(who, 'arn') = Utf8View('…')`, one `get_field`
        // with every name for a deeper leaf, and keeps `IN` lists; if that changes, pruning
        // would silently stop.
        let dir = tempfile::tempdir().expect("tempdir");
        let table = lake_table(dir.path()).await;
        let ctx = session(&table, false).await;
        let sql = "SELECT id FROM t WHERE who.arn = 'a' AND who['session']['issuer'] IN ('b', 'c') AND region = 'd'";
        let plan = ctx.sql(sql).await.expect("sql").into_optimized_plan().expect("plan");
        let mut filters = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                filters.extend(scan.filters.iter().cloned());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walk");
        let mut found = conditions(&filters, &table.table_provider().await.expect("provider").schema());
        found.sort_by(|a, b| a.path.cmp(&b.path));
        let expected = [(vec!["who", "arn"], vec!["a"]), (vec!["who", "session", "issuer"], vec!["b", "c"])];
        let expected: Vec<LeafCondition> = expected
            .into_iter()
            .map(|(path, values)| LeafCondition {
                path: path.into_iter().map(str::to_owned).collect(),
                values: values.into_iter().map(|v| v.as_bytes().to_vec()).collect(),
            })
            .collect();
        assert_eq!(found, expected, "{filters:?}");
    }

    #[test]
    fn recognises_equality_and_in_on_string_leaves() {
        let leaf = |path: &[&str], values: &[&str]| {
            Some(LeafCondition {
                path: path.iter().map(|p| p.to_string()).collect(),
                values: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            })
        };
        let arn = || get_field(col("who"), "arn");
        let issuer = || get_field(get_field(col("who"), "session"), "issuer");
        let null = || lit(ScalarValue::Utf8(None));
        let cases = [
            (arn().eq(lit("x")), leaf(&["who", "arn"], &["x"])),
            (lit(ScalarValue::Utf8View(Some("x".into()))).eq(arn()), leaf(&["who", "arn"], &["x"])),
            (arn().eq(lit(ScalarValue::LargeUtf8(Some("x".into())))), leaf(&["who", "arn"], &["x"])),
            (cast(arn(), DataType::Utf8View).eq(lit("x")), leaf(&["who", "arn"], &["x"])),
            (try_cast(arn(), DataType::LargeUtf8).eq(lit("x")), leaf(&["who", "arn"], &["x"])),
            (arn().in_list(vec![lit("y"), lit("x"), null(), lit("y")], false), leaf(&["who", "arn"], &["x", "y"])),
            (arn().eq(lit("y")).or(arn().eq(lit("x"))), leaf(&["who", "arn"], &["x", "y"])),
            (issuer().eq(lit("i")), leaf(&["who", "session", "issuer"], &["i"])),
            (
                get_field_path(col("who"), vec![lit("session"), lit("issuer")]).eq(lit("i")),
                leaf(&["who", "session", "issuer"], &["i"]),
            ),
            // Not answerable by min/max, or not a struct leaf of this table.
            (arn().eq(null()), None),
            (arn().in_list(vec![null()], false), None),
            (arn().in_list(vec![lit("x")], true), None),
            (arn().eq(lit(1)), None),
            (cast(arn(), DataType::Int64).eq(lit(1)), None),
            (arn().eq(col("region")), None),
            (arn().eq(lit("x")).or(issuer().eq(lit("x"))), None),
            (col("region").eq(lit("x")), None),
            (get_field(col("who"), "session").eq(lit("x")), None),
            (get_field(col("who"), "missing").eq(lit("x")), None),
            (get_field(col("missing"), "arn").eq(lit("x")), None),
        ];
        for (expr, expected) in cases {
            assert_eq!(conditions(std::slice::from_ref(&expr), &schema()).pop(), expected, "{expr}");
        }
    }

    #[test]
    fn a_chunk_may_hold_a_value_between_its_min_and_max() {
        let wanted = LeafCondition { path: vec![], values: vec![b"b".to_vec(), b"m".to_vec()] };
        let cases: [(&str, &str, bool); 8] = [
            ("a", "c", true),
            ("b", "b", true),
            ("m", "z", true),
            ("bb", "mm", true),
            ("c", "l", false),
            ("n", "z", false),
            ("", "a", false),
            ("a", "az", false),
        ];
        for (min, max, expected) in cases {
            assert_eq!(wanted.may_hold(min.as_bytes(), max.as_bytes()), expected, "{min:?}..{max:?}");
        }
        // Bounds truncated as arrow-rs truncates them (a prefix for the minimum, the kept prefix
        // with its last character incremented for the maximum) still bracket the values.
        let wanted = LeafCondition { path: vec![], values: vec![user(1234).into_bytes()] };
        let (min, max) = (&user(1200)[..36], "arn:aws:iam::123456789012:user/u013");
        assert!(wanted.may_hold(min.as_bytes(), max.as_bytes()), "{min:?}..{max:?}");
    }
}
