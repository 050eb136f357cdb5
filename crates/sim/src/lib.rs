//! faultline-sim: LLM-agent traffic with planted faults and known root causes.
//!
//! The simulator is a *client* of faultline: it builds OTLP wire types directly and
//! sends them over OTLP (or writes them to files), and it knows `faultline-core` and
//! `faultline-otlp` only to assemble what it sent as the pipeline would. It serves three
//! purposes:
//! - ground truth for the accuracy test of root-cause attribution: every run comes with a
//!   [`Label`] naming the planted fault, the outcome and the step to blame;
//! - load for the throughput benchmark: [`Simulator::next_batch`] pre-builds requests of
//!   about 350 spans, about 900 bytes per span on the wire;
//! - data for the demo (`faultline simulate --out DIR` or `--target URL`).
//!
//! A run is built in two stages: `templates` builds a convention-free plan (steps,
//! timing, payloads, the fault and its propagation, evaluator results), then `render`
//! writes it in one convention (OpenInference, traceAI, OpenLLMetry, OTel GenAI, or the
//! explicit `agent.trajectory.step` attribute). Fault rates are a function of event time
//! and cohort only ([`Scenario`]). All randomness comes from one seeded RNG: the same
//! config gives byte-identical output.
//!
//! ## Variants, and accuracy beyond the tuned config
//!
//! The accuracy test (`accuracy.rs`) grades the analysis against the labels with a
//! config written alongside the simulator (step SLOs under the 21 s slow floor, a
//! `REJECT` content rule, a classify rule for `answer_critic`), so its figure is
//! self-consistency. [`Variants`] (all off by default, so existing seeds and goldens are
//! unchanged) write runs that config was not made for:
//! - `slow_near_slo`: a slow step takes 5–30 % over its step's SLO or, as often, 5–30 %
//!   under it, which is no fault (labelled a success, the run meets its deadline);
//! - `other_critics`: the RAG critic is `reviewer` (`Approved:` / `Not approved: ...`),
//!   `judge` (`{"approved": false, "reason": ...}`) or `fact_check` (`PASS — ...` /
//!   `FAIL — ...`) instead of `answer_critic` with `ACCEPT:` / `REJECT:`.
//!
//! `accuracy_on_variants_the_config_was_not_tuned_for` (`cargo test --release -p
//! faultline-sim accuracy_on_variants -- --nocapture`) prints one table; measured on
//! seed 7, 4 000 runs a row (each row asserts floors a margin below these):
//!
//! | variant | outcome | root-cause step | slow step caught | slow within SLO left alone | critic rejection caught |
//! |---|---|---|---|---|---|
//! | tuned baseline | 4000/4000 | 1236/1236 | 147/147 | – | 38/38 |
//! | slow near SLO | 4000/4000 | 1206/1206 | 75/75 | 83/83 | 40/40 |
//! | other critic names | 4000/4000 | 1289/1289 | 154/154 | – | 40/40 |
//! | default config | 4000/4000 | 1236/1236 | 0/147 | – | 38/38 |
//! | all, tuned config | 4000/4000 | 1186/1186 | 67/67 | 93/93 | 51/51 |
//! | all, default config | 4000/4000 | 1186/1186 | 0/67 | 93/93 | 51/51 |
//!
//! "Caught" means the run is called failed with the labelled step blamed under the
//! planted kind (`eval_failed`, the built-in critic reader's kind, counts for a critic
//! rejection). What the variants show:
//! - outcome (failed or not) holds everywhere: every planted failure also fails the run
//!   (a deadline, an error status), so this column does not test the detectors alone;
//! - without configured SLOs (the default config) a slow step is blamed on the right
//!   step but named `error` (the run's deadline message), never `slow_step`: the
//!   analysis has no notion of "slow" without an SLO;
//! - `reviewer`, `judge` and `fact_check` critics, and the `Not approved:`, `FAIL —` and
//!   JSON verdicts, are read with no configuration. (Before a checker's name was a rule
//!   of its own — `classify::table::CHECKER_NOUNS` and `CHECK_NOUNS` — a `fact_check`
//!   critic was not a critic step: "other critic names" scored 1274/1289 and 32/40.)

mod catalog;
mod error;
mod output;
mod plan;
mod render;
mod run;
mod scenario;
mod send;
mod templates;
mod text;

#[cfg(test)]
mod accuracy;
#[cfg(test)]
mod goldens;
#[cfg(test)]
mod tests;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use faultline_core::model::{Interner, LinkedEvaluation, Outcome, TraceId, Trajectory};
use faultline_otlp::decode::{decode_logs, decode_traces};

pub use error::SimulateError;
pub use output::{read_length_prefixed, to_otlp_json, ReadError};
pub use render::Convention;
pub use run::{run, SimulateOptions, SimulateReport};
pub use scenario::{
    Cohort, CohortMatch, CohortMultiplier, CohortValue, Correlation, FaultKind, Scenario,
    TimeWindow,
};
pub use templates::Template;

use catalog::{MODELS, PROMPT_VERSIONS, USER_SEGMENTS};
use render::RunInfo;
use text::{hex_id, lognormal, pick};

// For `faultline demo`, which sends simulated traffic.
pub use send::{parse_target, Protocol, Sender};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Event time of the first run.
    pub start_unix_nano: u64,
    /// Event-time spacing of runs (not a send rate).
    pub runs_per_second: f64,
    pub scenario: Scenario,
    /// Templates to draw from, uniformly. Empty means all.
    pub templates: Vec<Template>,
    /// Conventions to draw from, uniformly. Empty means all five.
    pub conventions: Vec<Convention>,
    /// Ways of writing runs that the accuracy config was not tuned for; all off by
    /// default (today's output, byte for byte).
    pub variants: Variants,
}

/// Simulator variants: runs written in ways the tuned accuracy config was not made for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variants {
    /// A slow step takes 5–30 % over its step's SLO (a real fault) or, as often,
    /// 5–30 % under it: then the run is not failed on its deadline and is labelled a
    /// success. Off: a slow step takes at least 21 s, far over every SLO. The SLOs are
    /// the simulated deployment's: generator 20 s, memory 5 s, other steps 10 s.
    pub slow_near_slo: bool,
    /// The RAG template's critic is `reviewer` (`Approved:` / `Not approved: ...`),
    /// `judge` (`{"approved": false, "reason": ...}`) or `fact_check`
    /// (`PASS — ...` / `FAIL — ...`) instead of `answer_critic` (`ACCEPT:` / `REJECT:`).
    pub other_critics: bool,
}

impl SimConfig {
    /// All templates and conventions, the default scenario, 10 runs per second.
    pub fn new(seed: u64, start_unix_nano: u64) -> SimConfig {
        SimConfig {
            seed,
            start_unix_nano,
            runs_per_second: 10.0,
            scenario: Scenario::default(),
            templates: Vec::new(),
            conventions: Vec::new(),
            variants: Variants::default(),
        }
    }
}

/// The ground truth of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Lowercase hex.
    pub trace_id: String,
    pub template: Template,
    pub convention: Convention,
    /// The planted fault of a failed run; `None` for successes and recovered runs.
    pub fault: Option<FaultKind>,
    pub outcome: Outcome,
    /// The step kind the analysis should blame (`StepKind::as_str` names).
    pub root_cause_step: Option<&'static str>,
    /// The span that carries the blamed step (hex).
    pub root_cause_span_id: Option<String>,
    /// The kind of the root cause: the fault's name.
    pub root_cause_kind: Option<&'static str>,
    /// For a recovered run: the step that failed and was retried.
    pub recovered_step: Option<&'static str>,
    pub cohort: Cohort,
    pub start_unix_nano: u64,
    /// Spans in the run's own trace (late evaluator traces not counted).
    pub span_count: usize,
}

impl Label {
    /// One line of `labels.jsonl`.
    pub fn to_json(&self) -> String {
        let c = &self.cohort;
        serde_json::json!({
            "trace_id": self.trace_id,
            "template": self.template.as_str(),
            "convention": self.convention.as_str(),
            "fault": self.fault.map(FaultKind::as_str),
            "outcome": self.outcome.as_str(),
            "root_cause_step": self.root_cause_step,
            "root_cause_span_id": self.root_cause_span_id,
            "root_cause_kind": self.root_cause_kind,
            "recovered_step": self.recovered_step,
            "cohort": {
                "route": c.route,
                "model": c.model,
                "prompt_version": c.prompt_version,
                "user_segment": c.user_segment,
                "service": c.service,
                "environment": c.environment,
                "input_tokens": c.input_tokens,
            },
            "start_unix_nano": self.start_unix_nano,
            "span_count": self.span_count,
        })
        .to_string()
    }
}

/// One simulated run.
#[derive(Debug, Clone)]
pub struct SimRun {
    pub traces: ExportTraceServiceRequest,
    /// Post-hoc evaluator spans in another trace, linked to the run: send them late.
    pub late_traces: Option<ExportTraceServiceRequest>,
    /// `gen_ai.evaluation.result` log records for the logs endpoint.
    pub logs: Option<ExportLogsServiceRequest>,
    pub label: Label,
    /// The run has a slow step just under its SLO ([`Variants::slow_near_slo`]): no
    /// fault, labelled a success.
    pub slow_within_slo: bool,
}

impl SimRun {
    /// The run's label and its trajectory as the pipeline assembles it (its own trace,
    /// its linked late evaluator spans and its evaluation log events), for benchmarks
    /// that score what the analyser makes of a run rather than what was planted.
    pub fn assemble(self, interner: &Interner) -> Result<(Label, Trajectory), String> {
        let id = TraceId::from_hex(&self.label.trace_id)
            .map_err(|e| format!("label trace id {}: {e}", self.label.trace_id))?;
        let traces = std::iter::once(self.traces).chain(self.late_traces);
        let t = assemble(id, traces, self.logs, interner)?;
        Ok((self.label, t))
    }
}

/// The trajectory of trace `id` as the pipeline assembles it from these requests: its
/// own spans, the spans of other traces that link into it (post-hoc evaluators), and
/// its log events. An error names the first span that does not decode.
pub fn assemble(
    id: TraceId,
    traces: impl IntoIterator<Item = ExportTraceServiceRequest>,
    logs: impl IntoIterator<Item = ExportLogsServiceRequest>,
    interner: &Interner,
) -> Result<Trajectory, String> {
    let mut own = Vec::new();
    let mut linked = Vec::new();
    for req in traces {
        let decoded = decode_traces(req, interner);
        if decoded.rejected > 0 {
            return Err(format!(
                "{} spans rejected: {:?}",
                decoded.rejected, decoded.first_error
            ));
        }
        for span in decoded.items {
            if span.trace_id == id {
                own.push(span);
            } else if span.evaluation_targets().any(|t| t == id) {
                // An evaluation of this run, routed to it as the pipeline does.
                linked.push(LinkedEvaluation::of(&span));
            }
        }
    }
    let logs = logs
        .into_iter()
        .flat_map(|req| decode_logs(req, interner).items)
        .filter(|l| l.trace_id == Some(id))
        .collect();
    Ok(Trajectory::build(id, own, logs, linked))
}

/// Several runs merged into requests of about a target number of spans.
#[derive(Debug, Clone, Default)]
pub struct SimBatch {
    pub traces: ExportTraceServiceRequest,
    /// Late evaluator traces of the runs in this batch, with the event time (unix nano)
    /// before which they should not be sent.
    pub late_traces: Vec<(u64, ExportTraceServiceRequest)>,
    pub logs: Option<ExportLogsServiceRequest>,
    pub labels: Vec<Label>,
    pub span_count: usize,
}

impl SimBatch {
    /// Merges one run into the batch.
    pub fn push(&mut self, run: SimRun) {
        self.span_count += run.label.span_count;
        self.traces.resource_spans.extend(run.traces.resource_spans);
        if let Some(late) = run.late_traces {
            let release = late_release_time(&late);
            self.late_traces.push((release, late));
        }
        if let Some(logs) = run.logs {
            self.logs
                .get_or_insert_with(ExportLogsServiceRequest::default)
                .resource_logs
                .extend(logs.resource_logs);
        }
        self.labels.push(run.label);
    }
}

/// The latest end time of the spans of a request (0 when it has none): a span is sent
/// only once this has passed, so that no timestamp is in the future.
pub fn last_end_time(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.end_time_unix_nano.max(s.start_time_unix_nano))
        .max()
        .unwrap_or(0)
}

/// Generates runs, one after another, from a seeded RNG.
pub struct Simulator {
    config: SimConfig,
    rng: SmallRng,
    index: u64,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        let rng = SmallRng::seed_from_u64(config.seed);
        Simulator {
            config,
            rng,
            index: 0,
        }
    }

    /// How many runs were generated so far.
    pub fn runs(&self) -> u64 {
        self.index
    }

    pub fn next_run(&mut self) -> SimRun {
        let rps = if self.config.runs_per_second > 0.0 {
            self.config.runs_per_second
        } else {
            1.0
        };
        let spacing = 1e9 / rps;
        let jitter = self.rng.random_range(0.0..spacing.max(1.0));
        let start = self.config.start_unix_nano + (self.index as f64 * spacing + jitter) as u64;
        self.index += 1;

        let template = if self.config.templates.is_empty() {
            *pick(&mut self.rng, &Template::ALL)
        } else {
            *pick(&mut self.rng, &self.config.templates)
        };
        let convention = if self.config.conventions.is_empty() {
            *pick(&mut self.rng, &Convention::ALL)
        } else {
            *pick(&mut self.rng, &self.config.conventions)
        };
        let cohort = self.cohort(template);
        let rates = self
            .config
            .scenario
            .rates(start, &cohort, template.faults());
        let draw: f64 = self.rng.random();
        let fault = Scenario::pick(&rates, draw);
        let recovered = fault.is_none()
            && self
                .rng
                .random_bool(self.config.scenario.recovered_rate.clamp(0.0, 1.0));

        let v = self.config.variants;
        // No draw without the variant, so that existing seeds keep their output.
        let slow = match fault {
            Some(FaultKind::SlowStep) if v.slow_near_slo => {
                if self.rng.random_bool(0.5) {
                    templates::SlowBand::Above
                } else {
                    templates::SlowBand::Below
                }
            }
            _ => templates::SlowBand::Floor,
        };
        let style = templates::Style {
            slow,
            other_critics: v.other_critics,
        };
        let plan = templates::build(
            &mut self.rng,
            template,
            &cohort,
            fault,
            recovered,
            start,
            style,
        );
        // A slow step under its SLO is no fault: the run succeeded.
        let fault = fault.filter(|_| slow != templates::SlowBand::Below);
        let mut trace_id: [u8; 16] = self.rng.random();
        trace_id[0] |= 0x01;
        let info = RunInfo {
            template,
            convention,
            cohort: &cohort,
            trace_id,
            session_id: format!("sess_{}", hex_id(&mut self.rng, 6)),
            user_id: format!("u_{}", hex_id(&mut self.rng, 4)),
            traceai_python: self.rng.random_bool(0.5),
        };
        let rendered = render::render(&mut self.rng, &plan, &info);
        let span_count = rendered
            .spans
            .scope_spans
            .iter()
            .map(|s| s.spans.len())
            .sum();

        let blamed = if fault.is_some() { plan.blame } else { None };
        let recovered_step = if recovered {
            plan.nodes
                .iter()
                .find(|n| n.exception.is_some() && n.role != plan::Role::Http)
                .map(|n| n.role.step())
        } else {
            None
        };
        let outcome = match (fault, recovered) {
            (Some(_), _) => Outcome::Failed,
            (None, true) => Outcome::Recovered,
            (None, false) => Outcome::Success,
        };
        let label = Label {
            trace_id: hex::encode(trace_id),
            template,
            convention,
            fault,
            outcome,
            root_cause_step: blamed.map(|b| plan.nodes[b].role.step()),
            root_cause_span_id: blamed.map(|b| hex::encode(plan.nodes[b].span_id)),
            root_cause_kind: fault.map(FaultKind::as_str),
            recovered_step,
            cohort,
            start_unix_nano: start,
            span_count,
        };
        SimRun {
            traces: ExportTraceServiceRequest {
                resource_spans: vec![rendered.spans],
            },
            late_traces: rendered.late.map(|rs| ExportTraceServiceRequest {
                resource_spans: vec![rs],
            }),
            logs: rendered.logs.map(|rl| ExportLogsServiceRequest {
                resource_logs: vec![rl],
            }),
            label,
            slow_within_slo: slow == templates::SlowBand::Below,
        }
    }

    /// Runs merged until the batch holds at least `target_spans` spans (at least one run).
    pub fn next_batch(&mut self, target_spans: usize) -> SimBatch {
        let mut batch = SimBatch::default();
        while batch.labels.is_empty() || batch.span_count < target_spans {
            batch.push(self.next_run());
        }
        batch
    }

    fn cohort(&mut self, template: Template) -> Cohort {
        let rng = &mut self.rng;
        let route = *pick(rng, template.routes());
        // Model mix: the first model is the most used.
        let model = match rng.random_range(0..10) {
            0..=3 => MODELS[0].name,
            4..=6 => MODELS[1].name,
            7..=8 => MODELS[2].name,
            _ => MODELS[3].name,
        };
        let prompt_version = *pick(rng, PROMPT_VERSIONS);
        let user_segment = match rng.random_range(0..20) {
            0..=9 => USER_SEGMENTS[0],
            10..=15 => USER_SEGMENTS[1],
            16..=18 => USER_SEGMENTS[2],
            _ => USER_SEGMENTS[3],
        };
        let environment = if rng.random_bool(0.85) {
            "production"
        } else {
            "staging"
        };
        let input_tokens = lognormal(rng, 1800.0, 0.7).clamp(60.0, 120_000.0) as u64;
        let mut cohort = Cohort {
            route,
            model,
            prompt_version,
            user_segment,
            service: template.service(),
            environment,
            input_tokens,
        };
        // No draw without correlations, so that existing seeds keep their output.
        for c in &self.config.scenario.correlations {
            if c.when.matches(&cohort) && rng.random_bool(c.probability.clamp(0.0, 1.0)) {
                c.then.apply(&mut cohort);
            }
        }
        cohort
    }
}

/// The event time before which a late request should not be sent: its earliest span.
pub fn late_release_time(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0)
}
