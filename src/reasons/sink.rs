//! The pipeline's side of reason clustering: every original finding of a finalized
//! analysis is assigned to a pattern and counted. The pipeline runs it as its discovery
//! stage (`pipeline::stages`), before any sink sees the analysis, and hands the
//! assigned patterns to every sink with the analysis.

use std::sync::{Arc, Mutex};

use crate::model::Analysis;

use super::{PatternId, ReasonStats, SharedClusterer};

/// Clusters and counts reasons; the API reads the same clusterer and stats.
pub struct ReasonIndex {
    pub clusterer: Arc<SharedClusterer>,
    pub stats: Arc<Mutex<ReasonStats>>,
    /// Wall clock in unix nanoseconds: event times beyond it plus a tolerance are
    /// clamped, so one span stamped in the year 2100 cannot move the window.
    clock: fn() -> u64,
}

/// How far ahead of the wall clock an event time may be.
const FUTURE_TOLERANCE_NANOS: u64 = 5 * 60 * 1_000_000_000;

impl ReasonIndex {
    pub fn new(
        clusterer: Arc<SharedClusterer>,
        stats: Arc<Mutex<ReasonStats>>,
        clock: fn() -> u64,
    ) -> ReasonIndex {
        ReasonIndex {
            clusterer,
            stats,
            clock,
        }
    }

    /// The clustering key of a finding: step, kind and subject (evaluator or tool name),
    /// so that patterns never mix a retriever's errors with a tool's.
    fn key(step: &str, kind: &str, subject: Option<&str>) -> String {
        match subject {
            Some(s) => format!("{step}/{kind}/{s}"),
            None => format!("{step}/{kind}"),
        }
    }

    /// Assigns every original (not propagated) finding of a finalized analysis to a
    /// pattern and counts it; returns (index into `analysis.findings`, pattern), in
    /// finding order.
    pub fn record(&self, analysis: &Analysis) -> Vec<(usize, PatternId)> {
        let t = &analysis.trajectory;
        let end = t
            .end_unix_nano()
            .min((self.clock)().saturating_add(FUTURE_TOLERANCE_NANOS));
        let mut assigned = Vec::new();
        let mut ids = Vec::new();
        for (i, f) in analysis
            .findings
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.propagated)
        {
            let key = ReasonIndex::key(f.step.as_str(), f.kind.as_str(), f.subject.as_deref());
            let id = self.clusterer.assign(&key, &f.reason);
            let is_root = analysis
                .root_cause
                .as_ref()
                .is_some_and(|rc| rc.span == f.span && rc.kind == f.kind);
            assigned.push((id, f, is_root));
            ids.push((i, id));
        }
        if assigned.is_empty() {
            return ids;
        }
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        for (id, f, is_root) in assigned {
            stats.record(id, end, t.trace_id, &f.step, is_root);
        }
        ids
    }
}

/// The wall clock in unix nanoseconds.
pub fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
