//! faultline: failure analysis of LLM-agent systems from OpenTelemetry traces.
//!
//! # Layout
//!
//! The modules follow the pipeline, in the order data flows through it:
//!
//! - [`ingest`]: OTLP over gRPC and HTTP (traces and logs) into compact [`model`] records.
//!   The only module that knows OTLP wire types.
//! - [`wal`]: the write-ahead log of accepted requests, replayed into the pipeline at
//!   startup.
//! - [`pipeline`]: shards records by trace id onto worker threads and runs the core
//!   stages on each shard.
//! - [`memory`]: the memory budget in bytes that ingest and the shards charge.
//! - [`assemble`]: per-trace buffers; releases a [`model::Trajectory`] when a trace is
//!   complete, too old, too large, or when memory runs short.
//! - [`classify`]: the step of every span (planner, retriever, tool, ...).
//! - [`content`]: what a span said (answers, outputs, instructions, verdicts), read the
//!   same way across conventions by classify and detect.
//! - [`detect`]: failure signals, each a [`model::Finding`] with a reason.
//! - [`attribute`]: the outcome of the run and the step to blame.
//! - [`aggregate`]: per-step failure counts, root causes and latency by cohort, in
//!   event-time minute buckets; the aggregation metrics and the breakdown query.
//! - [`reasons`]: failure-reason clustering into patterns with stable ids.
//! - [`alerts`]: step-specific failure spikes and sustained shifts in event time;
//!   delivery to Alertmanager and a webhook.
//! - [`cohorts`]: failure-cohort discovery over a sliding window of recent trajectories,
//!   and the side-by-side comparison of two filters.
//! - [`analyze`]: the synchronous core that chains classify, detect and attribute.
//! - [`store`]: what the API reads: the recent analyses in memory and the SQLite store,
//!   written by its own thread.
//! - [`api`]: the JSON API, `/metrics` and health endpoints. The only module that knows
//!   the JSON shapes.
//! - [`ui`]: the web page, embedded static assets.
//! - [`metrics`]: self-metrics, all names in one place.
//! - [`push`]: the optional OTLP metrics push of the `/metrics` series to a collector.
//! - [`config`]: the config file, environment and flags, validated into settings.
//! - [`net`]: the listeners' connection cap and read deadlines (slow and idle clients),
//!   TLS on the connections, gRPC keepalive enforcement.
//! - [`security`]: TLS configs (with certificate reload), tokens, the API's `Host` check,
//!   CORS of OTLP/HTTP, the API's response headers.
//! - [`server`]: starts and stops everything in order.
//! - [`cli`]: the command line.
//! - [`simulate`]: agent traffic with planted faults and ground-truth labels, a client
//!   of faultline (the benchmarks' load and the demo's data).
//!
//! [`model`] is the shared vocabulary; it depends on nothing else in the crate.

pub mod aggregate;
pub mod alerts;
pub mod api;
pub mod cli;
pub mod cohorts;
pub mod config;
#[cfg(test)]
mod goldens;
pub mod ingest;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod push;
pub mod reasons;
pub mod security;
pub mod server;
pub mod store;
pub mod ui;
pub mod wal;

// The layers below, under the paths the service has always used for them.
pub use faultline_core::{
    analyze, assemble, attribute, classify, content, conventions, detect, model,
};
pub use faultline_sim as simulate;

#[cfg(test)]
pub(crate) use faultline_core::{golden, test_support};
