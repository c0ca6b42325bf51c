//! What a statement will read, found in its physical plan before it runs: every Parquet file each
//! scan opens after partition pruning, with its size. `bunker query --explain` prints it, and the
//! pruning tests read it to prove a one-day query opens only that day's files.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;

/// One data file a plan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// The file's path in its object store, as the scan names it.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The files a plan reads, by scan (one per table a statement reads, in plan order).
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    /// One entry per file scan: a label for the scan (its store and columns) and its files.
    pub scans: Vec<(String, Vec<ScannedFile>)>,
}

impl ScanReport {
    /// Walks a physical plan and collects the files of every file scan in it.
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> ScanReport {
        let mut report = ScanReport::default();
        collect(plan, &mut report);
        report
    }

    /// Every file of every scan.
    pub fn files(&self) -> impl Iterator<Item = &ScannedFile> {
        self.scans.iter().flat_map(|(_, files)| files)
    }

    /// Total bytes of every file read.
    pub fn bytes(&self) -> u64 {
        self.files().map(|f| f.bytes).sum()
    }

    /// The `date=` partitions the files come from, with their file counts.
    pub fn partitions(&self) -> BTreeMap<String, usize> {
        let mut days = BTreeMap::new();
        for file in self.files() {
            let day = file
                .path
                .split('/')
                .find_map(|segment| segment.strip_prefix("date="))
                .unwrap_or("(unpartitioned)")
                .to_owned();
            *days.entry(day).or_insert(0) += 1;
        }
        days
    }
}

impl std::fmt::Display for ScanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |bytes: u64| bytes as f64 / (1u64 << 20) as f64;
        let files = self.files().count();
        writeln!(f, "reads {files} files, {:.2} MiB of Parquet, in {} scans", mib(self.bytes()), self.scans.len())?;
        for (label, files) in &self.scans {
            let bytes: u64 = files.iter().map(|f| f.bytes).sum();
            writeln!(f, "  scan {label}: {} files, {:.2} MiB", files.len(), mib(bytes))?;
        }
        let days = self.partitions();
        if let (Some(first), Some(last)) = (days.keys().next(), days.keys().next_back()) {
            writeln!(f, "  partitions: {} days, {first} .. {last}", days.len())?;
        }
        Ok(())
    }
}

fn collect(plan: &Arc<dyn ExecutionPlan>, report: &mut ScanReport) {
    if let Some(exec) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
    {
        // DataFusion splits a large file into byte ranges read in parallel: the same file then
        // sits in several groups, and is one file read once.
        let mut seen = std::collections::HashSet::new();
        let files = config
            .file_groups
            .iter()
            .flat_map(|group| group.files())
            .filter(|file| seen.insert(file.object_meta.location.clone()))
            .map(|file| ScannedFile { path: file.object_meta.location.to_string(), bytes: file.object_meta.size })
            .collect();
        let columns: Vec<String> = config
            .projected_schema()
            .map(|schema| schema.fields().iter().map(|f| f.name().clone()).collect())
            .unwrap_or_default();
        let shown = if columns.len() > 6 { format!("{}, ...", columns[..6].join(", ")) } else { columns.join(", ") };
        let label = format!("{} [{} columns: {shown}]", table_of(config), columns.len());
        report.scans.push((label, files));
    }
    for child in plan.children() {
        collect(child, report);
    }
}

/// The lake table a scan reads, from its object store URL or its files' paths.
fn table_of(config: &FileScanConfig) -> String {
    let url = config.object_store_url.as_str();
    let first = config.file_groups.iter().flat_map(|g| g.files()).next().map(|f| f.object_meta.location.to_string());
    for text in [Some(url.to_owned()), first].into_iter().flatten() {
        for table in crate::table_names() {
            let segment = format!("/{table}/");
            let dashed = format!("-{table}-");
            if text.contains(&segment) || text.contains(&dashed) || text.starts_with(&format!("{table}/")) {
                return table.to_owned();
            }
        }
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
    use datafusion::execution::object_store::ObjectStoreUrl;

    use super::*;

    /// A file split into byte ranges read in parallel is one file, counted and sized once.
    #[test]
    fn a_file_split_into_ranges_is_read_once() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let (path, size) = ("cloudtrail/date=2025-03-03/big.parquet".to_owned(), 1000);
        let groups = vec![
            FileGroup::new(vec![
                PartitionedFile::new_with_range(path.clone(), size, 0, 500),
                PartitionedFile::new("cloudtrail/date=2025-03-04/small.parquet", 10),
            ]),
            FileGroup::new(vec![PartitionedFile::new_with_range(path, size, 500, 1000)]),
        ];
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(ParquetSource::new(schema)))
                .with_file_groups(groups)
                .build();
        let plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        let report = ScanReport::of(&plan);
        assert_eq!(report.files().count(), 2);
        assert_eq!(report.bytes(), 1010);
        assert_eq!(
            report.partitions().into_iter().collect::<Vec<_>>(),
            [("2025-03-03".to_owned(), 1), ("2025-03-04".to_owned(), 1)]
        );
    }
}
