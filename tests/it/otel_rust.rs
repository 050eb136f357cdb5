//! The Rust `opentelemetry-otlp` exporter (gRPC and HTTP) as a real client.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::support::{start_server, step_of, wait_trajectory};

/// Starts a child span of `parent` with attributes, returns its context.
fn child(
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    parent: &Context,
    name: &'static str,
    attrs: Vec<KeyValue>,
) -> Context {
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_attributes(attrs)
        .start_with_context(tracer, parent);
    parent.with_span(span)
}

/// A GenAI-convention ReAct agent: invoke_agent → chat (emits a tool call) →
/// execute_tool (fails) → chat (answers). Returns the trace id as hex.
fn emit_agent_run(provider: &SdkTracerProvider) -> String {
    let tracer = provider.tracer("rust-agent");
    let root = child(
        &tracer,
        &Context::new(),
        "invoke_agent travel_planner",
        vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "travel_planner"),
            KeyValue::new("gen_ai.conversation.id", "conv-42"),
        ],
    );
    let trace_id = root.span().span_context().trace_id().to_string();
    let plan = child(
        &tracer,
        &root,
        "chat gpt-4o",
        vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new(
                "gen_ai.response.finish_reasons",
                opentelemetry::Value::Array(
                    vec![opentelemetry::StringValue::from("tool_calls")].into(),
                ),
            ),
        ],
    );
    plan.span().end();
    let tool = child(
        &tracer,
        &root,
        "execute_tool get_weather",
        vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", "get_weather"),
        ],
    );
    let http = child(
        &tracer,
        &tool,
        "GET",
        vec![KeyValue::new("http.request.method", "GET")],
    );
    http.span().end();
    tool.span()
        .set_status(Status::error("weather API returned 503"));
    tool.span().end();
    let answer = child(
        &tracer,
        &root,
        "chat gpt-4o",
        vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
        ],
    );
    answer.span().end();
    root.span().end();
    trace_id
}

async fn check(exporter: SpanExporter, running: faultline::server::Running) {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("rust-agent").build())
        .build();
    // The simple exporter blocks on each export: run the agent off the async workers.
    let (provider, trace_id) = tokio::task::spawn_blocking(move || {
        let id = emit_agent_run(&provider);
        (provider, id)
    })
    .await
    .expect("agent thread");
    let t = wait_trajectory(&running, &trace_id, 5, Duration::from_secs(20)).await;
    assert_eq!(t["steps"].as_array().map(Vec::len), Some(5));
    // The agent answered after the tool failed, but nothing redid the tool: the run
    // did not get what it needed, and the tool is to blame.
    assert_eq!(
        t["outcome"], "failed",
        "the run answered after a tool failure that nothing redid"
    );
    assert_eq!(t["root_cause"]["step"], "tool");
    assert_eq!(t["root_cause"]["agent"], "travel_planner");
    assert_eq!(t["service"], "rust-agent");
    assert_eq!(t["session_id"], "conv-42");
    assert_eq!(
        step_of(&t, "invoke_agent travel_planner"),
        ("agent", "gen_ai.operation.name")
    );
    assert_eq!(step_of(&t, "execute_tool get_weather").0, "tool");
    assert_eq!(step_of(&t, "GET"), ("tool", "inherited"));
    let steps = t["steps"].as_array().expect("steps");
    let chats: Vec<&str> = steps
        .iter()
        .filter(|s| s["name"] == "chat gpt-4o")
        .map(|s| s["step"].as_str().unwrap_or(""))
        .collect();
    // The call that emitted a tool call plans; the one that answers generates.
    assert_eq!(chats, vec!["planner", "generator"]);
    let tool = steps
        .iter()
        .find(|s| s["name"] == "execute_tool get_weather")
        .expect("tool span");
    assert_eq!(tool["status"], "error");
    assert_eq!(tool["status_message"], "weather API returned 503");
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("shutdown thread")
        .expect("provider shuts down");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_otlp_grpc_exporter() {
    let running = start_server("300ms").await;
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", running.otlp_grpc_address))
        .build()
        .expect("gRPC exporter");
    check(exporter, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_otlp_http_exporter() {
    let running = start_server("300ms").await;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("http://{}/v1/traces", running.otlp_http_address))
        .build()
        .expect("HTTP exporter");
    check(exporter, running).await;
}
