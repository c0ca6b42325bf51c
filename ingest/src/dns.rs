//! dns (being written).
