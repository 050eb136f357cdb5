//! What both servers do once a body has decoded: hand records off, count them, and
//! decide what the client is told.

use std::future::Future;
use std::sync::Arc;

use crate::ingest::cost::{estimate_json, estimate_proto, Signal};
use crate::ingest::{
    Decoded, Handoff, Ingest, IngestObserver, Overloaded, RejectReason, Transport,
};
use crate::memory::{Charge, Component, MemoryBudget, OverSoftMark};
use crate::model::{LogEvent, SpanRecord};

/// Prices a decompressed body before it is decoded (see `cost`), refuses it for good if
/// it would hold more than one request may, refuses it for now if the memory budget is
/// past its soft mark, and else charges the price to the budget until the charge is
/// dropped (after the records are handed to the pipeline).
pub(crate) fn price(
    budget: &Arc<MemoryBudget>,
    body: &[u8],
    signal: Signal,
    json: bool,
) -> Result<Charge, Refusal> {
    let estimate = if json {
        estimate_json(body, signal)
    } else {
        estimate_proto(body, signal)
    };
    let limit = budget.max_request();
    if estimate.bytes > limit {
        return Err(Refusal::TooCostly {
            estimate: estimate.bytes,
            items: estimate.items,
            limit,
        });
    }
    budget
        .try_charge(Component::Requests, estimate.bytes)
        .map_err(|over| Refusal::OverBudget {
            over,
            items: estimate.items,
        })
}

/// Why a request was refused as a whole; mapped to an HTTP status or gRPC code in
/// exactly one place per transport.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not OTLP: garbage, truncated, bad JSON, too deep, bad compression.
    Undecodable(String),
    /// Over the size limit after decompression.
    TooLarge { limit: usize },
    /// HTTP `Content-Type` we do not read.
    UnsupportedMediaType(String),
    /// HTTP `Content-Encoding` we do not read.
    UnsupportedEncoding(String),
    /// HTTP method other than POST.
    MethodNotAllowed,
    /// The body did not arrive in time.
    Timeout,
    /// The pipeline had no room.
    Overloaded(Overloaded),
    /// Decoding would hold more than one request may (priced before decoding).
    TooCostly {
        estimate: u64,
        items: u64,
        limit: u64,
    },
    /// The memory budget is past its soft mark (retryable).
    OverBudget { over: OverSoftMark, items: u64 },
    /// The write-ahead log could not take the request (retryable): nothing of it was
    /// handed to the pipeline.
    WalUnavailable(String),
    /// A bug on our side (a decode task that panicked); not the client's fault.
    Internal,
}

impl Refusal {
    /// The counter reason; `None` for our own failures, which are logged instead.
    pub(crate) fn reason(&self) -> Option<RejectReason> {
        Some(match self {
            Refusal::Undecodable(_) => RejectReason::Undecodable,
            Refusal::TooLarge { .. } => RejectReason::TooLarge,
            Refusal::UnsupportedMediaType(_) => RejectReason::UnsupportedMediaType,
            Refusal::UnsupportedEncoding(_) => RejectReason::UnsupportedEncoding,
            Refusal::MethodNotAllowed => RejectReason::MethodNotAllowed,
            Refusal::Timeout => RejectReason::Timeout,
            Refusal::Overloaded(_) | Refusal::OverBudget { .. } => RejectReason::Overloaded,
            Refusal::WalUnavailable(_) => RejectReason::WalError,
            Refusal::TooCostly { .. } => RejectReason::TooLarge,
            Refusal::Internal => return None,
        })
    }

    /// How long a retryable refusal asks the client to wait; `None` when not retryable.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Refusal::Overloaded(o) => Some(o.retry_after),
            Refusal::OverBudget { .. } | Refusal::WalUnavailable(_) => {
                Some(std::time::Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// The message the client sees, cut to a bounded length.
    pub(crate) fn message(&self) -> String {
        let message = match self {
            Refusal::Undecodable(message) => message.clone(),
            Refusal::TooLarge { limit } => {
                format!("request body is over the limit of {limit} bytes after decompression")
            }
            Refusal::UnsupportedMediaType(ct) => format!(
                "unsupported content type {ct:?}: use application/x-protobuf or application/json"
            ),
            Refusal::UnsupportedEncoding(ce) => {
                format!("unsupported content encoding {ce:?}: use gzip or none")
            }
            Refusal::MethodNotAllowed => "only POST is allowed".to_string(),
            Refusal::Timeout => "request body not received in time".to_string(),
            Refusal::Overloaded(o) => o.to_string(),
            Refusal::TooCostly {
                estimate,
                items,
                limit,
            } => format!(
                "request would hold about {estimate} bytes once decoded ({items} items), over \
                 the limit of {limit} bytes one request may hold (a quarter of the memory \
                 budget, [limits] memory_bytes)"
            ),
            Refusal::OverBudget { over, .. } => format!("{over}; retry later"),
            Refusal::WalUnavailable(error) => {
                format!("the request could not be made durable ({error}); retry later")
            }
            Refusal::Internal => "internal error".to_string(),
        };
        bounded(message)
    }
}

/// Request bodies larger than this (in bytes, after decompression) are priced and
/// decoded on the blocking pool, so that a large batch does not stall the other
/// connections (and `/healthz`) served by the same runtime thread. Both transports.
pub(crate) const INLINE_DECODE_MAX_BYTES: usize = 64 * 1024;

/// Runs `decode` inline for small requests and on the blocking pool for large ones.
pub(crate) async fn decode_off_thread<T, F>(bytes: usize, decode: F) -> Result<T, Refusal>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if bytes <= INLINE_DECODE_MAX_BYTES {
        return Ok(decode());
    }
    tokio::task::spawn_blocking(decode).await.map_err(|error| {
        tracing::error!(%error, "Decode task failed.");
        Refusal::Internal
    })
}

/// The outcome of a request whose body decoded: what to tell the client.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub rejected: u64,
    pub first_error: Option<String>,
}

/// Starts appending a size-checked, priced body to the write-ahead log, when it is on:
/// compressed here (on the thread that decodes it) and queued for the log's writer,
/// which writes it (and fsyncs, with the batch policy) while the caller goes on
/// decoding. The acknowledgement waits for it in `accept`; a body that then fails to
/// decode drops the [`crate::wal::Pending`], which cancels the record.
pub(crate) fn wal_start(
    wal: Option<&crate::wal::Wal>,
    signal: crate::wal::Signal,
    json: bool,
    body: &[u8],
) -> Result<Option<crate::wal::Pending>, Refusal> {
    let Some(wal) = wal else {
        return Ok(None);
    };
    let format = if json {
        crate::wal::Format::Json
    } else {
        crate::wal::Format::Protobuf
    };
    crate::wal::Entry::new(signal, format, body)
        .and_then(|entry| wal.start_append(entry))
        .map(Some)
        .map_err(|e| Refusal::WalUnavailable(e.to_string()))
}

/// Longest `error_message` sent back; the rest of a hostile message is cut.
const MAX_ERROR_MESSAGE: usize = 1024;

impl Accepted {
    /// The `partial_success` message: how many were refused and the first reason.
    pub(crate) fn error_message(&self) -> String {
        let first = self.first_error.as_deref().unwrap_or("invalid item");
        bounded(format!(
            "{} item(s) rejected; first: {first}",
            self.rejected
        ))
    }
}

fn bounded(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE {
        let mut end = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

impl<H: Handoff, O: IngestObserver> Ingest<H, O> {
    /// Counts a request refused as a whole and logs our own failures.
    pub(crate) fn count_refusal(&self, refusal: &Refusal) {
        match refusal.reason() {
            // Counted with their item count in `accept`.
            Some(RejectReason::WalError) => {}
            // Overloaded requests are counted with their item count in `accept_*`.
            Some(RejectReason::Overloaded) => {
                if let Refusal::OverBudget { items, .. } = refusal {
                    self.observer
                        .rejected(RejectReason::Overloaded, (*items).max(1));
                }
            }
            Some(reason) => self.observer.rejected(reason, 1),
            None => tracing::error!(error = %refusal.message(), "Request failed."),
        }
    }

    /// Waits for the request's write-ahead log append (when on; started with
    /// [`wal_start`]), hands decoded spans over and counts them; both transports end here.
    pub(crate) async fn accept_spans(
        &self,
        transport: Transport,
        decoded: Decoded<SpanRecord>,
        held: Charge,
        wal: Option<crate::wal::Pending>,
    ) -> Result<Accepted, Refusal> {
        let traces = wal
            .as_ref()
            .map(|_| crate::wal::span_traces(&decoded.items));
        self.accept(transport, "spans", decoded, wal.zip(traces), |items| {
            self.handoff.spans(items, Arc::new(held))
        })
        .await
    }

    /// Waits for the request's write-ahead log append, hands decoded log events over and
    /// counts them.
    pub(crate) async fn accept_logs(
        &self,
        transport: Transport,
        decoded: Decoded<LogEvent>,
        held: Charge,
        wal: Option<crate::wal::Pending>,
    ) -> Result<Accepted, Refusal> {
        let traces = wal.as_ref().map(|_| crate::wal::log_traces(&decoded.items));
        self.accept(
            transport,
            "log records",
            decoded,
            wal.zip(traces),
            |items| self.handoff.logs(items, Arc::new(held)),
        )
        .await
    }

    /// Counts what decoding refused, waits for the request's append to the write-ahead
    /// log (the acknowledgement waits for it) and registers its traces, hands the rest
    /// over with `hand_over`, and counts it as received, or every item as refused when
    /// the log or the pipeline cannot take it (a request the pipeline refuses after its
    /// append, or with no item left to hand over, is cancelled in the log).
    async fn accept<T, F, Fut>(
        &self,
        transport: Transport,
        what: &'static str,
        decoded: Decoded<T>,
        wal: Option<(crate::wal::Pending, Vec<crate::model::TraceId>)>,
        hand_over: F,
    ) -> Result<Accepted, Refusal>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Result<(), Overloaded>>,
    {
        self.count_rejected(&decoded.rejected_by);
        log_decoded(what, &decoded);
        let n = decoded.items.len() as u64;
        if n > 0 {
            let appended = match (&self.wal, wal) {
                (Some(log), Some((pending, traces))) => match pending.wait(&traces).await {
                    Ok(appended) => Some((log, appended)),
                    Err(error) => {
                        let reason = match error {
                            crate::wal::WalError::Full { .. } => RejectReason::WalFull,
                            _ => RejectReason::WalError,
                        };
                        self.observer.rejected(reason, n);
                        return Err(Refusal::WalUnavailable(error.to_string()));
                    }
                },
                _ => None,
            };
            if let Err(overloaded) = hand_over(decoded.items).await {
                if let Some((log, appended)) = appended {
                    log.cancel(appended);
                }
                self.observer.rejected(RejectReason::Overloaded, n);
                return Err(Refusal::Overloaded(overloaded));
            }
            self.observer.received(transport, n);
        }
        Ok(Accepted {
            rejected: decoded.rejected,
            first_error: decoded.first_error,
        })
    }

    fn count_rejected(&self, by: &[(RejectReason, u64)]) {
        for (reason, n) in by {
            self.observer.rejected(*reason, *n);
        }
    }
}

fn log_decoded<T>(what: &'static str, decoded: &Decoded<T>) {
    if decoded.rejected > 0 {
        tracing::debug!(
            what,
            rejected = decoded.rejected,
            first_error = decoded.first_error.as_deref().unwrap_or(""),
            "Rejected invalid items."
        );
    }
    if decoded.truncated_values > 0 || decoded.dropped_items > 0 {
        tracing::debug!(
            what,
            truncated_values = decoded.truncated_values,
            dropped_items = decoded.dropped_items,
            "Truncated oversized content."
        );
    }
}
