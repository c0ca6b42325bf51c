//! From log objects to lake rows: classification of object keys, gunzip, the CloudTrail, VPC Flow and
//! Route 53 Resolver parsers (synchronous, I/O-free, straight into Arrow), the Delta Lake writer, and
//! the drivers that walk a local archive or an S3 prefix, and the SQS worker.
//!
//! Data enters as an [`ObjectRef`] plus its bytes, and leaves as Arrow record batches committed to a
//! Delta table together with the list of objects they came from. Bad input becomes an
//! [`IngestError`] naming the object and the reason, recorded in the `ingest_log` table; it never
//! stops the rest of the work.
//!
//! The parsers and what they share (`classify`, `decode`, `notification`, `cloudtrail`, `vpcflow`,
//! `dns`, `parsed`, `timestamp`) build on their own with `--no-default-features`, without
//! deltalake, DataFusion or the AWS SDK; the default `lake` feature adds everything that does I/O.
#![deny(missing_docs)]

#[cfg(feature = "lake")]
pub mod baseline;
pub mod classify;
pub mod cloudtrail;
#[cfg(feature = "lake")]
pub mod compact;
#[cfg(feature = "lake")]
mod datafile;
pub mod decode;
pub mod dns;
mod error;
#[cfg(feature = "lake")]
pub mod lake;
#[cfg(feature = "lake")]
pub mod ledger;
pub mod notification;
#[cfg(feature = "lake")]
pub mod ops;
pub mod parsed;
#[cfg(feature = "lake")]
pub mod pipeline;
#[cfg(feature = "lake")]
pub mod retention;
#[cfg(feature = "lake")]
pub mod s3;
#[cfg(feature = "lake")]
pub mod synth;
pub mod tape;
#[cfg(test)]
mod test_support;
pub mod timestamp;
#[cfg(feature = "lake")]
pub mod vacuum;
pub mod vpcflow;
#[cfg(feature = "lake")]
pub mod worker;

pub use classify::{LogFormat, ObjectRef};
pub use error::{IngestError, Result};
pub use parsed::{ObjectContext, Parsed, Position, Rejected, Rejections};
