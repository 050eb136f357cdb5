//! Golden tests of the core on OTLP input: traces in `tests/data/trajectories/` are
//! decoded by the receivers' decoder (`faultline-otlp`), then classified or analysed by
//! `faultline-core`, rendered as stable text and compared with `<case>.expected`
//! (`faultline_core::golden`: a hand-written header says what a reviewer should see).
//!
//! They live here, above both crates, because the core must not know OTLP. The
//! simulated goldens are the simulator crate's.

mod analyze;
mod classify;
