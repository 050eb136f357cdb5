//! The integration tests: one binary, modules by area. Servers bind port 0.

mod alerting;
mod analyze;
mod api;
mod browser;
mod cli;
mod cli_client;
mod cohorts;
mod collector;
mod config;
mod frameworks;
mod instrumentations;
mod layers;
mod limits;
mod memory;
mod metrics_push;
mod openapi_contract;
mod otel_python;
mod otel_rust;
mod pipeline;
mod prometheus;
mod readme;
mod security;
mod store;
mod support;
mod tidy;
mod wal;
