//! The integration tests: one binary, modules by area. Servers bind port 0.

mod alerting;
mod api;
mod cli;
mod instrumentations;
mod otel_python;
mod otel_rust;
mod support;
