//! cloudtrail (being written).
