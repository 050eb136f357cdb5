//! Sending simulated requests to an OTLP endpoint: gRPC (`TraceService`, `LogsService`)
//! or HTTP/1.1 protobuf (`POST /v1/traces`, `POST /v1/logs`).

use std::net::IpAddr;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::net::TcpStream;
use tonic::transport::Channel;

use super::error::SimulateError;

/// OTLP transport of `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

/// A parsed, checked target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub uri: Uri,
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// Parses `url`, picks the protocol (flag, else port 4317 → gRPC, 4318 → HTTP) and
/// refuses hosts that are not loopback unless `allow_remote`.
pub fn parse_target(
    url: &str,
    protocol: Option<Protocol>,
    allow_remote: bool,
) -> Result<Target, SimulateError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| SimulateError::InvalidArgs(format!("--target {url:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(SimulateError::InvalidArgs(format!(
                "--target scheme {other:?} is not supported (use http://; TLS is not built in)"
            )))
        }
        None => {
            return Err(SimulateError::InvalidArgs(format!(
                "--target {url:?} needs a scheme, e.g. http://127.0.0.1:4317"
            )))
        }
    }
    let host = uri
        .host()
        .ok_or_else(|| SimulateError::InvalidArgs(format!("--target {url:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let protocol = match (protocol, port) {
        (Some(p), _) => p,
        (None, 4317) => Protocol::Grpc,
        (None, 4318) => Protocol::Http,
        (None, _) => {
            return Err(SimulateError::InvalidArgs(format!(
                "cannot tell the protocol of port {port}: pass --protocol grpc|http"
            )))
        }
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if !loopback && !allow_remote {
        return Err(SimulateError::RemoteRefused(host));
    }
    Ok(Target {
        uri,
        host,
        port,
        protocol,
    })
}

pub struct GrpcClients {
    traces: TraceServiceClient<Channel>,
    logs: LogsServiceClient<Channel>,
}

/// A connected client.
pub enum Sender {
    Grpc(Box<GrpcClients>),
    Http {
        target: Target,
        conn: Option<SendRequest<Full<Bytes>>>,
    },
}

impl Sender {
    pub async fn connect(target: &Target) -> Result<Sender, SimulateError> {
        match target.protocol {
            Protocol::Grpc => {
                let endpoint = format!("http://{}:{}", host_for_uri(&target.host), target.port);
                let channel = Channel::from_shared(endpoint)
                    .map_err(|e| SimulateError::InvalidArgs(e.to_string()))?
                    .connect()
                    .await
                    .map_err(|e| SimulateError::Connect(format!("{}: {e}", target.uri)))?;
                Ok(Sender::Grpc(Box::new(GrpcClients {
                    traces: TraceServiceClient::new(channel.clone()),
                    logs: LogsServiceClient::new(channel),
                })))
            }
            Protocol::Http => {
                let conn = http_connect(target).await?;
                Ok(Sender::Http {
                    target: target.clone(),
                    conn: Some(conn),
                })
            }
        }
    }

    /// Sends one trace request; returns its encoded size.
    pub async fn send_traces(
        &mut self,
        req: ExportTraceServiceRequest,
    ) -> Result<usize, SimulateError> {
        let size = req.encoded_len();
        match self {
            Sender::Grpc(clients) => {
                let resp = clients.traces.export(req).await.map_err(|s| {
                    SimulateError::Send(format!("traces: {} {}", s.code(), s.message()))
                })?;
                if let Some(partial) = resp.into_inner().partial_success {
                    if partial.rejected_spans > 0 {
                        tracing::warn!(
                            rejected = partial.rejected_spans,
                            message = %partial.error_message,
                            "Collector rejected some spans."
                        );
                    }
                }
            }
            Sender::Http { target, conn } => {
                http_post(target, conn, "/v1/traces", req.encode_to_vec()).await?;
            }
        }
        Ok(size)
    }

    pub async fn send_logs(
        &mut self,
        req: ExportLogsServiceRequest,
    ) -> Result<usize, SimulateError> {
        let size = req.encoded_len();
        match self {
            Sender::Grpc(clients) => {
                clients.logs.export(req).await.map_err(|s| {
                    SimulateError::Send(format!("logs: {} {}", s.code(), s.message()))
                })?;
            }
            Sender::Http { target, conn } => {
                http_post(target, conn, "/v1/logs", req.encode_to_vec()).await?;
            }
        }
        Ok(size)
    }
}

fn host_for_uri(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

async fn http_connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, SimulateError> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| SimulateError::Connect(format!("{}: {e}", target.uri)))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SimulateError::Connect(format!("{}: {e}", target.uri)))?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "OTLP/HTTP connection closed.");
        }
    });
    Ok(sender)
}

/// POSTs a protobuf body; reconnects once if the connection was closed.
async fn http_post(
    target: &Target,
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    path: &str,
    body: Vec<u8>,
) -> Result<(), SimulateError> {
    let body = Bytes::from(body);
    for attempt in 0..2 {
        let ready = match conn.as_mut() {
            Some(c) => c.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            *conn = Some(http_connect(target).await?);
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let req = Request::post(path)
            .header(
                http::header::HOST,
                format!("{}:{}", host_for_uri(&target.host), target.port),
            )
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(body.clone()))
            .map_err(|e| SimulateError::Send(e.to_string()))?;
        match c.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let text = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                if status == StatusCode::OK {
                    return Ok(());
                }
                return Err(SimulateError::Send(format!(
                    "{path}: HTTP {status}: {}",
                    String::from_utf8_lossy(&text[..text.len().min(200)])
                )));
            }
            Err(error) if attempt == 0 => {
                tracing::debug!(%error, "Retrying OTLP/HTTP request on a new connection.");
                *conn = None;
            }
            Err(error) => return Err(SimulateError::Send(format!("{path}: {error}"))),
        }
    }
    Err(SimulateError::Send(format!("{path}: no connection")))
}
