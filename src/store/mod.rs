//! Store: where analyses go after the pipeline, and what the API reads.
//!
//! [`Recent`] keeps the most recent analyses in memory, replacing an earlier revision of
//! the same trace in place, so a trajectory is never listed twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::model::{Analysis, TraceId};
use crate::pipeline::Sink;

/// The most recent `capacity` analyses, newest first.
pub struct Recent {
    capacity: usize,
    inner: Mutex<RecentInner>,
}

struct RecentInner {
    by_trace: HashMap<TraceId, (u64, Arc<Analysis>)>,
    /// (sequence, trace) in release order; entries whose sequence no longer matches
    /// `by_trace` are stale (the trace was re-released) and skipped.
    order: VecDeque<(u64, TraceId)>,
    next_seq: u64,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            capacity: capacity.max(1),
            inner: Mutex::new(RecentInner {
                by_trace: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
            }),
        }
    }

    pub fn get(&self, trace_id: TraceId) -> Option<Arc<Analysis>> {
        let inner = self.lock();
        inner.by_trace.get(&trace_id).map(|(_, a)| a.clone())
    }

    /// Up to `limit` analyses, most recently released first.
    pub fn list(&self, limit: usize) -> Vec<Arc<Analysis>> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|(seq, id)| match inner.by_trace.get(id) {
                Some((s, a)) if s == seq => Some(a.clone()),
                _ => None,
            })
            .take(limit)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().by_trace.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way
        // that matters to readers, so a poisoned lock is still used.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for Recent {
    fn publish(&self, analysis: Arc<Analysis>) {
        let mut inner = self.lock();
        let id = analysis.trajectory.trace_id;
        if let Some((_, old)) = inner.by_trace.get(&id) {
            // Never replace a newer revision with an older one.
            if old.trajectory.revision > analysis.trajectory.revision {
                return;
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.by_trace.insert(id, (seq, analysis));
        inner.order.push_back((seq, id));
        while inner.by_trace.len() > self.capacity {
            let Some((seq, id)) = inner.order.pop_front() else {
                break;
            };
            if matches!(inner.by_trace.get(&id), Some((s, _)) if *s == seq) {
                inner.by_trace.remove(&id);
            }
        }
        // Stale entries of re-released traces are dropped once they pile up.
        if inner.order.len() > 2 * self.capacity + 16 {
            let RecentInner {
                by_trace, order, ..
            } = &mut *inner;
            order.retain(|(seq, id)| matches!(by_trace.get(id), Some((s, _)) if s == seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, Trajectory};
    use crate::test_support::{span, trajectory};

    fn analysis(trace: u64, revision: u32) -> Arc<Analysis> {
        let mut t: Trajectory = trajectory(vec![span(trace, 1, 0).build()]);
        t.revision = revision;
        Arc::new(Analysis {
            trajectory: Arc::new(t),
            steps: Vec::new(),
            findings: Vec::new(),
            outcome: Outcome::Success,
            root_cause: None,
        })
    }

    #[test]
    fn revisions_replace_and_capacity_holds() {
        let r = Recent::new(2);
        r.publish(analysis(1, 0));
        r.publish(analysis(2, 0));
        r.publish(analysis(1, 1));
        let listed: Vec<(TraceId, u32)> = r
            .list(10)
            .iter()
            .map(|a| (a.trajectory.trace_id, a.trajectory.revision))
            .collect();
        let t = crate::test_support::trace_id;
        assert_eq!(listed, vec![(t(1), 1), (t(2), 0)]);
        r.publish(analysis(1, 0));
        assert_eq!(r.get(t(1)).unwrap().trajectory.revision, 1);
        r.publish(analysis(3, 0));
        assert_eq!(r.len(), 2);
        assert!(r.get(t(2)).is_none());
        assert_eq!(r.list(1)[0].trajectory.trace_id, t(3));
    }
}
