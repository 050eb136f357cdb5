//! Ingest: OTLP/gRPC (`TraceService`, `LogsService`) and OTLP/HTTP (`POST /v1/traces`,
//! `POST /v1/logs`; protobuf and JSON; gzip) into compact [`crate::model`] records.
//!
//! Input: requests from OTel SDKs and collectors. Output: `Vec<SpanRecord>` and
//! `Vec<LogEvent>` handed to the pipeline through [`Handoff`].
//!
//! Invariants:
//! - This is the only module that names OTLP wire types; nothing past it sees them.
//! - Every span is either handed to the pipeline or counted as rejected, and the client
//!   is told which: `partial_success` for invalid spans, a retryable status when the
//!   pipeline is full. A 200 never hides dropped data.
//! - Sizes are checked after decompression, on both transports, while the body streams
//!   in: a compressed bomb never allocates more than the limit.
//!
//! Layout: [`decode`] and [`cost`] (pure: bytes to wire types to model records, in the
//! `faultline-otlp` crate, shared with `faultline analyze` and the simulator),
//! [`grpc`] and [`http`] (the two servers), and here the types both servers share.
//!
//! Status mapping (`accept::Refusal`, mapped by one function per transport):
//! undecodable → HTTP 400 / INVALID_ARGUMENT; over the size limit → 413 /
//! RESOURCE_EXHAUSTED (no RetryInfo: not retryable); pipeline full or the write-ahead
//! log failing → 503 + `Retry-After` / UNAVAILABLE + `RetryInfo`. Invalid single spans
//! → 200 with `partial_success`.
//!
//! Durability: with the write-ahead log on (`crate::wal`), a request that is priced is
//! appended to it (and fsynced, by the default policy) while it decodes, and the append
//! is waited for before the request is handed to the pipeline and acknowledged; one
//! that then fails to decode is cancelled in the log.

use std::sync::Arc;
use std::time::Duration;

use crate::model::Interner;

mod accept;
pub mod grpc;
pub mod http;

/// OTLP wire types to model records, and the cost of decoding them: the
/// `faultline-otlp` crate, shared with `faultline analyze` and the simulator.
pub use faultline_otlp::{cost, decode, RejectReason};

/// Where ingest hands decoded records: the pipeline's entrance.
pub use crate::pipeline::{Handoff, Overloaded};

#[cfg(test)]
mod tests;

pub use decode::{
    decode_logs, decode_traces, parse_logs_json, parse_logs_proto, parse_traces_json,
    parse_traces_proto, DecodeError, Decoded,
};
pub use grpc::serve_grpc;
pub use http::http_router;

/// Counters ingest updates (implemented over prometheus-client by the metrics module).
pub trait IngestObserver: Send + Sync + 'static {
    /// Spans (and log records) accepted into the pipeline.
    fn received(&self, transport: Transport, spans: u64);
    /// Items refused, by closed reason. A request refused before it could be decoded
    /// (undecodable, too large, wrong media type or encoding) counts as one item, since
    /// the number of spans in it is unknown.
    fn rejected(&self, reason: RejectReason, spans: u64);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Limits of both servers.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Largest request body, after decompression (OTLP recommends 64 MiB).
    pub max_request_bytes: usize,
    /// HTTP/2 streams per connection (gRPC); unlimited by default in tonic.
    pub max_concurrent_streams: u32,
    /// Requests served at once per gRPC connection.
    pub concurrency_limit_per_connection: usize,
    /// Time to receive and handle one request (both transports).
    pub request_timeout: Duration,
    /// HTTP/2 keepalive ping interval (gRPC); a peer that does not answer within
    /// `http2_keepalive_timeout` is dropped.
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    /// gRPC connections are closed (with GOAWAY) after this long, to rebalance clients.
    pub max_connection_age: Duration,
    /// Streams reset by the client before the server accepted them (rapid-reset guard).
    pub http2_max_pending_accept_reset_streams: usize,
    /// Largest HTTP/2 header list (gRPC).
    pub http2_max_header_list_size: u32,
}

impl Default for IngestLimits {
    fn default() -> IngestLimits {
        IngestLimits {
            max_request_bytes: 64 * 1024 * 1024,
            max_concurrent_streams: 128,
            concurrency_limit_per_connection: 64,
            request_timeout: Duration::from_secs(30),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(30 * 60),
            http2_max_pending_accept_reset_streams: 20,
            http2_max_header_list_size: 16 * 1024,
        }
    }
}

/// What both servers share: where records go, what is counted, the interner, limits.
pub struct Ingest<H: Handoff, O: IngestObserver> {
    pub handoff: H,
    pub observer: O,
    pub interner: Arc<Interner>,
    pub limits: IngestLimits,
    /// The memory budget decoded requests are charged to (and refused by).
    pub budget: Arc<crate::memory::MemoryBudget>,
    /// The write-ahead log every accepted request is appended to before it is
    /// acknowledged; `None` when it is off.
    pub wal: Option<Arc<crate::wal::Wal>>,
}

/// Errors of the servers themselves (not of a request).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
