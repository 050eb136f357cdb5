//! Connection bounds of the listeners: a cap on open connections and a read deadline for
//! clients that send nothing, or send it slowly (slowloris).
//!
//! Every listener (OTLP/gRPC, OTLP/HTTP, API) holds at most
//! [`ConnLimits::max_connections`] connections. At the cap the listener stops accepting
//! until one closes: further clients wait in the kernel's accept queue, and each wait is
//! counted in `faultline_connections_at_cap_total{listener}`.
//!
//! The HTTP listeners ([`serve_http`], HTTP/1.1 and h2c) close a connection that has had
//! no request in flight for [`ConnLimits::header_read_timeout`]: a client that connects
//! and sends nothing, one that sends its request head byte by byte, and an idle
//! keep-alive connection (counted in `faultline_connections_timed_out_total`). For
//! HTTP/1.1 hyper's own `header_read_timeout` is set to the same value. A request is in
//! flight from its head until its response body has been sent; reading a request body
//! is bounded by the handler (the OTLP/HTTP receiver's request timeout, 30 s; the API
//! reads no bodies).
//!
//! On h2c connections of the HTTP listeners the HTTP/2 bounds are set here rather than
//! left to hyper's defaults, and match the gRPC listener's: 128 concurrent streams
//! (further ones are refused with `REFUSED_STREAM`), 20 streams reset by the client
//! before being accepted (rapid reset, then GOAWAY `ENHANCE_YOUR_CALM`), and a 16 KiB
//! header list. h2 itself (≥ 0.4.16) closes a connection with GOAWAY
//! `ENHANCE_YOUR_CALM` that sends more than 100 empty DATA frames or too many
//! CONTINUATION frames; these bounds are not configurable.
//!
//! The gRPC listener ([`capped_incoming`]) closes a connection whose HTTP/2 preface has
//! not arrived within the same deadline. After the preface, tonic's own bounds apply:
//! keepalive pings drop dead peers, concurrent streams and request time are capped, and
//! connections are recycled at their maximum age (see `ingest::grpc`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower::ServiceExt;

/// Default of [`ConnLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of [`ConnLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 streams open at once on one h2c connection of an HTTP listener (as on the
/// gRPC listener; hyper's own default is 200).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Streams an h2c client may open and reset before the server has accepted them; past
/// this the connection is closed with GOAWAY `ENHANCE_YOUR_CALM` (the rapid-reset guard,
/// CVE-2023-44487). h2's default, set here so that it does not change unseen.
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset for a protocol error on one h2c connection before it
/// closes the connection with GOAWAY. h2's default.
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
/// Largest HTTP/2 header list (decoded, with 32 octets per field) on an h2c
/// connection; a larger one is refused with 431 or a stream reset.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// How long a connection told to close (idle, or at shutdown) may take to do so before
/// it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The HTTP/2 client preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const H2_PREFACE_LEN: usize = 24;

/// Bounds of one listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once on the listener.
    pub max_connections: usize,
    /// How long a connection may go without a request in flight (HTTP), or without
    /// its HTTP/2 preface (gRPC), before it is closed.
    pub header_read_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> ConnLimits {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// The self-metrics of one listener (handles into the `faultline_connections*`
/// families, see `metrics.rs`).
#[derive(Debug, Clone, Default)]
pub struct ConnMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections closed for going without a request (or a preface) too long.
    pub timed_out: Counter,
    /// Times the listener stopped accepting because it held `max_connections`.
    pub at_cap: Counter,
}

/// A listener that holds at most `max_connections` accepted connections at once.
struct Gate {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    metrics: ConnMetrics,
}

/// One accepted connection's place under the cap; gives it back when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Gate {
    fn new(listener: TcpListener, limits: ConnLimits, metrics: ConnMetrics) -> Gate {
        Gate {
            listener,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            metrics,
        }
    }

    /// The next connection, once there is room for it. `None` if the cap's semaphore
    /// was closed (it never is).
    async fn accept(&self) -> Option<(TcpStream, SocketAddr, Slot)> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.metrics.at_cap.inc();
                tracing::debug!("Connection cap reached; not accepting until one closes.");
                self.permits.clone().acquire_owned().await.ok()?
            }
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    // Small responses go out at once.
                    let _ = stream.set_nodelay(true);
                    self.metrics.open.inc();
                    let slot = Slot {
                        _permit: permit,
                        open: self.metrics.open.clone(),
                    };
                    return Some((stream, addr, slot));
                }
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(%error, "Cannot accept a connection; retrying in 1 s.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` over HTTP/1.1 and h2c on `listener` within `limits` until `shutdown`
/// completes; then stops accepting, asks every connection to close after its current
/// request, and returns once they have.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    metrics: ConnMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let gate = Gate::new(listener, limits, metrics.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a receiver: `closed()` resolves when all have ended.
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = gate.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Some((stream, addr, slot)) = accepted else {
            break;
        };
        let conn = Connection {
            router: router.clone(),
            timeout: limits.header_read_timeout,
            timed_out: metrics.timed_out.clone(),
            stop: stop_rx.clone(),
            _done: done_rx.clone(),
            _slot: slot,
        };
        tokio::spawn(conn.serve(stream, addr));
    }
    drop(gate);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn begin(self: &Arc<Activity>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// When the connection will have been idle for `timeout`; `None` while a request is
    /// in flight.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        Some(since + timeout)
    }
}

/// One request in flight, from its head until its response body is dropped (sent, or
/// the connection gone).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One accepted HTTP connection and what it holds until it ends.
struct Connection {
    router: Router,
    timeout: Duration,
    timed_out: Counter,
    stop: watch::Receiver<bool>,
    _done: watch::Receiver<()>,
    _slot: Slot,
}

impl Connection {
    async fn serve(self, stream: TcpStream, addr: SocketAddr) {
        let Connection {
            router,
            timeout,
            timed_out,
            mut stop,
            _done: done,
            _slot: slot,
        } = self;
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        let service = {
            let activity = Arc::clone(&activity);
            tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let in_flight = activity.begin();
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await?;
                    // The response body carries the request's place in flight.
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _held = &in_flight;
                            frame
                        }))
                    }))
                }
            })
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout);
        builder
            .http2()
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS)
            .max_header_list_size(H2_MAX_HEADER_LIST_SIZE);
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(service),
        );
        let mut conn = std::pin::pin!(conn);
        let mut stopping = *stop.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
        // Set once the connection has been told to close for idling: dropped then.
        let mut hard_deadline: Option<Instant> = None;
        loop {
            // While a request is in flight, look again after a timeout's time.
            let wake = hard_deadline.unwrap_or_else(|| {
                activity
                    .idle_deadline(timeout)
                    .unwrap_or_else(|| Instant::now() + timeout)
            });
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%addr, %error, "Connection ended with an error.");
                    }
                    break;
                }
                changed = stop.changed(), if !stopping => {
                    if changed.is_err() || *stop.borrow() {
                        // In-flight requests finish, within the server's shutdown bound.
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if hard_deadline.is_some() {
                        tracing::debug!(%addr, "Connection dropped: it did not close in time.");
                        break;
                    }
                    let now = Instant::now();
                    if activity.idle_deadline(timeout).is_some_and(|d| now >= d) {
                        timed_out.inc();
                        tracing::debug!(%addr, "Connection closed: no request within the read timeout.");
                        conn.as_mut().graceful_shutdown();
                        hard_deadline = Some(now + CLOSE_GRACE);
                    }
                }
            }
        }
        drop(slot);
        drop(done);
    }
}

/// The gRPC listener's connections, within `limits`, for tonic's
/// `serve_with_incoming_shutdown`.
pub fn capped_incoming(
    listener: TcpListener,
    limits: ConnLimits,
    metrics: ConnMetrics,
) -> CappedIncoming {
    CappedIncoming {
        gate: Arc::new(Gate::new(listener, limits, metrics)),
        timeout: limits.header_read_timeout,
        next: None,
    }
}

type AcceptFuture = Pin<Box<dyn Future<Output = Option<(TcpStream, SocketAddr, Slot)>> + Send>>;

/// A stream of accepted connections under the cap (see [`capped_incoming`]).
pub struct CappedIncoming {
    gate: Arc<Gate>,
    timeout: Duration,
    next: Option<AcceptFuture>,
}

impl tonic::codegen::tokio_stream::Stream for CappedIncoming {
    type Item = io::Result<CappedIo>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = this.next.get_or_insert_with(|| {
            let gate = Arc::clone(&this.gate);
            Box::pin(async move { gate.accept().await })
        });
        let accepted = std::task::ready!(next.as_mut().poll(cx));
        this.next = None;
        Poll::Ready(accepted.map(|(stream, _addr, slot)| {
            Ok(CappedIo {
                stream,
                preface_read: 0,
                preface_deadline: Some(Box::pin(tokio::time::sleep(this.timeout))),
                timed_out: this.gate.metrics.timed_out.clone(),
                _slot: slot,
            })
        }))
    }
}

/// An accepted gRPC connection: its place under the cap, and the deadline of its
/// HTTP/2 preface.
pub struct CappedIo {
    stream: TcpStream,
    preface_read: usize,
    preface_deadline: Option<Pin<Box<Sleep>>>,
    timed_out: Counter,
    _slot: Slot,
}

impl AsyncRead for CappedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.preface_deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                this.preface_deadline = None;
                this.timed_out.inc();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the read timeout",
                )));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.preface_deadline.is_some() {
            this.preface_read += buf.filled().len() - before;
            if this.preface_read >= H2_PREFACE_LEN {
                this.preface_deadline = None;
            }
        }
        result
    }
}

impl AsyncWrite for CappedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for CappedIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}
