//! A mock pipeline and observer, and both servers started on 127.0.0.1:0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ingest::{
    http_router, serve_grpc, Handoff, Ingest, IngestLimits, IngestObserver, Overloaded,
    RejectReason, Transport,
};
use crate::memory::{Charge, MemoryBudget};
use crate::model::{Interner, LogEvent, SpanRecord};

/// Records what was handed off; refuses everything while `overloaded` is set.
#[derive(Default)]
pub struct MockHandoff {
    pub spans: Mutex<Vec<SpanRecord>>,
    pub logs: Mutex<Vec<LogEvent>>,
    pub overloaded: AtomicBool,
}

pub const RETRY_AFTER: Duration = Duration::from_millis(1500);

impl Handoff for Arc<MockHandoff> {
    async fn spans(&self, spans: Vec<SpanRecord>, _held: Arc<Charge>) -> Result<(), Overloaded> {
        if self.overloaded.load(Ordering::SeqCst) {
            return Err(Overloaded {
                retry_after: RETRY_AFTER,
            });
        }
        self.spans.lock().unwrap().extend(spans);
        Ok(())
    }

    async fn logs(&self, logs: Vec<LogEvent>, _held: Arc<Charge>) -> Result<(), Overloaded> {
        if self.overloaded.load(Ordering::SeqCst) {
            return Err(Overloaded {
                retry_after: RETRY_AFTER,
            });
        }
        self.logs.lock().unwrap().extend(logs);
        Ok(())
    }
}

/// Counts by transport and by reason.
#[derive(Default)]
pub struct MockObserver {
    pub received: Mutex<HashMap<&'static str, u64>>,
    pub rejected: Mutex<HashMap<&'static str, u64>>,
}

impl IngestObserver for Arc<MockObserver> {
    fn received(&self, transport: Transport, spans: u64) {
        *self
            .received
            .lock()
            .unwrap()
            .entry(transport.as_str())
            .or_default() += spans;
    }

    fn rejected(&self, reason: RejectReason, spans: u64) {
        *self
            .rejected
            .lock()
            .unwrap()
            .entry(reason.as_str())
            .or_default() += spans;
    }
}

pub struct Harness {
    pub addr: SocketAddr,
    pub handoff: Arc<MockHandoff>,
    pub observer: Arc<MockObserver>,
}

impl Harness {
    pub fn handed_span_names(&self) -> Vec<String> {
        self.handoff
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.to_string())
            .collect()
    }

    pub fn handed_logs(&self) -> usize {
        self.handoff.logs.lock().unwrap().len()
    }

    pub fn received(&self, transport: &str) -> u64 {
        self.observer
            .received
            .lock()
            .unwrap()
            .get(transport)
            .copied()
            .unwrap_or(0)
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.observer
            .rejected
            .lock()
            .unwrap()
            .get(reason.as_str())
            .copied()
            .unwrap_or(0)
    }

    pub fn set_overloaded(&self, on: bool) {
        self.handoff.overloaded.store(on, Ordering::SeqCst);
    }
}

/// The memory budget of the harness unless a test gives its own: one request may hold
/// 256 MiB once decoded.
pub const BUDGET: u64 = 1 << 30;

fn ingest(
    limits: IngestLimits,
    budget: Arc<MemoryBudget>,
) -> Arc<Ingest<Arc<MockHandoff>, Arc<MockObserver>>> {
    Arc::new(Ingest {
        handoff: Arc::new(MockHandoff::default()),
        observer: Arc::new(MockObserver::default()),
        interner: Arc::new(Interner::default()),
        limits,
        budget,
        wal: None,
    })
}

pub fn limits(max_request_bytes: usize) -> IngestLimits {
    IngestLimits {
        max_request_bytes,
        ..IngestLimits::default()
    }
}

pub async fn start_http(limits: IngestLimits) -> Harness {
    start_http_with(limits, MemoryBudget::new(BUDGET)).await
}

pub async fn start_http_with(limits: IngestLimits, budget: Arc<MemoryBudget>) -> Harness {
    let ingest = ingest(limits, budget);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let harness = Harness {
        addr,
        handoff: Arc::clone(&ingest.handoff),
        observer: Arc::clone(&ingest.observer),
    };
    let router = http_router(ingest);
    tokio::spawn(crate::net::serve_http(
        listener,
        router,
        crate::net::ConnLimits::default(),
        crate::net::ConnMetrics::default(),
        std::future::pending(),
    ));
    harness
}

pub async fn start_grpc(limits: IngestLimits) -> Harness {
    start_grpc_with(limits, MemoryBudget::new(BUDGET)).await
}

pub async fn start_grpc_with(limits: IngestLimits, budget: Arc<MemoryBudget>) -> Harness {
    let ingest = ingest(limits, budget);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let harness = Harness {
        addr,
        handoff: Arc::clone(&ingest.handoff),
        observer: Arc::clone(&ingest.observer),
    };
    tokio::spawn(serve_grpc(
        ingest,
        listener,
        crate::net::ConnLimits::default(),
        crate::net::ConnMetrics::default(),
        std::future::pending(),
    ));
    harness
}
