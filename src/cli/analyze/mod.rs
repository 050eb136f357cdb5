//! `faultline analyze <files…>`: offline analysis of exported trace files, for CI gates.
//!
//! The files are what the OpenTelemetry Collector's `file` exporter writes (OTLP/JSON
//! lines or length-prefixed protobuf, traces and logs, optionally zstd-compressed; see
//! [`input`]). They go through the same pipeline as live traffic, without a server:
//! `ingest::decode` → `assemble::Assembler` → `analyze::analyze` →
//! `aggregate::Aggregator`, then one breakdown over the data's whole event-time range.
//!
//! How it matches the live pipeline:
//! - Every record is pushed to one assembler at one fixed instant, so no idle, age or
//!   grace timer ever fires; [`Assembler::drain`] then releases every trace at once,
//!   with all its spans, logs and late evaluator spans merged, which is the final
//!   revision the live pipeline counts. The per-trace bounds (`max_spans_per_trace`,
//!   `max_trace_depth`, `max_linked_per_trace`) apply as in `serve`; there is no memory bound: all spans of the input are held
//!   until the end (about 1 KiB per span).
//! - Evaluator spans that link to another trace are also routed to that trace (as the
//!   pipeline's shards do), and traces that are only such annotations are not counted
//!   as runs.
//! - Counts are taken with the aggregator's own code, with a horizon that covers the
//!   data (at most 31 days, ending at the newest data), so the same file gives the same
//!   numbers as `GET /api/v1/breakdown?from=…&to=…` of a server it was sent to.
//!
//! Gates, for CI: `--max-failure-rate R` (failed trajectories / all) and
//! `--max-root-cause-rate STEP=R`, repeatable (failed trajectories blamed on STEP / all
//! trajectories). Exit codes: 0 all gates pass, 1 a gate is exceeded, 2 unreadable or
//! malformed input, invalid config or arguments, a gate naming a step that is neither
//! built in, named by a config rule nor seen in the input (with the nearest known name
//! suggested), or gates over an input without a single trajectory (nothing is printed
//! as passing then).

pub mod input;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use crate::aggregate::{Aggregator, Breakdown, BreakdownQuery, Window};
use crate::analyze::{analyze, AnalyzeConfig};
use crate::api::breakdown::BreakdownDto;
use crate::assemble::linked_evaluations;
use crate::assemble::{AssembleConfig, AssembleStats, Assembler};
use crate::config::{ConfigError, FileConfig, Overrides, Settings};
use crate::model::{Analysis, Interner, Outcome, Trajectory};
use crate::pipeline::is_annotation_trace;

use super::format::{self, Align, Table};
use input::{FileSummary, InputError, Records};

const NANOS_PER_MINUTE: u64 = 60_000_000_000;
/// The longest horizon the aggregator is given (its config's own limit).
const MAX_HORIZON_MINUTES: u64 = 31 * 24 * 60;
/// Files at least this large get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Files written by the collector's `file` exporter: OTLP/JSON lines or
    /// length-prefixed protobuf, traces and/or logs, optionally zstd-compressed.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// TOML config file, as for `serve` (classify rules, detect settings, aggregate
    /// dimensions, max_spans_per_trace, max_trace_depth, max_request_bytes).
    #[arg(long, env = "FAULTLINE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
    /// Fail (exit 1) when failed trajectories / all trajectories is above RATE.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_failure_rate: Option<f64>,
    /// Fail (exit 1) when trajectories blamed on STEP / all trajectories is above RATE.
    /// Repeatable: --max-root-cause-rate retriever=0.05 --max-root-cause-rate tool=0.02
    #[arg(long, value_name = "STEP=RATE", value_parser = parse_step_gate)]
    pub max_root_cause_rate: Vec<StepGate>,
    /// Group the step table by cohort dimensions (comma-separated, e.g. model,route).
    #[arg(long, value_delimiter = ',', value_name = "DIMS")]
    pub by: Vec<String>,
    /// Root causes listed (most frequent first).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Also write one JSON line per trajectory to FILE (`-`: standard output): trace id,
    /// outcome and, for a failed run, its root cause (step, kind, agent, span, reason).
    #[arg(long, value_name = "FILE")]
    pub trajectories: Option<PathBuf>,
}

/// `--max-root-cause-rate STEP=RATE`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepGate {
    pub step: String,
    pub max: f64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("`{s}` is not a rate between 0 and 1"));
    }
    Ok(v)
}

fn parse_step_gate(s: &str) -> Result<StepGate, String> {
    let (step, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not STEP=RATE, e.g. retriever=0.05"))?;
    let step = step.trim();
    if step.is_empty() {
        return Err(format!("`{s}` names no step"));
    }
    Ok(StepGate {
        step: step.to_owned(),
        max: parse_rate(rate)?,
    })
}

/// Why the analysis could not run. All exit with code 2.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("--by: unknown dimension `{name}`; known: {known}")]
    UnknownDimension { name: String, known: String },
    #[error("--by: dimension `{0}` is named twice")]
    DuplicateDimension(String),
    #[error("cannot compute the breakdown: {0}")]
    Breakdown(#[from] crate::aggregate::QueryError),
}

/// One row of the root-cause ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct RootCauseRow {
    pub step: String,
    pub kind: String,
    pub count: u64,
    /// The most frequent reason text (cut at 300 characters).
    pub reason: String,
    /// Up to three, in event-time order.
    pub example_trace_ids: Vec<String>,
}

/// The verdict on one trajectory (`--trajectories`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryRow {
    pub trace_id: String,
    pub outcome: &'static str,
    pub root_cause: Option<TrajectoryRootCause>,
}

/// The root cause of one failed trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryRootCause {
    pub step: String,
    pub kind: String,
    pub agent: Option<String>,
    pub span_id: String,
    pub span_name: String,
    pub rule: &'static str,
    pub reason: String,
}

impl TrajectoryRow {
    fn of(a: &Analysis) -> TrajectoryRow {
        let root_cause = a.root_cause.as_ref().map(|rc| {
            let span = a.trajectory.spans.get(rc.span as usize);
            TrajectoryRootCause {
                step: rc.step.as_str().to_owned(),
                kind: rc.kind.as_str().to_owned(),
                agent: rc.agent.as_ref().map(|s| s.to_string()),
                span_id: span.map(|s| s.span_id.to_hex()).unwrap_or_default(),
                span_name: span.map(|s| s.name.to_string()).unwrap_or_default(),
                rule: rc.rule,
                reason: format::clip(&rc.reason, 300),
            }
        });
        TrajectoryRow {
            trace_id: a.trajectory.trace_id.to_hex(),
            outcome: a.outcome.as_str(),
            root_cause,
        }
    }

    /// The row as one JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "trace_id": self.trace_id,
            "outcome": self.outcome,
            "root_cause": self.root_cause.as_ref().map(|rc| json!({
                "step": rc.step,
                "kind": rc.kind,
                "agent": rc.agent,
                "span_id": rc.span_id,
                "span_name": rc.span_name,
                "rule": rc.rule,
                "reason": rc.reason,
            })),
        })
    }
}

/// Counts of the assembly stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssemblySummary {
    pub trajectories: u64,
    pub incomplete: u64,
    /// Traces made only of post-hoc evaluator spans of another trace.
    pub annotation_traces: u64,
    pub stats: AssembleStats,
}

/// The result of an offline analysis.
#[derive(Debug, Clone)]
pub struct Report {
    pub files: Vec<FileSummary>,
    pub assembly: AssemblySummary,
    /// Over the data's whole range, grouped by the `--by` dimensions.
    pub breakdown: Breakdown,
    /// The same range, not grouped: the numbers the gates read.
    pub overall: Breakdown,
    pub root_causes: Vec<RootCauseRow>,
    /// One verdict per trajectory, in the order they were released.
    pub trajectories: Vec<TrajectoryRow>,
    /// Trajectories left out of the breakdown: ending more than 31 days before the newest.
    pub beyond_horizon: u64,
}

/// Settings of an offline analysis.
#[derive(Debug, Clone)]
pub struct AnalyzeSettings {
    pub analyze: AnalyzeConfig,
    pub aggregate: crate::aggregate::AggregateConfig,
    pub max_spans_per_trace: usize,
    pub max_trace_depth: usize,
    pub max_linked_per_trace: usize,
    pub max_request_bytes: usize,
    /// Cohort dimensions of the breakdown, by name.
    pub by: Vec<String>,
    /// Show a progress bar on stderr (when it is a terminal and the input is large).
    pub progress: bool,
}

impl AnalyzeSettings {
    /// From the `serve` settings (the config file).
    pub fn from_settings(settings: &Settings, by: Vec<String>) -> AnalyzeSettings {
        AnalyzeSettings {
            analyze: settings.analyze.clone(),
            aggregate: settings.aggregate.clone(),
            max_spans_per_trace: settings.max_spans_per_trace,
            max_trace_depth: settings.max_trace_depth,
            max_linked_per_trace: settings.max_linked_per_trace,
            max_request_bytes: settings.max_request_bytes,
            by,
            progress: false,
        }
    }
}

/// Assembles and analyses records pushed in file order, at one fixed instant.
struct Offline<'a> {
    assembler: Assembler,
    now: Instant,
    config: &'a AnalyzeConfig,
    out: Vec<Arc<Trajectory>>,
    analyses: Vec<Analysis>,
    annotation_traces: u64,
}

impl<'a> Offline<'a> {
    fn new(config: &'a AnalyzeConfig, settings: &AnalyzeSettings) -> Offline<'a> {
        // Timers never fire (no tick), so only the bounds matter.
        let forever = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
        Offline {
            assembler: Assembler::new(AssembleConfig {
                idle_timeout: forever,
                max_trace_age: forever,
                late_grace: forever,
                max_buffered_spans: usize::MAX / 2,
                max_spans_per_trace: settings.max_spans_per_trace,
                max_trace_depth: settings.max_trace_depth,
                max_linked_per_trace: settings.max_linked_per_trace,
            }),
            now: Instant::now(),
            config,
            out: Vec::new(),
            analyses: Vec::new(),
            annotation_traces: 0,
        }
    }

    fn push(&mut self, records: Records) {
        match records {
            Records::Spans(spans) => {
                // Evaluator spans linking to another trace also go to that trace, as
                // the pipeline routes them.
                let linked = linked_evaluations(&spans);
                self.assembler.push_spans(spans, self.now, &mut self.out);
                for (target, evaluations) in linked {
                    self.assembler
                        .push_linked(target, evaluations, self.now, &mut self.out);
                }
            }
            Records::Logs(logs) => self.assembler.push_logs(logs, self.now, &mut self.out),
        }
        self.release();
    }

    fn release(&mut self) {
        for trajectory in self.out.drain(..) {
            if is_annotation_trace(&trajectory) {
                self.annotation_traces += 1;
                continue;
            }
            self.analyses.push(analyze(trajectory, self.config));
        }
    }

    fn finish(mut self) -> (Vec<Analysis>, AssemblySummary) {
        self.assembler.drain(&mut self.out);
        self.release();
        let mut analyses = self.analyses;
        // Event-time order, so examples and ties do not depend on hashing.
        analyses.sort_by(|a, b| {
            let key = |x: &Analysis| (x.trajectory.end_unix_nano(), x.trajectory.trace_id);
            key(a).cmp(&key(b))
        });
        let summary = AssemblySummary {
            trajectories: analyses.len() as u64,
            incomplete: analyses.iter().filter(|a| !a.trajectory.complete).count() as u64,
            annotation_traces: self.annotation_traces,
            stats: self.assembler.stats(),
        };
        (analyses, summary)
    }
}

fn progress_bar(files: &[PathBuf], enabled: bool) -> indicatif::ProgressBar {
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    if !enabled || total < PROGRESS_MIN_BYTES {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Reads, assembles and analyses `files`, and counts them.
pub fn analyze_files(
    files: &[PathBuf],
    settings: &AnalyzeSettings,
) -> Result<Report, AnalyzeError> {
    let by = resolve_by(&settings.aggregate, &settings.by)?;
    let interner = Interner::default();
    let mut offline = Offline::new(&settings.analyze, settings);
    let bar = progress_bar(files, settings.progress);
    let mut summaries = Vec::with_capacity(files.len());
    for path in files {
        bar.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let wrap_bar = bar.clone();
        let summary = input::read_file(
            path,
            settings.max_request_bytes,
            &interner,
            move |file| Box::new(wrap_bar.wrap_read(file)) as Box<dyn Read>,
            &mut |records| offline.push(records),
        )?;
        if summary.rejected > 0 {
            tracing::warn!(
                file = %path.display(),
                rejected = summary.rejected,
                first = summary.first_rejection.as_deref().unwrap_or(""),
                "Some spans or log records were refused."
            );
        }
        summaries.push(summary);
    }
    bar.finish_and_clear();
    let (analyses, assembly) = offline.finish();
    let (breakdown, overall, beyond_horizon) = count(&analyses, &settings.aggregate, &by)?;
    Ok(Report {
        files: summaries,
        assembly,
        breakdown,
        overall,
        root_causes: root_causes(&analyses),
        trajectories: analyses.iter().map(TrajectoryRow::of).collect(),
        beyond_horizon,
    })
}

fn resolve_by(
    config: &crate::aggregate::AggregateConfig,
    names: &[String],
) -> Result<Vec<usize>, AnalyzeError> {
    let mut by = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let d = config
            .dimension_index(name)
            .ok_or_else(|| AnalyzeError::UnknownDimension {
                name: name.to_owned(),
                known: config
                    .dimensions
                    .iter()
                    .map(|d| &*d.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if by.contains(&d) {
            return Err(AnalyzeError::DuplicateDimension(name.to_owned()));
        }
        by.push(d);
    }
    Ok(by)
}

/// Counts the analyses with the aggregator; answers the breakdown grouped by `by` and
/// ungrouped, over the data's range, and how many ended beyond the horizon.
fn count(
    analyses: &[Analysis],
    config: &crate::aggregate::AggregateConfig,
    by: &[usize],
) -> Result<(Breakdown, Breakdown, u64), AnalyzeError> {
    let ends = analyses.iter().map(|a| a.trajectory.end_unix_nano());
    let first = ends.clone().min().unwrap_or(0);
    let last = ends.max().unwrap_or(0);
    let span_minutes = last / NANOS_PER_MINUTE - first / NANOS_PER_MINUTE + 1;
    let mut config = config.clone();
    // A few minutes more than the data, so that even no data (where the aggregator
    // places the newest minute at the clock plus its future tolerance) is a valid range.
    let tolerance_minutes = config.future_tolerance.as_secs().div_ceil(60) + 1;
    config.horizon_minutes = (span_minutes + tolerance_minutes).min(MAX_HORIZON_MINUTES);
    let horizon = config.horizon_minutes;
    let aggregator = Aggregator::new(config, &mut Registry::default(), Arc::new(move || last));
    for a in analyses {
        aggregator.record(a, last);
    }
    let oldest = (last / NANOS_PER_MINUTE).saturating_sub(horizon - 1) * NANOS_PER_MINUTE;
    let window = Window::Range {
        from: first.max(oldest),
        to: last + 1,
    };
    let grouped = aggregator.breakdown(
        &BreakdownQuery {
            window,
            by: by.to_vec(),
        },
        last,
    )?;
    let overall = if by.is_empty() {
        grouped.clone()
    } else {
        aggregator.breakdown(
            &BreakdownQuery {
                window,
                by: Vec::new(),
            },
            last,
        )?
    };
    Ok((grouped, overall, aggregator.stats().too_old))
}

/// Failed trajectories by blamed (step, kind), most frequent first.
fn root_causes(analyses: &[Analysis]) -> Vec<RootCauseRow> {
    struct Acc {
        count: u64,
        reasons: HashMap<String, u64>,
        examples: Vec<String>,
    }
    let mut groups: HashMap<(String, String), Acc> = HashMap::new();
    for a in analyses {
        if a.outcome != Outcome::Failed {
            continue;
        }
        let Some(rc) = &a.root_cause else {
            continue;
        };
        let acc = groups
            .entry((rc.step.as_str().to_owned(), rc.kind.as_str().to_owned()))
            .or_insert_with(|| Acc {
                count: 0,
                reasons: HashMap::new(),
                examples: Vec::new(),
            });
        acc.count += 1;
        *acc.reasons
            .entry(format::clip(&rc.reason, 300))
            .or_default() += 1;
        if acc.examples.len() < 3 {
            acc.examples.push(a.trajectory.trace_id.to_hex());
        }
    }
    let mut rows: Vec<RootCauseRow> = groups
        .into_iter()
        .map(|((step, kind), acc)| {
            let reason = acc
                .reasons
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .map(|(r, _)| r)
                .unwrap_or_default();
            RootCauseRow {
                step,
                kind,
                count: acc.count,
                reason,
                example_trace_ids: acc.examples,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.step.cmp(&b.step))
            .then_with(|| a.kind.cmp(&b.kind))
    });
    rows
}

/// Why the gates cannot be checked: exit code 2, before any verdict is printed.
pub fn gate_usage_error(
    report: &Report,
    settings: &AnalyzeSettings,
    max_failure_rate: Option<f64>,
    max_root_cause_rate: &[StepGate],
) -> Option<String> {
    if max_failure_rate.is_none() && max_root_cause_rate.is_empty() {
        return None;
    }
    if report.overall.totals.total() == 0 {
        return Some(
            "the input holds no trajectory, so the gates cannot be checked (are these the right files? \
             a logs file alone holds no spans)"
                .into(),
        );
    }
    let mut known: Vec<String> = crate::model::StepKind::BUILTIN
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    known.extend(
        settings
            .analyze
            .classify
            .rules
            .iter()
            .map(|r| r.step.as_str().to_owned()),
    );
    known.extend(report.overall.steps.iter().map(|r| r.step.to_string()));
    for gate in max_root_cause_rate {
        if !known.contains(&gate.step) {
            let hint = match super::format::nearest(&gate.step, known.iter().map(String::as_str)) {
                Some(near) => format!("; did you mean `{near}`?"),
                None => String::new(),
            };
            return Some(format!(
                "--max-root-cause-rate names an unknown step `{}`: it is not a built-in step, \
                 not named by a classify rule and not seen in the input{hint}",
                gate.step
            ));
        }
    }
    None
}

/// The verdict of one gate.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    /// `failure_rate`, or `root_cause_rate` of `step`.
    pub gate: &'static str,
    pub step: Option<String>,
    pub max: f64,
    pub value: f64,
    pub passed: bool,
}

/// Checks the gates against the ungrouped breakdown.
pub fn check_gates(
    overall: &Breakdown,
    max_failure_rate: Option<f64>,
    max_root_cause_rate: &[StepGate],
) -> Vec<GateResult> {
    let total = overall.totals.total();
    let rate = |n: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let mut out = Vec::new();
    if let Some(max) = max_failure_rate {
        let value = overall.totals.failure_rate();
        out.push(GateResult {
            gate: "failure_rate",
            step: None,
            max,
            value,
            passed: value <= max,
        });
    }
    for g in max_root_cause_rate {
        let blamed: u64 = overall
            .steps
            .iter()
            .filter(|r| &*r.step == g.step.as_str())
            .map(|r| r.root_causes)
            .sum();
        let value = rate(blamed);
        out.push(GateResult {
            gate: "root_cause_rate",
            step: Some(g.step.clone()),
            max: g.max,
            value,
            passed: value <= g.max,
        });
    }
    out
}

/// The report as JSON. `breakdown` has the shape of `GET /api/v1/breakdown`.
pub fn report_json(report: &Report, gates: &[GateResult]) -> Value {
    let files: Vec<Value> = report
        .files
        .iter()
        .map(|f| {
            json!({
                "path": f.path.display().to_string(),
                "format": f.format.as_str(),
                "compression": if f.zstd { Some("zstd") } else { None },
                "bytes": f.bytes,
                "trace_requests": f.trace_requests,
                "log_requests": f.log_requests,
                "spans": f.spans,
                "log_records": f.log_records,
                "rejected": f.rejected,
                "first_rejection": f.first_rejection,
            })
        })
        .collect();
    let a = &report.assembly;
    let root_causes: Vec<Value> = report
        .root_causes
        .iter()
        .map(|r| {
            json!({
                "step": r.step,
                "kind": r.kind,
                "count": r.count,
                "share_of_failed": ratio(r.count, report.overall.totals.failed),
                "rate": ratio(r.count, report.overall.totals.total()),
                "reason": r.reason,
                "example_trace_ids": r.example_trace_ids,
            })
        })
        .collect();
    let gates_json: Vec<Value> = gates
        .iter()
        .map(|g| {
            json!({
                "gate": g.gate,
                "step": g.step,
                "max": g.max,
                "value": g.value,
                "passed": g.passed,
            })
        })
        .collect();
    json!({
        "files": files,
        "assembly": {
            "trajectories": a.trajectories,
            "incomplete": a.incomplete,
            "annotation_traces": a.annotation_traces,
            "duplicate_spans": a.stats.duplicates,
            "late_dropped": a.stats.late_dropped,
            "unmatched_dropped": a.stats.unmatched_dropped,
            "linked_dropped": a.stats.linked_dropped,
            "too_large": a.stats.evicted_too_large,
            "beyond_horizon": report.beyond_horizon,
        },
        "breakdown": BreakdownDto::from_breakdown(&report.breakdown),
        "root_causes": root_causes,
        "gates": gates_json,
        "passed": gates.iter().all(|g| g.passed),
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The report as text: input, the step table, the top root causes and the gates.
pub fn render_report(report: &Report, gates: &[GateResult], top: usize) -> String {
    let mut out = String::new();
    let spans: u64 = report.files.iter().map(|f| f.spans).sum();
    let logs: u64 = report.files.iter().map(|f| f.log_records).sum();
    let rejected: u64 = report.files.iter().map(|f| f.rejected).sum();
    out.push_str(&format!(
        "{} file{}: {} spans, {} log records{} → {} trajectories",
        report.files.len(),
        if report.files.len() == 1 { "" } else { "s" },
        format::count(spans),
        format::count(logs),
        if rejected > 0 {
            format!(" ({} refused)", format::count(rejected))
        } else {
            String::new()
        },
        format::count(report.assembly.trajectories),
    ));
    if report.assembly.incomplete > 0 {
        out.push_str(&format!(
            " ({} incomplete)",
            format::count(report.assembly.incomplete)
        ));
    }
    out.push('\n');
    if report.beyond_horizon > 0 {
        out.push_str(&format!(
            "{} trajectories ended more than 31 days before the newest and are not counted\n",
            format::count(report.beyond_horizon)
        ));
    }
    let dto = serde_json::to_value(BreakdownDto::from_breakdown(&report.breakdown))
        .unwrap_or(Value::Null);
    out.push_str(&super::top::render_breakdown(&dto, 0));

    out.push_str("\nTOP ROOT CAUSES\n");
    if report.root_causes.is_empty() {
        out.push_str("none: no failed trajectory\n");
    } else {
        let mut table = Table::new(&[
            ("COUNT", Align::Right),
            ("OF FAILED", Align::Right),
            ("STEP", Align::Left),
            ("KIND", Align::Left),
            ("REASON (most frequent)", Align::Left),
            ("EXAMPLE TRACE", Align::Left),
        ])
        .max_cell(72);
        for r in report.root_causes.iter().take(top.max(1)) {
            table.row(vec![
                format::count(r.count),
                format::percent(ratio(r.count, report.overall.totals.failed)),
                r.step.clone(),
                r.kind.clone(),
                r.reason.clone(),
                r.example_trace_ids.first().cloned().unwrap_or_default(),
            ]);
        }
        out.push_str(&table.render());
    }

    if !gates.is_empty() {
        out.push_str("\nGATES\n");
        for g in gates {
            let what = match &g.step {
                Some(step) => format!("root causes in {step} / trajectories"),
                None => "failed / trajectories".to_owned(),
            };
            out.push_str(&format!(
                "{}  {what} = {:.4} {} {:.4}\n",
                if g.passed { "pass" } else { "FAIL" },
                g.value,
                if g.passed { "≤" } else { ">" },
                g.max
            ));
        }
    }
    out
}

/// Writes one JSON line per trajectory to `path` (`-`: standard output).
fn write_trajectories(path: &Path, rows: &[TrajectoryRow]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out: Box<dyn Write> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(path)?)
    };
    let mut out = std::io::BufWriter::new(&mut out);
    for row in rows {
        serde_json::to_writer(&mut out, &row.to_json())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Runs `faultline analyze`; returns the exit code.
pub fn run(args: &AnalyzeArgs) -> u8 {
    let file = match &args.config {
        Some(path) => FileConfig::load(path),
        None => Ok(FileConfig::default()),
    };
    let settings = match file
        .and_then(|f| Settings::resolve(f, args.config.as_deref(), Overrides::default()))
    {
        Ok(s) => s,
        Err(error) => {
            eprintln!("faultline analyze: invalid configuration: {error}");
            return 2;
        }
    };
    let mut settings = AnalyzeSettings::from_settings(&settings, args.by.clone());
    settings.progress = true;
    let started = Instant::now();
    let report = match analyze_files(&args.files, &settings) {
        Ok(r) => r,
        Err(error) => {
            eprintln!("faultline analyze: {error}");
            return 2;
        }
    };
    tracing::debug!(elapsed = ?started.elapsed(), "Analysed.");
    if let Some(problem) = gate_usage_error(
        &report,
        &settings,
        args.max_failure_rate,
        &args.max_root_cause_rate,
    ) {
        eprintln!("faultline analyze: {problem}");
        return 2;
    }
    let gates = check_gates(
        &report.overall,
        args.max_failure_rate,
        &args.max_root_cause_rate,
    );
    if let Some(path) = &args.trajectories {
        if let Err(error) = write_trajectories(path, &report.trajectories) {
            eprintln!(
                "faultline analyze: cannot write {}: {error}",
                path.display()
            );
            return 2;
        }
    }
    if args.json {
        format::emit(&format!("{}\n", report_json(&report, &gates)));
    } else {
        format::emit(&render_report(&report, &gates, args.top));
    }
    if gates.iter().any(|g| !g.passed) {
        eprintln!("faultline analyze: a gate is exceeded");
        return 1;
    }
    0
}
