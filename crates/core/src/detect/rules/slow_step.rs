//! Slow steps: a run of a step that took longer than the step's SLO (`[detect.slo]`).
//! Only the span that starts a step run is timed, so a planner node and the LLM call
//! inside it count once. The score is the duration in seconds.

use std::time::Duration;

use crate::detect::Ctx;
use crate::model::{Finding, FindingKind};

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    if ctx.config.slo.is_empty() {
        return;
    }
    for (i, span) in ctx.spans() {
        let Some(assignment) = ctx.steps.get(i as usize) else {
            continue;
        };
        if !assignment.run_start {
            continue;
        }
        let Some(slo) = ctx.config.slo_of(&assignment.kind) else {
            continue;
        };
        let took = Duration::from_nanos(span.duration_nanos());
        if took <= slo {
            continue;
        }
        let reason = format!(
            "{} span `{}` took {}, over its {} SLO",
            assignment.kind.as_str(),
            span.name,
            humantime::format_duration(round_ms(took)),
            humantime::format_duration(slo)
        );
        out.push(
            Finding::new(
                i,
                assignment.kind.clone(),
                FindingKind::SlowStep,
                reason,
                "slo",
            )
            .with_score(took.as_secs_f64()),
        );
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u64::MAX as u128) as u64)
}
