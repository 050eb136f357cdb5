//! The logical plan of one run: a tree of steps with timing, payloads, planted faults
//! and evaluations, independent of any semantic convention.
//!
//! [`crate::render`] turns a plan into OTLP spans in one convention. Keeping
//! the two apart means a fault is planted once and reads the same in every convention.

use rand::rngs::SmallRng;
use rand::Rng;

use super::catalog::{Model, ToolDef};
use super::text::{alnum_id, lognormal, stacktrace};

/// What a node of the plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The run (the root).
    Agent,
    /// A sub-agent invoked by a router.
    SubAgent,
    /// A graph node or task that wraps a step (LangGraph node, Traceloop task). Rendered
    /// only by the conventions that have such containers.
    Node,
    /// An LLM call that picks the sub-agent.
    Router,
    /// An LLM call that emits tool calls.
    Planner,
    /// An LLM call that writes the answer.
    Generator,
    /// An LLM call that judges the answer (`ACCEPT:` / `REJECT:`).
    Critic,
    Retriever,
    Reranker,
    Tool,
    MemorySearch,
    MemoryUpsert,
    /// An HTTP client call (infrastructure).
    Http,
}

impl Role {
    pub(crate) fn is_llm(self) -> bool {
        matches!(
            self,
            Role::Router | Role::Planner | Role::Generator | Role::Critic
        )
    }

    /// The step kind the analysis should give this node (as `StepKind::as_str`).
    pub(crate) fn step(self) -> &'static str {
        match self {
            Role::Agent | Role::SubAgent => "agent",
            Role::Node => "chain",
            Role::Router => "router",
            Role::Planner => "planner",
            Role::Generator => "generator",
            Role::Critic => "critic",
            Role::Retriever => "retriever",
            Role::Reranker => "reranker",
            Role::Tool => "tool",
            Role::MemorySearch | Role::MemoryUpsert => "memory",
            Role::Http => "infrastructure",
        }
    }
}

/// The messages sent to an LLM.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prompt {
    pub system: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON object.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Doc {
    pub id: String,
    pub score: f64,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exception {
    pub ty: String,
    pub message: String,
    pub stacktrace: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Status {
    Unset,
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpCall {
    pub method: &'static str,
    pub url: String,
    pub host: &'static str,
    pub port: u16,
    pub status: u16,
}

/// One step (or container, or HTTP call) of a run.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub role: Role,
    pub parent: Option<usize>,
    pub span_id: [u8; 8],
    pub start: u64,
    pub end: u64,
    /// Agent, graph node, tool or memory store name.
    pub name: String,
    /// For a `Node` container: render it as `invoke_agent {agent}` in OTel GenAI.
    pub genai_agent: Option<&'static str>,
    pub model: Option<&'static Model>,
    /// LLM system prompt; `input` is then the user message.
    pub system: String,
    pub input: String,
    pub output: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub finish_reason: &'static str,
    /// LLM output tool calls (planner, router).
    pub tool_calls: Vec<ToolCall>,
    /// Tools offered to the LLM (planner).
    pub tool_defs: &'static [ToolDef],
    /// For a tool node: the id of the call it answers.
    pub tool_call_id: String,
    /// For a tool node: its definition, `None` for a tool that does not exist.
    pub tool_def: Option<&'static ToolDef>,
    pub docs: Vec<Doc>,
    pub status: Status,
    pub exception: Option<Exception>,
    pub http: Option<HttpCall>,
    pub response_id: String,
}

/// An evaluator result about one node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Eval {
    pub target: usize,
    pub name: &'static str,
    pub score: f64,
    pub label: &'static str,
    pub explanation: String,
    pub passed: bool,
}

/// Builds the node list while keeping a clock: children run inside their parent and
/// siblings one after another.
pub(crate) struct Builder<'r> {
    pub rng: &'r mut SmallRng,
    pub nodes: Vec<Node>,
    pub evals: Vec<Eval>,
    t: u64,
}

const MS: f64 = 1_000_000.0;

impl<'r> Builder<'r> {
    pub(crate) fn new(rng: &'r mut SmallRng, start_unix_nano: u64) -> Builder<'r> {
        Builder {
            rng,
            nodes: Vec::with_capacity(32),
            evals: Vec::new(),
            t: start_unix_nano,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.t
    }

    pub(crate) fn span_id(&mut self) -> [u8; 8] {
        loop {
            let id: [u8; 8] = self.rng.random();
            if id != [0; 8] {
                return id;
            }
        }
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub(crate) fn work(&mut self, ms: f64) {
        self.t += (ms.max(0.0) * MS) as u64;
    }

    /// Opens a node that starts now (after a small scheduling gap).
    pub(crate) fn open(&mut self, role: Role, parent: Option<usize>, name: &str) -> usize {
        let gap = self.rng.random_range(0.05..1.5);
        self.work(gap);
        let span_id = self.span_id();
        self.nodes.push(Node {
            role,
            parent,
            span_id,
            start: self.t,
            end: self.t,
            name: name.to_string(),
            genai_agent: None,
            model: None,
            system: String::new(),
            input: String::new(),
            output: String::new(),
            input_tokens: 0,
            output_tokens: 0,
            finish_reason: "",
            tool_calls: Vec::new(),
            tool_defs: &[],
            tool_call_id: String::new(),
            tool_def: None,
            docs: Vec::new(),
            status: Status::Unset,
            exception: None,
            http: None,
            response_id: String::new(),
        });
        self.nodes.len() - 1
    }

    /// Ends a node now (after a small bookkeeping gap).
    pub(crate) fn close(&mut self, idx: usize) {
        let gap = self.rng.random_range(0.02..0.8);
        self.work(gap);
        self.nodes[idx].end = self.t;
    }

    /// An HTTP client call of `ms` milliseconds under `parent`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn http(
        &mut self,
        parent: usize,
        method: &'static str,
        host: &'static str,
        port: u16,
        path: &str,
        status: u16,
        ms: f64,
    ) -> usize {
        let idx = self.open(Role::Http, Some(parent), method);
        let scheme = if port == 443 { "https" } else { "http" };
        let url = if port == 443 {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}:{port}{path}")
        };
        self.nodes[idx].http = Some(HttpCall {
            method,
            url,
            host,
            port,
            status,
        });
        if status >= 400 {
            self.nodes[idx].status = Status::Error(String::new());
        }
        self.work(ms);
        self.close(idx);
        idx
    }

    /// A successful LLM call with its HTTP child; `ms` follows the output length.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn llm(
        &mut self,
        role: Role,
        parent: usize,
        model: &'static Model,
        prompt: Prompt,
        output: String,
        output_tokens: u64,
        finish_reason: &'static str,
    ) -> usize {
        let idx = self.open(role, Some(parent), model.class);
        let ms = lognormal(self.rng, 250.0 + 14.0 * output_tokens as f64, 0.35);
        self.http(idx, "POST", model.host, 443, model.path, 200, ms);
        let response_id = alnum_id(self.rng, model.response_id_prefix, 24);
        let node = &mut self.nodes[idx];
        node.model = Some(model);
        node.system = prompt.system;
        node.input = prompt.user;
        node.output = output;
        node.output_tokens = output_tokens;
        node.finish_reason = finish_reason;
        node.response_id = response_id;
        self.close(idx);
        idx
    }

    /// An LLM call refused with 429 after the SDK's retries; raises and propagates.
    pub(crate) fn llm_rate_limited(
        &mut self,
        role: Role,
        parent: usize,
        model: &'static Model,
        prompt: Prompt,
    ) -> usize {
        let idx = self.open(role, Some(parent), model.class);
        let attempts = self.rng.random_range(1..4);
        for _ in 0..attempts {
            let ms = lognormal(self.rng, 120.0, 0.4);
            self.http(idx, "POST", model.host, 443, model.path, 429, ms);
            let backoff = self.rng.random_range(400.0..2500.0);
            self.work(backoff);
        }
        {
            let node = &mut self.nodes[idx];
            node.model = Some(model);
            node.system = prompt.system;
            node.input = prompt.user;
        }
        let (ty, message) = rate_limit_message(self.rng, model);
        self.fail_exception(idx, &ty, &message, "llm.py");
        self.close(idx);
        idx
    }

    /// Records an exception on `idx` and repeats it, with ERROR status, on every
    /// ancestor up to the root, as instrumentations do when an exception propagates.
    pub(crate) fn fail_exception(&mut self, idx: usize, ty: &str, message: &str, file: &str) {
        let exception = Exception {
            ty: ty.to_string(),
            message: message.to_string(),
            stacktrace: stacktrace(self.rng, ty, message, file),
        };
        let status = Status::Error(format!("{ty}: {message}"));
        let mut cur = Some(idx);
        while let Some(i) = cur {
            self.nodes[i].exception = Some(exception.clone());
            self.nodes[i].status = status.clone();
            cur = self.nodes[i].parent;
        }
    }

    /// Records an exception on `idx` only: it was caught (the step failed, the run
    /// went on).
    pub(crate) fn fail_caught(&mut self, idx: usize, ty: &str, message: &str, file: &str) {
        self.nodes[idx].exception = Some(Exception {
            ty: ty.to_string(),
            message: message.to_string(),
            stacktrace: stacktrace(self.rng, ty, message, file),
        });
        self.nodes[idx].status = Status::Error(format!("{ty}: {message}"));
    }

    /// ERROR status with a message on `idx` and every ancestor, without exception events.
    pub(crate) fn fail_status(&mut self, idx: usize, message: &str) {
        let mut cur = Some(idx);
        while let Some(i) = cur {
            self.nodes[i].status = Status::Error(message.to_string());
            cur = self.nodes[i].parent;
        }
    }

    pub(crate) fn eval(
        &mut self,
        target: usize,
        name: &'static str,
        passed: bool,
        explanation: String,
    ) {
        let (score, label) = match (name, passed) {
            ("context_relevance", true) => (self.rng.random_range(0.7..0.99), "relevant"),
            ("context_relevance", false) => (self.rng.random_range(0.02..0.35), "not_relevant"),
            (_, true) => (self.rng.random_range(0.75..1.0), "pass"),
            (_, false) => (self.rng.random_range(0.0..0.3), "fail"),
        };
        self.evals.push(Eval {
            target,
            name,
            score: (score * 1000.0_f64).round() / 1000.0,
            label,
            explanation,
            passed,
        });
    }
}

fn rate_limit_message(rng: &mut SmallRng, model: &Model) -> (String, String) {
    let used = rng.random_range(28_000..30_000);
    let requested = rng.random_range(400..4_000);
    let wait = rng.random_range(200..9_000) as f64 / 1000.0;
    let org = alnum_id(rng, "org-", 24);
    match model.provider {
        "anthropic" => (
            "anthropic.RateLimitError".to_string(),
            format!(
                "Error code: 429 - {{'type': 'error', 'error': {{'type': 'rate_limit_error', 'message': 'This request would exceed your organization's rate limit of {} output tokens per minute. Retry after {wait}s.'}}}}",
                rng.random_range(8..80) * 1000
            ),
        ),
        _ => (
            "openai.RateLimitError".to_string(),
            format!(
                "Error code: 429 - {{'error': {{'message': 'Rate limit reached for {} in organization {org} on tokens per min (TPM): Limit 30000, Used {used}, Requested {requested}. Please try again in {wait}s.', 'type': 'tokens', 'code': 'rate_limit_exceeded'}}}}",
                model.name
            ),
        ),
    }
}
