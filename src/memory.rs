//! The memory budget: one limit in bytes for what the server holds on behalf of clients,
//! like the Collector's `memory_limiter`, but counted from what is held rather than
//! sampled from the heap.
//!
//! The limit covers the process's own footprint too: the server sets aside, at startup,
//! what is resident before it serves and the store writer's page cache (which fills as
//! it writes), at most half the limit ([`MemoryBudget::with_reserve`]); the marks and
//! shares below are parts of the rest ([`MemoryBudget::held_limit`]).
//!
//! One [`MemoryBudget`] is shared by ingest and the pipeline. Each holder charges what it
//! holds to its [`Component`]:
//! - `requests`: decoded requests in flight, at their estimated decoded size (see
//!   `ingest::cost`), from before decoding until the records are queued;
//! - `pipeline`: records queued for and buffered by the shards (open traces), at their
//!   measured held size ([`held_bytes`]);
//! - `wal`: the write-ahead log's table of traces whose data is in a segment but not yet
//!   stored and counted (`crate::wal`), at a fixed size per trace.
//! - `store`: analyses waiting for the store's writer thread ([`analysis_bytes`]), from
//!   the store sink's hand-off until their transaction commits. The store never drops a
//!   failed or recovered trajectory for room: what it holds counts against the soft mark,
//!   so a store that falls behind makes the receivers refuse (retryably) instead.
//! - `recent`: the analyses of the recent list (`store::Recent`), at [`analysis_bytes`].
//!   The list keeps within its share of the budget, [`MemoryBudget::recent_share`] (an
//!   eighth), as well as within its count: past either it forgets its oldest entries,
//!   and an analysis larger than the whole share is not kept at all. Nothing is lost by
//!   this: the list of the API reads the store only, and a trajectory not in the recent
//!   list is read from the store.
//!
//! An analysis is one allocation however many hold it: the recent list and the store's
//! queue are handed the same `Arc<Analysis>`. Their charges are [`AnalysisCharge`]s,
//! keyed by that allocation, so it is counted once, to the component of the first holder
//! still holding it; when that one lets go, the charge moves to the next (the store's
//! queue, when the recent list forgot an analysis not yet committed), and it is given
//! back when the last lets go. So on an idle server (the store's queue empty) the use is
//! at most the recent list's eighth plus the write-ahead log's table, and a request
//! within [`MemoryBudget::max_request`] (a quarter) still passes under the soft mark.
//! The shards' grace entries share the released trajectory too; they are charged by the
//! shards' own measure (`pipeline`) and not deduplicated with these, which over-counts
//! during the late-data grace (never under-counts).
//!
//! Marks (documented in ARCHITECTURE.md):
//! - **soft** = 80 % of the budget: a new request whose decoded size would take the use
//!   past it is refused with the retryable status (HTTP 503 + `Retry-After`, gRPC
//!   `UNAVAILABLE` + `RetryInfo`), counted in
//!   `faultline_memory_refused_total`. A request always fits an idle server, since one
//!   request may hold at most a quarter of the budget ([`MemoryBudget::max_request`]); a
//!   bigger one is refused for good (413 / `RESOURCE_EXHAUSTED`) before it is decoded.
//! - **hard** = the budget: the shards release their oldest open traces early (flagged
//!   incomplete, `faultline_traces_evicted_total{reason="memory"}`) until their share
//!   of the budget is respected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Who holds the bytes; the values of the `component` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Requests,
    Pipeline,
    /// The write-ahead log's table of traces not yet stored (`src/wal/`).
    Wal,
    Store,
    /// The recent list (`store::Recent`).
    Recent,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::Requests,
        Component::Pipeline,
        Component::Wal,
        Component::Store,
        Component::Recent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Requests => "requests",
            Component::Pipeline => "pipeline",
            Component::Wal => "wal",
            Component::Store => "store",
            Component::Recent => "recent",
        }
    }

    fn index(self) -> usize {
        match self {
            Component::Requests => 0,
            Component::Pipeline => 1,
            Component::Wal => 2,
            Component::Store => 3,
            Component::Recent => 4,
        }
    }
}

/// The soft mark, in percent of the budget.
pub const SOFT_PERCENT: u64 = 80;
/// The share of the budget one request may hold once decoded, as a divisor.
pub const REQUEST_SHARE: u64 = 4;
/// The share of the budget the recent list may hold, as a divisor.
pub const RECENT_SHARE: u64 = 8;
/// The budget never defaults below this.
const MIN_DEFAULT: u64 = 256 * 1024 * 1024;

/// The shared accountant. Its counts are the self-metrics themselves (registered by
/// `metrics::register_memory`): `faultline_memory_used_bytes{component}` and
/// `faultline_memory_refused_total`.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    /// Set aside for the process's own footprint (see [`MemoryBudget::with_reserve`]);
    /// also the gauge `faultline_memory_reserved_bytes`.
    reserved: Gauge,
    used: [Gauge; Component::ALL.len()],
    refused: Counter,
    /// The analyses charged through [`AnalysisCharge`], by address: their size and who
    /// holds them, the first holder being the one charged.
    shared: Mutex<HashMap<usize, SharedEntry>>,
}

#[derive(Debug)]
struct SharedEntry {
    bytes: u64,
    holders: Vec<Component>,
}

/// One holder's charge for an analysis that others may hold too (see the module's
/// documentation): the allocation is counted once while any holder keeps it. The charge
/// keeps the analysis alive, so its address is not reused while charged.
#[derive(Debug)]
pub struct AnalysisCharge {
    budget: Arc<MemoryBudget>,
    component: Component,
    analysis: Arc<crate::model::Analysis>,
    bytes: u64,
}

impl AnalysisCharge {
    /// The analysis's size, [`analysis_bytes`].
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for AnalysisCharge {
    fn drop(&mut self) {
        let key = Arc::as_ptr(&self.analysis) as usize;
        let mut shared = self.budget.shared();
        let Some(entry) = shared.get_mut(&key) else {
            return;
        };
        let Some(at) = entry.holders.iter().position(|c| *c == self.component) else {
            return;
        };
        entry.holders.remove(at);
        if at == 0 {
            self.budget.release(self.component, entry.bytes);
            match entry.holders.first() {
                Some(next) => {
                    let next = *next;
                    self.budget
                        .adjust(next, entry.bytes.min(i64::MAX as u64) as i64);
                }
                None => {
                    shared.remove(&key);
                }
            }
        }
    }
}

/// A charge that is given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    component: Component,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.component, self.bytes);
    }
}

/// Over the soft mark: the caller should refuse with a retryable status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the memory held for clients is {used} bytes of the {limit} the budget leaves them; {wanted} more bytes would pass its soft mark")]
pub struct OverSoftMark {
    pub limit: u64,
    pub used: u64,
    pub wanted: u64,
}

impl MemoryBudget {
    /// A budget whose whole `limit` is for what is held for clients.
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Self::with_reserve(limit, 0)
    }

    /// A budget of `limit` bytes of which `reserve` is set aside for the process's own
    /// footprint (its code, threads, caches of fixed size: what it holds for nobody in
    /// particular), so that what is held for clients plus that footprint stays within
    /// `limit`. The reserve is capped at half the limit: a budget smaller than twice the
    /// footprint still leaves half for clients.
    pub fn with_reserve(limit: u64, reserve: u64) -> Arc<MemoryBudget> {
        let budget = Arc::new(MemoryBudget {
            limit: limit.max(1),
            reserved: Gauge::default(),
            used: std::array::from_fn(|_| Gauge::default()),
            refused: Counter::default(),
            shared: Mutex::new(HashMap::new()),
        });
        budget.set_reserve(reserve);
        budget
    }

    /// Sets the reserve again (capped at half the limit), once the footprint it stands
    /// for is known better: the server measures it before opening the store and again
    /// once everything is started, before it serves. The shards follow at their next
    /// message or tick.
    pub fn set_reserve(&self, reserve: u64) {
        let reserve = reserve.min(self.limit / 2);
        self.reserved
            .set(i64::try_from(reserve).unwrap_or(i64::MAX));
    }

    /// The gauge of the reserve, for registration.
    pub fn reserved_gauge(&self) -> Gauge {
        self.reserved.clone()
    }

    /// The configured budget.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The part of the budget set aside for the process's own footprint.
    pub fn reserved(&self) -> u64 {
        self.reserved.get().max(0) as u64
    }

    /// What may be held for clients: the budget less the reserve. The marks and shares
    /// are parts of it.
    pub fn held_limit(&self) -> u64 {
        self.limit.saturating_sub(self.reserved())
    }

    pub fn soft(&self) -> u64 {
        self.held_limit() / 100 * SOFT_PERCENT
    }

    /// The most one request may hold once decoded.
    pub fn max_request(&self) -> u64 {
        self.held_limit() / REQUEST_SHARE
    }

    /// The most the recent list may hold.
    pub fn recent_share(&self) -> u64 {
        self.held_limit() / RECENT_SHARE
    }

    pub fn used(&self) -> u64 {
        Component::ALL.iter().map(|c| self.used_by(*c)).sum()
    }

    /// Whether the use has passed the soft mark (new requests are being refused).
    pub fn past_soft(&self) -> bool {
        self.used() > self.soft()
    }

    pub fn used_by(&self, component: Component) -> u64 {
        self.used[component.index()].get().max(0) as u64
    }

    /// Requests refused at the soft mark so far.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// The gauge of one component and the refusal counter, for registration.
    pub fn gauge(&self, component: Component) -> Gauge {
        self.used[component.index()].clone()
    }

    pub fn refused_counter(&self) -> Counter {
        self.refused.clone()
    }

    /// Charges `bytes` if that keeps the use under the soft mark, or when nothing else is
    /// charged (so that a request within [`Self::max_request`] fits an idle server).
    pub fn try_charge(
        self: &Arc<Self>,
        component: Component,
        bytes: u64,
    ) -> Result<Charge, OverSoftMark> {
        let used = self.used();
        if used != 0 && used.saturating_add(bytes) > self.soft() {
            self.refused.inc();
            return Err(OverSoftMark {
                limit: self.held_limit(),
                used,
                wanted: bytes,
            });
        }
        Ok(self.charge(component, bytes))
    }

    /// Charges `bytes` unconditionally (what is already held).
    pub fn charge(self: &Arc<Self>, component: Component, bytes: u64) -> Charge {
        self.adjust(component, bytes.min(i64::MAX as u64) as i64);
        Charge {
            budget: Arc::clone(self),
            component,
            bytes,
        }
    }

    /// Adds a signed change to a component whose holder tracks its own total.
    pub fn adjust(&self, component: Component, delta: i64) {
        let slot: &AtomicI64 = self.used[component.index()].inner();
        // Never below zero, even if a holder over-releases.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_add(delta).max(0))
        });
    }

    /// Charges `component` for holding `analysis`, unless another holder is already
    /// charged for the same allocation (then the charge is `component`'s once the others
    /// let go).
    pub fn charge_analysis(
        self: &Arc<Self>,
        component: Component,
        analysis: &Arc<crate::model::Analysis>,
    ) -> AnalysisCharge {
        let key = Arc::as_ptr(analysis) as usize;
        let mut shared = self.shared();
        let entry = shared.entry(key).or_insert_with(|| SharedEntry {
            bytes: analysis_bytes(analysis),
            holders: Vec::new(),
        });
        if entry.holders.is_empty() {
            self.adjust(component, entry.bytes.min(i64::MAX as u64) as i64);
        }
        entry.holders.push(component);
        AnalysisCharge {
            budget: Arc::clone(self),
            component,
            analysis: Arc::clone(analysis),
            bytes: entry.bytes,
        }
    }

    fn shared(&self) -> MutexGuard<'_, HashMap<usize, SharedEntry>> {
        // Every update leaves the map consistent, so a poisoned lock is still used.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, component: Component, bytes: u64) {
        self.adjust(component, -(bytes.min(i64::MAX as u64) as i64));
    }
}

/// The process's resident memory now, in bytes (Linux: `VmRSS` of `/proc/self/status`);
/// `None` where it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// A kB field of `/proc/self/status` (`"VmRSS:"`, `"VmHWM:"`), in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, field).map(|k| k * 1024)
}

/// The number of the line starting with `field` in a `/proc` file of `name: N kB` lines.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
}

/// The default budget: half of the cgroup's memory limit if there is one, else half of
/// the machine's memory, and never less than 256 MiB.
pub fn default_budget() -> u64 {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .or_else(|| {
            // cgroup v1; "no limit" is a huge number there.
            std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes")
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|v| *v < (1u64 << 60))
        });
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| kib_field(&s, "MemTotal:"))
        .map(|kb| kb * 1024);
    let machine = match (cgroup, total) {
        (Some(c), Some(t)) => c.min(t),
        (Some(c), None) => c,
        (None, Some(t)) => t,
        (None, None) => 4 * 1024 * 1024 * 1024,
    };
    (machine / 2).max(MIN_DEFAULT)
}

pub use crate::model::held::{
    analysis_bytes, linked_bytes as linked_held_bytes, span_bytes as held_bytes, LINKED_REF_BYTES,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_comes_off_the_budget_before_the_marks_and_is_capped_at_half() {
        let budget = MemoryBudget::with_reserve(1000, 200);
        assert_eq!(
            (budget.limit(), budget.reserved(), budget.held_limit()),
            (1000, 200, 800)
        );
        assert_eq!(budget.soft(), 640);
        assert_eq!(budget.max_request(), 200);
        assert_eq!(budget.recent_share(), 100);
        let small = MemoryBudget::with_reserve(1000, 900);
        assert_eq!((small.reserved(), small.held_limit()), (500, 500));
        // Measured again once the server has started.
        budget.set_reserve(300);
        assert_eq!(
            (budget.reserved(), budget.held_limit(), budget.soft()),
            (300, 700, 560)
        );
        assert_eq!(budget.reserved_gauge().get(), 300);
        budget.set_reserve(u64::MAX);
        assert_eq!(budget.held_limit(), 500);
    }

    #[test]
    fn this_process_reads_its_own_resident_memory() {
        let rss = resident_bytes().expect("VmRSS on Linux");
        // A test binary holds at least its own code resident, and less than the machine.
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
    }

    #[test]
    fn charges_are_given_back_and_the_soft_mark_refuses() {
        let budget = MemoryBudget::new(1000);
        assert_eq!(budget.soft(), 800);
        assert_eq!(budget.max_request(), 250);
        // An idle budget takes anything (the per-request cap is checked before).
        let a = budget.try_charge(Component::Requests, 700).expect("fits");
        assert_eq!(budget.used(), 700);
        let refused = budget
            .try_charge(Component::Requests, 200)
            .expect_err("past the soft mark");
        assert_eq!(refused.used, 700);
        assert_eq!(budget.refused(), 1);
        let b = budget
            .try_charge(Component::Requests, 100)
            .expect("at the mark");
        drop(a);
        assert_eq!(budget.used(), 100);
        budget.adjust(Component::Pipeline, 50);
        assert_eq!(budget.used_by(Component::Pipeline), 50);
        budget.adjust(Component::Pipeline, -80);
        assert_eq!(budget.used_by(Component::Pipeline), 0, "never below zero");
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_default_is_half_the_machine_or_cgroup() {
        let b = default_budget();
        assert!(b >= MIN_DEFAULT);
        let total = std::fs::read_to_string("/proc/meminfo")
            .expect("meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .expect("MemTotal")
            * 1024;
        assert!(b <= (total / 2).max(MIN_DEFAULT));
    }
}
