//! From log objects to lake rows: classification of object keys, gunzip, the CloudTrail, VPC Flow and
//! Route 53 Resolver parsers (synchronous, I/O-free, straight into Arrow), the Delta Lake writer, and
//! the drivers that walk a local archive or an S3 prefix, and the SQS worker.
//!
//! Data enters as an [`ObjectRef`] plus its bytes, and leaves as Arrow record batches committed to a
//! Delta table together with the list of objects they came from. Bad input becomes an
//! [`IngestError`] naming the object and the reason, recorded in the `ingest_log` table; it never
//! stops the rest of the work.
#![deny(missing_docs)]

pub mod baseline;
pub mod classify;
pub mod cloudtrail;
mod datafile;
pub mod decode;
pub mod dns;
mod error;
pub mod lake;
pub mod notification;
pub mod ops;
pub mod parsed;
pub mod pipeline;
pub mod s3;
pub mod synth;
#[cfg(test)]
mod test_support;
pub mod timestamp;
pub mod vpcflow;
pub mod worker;

pub use classify::{LogFormat, ObjectRef};
pub use error::{IngestError, Result};
pub use parsed::{ObjectContext, Parsed, Position, Rejected};
