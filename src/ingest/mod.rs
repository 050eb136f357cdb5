//! Ingest: OTLP/gRPC (`TraceService`, `LogsService`) and OTLP/HTTP (`POST /v1/traces`,
//! `POST /v1/logs`; protobuf and JSON; gzip) into compact [`crate::model`] records.
//!
//! Input: requests from OTel SDKs and collectors. Output: `Vec<SpanRecord>` and
//! `Vec<LogEvent>` handed to the [`crate::pipeline::Pipeline`].
//!
//! Invariants:
//! - This is the only module that names OTLP wire types; nothing past it sees them.
//! - Every span is either handed to the pipeline or counted as rejected, and the client
//!   is told which: `partial_success` for invalid spans, a retryable status when the
//!   pipeline is full. A 200 never hides dropped data.
//! - Sizes are checked after decompression, on both transports.

pub mod decode;
pub mod grpc;
pub mod http;

pub use decode::{decode_logs, decode_traces, Decoded};
