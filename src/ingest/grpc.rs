//! OTLP/gRPC receiver: tonic `TraceService` and `LogsService` on one listener.
//!
//! - gzip and zstd request compression; `max_decoding_message_size` is the request
//!   limit, which tonic (≥ 0.14.3) also applies to the decompressed message.
//! - Status codes: tonic answers an oversized frame with OUT_OF_RANGE, which OTLP
//!   clients retry forever; a layer rewrites it to RESOURCE_EXHAUSTED (not retryable
//!   without RetryInfo). tonic answers an undecodable protobuf body (and a bad
//!   compressed payload) with INTERNAL; the same layer rewrites it to INVALID_ARGUMENT,
//!   which is what bad data is in OTLP. Both rewrites apply only to trailers-only
//!   responses (errors raised before a response body exists); the handlers here never
//!   return either code themselves.
//! - A full pipeline is UNAVAILABLE with `google.rpc.RetryInfo`.
//! - HTTP/2 hardening from `IngestLimits`: bounded concurrent streams, per-connection
//!   concurrency, keepalive with timeout, maximum connection age, pending-reset and
//!   header-list caps, request timeout. Connections come through
//!   [`crate::net::capped_incoming`]: at most `max_connections` at once, each closed if
//!   its HTTP/2 preface does not arrive within the header read timeout.
//! - Security ([`serve_grpc_secured`]): TLS, the ingest token (an interceptor answering
//!   `UNAUTHENTICATED`), keepalive enforcement and the idle-connection limit.

use std::future::Future;
use std::sync::Arc;

use http::header::HeaderValue;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::util::MapResponseLayer;

use crate::ingest::accept::{decode_off_thread, Refusal};
use crate::ingest::{
    decode_logs, decode_traces, Handoff, Ingest, IngestError, IngestObserver, RejectReason,
    Transport,
};
use crate::net::{capped_incoming_with, ConnLimits, ConnMetrics, TrackRequests};

/// Serves OTLP/gRPC traces and logs on `listener` until `shutdown` completes, then
/// waits for in-flight requests.
pub async fn serve_grpc<H, O>(
    ingest: Arc<Ingest<H, O>>,
    listener: tokio::net::TcpListener,
    conn_limits: ConnLimits,
    conn_metrics: ConnMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IngestError>
where
    H: Handoff,
    O: IngestObserver,
{
    serve_grpc_secured(
        ingest,
        listener,
        conn_limits,
        conn_metrics,
        GrpcSecurity::default(),
        shutdown,
    )
    .await
}

/// TLS, token and keepalive enforcement of the gRPC listener (see `crate::security`).
#[derive(Clone, Default)]
pub struct GrpcSecurity {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub tokens: Option<crate::security::layers::TokenGuard>,
    /// Keepalive enforcement and the idle-connection limit; `None`: neither.
    pub keepalive: Option<crate::security::GrpcKeepalive>,
}

/// [`serve_grpc`] with TLS, a token check and keepalive enforcement.
pub async fn serve_grpc_secured<H, O>(
    ingest: Arc<Ingest<H, O>>,
    listener: tokio::net::TcpListener,
    conn_limits: ConnLimits,
    conn_metrics: ConnMetrics,
    security: GrpcSecurity,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IngestError>
where
    H: Handoff,
    O: IngestObserver,
{
    let limits = ingest.limits.clone();
    let counted = Arc::clone(&ingest);
    let remap = move |response| remap_status(response, &counted);
    let interceptor = crate::security::layers::grpc_interceptor(security.tokens);
    let traces = TraceServiceServer::from_arc(Arc::new(GrpcTraces(Arc::clone(&ingest))))
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limits.max_request_bytes);
    let logs = LogsServiceServer::from_arc(Arc::new(GrpcLogs(ingest)))
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limits.max_request_bytes);
    let incoming = capped_incoming_with(
        listener,
        conn_limits,
        conn_metrics,
        security.tls,
        security.keepalive,
    );
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.concurrency_limit_per_connection)
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        .max_connection_age(limits.max_connection_age)
        .http2_max_pending_accept_reset_streams(Some(limits.http2_max_pending_accept_reset_streams))
        .http2_max_header_list_size(limits.http2_max_header_list_size)
        .layer(MapResponseLayer::new(remap))
        .layer(TrackRequests)
        .add_service(InterceptedService::new(traces, interceptor.clone()))
        .add_service(InterceptedService::new(logs, interceptor))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

const GRPC_STATUS: &str = "grpc-status";

/// Rewrites the codes tonic picks for a bad request into the ones OTLP expects, and
/// counts those requests (the handlers never see them).
fn remap_status<B, H: Handoff, O: IngestObserver>(
    mut response: http::Response<B>,
    ingest: &Ingest<H, O>,
) -> http::Response<B> {
    let headers = response.headers_mut();
    let Some(code) = headers.get(GRPC_STATUS).and_then(|v| v.to_str().ok()) else {
        return response;
    };
    let (reason, remapped) = match code.parse::<i32>().map(Code::from) {
        Ok(Code::OutOfRange) => (RejectReason::TooLarge, Some(Code::ResourceExhausted)),
        Ok(Code::ResourceExhausted) => (RejectReason::TooLarge, None),
        Ok(Code::Internal) => (RejectReason::Undecodable, Some(Code::InvalidArgument)),
        _ => return response,
    };
    ingest.observer.rejected(reason, 1);
    if let Some(code) = remapped {
        headers.insert(GRPC_STATUS, HeaderValue::from(code as i32));
    }
    response
}

/// The gRPC status for a refused request; the one place codes are chosen.
fn status_for(refusal: &Refusal) -> Status {
    let message = refusal.message();
    match refusal {
        Refusal::Overloaded(o) => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(o.retry_after)),
        ),
        Refusal::TooLarge { .. } => Status::resource_exhausted(message),
        Refusal::Timeout => Status::deadline_exceeded(message),
        // Our own failure: UNKNOWN, which OTLP clients do not retry (a panic on some
        // input would fail again), and which the remap layer leaves alone.
        Refusal::Internal => Status::unknown(message),
        Refusal::Undecodable(_)
        | Refusal::UnsupportedMediaType(_)
        | Refusal::UnsupportedEncoding(_)
        | Refusal::MethodNotAllowed => Status::with_error_details(
            Code::InvalidArgument,
            message.clone(),
            ErrorDetails::with_bad_request_violation("body", message),
        ),
    }
}

struct GrpcTraces<H: Handoff, O: IngestObserver>(Arc<Ingest<H, O>>);

struct GrpcLogs<H: Handoff, O: IngestObserver>(Arc<Ingest<H, O>>);

#[tonic::async_trait]
impl<H: Handoff, O: IngestObserver> TraceService for GrpcTraces<H, O> {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let ingest = &self.0;
        let req = request.into_inner();
        let items = req
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter())
            .map(|ss| ss.spans.len())
            .sum();
        let interner = Arc::clone(&ingest.interner);
        let result = match decode_off_thread(items, move || decode_traces(req, &interner)).await {
            Ok(decoded) => ingest.accept_spans(Transport::Grpc, decoded).await,
            Err(refusal) => Err(refusal),
        };
        match result {
            Ok(accepted) => Ok(Response::new(ExportTraceServiceResponse {
                partial_success: (accepted.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
                    error_message: accepted.error_message(),
                }),
            })),
            Err(refusal) => {
                ingest.count_refusal(&refusal);
                Err(status_for(&refusal))
            }
        }
    }
}

#[tonic::async_trait]
impl<H: Handoff, O: IngestObserver> LogsService for GrpcLogs<H, O> {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let ingest = &self.0;
        let req = request.into_inner();
        let items = req
            .resource_logs
            .iter()
            .flat_map(|rl| rl.scope_logs.iter())
            .map(|sl| sl.log_records.len())
            .sum();
        let interner = Arc::clone(&ingest.interner);
        let result = match decode_off_thread(items, move || decode_logs(req, &interner)).await {
            Ok(decoded) => ingest.accept_logs(Transport::Grpc, decoded).await,
            Err(refusal) => Err(refusal),
        };
        match result {
            Ok(accepted) => Ok(Response::new(ExportLogsServiceResponse {
                partial_success: (accepted.rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
                    error_message: accepted.error_message(),
                }),
            })),
            Err(refusal) => {
                ingest.count_refusal(&refusal);
                Err(status_for(&refusal))
            }
        }
    }
}
