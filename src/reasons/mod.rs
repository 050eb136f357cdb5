//! Failure-reason clustering: every finding's reason is assigned online to a pattern
//! (a template with its variable parts as `<*>`) within a caller-given key, and
//! per-pattern counts are kept per event-time minute for the API.
//!
//! - [`ReasonClusterer`]: masking ([`mask`]), a bounded Drain-style prefix tree for
//!   short reasons, a token-set (Jaccard) path for long free text (evaluator prose),
//!   a periodic merge with stable ids, LRU eviction under `max_patterns`.
//!   Deterministic: the same input sequence gives the same ids and templates.
//! - [`SharedClusterer`]: how the pipeline shares it between shard threads: one
//!   `Mutex<ReasonClusterer>` per key-hash shard. A key always lands on the same shard,
//!   so clusters never cross keys or shards; ids carry their shard, so they stay unique.
//! - [`ReasonStats`]: per pattern, counts per minute over a horizon, example trace ids,
//!   steps and the share of root causes; [`ReasonStats::top`] ranks patterns in a window.
//! - [`ReasonIndex`]: assigns and counts every original finding of a finalized
//!   analysis; the pipeline's discovery stage, whose patterns travel with the analysis
//!   to every sink (`pipeline::Finalized`).
//! - [`ga`]: grouping accuracy, the log-parsing metric the benchmark reports.
//!
//! Invariants: clusters never cross keys; an id once returned is never reused for a
//! different pattern (a merged id resolves to the surviving pattern until that one is
//! evicted, then to nothing); memory is bounded by `max_patterns` (patterns, tree
//! nodes, keys and aliases are all freed with their patterns).

mod cluster;
pub mod ga;
mod mask;
mod shared;
mod sink;
mod stats;

pub use cluster::{
    ClustererStats, Pattern, PatternId, PatternKind, ReasonClusterer, ReasonConfig,
    ReasonConfigError,
};
pub use shared::SharedClusterer;
pub use sink::{system_clock, ReasonIndex};
pub use stats::{ReasonStats, ReasonStatsConfig, ReasonSummary, StepShare};

#[cfg(test)]
mod tests;
