//! Security of the listeners and of the outgoing clients: TLS (with certificate reload
//! and mutual TLS), bearer tokens, the API's `Host` check, OTLP/HTTP CORS, and the
//! response headers of the API.
//!
//! - [`tls`]: rustls server configs whose certificate and key are re-read when their
//!   files change (checked at most once a second, on a handshake); client CA files for
//!   mutual TLS, re-read the same way; CA bundles for the outgoing clients.
//! - [`token`]: token files (one token per line, re-read when changed) and the
//!   constant-time check of an `Authorization: Bearer` header.
//! - [`hosts`]: which `Host` values the API answers (DNS-rebinding guard), and the
//!   origin patterns of CORS.
//! - [`layers`]: the axum middlewares that apply these to the OTLP/HTTP and API routers,
//!   and the gRPC interceptor.
//!
//! Invariants: a token is never logged or echoed; refusals are counted in
//! `faultline_auth_refused_total{listener, reason}` with reasons from a closed set.

pub mod hosts;
pub mod layers;
pub mod tls;
pub mod token;

use std::path::PathBuf;
use std::time::Duration;

pub use hosts::{AllowedHosts, OriginPatterns};
pub use tls::{TlsError, TlsFiles};
pub use token::{AuthRefusal, TokenFile};

/// Validated security settings of `serve`.
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// TLS of the OTLP/gRPC listener; `None` for plain text.
    pub otlp_grpc_tls: Option<TlsFiles>,
    /// TLS of the OTLP/HTTP listener.
    pub otlp_http_tls: Option<TlsFiles>,
    /// TLS of the API listener.
    pub api_tls: Option<TlsFiles>,
    /// Tokens accepted on OTLP (gRPC and HTTP).
    pub ingest_token_file: Option<PathBuf>,
    /// Tokens accepted on the API, the page's data and `/metrics`.
    pub api_token_file: Option<PathBuf>,
    /// `Host` names the API answers besides its own (exact, or `*.example.com`).
    pub api_allowed_hosts: Vec<String>,
    /// Origins allowed to send OTLP/HTTP from a browser; empty: CORS off.
    pub otlp_http_cors_origins: Vec<String>,
    /// gRPC keepalive enforcement and idle connections.
    pub grpc_keepalive: GrpcKeepalive,
}

/// Default of [`GrpcKeepalive::min_ping_interval`].
pub const DEFAULT_GRPC_MIN_PING_INTERVAL: Duration = Duration::from_secs(10);
/// Default of [`GrpcKeepalive::max_connection_idle`].
pub const DEFAULT_GRPC_MAX_CONNECTION_IDLE: Duration = Duration::from_secs(300);

/// How the OTLP/gRPC listener treats client pings and idle connections (the collector's
/// `keepalive.enforcement_policy` and `keepalive.server_parameters.max_connection_idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcKeepalive {
    /// A client PING sooner than this after the previous one is a strike; so is a PING
    /// on a connection with no request in flight (pings without a stream are not
    /// permitted). At the third strike the connection is closed.
    pub min_ping_interval: Duration,
    /// A connection with no request in flight for this long is closed.
    pub max_connection_idle: Duration,
}

impl Default for GrpcKeepalive {
    fn default() -> GrpcKeepalive {
        GrpcKeepalive {
            min_ping_interval: DEFAULT_GRPC_MIN_PING_INTERVAL,
            max_connection_idle: DEFAULT_GRPC_MAX_CONNECTION_IDLE,
        }
    }
}

/// Headers sent by an outgoing client (often credentials): `Debug` shows names only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretHeaders(pub Vec<(String, String)>);

impl std::fmt::Debug for SecretHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}
