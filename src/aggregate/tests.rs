//! Unit tests of aggregation.
