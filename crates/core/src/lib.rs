//! faultline-core: the pure, synchronous analysis of an LLM-agent run.
//!
//! A trajectory (the spans and log events of one trace) goes in; its steps, findings
//! and verdict come out. No IO, no async, no clock, no wire format: the service feeds
//! it from OTLP receivers, `faultline analyze` from files, the simulator's tests from
//! generated runs, and all three get the same answer for the same input.
//!
//! The modules follow the analysis, in the order data flows through it:
//!
//! - [`model`]: the shared vocabulary (spans, log events, trajectories, steps, findings,
//!   verdicts); plain data, no serde. It depends on nothing else here.
//! - [`conventions`]: the attribute keys of the instrumentation conventions, spelled once.
//! - [`content`]: reading payloads (prompts, outputs, tool results) out of attributes.
//! - [`assemble`]: per-trace buffers; releases a [`model::Trajectory`] when a trace is
//!   complete, too old, too large, or when memory runs short.
//! - [`classify`]: the step of every span (planner, retriever, tool, ...).
//! - [`detect`]: failure signals, each a [`model::Finding`] with a reason.
//! - [`attribute`]: the outcome of the run and the step to blame.
//! - [`analyze`]: chains classify, detect and attribute.
//!
//! With the `test-support` feature: `test_support` (span and trajectory builders) and
//! `golden` (expectation files and the stable rendering of an analysis), for the tests
//! of this crate and the crates above it.

pub mod analyze;
pub mod assemble;
pub mod attribute;
pub mod classify;
pub mod content;
pub mod conventions;
pub mod detect;
pub mod model;

#[cfg(any(test, feature = "test-support"))]
pub mod golden;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
