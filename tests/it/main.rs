//! The integration tests: one binary, modules by area. Servers bind port 0.

mod api;
mod cli;
mod cohorts;
mod instrumentations;
mod otel_python;
mod otel_rust;
mod support;
