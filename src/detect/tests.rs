//! Unit tests of the detection rules.
