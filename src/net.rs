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
    serve_https(listener, router, limits, metrics, None, shutdown).await
}

/// [`serve_http`], over TLS when `tls` is set (HTTP/1.1 and HTTP/2). The TLS handshake
/// must complete within the header read timeout; one that does not is counted as timed
/// out.
pub async fn serve_https(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    metrics: ConnMetrics,
    tls: Option<tokio_rustls::TlsAcceptor>,
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
            tls: tls.clone(),
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
    tls: Option<tokio_rustls::TlsAcceptor>,
    timeout: Duration,
    timed_out: Counter,
    stop: watch::Receiver<bool>,
    _done: watch::Receiver<()>,
    _slot: Slot,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream, addr: SocketAddr) {
        let Some(acceptor) = self.tls.take() else {
            return self.serve_io(stream, addr).await;
        };
        let handshake = tokio::time::timeout(self.timeout, acceptor.accept(stream));
        let mut stop = self.stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            result = handshake => match result {
                Ok(Ok(tls)) => self.serve_io(tls, addr).await,
                Ok(Err(error)) => {
                    tracing::debug!(%addr, %error, "TLS handshake failed.");
                }
                Err(_) => {
                    self.timed_out.inc();
                    tracing::debug!(%addr, "Connection closed: no TLS handshake within the read timeout.");
                }
            },
            () = stopped => {}
        }
    }

    async fn serve_io<S>(self, stream: S, addr: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            router,
            tls: _,
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
    capped_incoming_with(listener, limits, metrics, None, None)
}

/// [`capped_incoming`] over TLS when `tls` is set (the handshake counts against the
/// preface deadline), and with keepalive enforcement and the idle limit when
/// `keepalive` is set (see [`PingPolicy`]; requests are tracked by [`TrackRequests`]).
pub fn capped_incoming_with(
    listener: TcpListener,
    limits: ConnLimits,
    metrics: ConnMetrics,
    tls: Option<tokio_rustls::TlsAcceptor>,
    keepalive: Option<crate::security::GrpcKeepalive>,
) -> CappedIncoming {
    CappedIncoming {
        gate: Arc::new(Gate::new(listener, limits, metrics)),
        timeout: limits.header_read_timeout,
        tls,
        keepalive,
        next: None,
    }
}

type AcceptFuture = Pin<Box<dyn Future<Output = Option<(TcpStream, SocketAddr, Slot)>> + Send>>;

/// A stream of accepted connections under the cap (see [`capped_incoming`]).
pub struct CappedIncoming {
    gate: Arc<Gate>,
    timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    keepalive: Option<crate::security::GrpcKeepalive>,
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
        Poll::Ready(accepted.map(|(stream, addr, slot)| {
            let tcp_info = stream.connect_info();
            let activity = Arc::new(Activity {
                in_flight: AtomicUsize::new(0),
                idle_since: Mutex::new(Instant::now()),
            });
            let stream = match &this.tls {
                Some(acceptor) => GrpcStream::Handshake(Box::new(acceptor.accept(stream))),
                None => GrpcStream::Plain(stream),
            };
            Ok(CappedIo {
                stream,
                addr,
                preface_left: H2_PREFACE_LEN,
                preface_deadline: Some(Box::pin(tokio::time::sleep(this.timeout))),
                timed_out: this.gate.metrics.timed_out.clone(),
                frames: FrameReader::default(),
                keepalive: this.keepalive.map(|k| Keepalive {
                    policy: PingPolicy::new(k.min_ping_interval),
                    idle_timeout: k.max_connection_idle,
                    idle_check: Box::pin(tokio::time::sleep(k.max_connection_idle)),
                }),
                info: GrpcConnectInfo {
                    tcp: tcp_info,
                    activity,
                },
                _slot: slot,
            })
        }))
    }
}

/// The byte stream of a gRPC connection: plain, in its TLS handshake, or over TLS.
enum GrpcStream {
    Plain(TcpStream),
    Handshake(Box<tokio_rustls::Accept<TcpStream>>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// What tonic puts in each request's extensions: the TCP addresses and the
/// connection's requests in flight (read by [`TrackRequests`]).
#[derive(Clone)]
pub struct GrpcConnectInfo {
    pub tcp: TcpConnectInfo,
    activity: Arc<Activity>,
}

/// The HTTP/2 frame type of PING, and its ACK flag.
const H2_PING: u8 = 0x6;
const H2_ACK: u8 = 0x1;
/// Strikes tolerated before a connection is closed (gRPC's `maxPingStrikes`).
const MAX_PING_STRIKES: u32 = 2;

/// gRPC keepalive enforcement (as grpc-go's `EnforcementPolicy` with
/// `PermitWithoutStream: false`): a client PING sooner than `min_interval` after the
/// previous one, or on a connection with no request in flight, is a strike; request
/// frames (HEADERS, DATA) clear the strikes; a third strike closes the connection.
#[derive(Debug)]
pub struct PingPolicy {
    min_interval: Duration,
    last_ping: Option<Instant>,
    strikes: u32,
}

impl PingPolicy {
    pub fn new(min_interval: Duration) -> PingPolicy {
        PingPolicy {
            min_interval,
            last_ping: None,
            strikes: 0,
        }
    }

    /// A client PING at `now`; `false` when the connection must be closed.
    pub fn ping(&mut self, now: Instant, streams_in_flight: bool) -> bool {
        let too_soon = self
            .last_ping
            .is_some_and(|last| now.duration_since(last) < self.min_interval);
        self.last_ping = Some(now);
        if too_soon || !streams_in_flight {
            self.strikes += 1;
        }
        self.strikes <= MAX_PING_STRIKES
    }

    /// A request frame from the client.
    pub fn request_frame(&mut self) {
        self.strikes = 0;
    }
}

/// Finds HTTP/2 frame headers in the bytes a client sends after its preface.
#[derive(Debug, Default)]
struct FrameReader {
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
}

impl FrameReader {
    /// Feeds bytes; calls `frame(type, flags)` at each complete frame header.
    fn feed(&mut self, mut data: &[u8], mut frame: impl FnMut(u8, u8)) {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (9 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 9 {
                self.header_len = 0;
                let h = self.header;
                self.payload_left =
                    (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                frame(h[3], h[4]);
            }
        }
    }
}

/// Keepalive enforcement and the idle limit of one gRPC connection.
struct Keepalive {
    policy: PingPolicy,
    idle_timeout: Duration,
    idle_check: Pin<Box<Sleep>>,
}

/// An accepted gRPC connection: its place under the cap, the deadline of its TLS
/// handshake and HTTP/2 preface, and its keepalive enforcement.
pub struct CappedIo {
    stream: GrpcStream,
    addr: SocketAddr,
    preface_left: usize,
    preface_deadline: Option<Pin<Box<Sleep>>>,
    timed_out: Counter,
    frames: FrameReader,
    keepalive: Option<Keepalive>,
    info: GrpcConnectInfo,
    _slot: Slot,
}

impl CappedIo {
    /// Completes the TLS handshake, if one is under way.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let GrpcStream::Handshake(accept) = &mut self.stream {
            let tls = std::task::ready!(Pin::new(accept.as_mut()).poll(cx))?;
            self.stream = GrpcStream::Tls(Box::new(tls));
        }
        Poll::Ready(Ok(()))
    }

    /// Looks at the frames of newly read bytes; an error when the keepalive policy
    /// closes the connection.
    fn inspect(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(data.len());
            self.preface_left -= n;
            data = &data[n..];
            if self.preface_left == 0 {
                self.preface_deadline = None;
            }
        }
        let Some(keepalive) = self.keepalive.as_mut() else {
            return Ok(());
        };
        let busy = self.info.activity.in_flight.load(Ordering::Acquire) > 0;
        let mut close = false;
        self.frames.feed(data, |kind, flags| match kind {
            H2_PING if flags & H2_ACK == 0 => {
                close |= !keepalive.policy.ping(Instant::now(), busy);
            }
            // DATA, HEADERS.
            0x0 | 0x1 => keepalive.policy.request_frame(),
            _ => {}
        });
        if close {
            tracing::info!(addr = %self.addr, "gRPC connection closed: too many pings (keepalive enforcement).");
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "too many pings",
            ));
        }
        Ok(())
    }

    /// Whether the connection has had no request in flight for the idle limit; keeps
    /// the idle timer armed otherwise.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(keepalive) = self.keepalive.as_mut() else {
            return false;
        };
        while keepalive.idle_check.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match self.info.activity.idle_deadline(keepalive.idle_timeout) {
                Some(deadline) if now >= deadline => return true,
                Some(deadline) => keepalive.idle_check.as_mut().reset(deadline),
                // In flight: look again after a limit's time.
                None => keepalive
                    .idle_check
                    .as_mut()
                    .reset(now + keepalive.idle_timeout),
            }
        }
        false
    }
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
                    "no TLS handshake and HTTP/2 preface within the read timeout",
                )));
            }
        }
        std::task::ready!(this.poll_handshake(cx))?;
        let before = buf.filled().len();
        let result = match &mut this.stream {
            GrpcStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            GrpcStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            GrpcStream::Handshake(_) => Poll::Ready(Ok(())),
        };
        match result {
            Poll::Ready(Ok(())) => {
                this.inspect(&buf.filled()[before..])?;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                // Nothing to read: close (end of stream) if idle for the limit.
                if this.poll_idle(cx) {
                    this.timed_out.inc();
                    tracing::debug!(addr = %this.addr, "gRPC connection closed: idle for the limit.");
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for CappedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_handshake(cx))?;
        match &mut self.stream {
            GrpcStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            GrpcStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            GrpcStream::Handshake(_) => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_handshake(cx))?;
        match &mut self.stream {
            GrpcStream::Plain(s) => Pin::new(s).poll_flush(cx),
            GrpcStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            GrpcStream::Handshake(_) => Poll::Pending,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            GrpcStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            GrpcStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            GrpcStream::Handshake(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_handshake(cx))?;
        match &mut self.stream {
            GrpcStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            GrpcStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            GrpcStream::Handshake(_) => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            GrpcStream::Plain(s) => s.is_write_vectored(),
            GrpcStream::Tls(s) => s.is_write_vectored(),
            GrpcStream::Handshake(_) => false,
        }
    }
}

impl Connected for CappedIo {
    type ConnectInfo = GrpcConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

/// A tower layer for the gRPC server: holds each request's place in flight on its
/// connection (from the [`GrpcConnectInfo`] tonic puts in the request) until its
/// response body has been sent, for the idle limit and the keepalive policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackRequests;

impl<S> tower::Layer<S> for TrackRequests {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked(inner)
    }
}

/// The service of [`TrackRequests`].
#[derive(Debug, Clone)]
pub struct Tracked<S>(S);

impl<S, B> tower::Service<http::Request<B>> for Tracked<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let held = request
            .extensions()
            .get::<GrpcConnectInfo>()
            .map(|info| info.activity.begin());
        let future = self.0.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(match held {
                None => response,
                Some(in_flight) => response.map(|body| {
                    tonic::body::Body::new(body.map_frame(move |frame| {
                        let _held = &in_flight;
                        frame
                    }))
                }),
            })
        })
    }
}

#[cfg(test)]
mod keepalive_tests {
    use super::*;

    #[test]
    fn pings_too_often_or_without_streams_close_at_the_third_strike() {
        let start = Instant::now();
        let mut p = PingPolicy::new(Duration::from_secs(10));
        // Spaced pings during requests are fine.
        for i in 0..10 {
            assert!(p.ping(start + Duration::from_secs(20 * i), true));
        }
        let t = start + Duration::from_secs(1000);
        assert!(p.ping(t, true));
        assert!(p.ping(t + Duration::from_secs(1), true), "first strike");
        assert!(p.ping(t + Duration::from_secs(2), true), "second strike");
        p.request_frame();
        assert!(p.ping(t + Duration::from_secs(3), true), "strikes cleared");
        let mut idle = PingPolicy::new(Duration::from_secs(10));
        assert!(idle.ping(start, false));
        assert!(idle.ping(start + Duration::from_secs(60), false));
        assert!(
            !idle.ping(start + Duration::from_secs(120), false),
            "third idle ping"
        );
    }

    #[test]
    fn frame_headers_are_found_across_reads() {
        // SETTINGS (empty), PING (8 bytes), PING ACK, HEADERS (3 bytes).
        let mut bytes = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        bytes.extend([0, 0, 8, 0x6, 0, 0, 0, 0, 0]);
        bytes.extend([1u8; 8]);
        bytes.extend([0, 0, 8, 0x6, 0x1, 0, 0, 0, 0]);
        bytes.extend([2u8; 8]);
        bytes.extend([0, 0, 3, 0x1, 0x4, 0, 0, 0, 1, 7, 7, 7]);
        for split in 0..bytes.len() {
            let mut reader = FrameReader::default();
            let mut seen = Vec::new();
            reader.feed(&bytes[..split], |t, f| seen.push((t, f)));
            reader.feed(&bytes[split..], |t, f| seen.push((t, f)));
            assert_eq!(
                seen,
                vec![(0x4, 0), (0x6, 0), (0x6, 0x1), (0x1, 0x4)],
                "split {split}"
            );
        }
    }
}
