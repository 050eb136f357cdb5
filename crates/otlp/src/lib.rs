//! faultline-otlp: OpenTelemetry protocol (OTLP) requests into faultline's model records.
//!
//! The one crate that names OTLP wire types on the way in. Pure: no IO, no async, no
//! clock. The service's receivers, `faultline analyze` and the simulator's own check of
//! what it sends all decode through it, so a span means the same thing everywhere.
//!
//! - [`decode`]: bodies (protobuf or OTLP/JSON) to requests, requests to
//!   [`faultline_core::model`] records, with the bounds a decoded record keeps.
//! - [`cost`]: what decoding a request will hold in memory, estimated from its bytes
//!   before it is decoded in full (the byte budget refuses on this estimate).
//! - `json`: the OTLP/JSON reader behind [`decode::parse_traces_json`].
//! - [`RejectReason`]: why items were refused, the closed set of the `reason` label.

pub mod cost;
pub mod decode;
mod json;

pub use decode::{
    decode_logs, decode_traces, parse_logs_json, parse_logs_proto, parse_traces_json,
    parse_traces_proto, DecodeError, Decoded,
};

/// Why items were refused. A closed set: the values of the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Trace id empty, all zero, or not 16 bytes.
    InvalidTraceId,
    /// Span id empty, all zero, or not 8 bytes.
    InvalidSpanId,
    /// Parent span id present but all zero or not 8 bytes.
    InvalidParentSpanId,
    /// The body is not OTLP (garbage, truncated protobuf, bad JSON, nested too deep,
    /// bad gzip).
    Undecodable,
    /// The body is over the size limit after decompression.
    TooLarge,
    /// HTTP `Content-Type` other than protobuf or JSON.
    UnsupportedMediaType,
    /// HTTP `Content-Encoding` other than gzip or identity.
    UnsupportedEncoding,
    /// HTTP method other than POST.
    MethodNotAllowed,
    /// The pipeline had no room (retryable).
    Overloaded,
    /// The body did not arrive within the request timeout.
    Timeout,
    /// The write-ahead log could not write the request (retryable).
    WalError,
    /// The write-ahead log is at its disk cap, `[wal] max_bytes` (retryable).
    WalFull,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::InvalidTraceId,
        RejectReason::InvalidSpanId,
        RejectReason::InvalidParentSpanId,
        RejectReason::Undecodable,
        RejectReason::TooLarge,
        RejectReason::UnsupportedMediaType,
        RejectReason::UnsupportedEncoding,
        RejectReason::MethodNotAllowed,
        RejectReason::Overloaded,
        RejectReason::Timeout,
        RejectReason::WalError,
        RejectReason::WalFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidTraceId => "invalid_trace_id",
            RejectReason::InvalidSpanId => "invalid_span_id",
            RejectReason::InvalidParentSpanId => "invalid_parent_span_id",
            RejectReason::Undecodable => "undecodable",
            RejectReason::TooLarge => "too_large",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::UnsupportedEncoding => "unsupported_encoding",
            RejectReason::MethodNotAllowed => "method_not_allowed",
            RejectReason::Overloaded => "overloaded",
            RejectReason::Timeout => "timeout",
            RejectReason::WalError => "wal_error",
            RejectReason::WalFull => "wal_full",
        }
    }
}
