//! Tests of the simulator: determinism, fault coverage, label/span consistency, file
//! formats and wire size.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::run::write_files;
use super::send::parse_target;
use super::send::Protocol;
use super::*;

const START: u64 = 1_750_000_000_000_000_000;

fn sim(seed: u64) -> Simulator {
    Simulator::new(SimConfig::new(seed, START))
}

fn spans(req: &ExportTraceServiceRequest) -> Vec<&Span> {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(span, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn value_strings(kv: &KeyValue) -> Vec<&str> {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => vec![s.as_str()],
        Some(Value::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

fn has_exception(span: &Span) -> bool {
    span.events.iter().any(|e| e.name == "exception")
}

fn is_http(span: &Span) -> bool {
    attr(span, "http.request.method").is_some()
}

fn root(run: &SimRun) -> &Span {
    let all = spans(&run.traces);
    let roots: Vec<&Span> = all
        .iter()
        .copied()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "one root per run");
    roots[0]
}

/// True when a failed task-completion (or any failed) evaluation reached the collector
/// by any of the three ways.
fn has_failed_task_completion(run: &SimRun) -> bool {
    let root = root(run);
    let in_attrs = root.attributes.iter().any(|kv| {
        kv.key.ends_with("evaluation.name") && value_strings(kv).contains(&"task_completion")
    }) && root
        .attributes
        .iter()
        .any(|kv| kv.key.ends_with("score.label") || kv.key.ends_with("evaluation.label"));
    let in_child = spans(&run.traces)
        .iter()
        .any(|s| s.parent_span_id == root.span_id && s.name == "eval.task_completion");
    let in_late = run.late_traces.as_ref().is_some_and(|late| {
        spans(late)
            .iter()
            .any(|s| s.links.iter().any(|l| l.span_id == root.span_id))
    });
    let in_logs = run.logs.as_ref().is_some_and(|logs| {
        logs.resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .any(|r| r.span_id == root.span_id && r.event_name == "gen_ai.evaluation.result")
    });
    in_attrs || in_child || in_late || in_logs
}

#[test]
fn same_seed_gives_identical_bytes() {
    let mut a = sim(7);
    let mut b = sim(7);
    for _ in 0..300 {
        let ra = a.next_run();
        let rb = b.next_run();
        assert_eq!(ra.traces.encode_to_vec(), rb.traces.encode_to_vec());
        assert_eq!(
            ra.late_traces.map(|r| r.encode_to_vec()),
            rb.late_traces.map(|r| r.encode_to_vec())
        );
        assert_eq!(
            ra.logs.map(|r| r.encode_to_vec()),
            rb.logs.map(|r| r.encode_to_vec())
        );
        assert_eq!(ra.label.to_json(), rb.label.to_json());
    }
    let other = sim(8).next_run();
    assert_ne!(
        other.traces.encode_to_vec(),
        sim(7).next_run().traces.encode_to_vec()
    );
}

#[test]
fn every_fault_kind_template_and_convention_appears_in_2000_runs() {
    let mut s = sim(1);
    let mut faults: HashMap<&str, usize> = HashMap::new();
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    let mut templates = HashSet::new();
    let mut conventions = HashSet::new();
    let mut late = 0;
    let mut logs = 0;
    let mut eval_children = 0;
    for _ in 0..2000 {
        let run = s.next_run();
        let l = &run.label;
        *outcomes.entry(l.outcome.as_str()).or_default() += 1;
        templates.insert(l.template);
        conventions.insert(l.convention);
        if let Some(f) = l.fault {
            *faults.entry(f.as_str()).or_default() += 1;
            assert_eq!(l.outcome, faultline_core::model::Outcome::Failed);
            assert!(l.root_cause_step.is_some(), "{}", l.to_json());
            assert!(l.root_cause_span_id.is_some());
            assert_eq!(l.root_cause_kind, Some(f.as_str()));
        } else {
            assert!(l.root_cause_step.is_none());
        }
        late += usize::from(run.late_traces.is_some());
        logs += usize::from(run.logs.is_some());
        eval_children += spans(&run.traces)
            .iter()
            .filter(|s| s.name.starts_with("eval."))
            .count();
    }
    for kind in FaultKind::ALL {
        assert!(
            faults.get(kind.as_str()).copied().unwrap_or(0) >= 3,
            "{} appears {:?} times",
            kind.as_str(),
            faults.get(kind.as_str())
        );
    }
    for outcome in ["failed", "recovered", "success"] {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) > 20,
            "{outcomes:?}"
        );
    }
    assert_eq!(templates.len(), Template::ALL.len());
    assert_eq!(conventions.len(), Convention::ALL.len());
    // Evaluator results arrive all three ways (plus in-trace evaluator spans).
    assert!(
        late > 10 && logs > 10 && eval_children > 10,
        "{late} {logs} {eval_children}"
    );
}

#[test]
fn labels_are_consistent_with_spans() {
    let mut s = sim(3);
    for _ in 0..2000 {
        let run = s.next_run();
        let l = &run.label;
        let all = spans(&run.traces);
        let root = root(&run);
        let ctx = l.to_json();
        assert_eq!(hex::encode(&root.trace_id), l.trace_id);
        assert_eq!(all.len(), l.span_count);
        let ids: HashSet<&[u8]> = all.iter().map(|s| s.span_id.as_slice()).collect();
        assert_eq!(ids.len(), all.len(), "unique span ids");
        for sp in &all {
            assert!(sp.end_time_unix_nano >= sp.start_time_unix_nano);
            assert!(sp.parent_span_id.is_empty() || ids.contains(sp.parent_span_id.as_slice()));
        }
        let blamed = l.root_cause_span_id.as_ref().map(|id| {
            *all.iter()
                .find(|s| hex::encode(&s.span_id) == *id)
                .unwrap_or_else(|| panic!("blamed span missing: {ctx}"))
        });

        match l.outcome {
            faultline_core::model::Outcome::Success => {
                assert!(!all.iter().any(|s| is_error(s)), "{ctx}");
            }
            faultline_core::model::Outcome::Recovered => {
                assert!(!is_error(root), "{ctx}");
                assert!(all.iter().any(|s| has_exception(s)), "{ctx}");
                assert!(l.recovered_step.is_some());
            }
            faultline_core::model::Outcome::Failed => {
                assert!(
                    is_error(root) || has_failed_task_completion(&run),
                    "failed run without a failure signal at the root: {ctx}"
                );
            }
        }

        let Some(fault) = l.fault else { continue };
        let blamed = blamed.unwrap_or_else(|| panic!("{ctx}"));
        if l.convention == Convention::Explicit {
            assert_eq!(
                attr_str(blamed, "agent.trajectory.step"),
                l.root_cause_step,
                "{ctx}"
            );
        }
        match fault {
            FaultKind::Exception | FaultKind::RateLimited => {
                assert!(is_error(root) && has_exception(root), "{ctx}");
                assert!(has_exception(blamed) && is_error(blamed), "{ctx}");
            }
            FaultKind::InvalidToolArgs | FaultKind::UnknownTool => {
                assert!(is_error(root) && has_exception(root), "{ctx}");
                assert_eq!(l.root_cause_step, Some("planner"));
                assert!(!is_error(blamed), "the planner itself did not error: {ctx}");
            }
            FaultKind::Loop => {
                assert!(is_error(root) && has_exception(root), "{ctx}");
                assert_eq!(l.root_cause_step, Some("planner"));
                assert!(all.len() >= 6 * 3, "{ctx}");
            }
            FaultKind::Error => {
                assert!(is_error(root) && !has_exception(root), "{ctx}");
                assert!(is_error(blamed) && !has_exception(blamed), "{ctx}");
            }
            FaultKind::SlowStep => {
                let secs = (blamed.end_time_unix_nano - blamed.start_time_unix_nano) as f64 / 1e9;
                assert!(secs > 15.0, "{secs} {ctx}");
                assert!(!has_exception(blamed));
            }
            FaultKind::Truncated => {
                let length = blamed.attributes.iter().any(|kv| {
                    value_strings(kv)
                        .iter()
                        .any(|v| *v == "length" || v.contains("\"finish_reason\":\"length\""))
                });
                assert!(length, "{ctx}");
                assert!(!is_error(blamed));
            }
            FaultKind::CriticRejected => {
                let rejected = all.iter().any(|s| {
                    s.attributes
                        .iter()
                        .any(|kv| value_strings(kv).iter().any(|v| v.contains("REJECT:")))
                });
                assert!(rejected && is_error(root), "{ctx}");
                assert_eq!(l.root_cause_step, Some("generator"));
            }
            FaultKind::EmptyRetrieval => {
                assert_eq!(l.root_cause_step, Some("retriever"));
                if l.convention == Convention::OpenInference {
                    assert_eq!(
                        attr_str(blamed, "openinference.span.kind"),
                        Some("RETRIEVER")
                    );
                    assert!(attr(blamed, "retrieval.documents.0.document.id").is_none());
                }
            }
            FaultKind::ToolError => {
                assert_eq!(l.root_cause_step, Some("tool"));
                let as_data = blamed.attributes.iter().any(|kv| {
                    value_strings(kv)
                        .iter()
                        .any(|v| v.starts_with("{\"error\":"))
                });
                assert!(as_data && !is_error(blamed), "{ctx}");
            }
            FaultKind::EvalFailed => {
                assert!(matches!(l.root_cause_step, Some("retriever" | "generator")));
            }
        }
    }
}

#[test]
fn every_span_carries_its_convention_marker() {
    let mut s = sim(11);
    for _ in 0..500 {
        let run = s.next_run();
        let conv = run.label.convention;
        let root = root(&run);
        for sp in spans(&run.traces) {
            if is_http(sp) {
                continue;
            }
            let ok = match conv {
                Convention::OpenInference => attr(sp, "openinference.span.kind").is_some(),
                Convention::TraceAi => {
                    attr(sp, "fi.span.kind").is_some() || attr(sp, "gen_ai.span.kind").is_some()
                }
                Convention::OpenLlmetry => {
                    attr(sp, "traceloop.span.kind").is_some()
                        || attr(sp, "llm.request.type").is_some()
                        || attr(sp, "db.system").is_some()
                }
                Convention::GenAi => {
                    attr(sp, "gen_ai.operation.name").is_some() || sp.name == "rerank"
                }
                Convention::Explicit => attr(sp, "agent.trajectory.step").is_some(),
            };
            assert!(ok, "{} span {:?} unmarked", conv.as_str(), sp.name);
        }
        // Cohort attributes on the root.
        assert_eq!(attr_str(root, "http.route"), Some(run.label.cohort.route));
        assert_eq!(
            attr_str(root, "user.segment"),
            Some(run.label.cohort.user_segment)
        );
        assert!(attr(root, "session.id").is_some());
    }
}

#[test]
fn wire_size_and_attribute_count_are_in_the_ballpark() {
    let mut s = sim(5);
    let mut bytes = 0usize;
    let mut n_spans = 0usize;
    let mut n_attrs = 0usize;
    for _ in 0..30 {
        let batch = s.next_batch(350);
        assert!(batch.span_count >= 350 && batch.span_count < 350 + 200);
        assert_eq!(batch.labels.len(), batch.traces.resource_spans.len());
        bytes += batch.traces.encoded_len();
        for sp in spans(&batch.traces) {
            n_spans += 1;
            n_attrs += sp.attributes.len();
        }
    }
    assert_eq!(n_spans, n_spans.max(30 * 350));
    let per_span = bytes as f64 / n_spans as f64;
    let attrs = n_attrs as f64 / n_spans as f64;
    assert!(
        (600.0..=1300.0).contains(&per_span),
        "{per_span} bytes/span"
    );
    assert!((6.0..=16.0).contains(&attrs), "{attrs} attributes/span");
}

#[test]
fn written_files_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SimConfig::new(9, START);
    cfg.runs_per_second = 50.0;
    let report = write_files(cfg, 300, 350, dir.path()).unwrap();
    assert_eq!(report.runs, 300);

    let pb = std::fs::read(dir.path().join("traces.otlp.pb")).unwrap();
    let reqs: Vec<ExportTraceServiceRequest> = read_length_prefixed(&pb).unwrap();
    assert_eq!(reqs.len() as u64, report.trace_requests);
    let total: usize = reqs.iter().map(|r| spans(r).len()).sum();
    assert_eq!(total as u64, report.spans);

    let json = std::fs::read_to_string(dir.path().join("traces.otlp.jsonl")).unwrap();
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), reqs.len());
    for (line, req) in lines.iter().zip(&reqs) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        let trace_id = span["traceId"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32);
        assert!(trace_id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
        assert!(span["startTimeUnixNano"].is_string());
        assert!(span["kind"].is_number());
        assert!(!line.contains("null"));
        // The JSON decodes back to the same request.
        let back: ExportTraceServiceRequest = serde_json::from_str(line).unwrap();
        assert_eq!(&back, req);
    }
    assert!(json.contains("\"intValue\":\""), "int64 values as strings");
    assert!(json.contains("\"parentSpanId\":\""));

    let logs_pb = std::fs::read(dir.path().join("logs.otlp.pb")).unwrap();
    let logs: Vec<ExportLogsServiceRequest> = read_length_prefixed(&logs_pb).unwrap();
    assert_eq!(logs.len() as u64, report.log_requests);
    assert!(!logs.is_empty());
    let logs_json = std::fs::read_to_string(dir.path().join("logs.otlp.jsonl")).unwrap();
    for (line, req) in logs_json.lines().zip(&logs) {
        let back: ExportLogsServiceRequest = serde_json::from_str(line).unwrap();
        assert_eq!(&back, req);
        assert!(line.contains("\"eventName\":\"gen_ai.evaluation.result\""));
    }

    let labels = std::fs::read_to_string(dir.path().join("labels.jsonl")).unwrap();
    let labels: Vec<serde_json::Value> = labels
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(labels.len(), 300);
    let trace_ids: HashSet<String> = reqs
        .iter()
        .flat_map(|r| spans(r))
        .map(|s| hex::encode(&s.trace_id))
        .collect();
    for l in &labels {
        assert!(trace_ids.contains(l["trace_id"].as_str().unwrap()));
        assert!(["failed", "recovered", "success"].contains(&l["outcome"].as_str().unwrap()));
        assert!(l["cohort"]["route"].is_string());
    }

    // Truncated input is reported, not a panic.
    assert!(read_length_prefixed::<ExportTraceServiceRequest>(&pb[..pb.len() - 3]).is_err());
}

#[test]
fn scenario_rates_follow_cohort_and_time() {
    let cohort = Cohort {
        route: "/api/ask",
        model: "gpt-4o",
        prompt_version: "v7",
        user_segment: "free",
        service: "docs-qa",
        environment: "production",
        input_tokens: 5000,
    };
    let scenario = Scenario::uniform(0.01, 0.0)
        .with_cohort_multiplier(CohortMultiplier {
            when: vec![
                CohortMatch::Model("gpt-4o".into()),
                CohortMatch::PromptVersion("v7".into()),
            ],
            kinds: vec![FaultKind::Truncated],
            factor: 5.0,
        })
        .with_cohort_multiplier(CohortMultiplier {
            when: vec![CohortMatch::InputTokensAtLeast(8000)],
            kinds: vec![],
            factor: 100.0,
        })
        .with_window(TimeWindow {
            start_unix_nano: 100,
            end_unix_nano: 200,
            kinds: vec![FaultKind::RateLimited],
            factor: 10.0,
        });
    let allowed = FaultKind::ALL;
    let r = scenario.rates(50, &cohort, &allowed);
    assert!((r[FaultKind::Truncated as usize] - 0.05).abs() < 1e-12);
    assert!((r[FaultKind::RateLimited as usize] - 0.01).abs() < 1e-12);
    let r = scenario.rates(150, &cohort, &allowed);
    assert!((r[FaultKind::RateLimited as usize] - 0.1).abs() < 1e-12);
    // Only allowed kinds get a rate.
    let r = scenario.rates(50, &cohort, &[FaultKind::Loop]);
    assert_eq!(r.iter().filter(|x| **x > 0.0).count(), 1);
    // The total is capped.
    let big = Cohort {
        input_tokens: 9000,
        ..cohort
    };
    let r = scenario.rates(150, &big, &allowed);
    assert!(r.iter().sum::<f64>() <= 0.95 + 1e-9);
    assert_eq!(Scenario::pick(&r, 0.999), None);
    assert!(Scenario::pick(&r, 0.0).is_some());
    assert_eq!(
        FaultKind::from_name("critic_rejected"),
        Some(FaultKind::CriticRejected)
    );
}

#[test]
fn a_bad_cohort_fails_more() {
    let mut cfg = SimConfig::new(21, START);
    cfg.scenario = Scenario::uniform(0.01, 0.0).with_cohort_multiplier(CohortMultiplier {
        when: vec![CohortMatch::Model("claude-3-5-sonnet-20241022".into())],
        kinds: vec![],
        factor: 6.0,
    });
    let mut s = Simulator::new(cfg);
    let (mut bad, mut bad_failed, mut other, mut other_failed) = (0, 0, 0, 0);
    for _ in 0..3000 {
        let l = s.next_run().label;
        let failed = l.outcome == faultline_core::model::Outcome::Failed;
        if l.cohort.model == "claude-3-5-sonnet-20241022" {
            bad += 1;
            bad_failed += usize::from(failed);
        } else {
            other += 1;
            other_failed += usize::from(failed);
        }
    }
    let bad_rate = bad_failed as f64 / bad as f64;
    let other_rate = other_failed as f64 / other as f64;
    assert!(bad_rate > 3.0 * other_rate, "{bad_rate} vs {other_rate}");
}

#[test]
fn targets_are_checked() {
    let t = parse_target("http://127.0.0.1:4317", None, false).unwrap();
    assert_eq!(t.protocol, Protocol::Grpc);
    let t = parse_target("http://localhost:4318", None, false).unwrap();
    assert_eq!(t.protocol, Protocol::Http);
    let t = parse_target("http://[::1]:9000", Some(Protocol::Http), false).unwrap();
    assert_eq!(t.host, "::1");
    assert!(matches!(
        parse_target("http://10.0.0.5:4317", None, false),
        Err(SimulateError::RemoteRefused(_))
    ));
    assert!(parse_target("http://10.0.0.5:4317", None, true).is_ok());
    assert!(parse_target("http://127.0.0.1:9000", None, false).is_err());
    assert!(parse_target("https://127.0.0.1:4317", None, false).is_err());
}

fn send_args(target: String, runs: u64) -> SimulateOptions {
    SimulateOptions {
        seed: 4,
        runs: Some(runs),
        out: None,
        target: Some(target),
        protocol: None,
        rate: 2000.0,
        duration: Some(std::time::Duration::from_secs(20)),
        batch_spans: 100,
        allow_remote: false,
        start_unix_nano: Some(START),
        fault_rate: 0.02,
        recovered_rate: 0.05,
        conventions: Vec::new(),
    }
}

#[derive(Default)]
struct Received {
    trace_requests: std::sync::atomic::AtomicU64,
    spans: std::sync::atomic::AtomicU64,
    log_requests: std::sync::atomic::AtomicU64,
}

impl Received {
    fn traces(&self, req: &ExportTraceServiceRequest) {
        use std::sync::atomic::Ordering::Relaxed;
        self.trace_requests.fetch_add(1, Relaxed);
        self.spans.fetch_add(spans(req).len() as u64, Relaxed);
    }
}

struct GrpcSink(std::sync::Arc<Received>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for GrpcSink
{
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        self.0.traces(request.get_ref());
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService
    for GrpcSink
{
    async fn export(
        &self,
        _request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse>,
        tonic::Status,
    > {
        self.0
            .log_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test]
async fn sends_over_grpc() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    use std::sync::atomic::Ordering::Relaxed;

    let received = std::sync::Arc::new(Received::default());
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(GrpcSink(received.clone())))
        .add_service(LogsServiceServer::new(GrpcSink(received.clone())))
        .serve_with_incoming(incoming);
    let handle = tokio::spawn(server);

    let mut args = send_args(format!("http://127.0.0.1:{}", addr.port()), 60);
    args.protocol = Some(Protocol::Grpc);
    let report = run(&args).await.unwrap();
    handle.abort();
    assert_eq!(report.runs, 60);
    assert_eq!(report.send_errors, 0);
    assert_eq!(received.trace_requests.load(Relaxed), report.trace_requests);
    assert_eq!(received.spans.load(Relaxed), report.spans);
    assert_eq!(received.log_requests.load(Relaxed), report.log_requests);
    assert!(report.log_requests > 0);
}

#[tokio::test]
async fn sends_over_http() {
    use axum::body::Bytes;
    use axum::extract::State;
    use std::sync::atomic::Ordering::Relaxed;

    async fn traces(State(r): State<std::sync::Arc<Received>>, body: Bytes) -> &'static str {
        let req = ExportTraceServiceRequest::decode(body).unwrap();
        r.traces(&req);
        ""
    }
    async fn logs(State(r): State<std::sync::Arc<Received>>, body: Bytes) -> &'static str {
        ExportLogsServiceRequest::decode(body).unwrap();
        r.log_requests.fetch_add(1, Relaxed);
        ""
    }
    let received = std::sync::Arc::new(Received::default());
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .route("/v1/logs", axum::routing::post(logs))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut args = send_args(format!("http://localhost:{port}"), 60);
    args.protocol = Some(Protocol::Http);
    let report = run(&args).await.unwrap();
    handle.abort();
    assert_eq!(report.runs, 60);
    assert_eq!(report.send_errors, 0);
    assert_eq!(received.trace_requests.load(Relaxed), report.trace_requests);
    assert_eq!(received.spans.load(Relaxed), report.spans);
    assert_eq!(received.log_requests.load(Relaxed), report.log_requests);
}

#[tokio::test]
async fn refuses_remote_and_ambiguous_arguments() {
    let args = send_args("http://192.0.2.1:4317".to_string(), 10);
    assert!(matches!(
        run(&args).await,
        Err(SimulateError::RemoteRefused(_))
    ));
    let mut args = send_args("http://127.0.0.1:4317".to_string(), 10);
    args.rate = 0.0;
    assert!(matches!(
        run(&args).await,
        Err(SimulateError::InvalidArgs(_))
    ));
    args.rate = 10.0;
    args.target = None;
    assert!(matches!(
        run(&args).await,
        Err(SimulateError::InvalidArgs(_))
    ));
}

#[tokio::test]
async fn run_with_out_writes_the_requested_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = send_args(String::new(), 25);
    args.target = None;
    args.out = Some(dir.path().to_path_buf());
    let report = run(&args).await.unwrap();
    assert_eq!(report.runs, 25);
    let labels = std::fs::read_to_string(dir.path().join("labels.jsonl")).unwrap();
    assert_eq!(labels.lines().count(), 25);
    assert!(report.to_string().starts_with("25 runs"));
    // Same arguments, same bytes.
    let again = tempfile::tempdir().unwrap();
    args.out = Some(again.path().to_path_buf());
    run(&args).await.unwrap();
    for name in ["traces.otlp.pb", "logs.otlp.pb", "labels.jsonl"] {
        assert_eq!(
            std::fs::read(dir.path().join(name)).unwrap(),
            std::fs::read(again.path().join(name)).unwrap()
        );
    }
}

#[test]
fn correlations_tie_one_cohort_attribute_to_another() {
    use super::{CohortValue, Correlation};
    let mut config = SimConfig::new(9, 1_700_000_000_000_000_000);
    config.scenario = Scenario::default().with_correlation(Correlation {
        when: CohortMatch::Model("gpt-4.1".into()),
        then: CohortValue::UserSegment("enterprise"),
        probability: 0.8,
    });
    let mut sim = Simulator::new(config);
    let (mut model_runs, mut enterprise) = (0, 0);
    for _ in 0..2000 {
        let run = sim.next_run();
        if run.label.cohort.model == "gpt-4.1" {
            model_runs += 1;
            enterprise += usize::from(run.label.cohort.user_segment == "enterprise");
        }
    }
    assert!(model_runs > 100, "{model_runs}");
    let share = enterprise as f64 / model_runs as f64;
    assert!((0.75..0.95).contains(&share), "{share}");
}
