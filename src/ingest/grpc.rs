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
//!   return INTERNAL or OUT_OF_RANGE. The layer also counts every RESOURCE_EXHAUSTED,
//!   including the handlers' own (a request priced over what one request may hold), so
//!   the handlers leave those to it.
//! - A full pipeline, or a memory budget past its soft mark, is UNAVAILABLE with
//!   `google.rpc.RetryInfo`.
//! - The services are served by hand ([`OtlpService`]) with a codec that hands the
//!   message over as bytes: each request is priced before it is decoded (see `cost`),
//!   and bodies over `INLINE_DECODE_MAX_BYTES` are priced and decoded on the blocking
//!   pool, never on the runtime's workers.
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
use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use tonic::codec::{
    BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings,
};
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};
use tower::util::MapResponseLayer;
use tower::Service;

use crate::ingest::accept::{decode_off_thread, price, wal_start, Refusal};
use crate::ingest::{
    cost, decode_logs, decode_traces, parse_logs_proto, parse_traces_proto, Handoff, Ingest,
    IngestError, IngestObserver, RejectReason, Transport,
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
    let traces = OtlpService::<H, O, Traces>::new(Arc::clone(&ingest));
    let logs = OtlpService::<H, O, Logs>::new(ingest);
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

/// Counts a refused request and gives its status. RESOURCE_EXHAUSTED is counted by the
/// remap layer (which sees every trailers-only response with that code), not here.
fn refused<H: Handoff, O: IngestObserver>(ingest: &Ingest<H, O>, refusal: &Refusal) -> Status {
    let status = status_for(refusal);
    if status.code() != Code::ResourceExhausted {
        ingest.count_refusal(refusal);
    }
    status
}

/// The gRPC status for a refused request; the one place codes are chosen.
fn status_for(refusal: &Refusal) -> Status {
    let message = refusal.message();
    match refusal {
        Refusal::Overloaded(_) | Refusal::OverBudget { .. } | Refusal::WalUnavailable(_) => {
            Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(refusal.retry_after()),
            )
        }
        // No RetryInfo: not retryable.
        Refusal::TooLarge { .. } | Refusal::TooCostly { .. } => Status::resource_exhausted(message),
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

/// The OTLP services, served by hand rather than by the generated servers: the
/// generated ones decode the protobuf body into the wire types on the runtime's worker
/// before the handler runs, so a large or amplifying request could neither be priced
/// before decoding nor kept off the async workers. Here tonic only frames (and
/// decompresses, within `max_decoding_message_size`) the message; [`RawCodec`] hands the
/// raw bytes over, and the handler prices and decodes them like the HTTP receiver does.
struct OtlpService<H: Handoff, O: IngestObserver, S: SignalService> {
    ingest: Arc<Ingest<H, O>>,
    _signal: PhantomData<S>,
}

impl<H: Handoff, O: IngestObserver, S: SignalService> Clone for OtlpService<H, O, S> {
    fn clone(&self) -> Self {
        OtlpService::new(Arc::clone(&self.ingest))
    }
}

/// What differs between the traces and the logs service.
trait SignalService: Send + Sync + 'static {
    const NAME: &'static str;
    const PATH: &'static str;
    type Response: prost::Message + Default + Send + 'static;
    fn export<H: Handoff, O: IngestObserver>(
        ingest: Arc<Ingest<H, O>>,
        body: Bytes,
    ) -> impl Future<Output = Result<Self::Response, Status>> + Send;
}

struct Traces;
struct Logs;

impl SignalService for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    type Response = ExportTraceServiceResponse;

    async fn export<H: Handoff, O: IngestObserver>(
        ingest: Arc<Ingest<H, O>>,
        body: Bytes,
    ) -> Result<ExportTraceServiceResponse, Status> {
        let interner = Arc::clone(&ingest.interner);
        let budget = Arc::clone(&ingest.budget);
        let wal = ingest.wal.clone();
        let decoded = decode_off_thread(body.len(), move || {
            let charge = price(&budget, &body, cost::Signal::Traces, false)?;
            let entry = wal_start(wal.as_deref(), crate::wal::Signal::Traces, false, &body)?;
            let req = parse_traces_proto(&body).map_err(|e| Refusal::Undecodable(e.to_string()))?;
            drop(body);
            Ok((decode_traces(req, &interner), charge, entry))
        })
        .await
        .and_then(|r| r);
        let result = match decoded {
            Ok((decoded, charge, entry)) => {
                ingest
                    .accept_spans(Transport::Grpc, decoded, charge, entry)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        match result {
            Ok(accepted) => Ok(ExportTraceServiceResponse {
                partial_success: (accepted.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
                    error_message: accepted.error_message(),
                }),
            }),
            Err(refusal) => Err(refused(&ingest, &refusal)),
        }
    }
}

impl SignalService for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    type Response = ExportLogsServiceResponse;

    async fn export<H: Handoff, O: IngestObserver>(
        ingest: Arc<Ingest<H, O>>,
        body: Bytes,
    ) -> Result<ExportLogsServiceResponse, Status> {
        let interner = Arc::clone(&ingest.interner);
        let budget = Arc::clone(&ingest.budget);
        let wal = ingest.wal.clone();
        let decoded = decode_off_thread(body.len(), move || {
            let charge = price(&budget, &body, cost::Signal::Logs, false)?;
            let entry = wal_start(wal.as_deref(), crate::wal::Signal::Logs, false, &body)?;
            let req = parse_logs_proto(&body).map_err(|e| Refusal::Undecodable(e.to_string()))?;
            drop(body);
            Ok((decode_logs(req, &interner), charge, entry))
        })
        .await
        .and_then(|r| r);
        let result = match decoded {
            Ok((decoded, charge, entry)) => {
                ingest
                    .accept_logs(Transport::Grpc, decoded, charge, entry)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        match result {
            Ok(accepted) => Ok(ExportLogsServiceResponse {
                partial_success: (accepted.rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
                    error_message: accepted.error_message(),
                }),
            }),
            Err(refusal) => Err(refused(&ingest, &refusal)),
        }
    }
}

impl<H: Handoff, O: IngestObserver, S: SignalService> OtlpService<H, O, S> {
    fn new(ingest: Arc<Ingest<H, O>>) -> Self {
        OtlpService {
            ingest,
            _signal: PhantomData,
        }
    }
}

impl<H: Handoff, O: IngestObserver, S: SignalService> NamedService for OtlpService<H, O, S> {
    const NAME: &'static str = S::NAME;
}

impl<H, O, S, B> Service<http::Request<B>> for OtlpService<H, O, S>
where
    H: Handoff,
    O: IngestObserver,
    S: SignalService,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != S::PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let ingest = Arc::clone(&self.ingest);
        Box::pin(async move {
            let limit = ingest.limits.max_request_bytes;
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            let mut send = EnabledCompressionEncodings::default();
            send.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec::<S::Response>::default())
                .apply_compression_config(accept, send)
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(Export::<H, O, S>::new(ingest), req).await)
        })
    }
}

/// The unary handler tonic calls with the raw message.
struct Export<H: Handoff, O: IngestObserver, S: SignalService> {
    ingest: Arc<Ingest<H, O>>,
    _signal: PhantomData<S>,
}

impl<H: Handoff, O: IngestObserver, S: SignalService> Export<H, O, S> {
    fn new(ingest: Arc<Ingest<H, O>>) -> Self {
        Export {
            ingest,
            _signal: PhantomData,
        }
    }
}

impl<H: Handoff, O: IngestObserver, S: SignalService> tonic::server::UnaryService<Bytes>
    for Export<H, O, S>
{
    type Response = S::Response;
    type Future = Pin<Box<dyn Future<Output = Result<Response<S::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let ingest = Arc::clone(&self.ingest);
        Box::pin(async move {
            S::export(ingest, request.into_inner())
                .await
                .map(Response::new)
        })
    }
}

/// Encodes the response with prost; hands the request message over as raw bytes.
struct RawCodec<T>(PhantomData<T>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

impl<T: prost::Message + Send + 'static> Codec for RawCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = ProstEncoder<T>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> ProstEncoder<T> {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
