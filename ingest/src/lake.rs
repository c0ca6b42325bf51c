//! lake (being written).
