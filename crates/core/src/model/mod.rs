//! The shared vocabulary of the pipeline: ids, spans, trajectories, steps, findings.
//!
//! Everything here is plain data. No IO, no async, no serde: the wire formats live at
//! the edges (`ingest` knows OTLP, `api` knows JSON), and convert to and from these types.

pub mod analysis;
pub mod held;
pub mod ids;
pub mod intern;
pub mod linked;
pub mod span;
pub mod step;
pub mod trajectory;

pub use analysis::{Analysis, Finding, FindingKind, Outcome, RootCause};
pub use ids::{SpanId, TraceId};
pub use intern::{Interner, Str};
pub use linked::LinkedEvaluation;
pub use span::{
    Attributes, LogEvent, Resource, SpanEvent, SpanKind, SpanLink, SpanRecord, SpanStatus, Value,
};
pub use step::{StepAssignment, StepKind, StepSource};
pub use trajectory::{Anomaly, IncompleteReason, Trajectory};
