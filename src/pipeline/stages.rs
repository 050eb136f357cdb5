//! What the shards feed, declared by stage rather than by the order of a list.
//!
//! ```text
//! release ──► analysis ──publish──► every sink of `count` and `sinks` (any order)
//! finalize ─► discovery (reason patterns) ─► Finalized ─► `count` sinks ─► `sinks`
//! ```
//!
//! - **Discovery** ([`Stages::discovery`]): input a finalized [`Analysis`]; output the
//!   reason pattern of each of its original findings, assigned (and counted) by the
//!   reason index once per trace. The output travels with the analysis in the
//!   [`Finalized`] every sink's `finalize` is given, so no sink reads another's result
//!   through shared state.
//! - **Count** ([`Stages::count`]): sinks whose `finalize` takes counts that sinks of the
//!   next stage read (the aggregator: the store's sink takes the trace's own counts from
//!   it and the store writes them with the trace's finalize). Every `count` sink has
//!   finalized a trace before any of `sinks` sees it.
//! - **Sinks** ([`Stages::sinks`]): everything else (in-memory view, cohort window,
//!   write-ahead log, store). Nothing depends on the order within a stage.

use std::ops::Deref;
use std::sync::Arc;

use crate::model::{Analysis, TraceId};
use crate::reasons::{PatternId, ReasonIndex};

use super::Sink;

/// A finalized analysis with the discovery stage's outputs: what every sink's
/// [`Sink::finalize`] is given. Derefs to the [`Analysis`].
#[derive(Debug, Clone)]
pub struct Finalized {
    pub analysis: Arc<Analysis>,
    /// The reason pattern of every original (not propagated) finding, as (index into
    /// `analysis.findings`, pattern), in finding order. Empty when discovery is off.
    pub reason_patterns: Vec<(usize, PatternId)>,
}

impl Finalized {
    /// A finalized analysis that went through no discovery stage.
    pub fn new(analysis: Arc<Analysis>) -> Finalized {
        Finalized {
            analysis,
            reason_patterns: Vec::new(),
        }
    }

    /// The reason pattern of the blamed finding (the root cause's span and kind), when
    /// discovery assigned one.
    pub fn root_pattern(&self) -> Option<PatternId> {
        let a = &self.analysis;
        let rc = a.root_cause.as_ref()?;
        self.reason_patterns
            .iter()
            .find(|(i, _)| {
                a.findings
                    .get(*i)
                    .is_some_and(|f| f.span == rc.span && f.kind == rc.kind)
            })
            .map(|(_, p)| *p)
    }
}

impl From<Arc<Analysis>> for Finalized {
    fn from(analysis: Arc<Analysis>) -> Finalized {
        Finalized::new(analysis)
    }
}

impl Deref for Finalized {
    type Target = Analysis;

    fn deref(&self) -> &Analysis {
        &self.analysis
    }
}

/// The stages the shards feed; see the module documentation.
#[derive(Default, Clone)]
pub struct Stages {
    /// Assigns reason patterns before the fan-out to sinks (`None`: discovery off).
    pub discovery: Option<Arc<ReasonIndex>>,
    /// Finalized before `sinks`: their counts are read by sinks of the next stage.
    pub count: Vec<Arc<dyn Sink>>,
    /// Every other sink; their order carries no meaning.
    pub sinks: Vec<Arc<dyn Sink>>,
}

/// Plain sinks only: no discovery, no count stage.
impl From<Vec<Arc<dyn Sink>>> for Stages {
    fn from(sinks: Vec<Arc<dyn Sink>>) -> Stages {
        Stages {
            sinks,
            ..Stages::default()
        }
    }
}

impl Stages {
    fn all(&self) -> impl Iterator<Item = &Arc<dyn Sink>> {
        self.count.iter().chain(&self.sinks)
    }

    /// A release (first or revision) to every sink.
    pub(super) fn publish(&self, analysis: &Arc<Analysis>) {
        for sink in self.all() {
            sink.publish(analysis.clone());
        }
    }

    /// A trace that is not a trajectory of its own, to every sink.
    pub(super) fn not_a_trajectory(&self, trace: TraceId) {
        for sink in self.all() {
            sink.not_a_trajectory(trace);
        }
    }

    /// Runs discovery on a finalized analysis, then gives the result to the `count`
    /// sinks, then to the others.
    pub(super) fn finalize(&self, analysis: Arc<Analysis>) {
        let reason_patterns = match &self.discovery {
            Some(reasons) => reasons.record(&analysis),
            None => Vec::new(),
        };
        let finalized = Finalized {
            analysis,
            reason_patterns,
        };
        for sink in &self.count {
            sink.finalize(&finalized);
        }
        for sink in &self.sinks {
            sink.finalize(&finalized);
        }
    }
}
