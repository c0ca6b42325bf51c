//! vpcflow (being written).
