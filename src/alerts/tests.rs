//! Unit tests of the alert engine.
