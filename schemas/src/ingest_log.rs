//! The ingest log table (being written).
