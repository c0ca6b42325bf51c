//! End-to-end tests of the crates together: generated and hand-made archives through ingest into a
//! lake, checked with SQL. One binary, so it links once; each area is a module.

mod support;

mod athena_queries;
mod bad_input;
mod detections;
mod exactly_once;
mod object_identity;
mod real_samples;
mod stratus;
mod timeline;
