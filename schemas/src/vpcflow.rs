//! The vpcflow table (being written).

use arrow::datatypes::SchemaRef;

/// The table schema.
pub fn schema() -> SchemaRef {
    crate::with_lineage(vec![])
}
