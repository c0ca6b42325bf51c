//! Detections over the lake: rule files, the built-in rule pack, running rules on committed batches
//! and over history, alerts and their sinks.
//!
//! Nothing lives here yet: the detections milestone (rules as YAML files with DataFusion SQL,
//! dedup, the alerts table and sinks) builds it on top of `bunker-query`. The crate exists now so
//! that the dependency direction `schemas ← query ← detect ← CLI` is fixed from the start.
#![deny(missing_docs)]
