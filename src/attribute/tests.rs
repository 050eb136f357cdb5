//! Unit tests of outcome and attribution.
