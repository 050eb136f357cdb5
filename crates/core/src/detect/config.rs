//! The `[detect]` table of the config file, raw (serde) and validated.
//!
//! [`RawDetectConfig`] is what TOML deserializes into: every field has a default, unknown
//! keys are refused. [`DetectConfig::from_raw`] validates it once (regexes compile, step
//! names exist, durations parse) into the typed [`DetectConfig`] the detector reads.
//!
//! ```toml
//! [detect]
//! loop_threshold = 3
//! slo = { retriever = "2s", generator = "30s" }
//!
//! [detect.evaluators.hallucination]
//! threshold = 0.3
//! lower_is_better = true
//!
//! [[detect.output_rules]]
//! step = "critic"
//! pattern = "^\\s*REJECT"
//! kind = "critic_rejected"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::model::{FindingKind, StepKind};

/// Labels that mean an evaluation failed, unless the config names its own list.
pub use crate::content::FAILING_LABELS as DEFAULT_FAILING_LABELS;

/// Evaluator names whose failure fails the whole run, unless the config names its own.
pub const DEFAULT_TASK_EVALUATORS: &[&str] = &[
    "task_completion",
    "task_success",
    "goal_completion",
    "goal_accuracy",
    "answer_correctness",
];

/// The `[detect]` table as written in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetectConfig {
    /// Score threshold of evaluators not listed in `evaluators`, applied only to scores in
    /// [0, 1] (a score outside that range has no known scale and is judged by its label).
    /// A score below it fails. Default 0.5.
    pub default_eval_threshold: f64,
    /// Per-evaluator settings, by evaluator name (`gen_ai.evaluation.name`,
    /// `evaluations.<i>.evaluation.name`, the `<metric>` of `eval.<metric>`).
    pub evaluators: BTreeMap<String, RawEvaluator>,
    /// Labels that mean an evaluation failed. Case-insensitive; spaces and hyphens read as
    /// underscores (`Not Relevant` = `not_relevant`). Default: fail, failed, incorrect,
    /// hallucinated, not_relevant, irrelevant, unfaithful, no, false, ... (see
    /// `DEFAULT_FAILING_LABELS`). Setting it replaces the default list.
    pub failing_labels: Vec<String>,
    /// Evaluator names that judge the whole task: their failure fails the run wherever
    /// the result is attached. Default: task_completion, task_success, goal_completion,
    /// goal_accuracy, answer_correctness. Setting it replaces the default list.
    pub task_evaluators: Vec<String>,
    /// Regexes on a tool's output text that mean the tool failed even though it returned
    /// normally (the `{"error": ...}` shape is always recognised). Default: none.
    pub tool_error_patterns: Vec<String>,
    /// How many calls of the same tool with the same arguments in one trajectory make a
    /// loop. At least 2. Default 3.
    pub loop_threshold: u32,
    /// Latency SLO per step name (`retriever = "2s"`, humantime syntax). A run of the step
    /// slower than its SLO is a `slow_step`. Default: none.
    pub slo: BTreeMap<String, String>,
    /// Custom step names (set by `agent.trajectory.step` or classify rules) that `slo`
    /// and `output_rules` may name. Any other name that is not a built-in step is
    /// refused, so that a typo does not silently disable a rule. Default: none.
    pub custom_steps: Vec<String>,
    /// Content rules: a regex on the output text of a step; a match is a finding of the
    /// rule's kind. Default: none.
    pub output_rules: Vec<RawOutputRule>,
}

/// Settings of one evaluator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvaluator {
    /// Score threshold of this evaluator, for a score on any scale. Default:
    /// `default_eval_threshold` for scores in [0, 1].
    pub threshold: Option<f64>,
    /// True when a lower score is better (e.g. a hallucination or toxicity probability):
    /// a score above the threshold then fails. Default false.
    pub lower_is_better: bool,
    /// True when this evaluator judges the whole task (see `task_evaluators`). Default
    /// false.
    pub task_level: bool,
}

/// One `[[detect.output_rules]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutputRule {
    /// The step whose output is matched (a built-in step or one of `custom_steps`).
    pub step: String,
    /// Regex (Rust `regex` syntax) on the step's output text.
    pub pattern: String,
    /// The finding kind of a match, e.g. `critic_rejected`: lowercase letters, digits and
    /// underscores. A built-in kind name (`tool_error`, ...) gives that kind.
    pub kind: String,
}

impl Default for RawDetectConfig {
    fn default() -> RawDetectConfig {
        RawDetectConfig {
            default_eval_threshold: 0.5,
            evaluators: BTreeMap::new(),
            failing_labels: DEFAULT_FAILING_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            task_evaluators: DEFAULT_TASK_EVALUATORS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            tool_error_patterns: Vec::new(),
            loop_threshold: 3,
            slo: BTreeMap::new(),
            custom_steps: Vec::new(),
            output_rules: Vec::new(),
        }
    }
}

/// Why a `[detect]` table is invalid. Each variant names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectConfigError {
    #[error("detect.{key}: invalid regex: {message}")]
    BadRegex { key: String, message: String },
    #[error("detect.{key}: unknown step `{step}` (not a built-in step nor listed in detect.custom_steps)")]
    UnknownStep { key: String, step: String },
    #[error("detect.{key}: invalid duration `{value}`: {message}")]
    BadDuration {
        key: String,
        value: String,
        message: String,
    },
    #[error("detect.{key}: {message}")]
    BadValue { key: String, message: String },
}

/// Settings of one evaluator, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvaluatorConfig {
    pub threshold: Option<f64>,
    pub lower_is_better: bool,
    pub task_level: bool,
}

/// A validated content rule.
#[derive(Debug, Clone)]
pub struct OutputRule {
    pub step: StepKind,
    pub pattern: Regex,
    pub kind: FindingKind,
}

/// The validated `[detect]` settings.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    pub default_eval_threshold: f64,
    /// By normalized evaluator name (see [`normalize_label`]).
    pub evaluators: HashMap<String, EvaluatorConfig>,
    /// Normalized failing labels.
    pub failing_labels: Vec<String>,
    /// Normalized task-level evaluator names.
    pub task_evaluators: Vec<String>,
    pub tool_error_patterns: Vec<Regex>,
    pub loop_threshold: u32,
    pub slo: Vec<(StepKind, Duration)>,
    pub output_rules: Vec<OutputRule>,
}

impl Default for DetectConfig {
    fn default() -> DetectConfig {
        DetectConfig {
            default_eval_threshold: 0.5,
            evaluators: HashMap::new(),
            failing_labels: DEFAULT_FAILING_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            task_evaluators: DEFAULT_TASK_EVALUATORS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            tool_error_patterns: Vec::new(),
            loop_threshold: 3,
            slo: Vec::new(),
            output_rules: Vec::new(),
        }
    }
}

pub use crate::content::normalize_label;

impl DetectConfig {
    pub fn from_raw(raw: &RawDetectConfig) -> Result<DetectConfig, DetectConfigError> {
        if !(raw.default_eval_threshold.is_finite()) {
            return Err(DetectConfigError::BadValue {
                key: "default_eval_threshold".into(),
                message: "must be a finite number".into(),
            });
        }
        if raw.loop_threshold < 2 {
            return Err(DetectConfigError::BadValue {
                key: "loop_threshold".into(),
                message: format!("must be at least 2, got {}", raw.loop_threshold),
            });
        }
        let mut evaluators = HashMap::with_capacity(raw.evaluators.len());
        for (name, e) in &raw.evaluators {
            if let Some(t) = e.threshold {
                if !t.is_finite() {
                    return Err(DetectConfigError::BadValue {
                        key: format!("evaluators.{name}.threshold"),
                        message: "must be a finite number".into(),
                    });
                }
            }
            evaluators.insert(
                normalize_label(name),
                EvaluatorConfig {
                    threshold: e.threshold,
                    lower_is_better: e.lower_is_better,
                    task_level: e.task_level,
                },
            );
        }
        let tool_error_patterns = raw
            .tool_error_patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Regex::new(p).map_err(|e| DetectConfigError::BadRegex {
                    key: format!("tool_error_patterns[{i}]"),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let step = |key: String, name: &str| -> Result<StepKind, DetectConfigError> {
            if let Some(kind) = StepKind::builtin(name) {
                return Ok(kind);
            }
            if raw.custom_steps.iter().any(|c| c == name) {
                return Ok(StepKind::Custom(name.into()));
            }
            Err(DetectConfigError::UnknownStep {
                key,
                step: name.to_string(),
            })
        };
        let mut slo = Vec::with_capacity(raw.slo.len());
        for (name, value) in &raw.slo {
            let key = format!("slo.{name}");
            let kind = step(key.clone(), name)?;
            let d =
                humantime::parse_duration(value).map_err(|e| DetectConfigError::BadDuration {
                    key,
                    value: value.clone(),
                    message: e.to_string(),
                })?;
            slo.push((kind, d));
        }
        let mut output_rules = Vec::with_capacity(raw.output_rules.len());
        for (i, r) in raw.output_rules.iter().enumerate() {
            let step = step(format!("output_rules[{i}].step"), &r.step)?;
            let pattern = Regex::new(&r.pattern).map_err(|e| DetectConfigError::BadRegex {
                key: format!("output_rules[{i}].pattern"),
                message: e.to_string(),
            })?;
            let valid_kind = !r.kind.is_empty()
                && r.kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid_kind {
                return Err(DetectConfigError::BadValue {
                    key: format!("output_rules[{i}].kind"),
                    message: format!(
                        "`{}` must be lowercase letters, digits and underscores",
                        r.kind
                    ),
                });
            }
            output_rules.push(OutputRule {
                step,
                pattern,
                kind: FindingKind::from_name(&r.kind),
            });
        }
        Ok(DetectConfig {
            default_eval_threshold: raw.default_eval_threshold,
            evaluators,
            failing_labels: raw
                .failing_labels
                .iter()
                .map(|l| normalize_label(l))
                .collect(),
            task_evaluators: raw
                .task_evaluators
                .iter()
                .map(|l| normalize_label(l))
                .collect(),
            tool_error_patterns,
            loop_threshold: raw.loop_threshold,
            slo,
            output_rules,
        })
    }

    /// Whether `label` (already normalized) means failure.
    pub fn is_failing_label(&self, label: &str) -> bool {
        self.failing_labels.iter().any(|l| l == label)
    }

    /// Whether evaluator `name` (already normalized) judges the whole task.
    pub fn is_task_evaluator(&self, name: &str) -> bool {
        self.task_evaluators.iter().any(|t| t == name)
            || self.evaluators.get(name).is_some_and(|e| e.task_level)
    }

    /// The SLO of `step`, if any.
    pub fn slo_of(&self, step: &StepKind) -> Option<Duration> {
        self.slo.iter().find(|(k, _)| k == step).map(|(_, d)| *d)
    }
}
