//! faultline: failure analysis of LLM-agent systems from OpenTelemetry traces.
//!
//! # Layout
//!
//! This is the service crate: the receivers, the pipeline and its sinks, the API, the
//! store, alerts and the command line. The analysis itself is `faultline-core` and the
//! OTLP decoding `faultline-otlp`; the simulator is `faultline-sim`. Their modules are
//! re-exported here under the paths the service always used ([`model`], [`assemble`],
//! [`classify`], [`content`], [`conventions`], [`detect`], [`attribute`], [`analyze`],
//! [`simulate`]). `ARCHITECTURE.md` has the crate and layer diagram.
//!
//! The modules follow the pipeline, in the order data flows through it:
//!
//! - [`ingest`]: OTLP over gRPC and HTTP (traces and logs) into compact [`model`] records
//!   (decoded by `faultline-otlp`).
//! - [`wal`]: the write-ahead log of accepted requests, replayed into the pipeline at
//!   startup.
//! - [`pipeline`]: shards records by trace id onto worker threads, runs the core on each
//!   shard, then its stages: discovery (the reason patterns), count (the aggregator),
//!   the other sinks.
//! - [`memory`]: the memory budget in bytes that ingest and the shards charge.
//! - [`aggregate`]: per-step failure counts, root causes and latency by cohort, in
//!   event-time minute buckets; the aggregation metrics and the breakdown query.
//! - [`reasons`]: failure-reason clustering into patterns with stable ids.
//! - [`alerts`]: step-specific failure spikes and sustained shifts in event time;
//!   delivery to Alertmanager and a webhook.
//! - [`cohorts`]: failure-cohort discovery over a sliding window of recent trajectories,
//!   and the side-by-side comparison of two filters.
//! - [`store`]: what the API reads: the recent analyses in memory and the SQLite store,
//!   written by its own thread, in its own versioned document format.
//! - [`api`]: the JSON API, `/metrics` and health endpoints. The only module that knows
//!   the JSON shapes.
//! - [`ui`]: the web page, embedded static assets.
//! - [`metrics`]: self-metrics, all names in one place.
//! - [`push`]: the optional OTLP metrics push of the `/metrics` series to a collector.
//! - [`config`]: the config file, environment and flags, merged and validated into
//!   settings.
//! - [`net`]: the listeners' connection cap and read deadlines (slow and idle clients),
//!   TLS on the connections, gRPC keepalive enforcement.
//! - [`security`]: TLS configs (with certificate reload), tokens, the API's `Host` check,
//!   CORS of OTLP/HTTP, the API's response headers.
//! - [`server`]: starts and stops everything in order.
//! - [`cli`]: the command line.

pub mod aggregate;
pub mod alerts;
pub mod allocator;
pub mod api;
pub mod cli;
pub mod cohorts;
pub mod compress;
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
