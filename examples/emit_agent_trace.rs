//! Sends one multi-step agent run to a running faultline with the Rust
//! `opentelemetry-otlp` exporter, as an instrumented application would.
//!
//! ```sh
//! cargo run --release &                      # faultline on 127.0.0.1:4317
//! cargo run --example emit_agent_trace       # or: -- http://127.0.0.1:4317
//! curl -s http://127.0.0.1:8700/api/v1/trajectories/<printed trace id>
//! ```
//!
//! The run follows the OpenTelemetry GenAI conventions: an `invoke_agent` root, a `chat`
//! call that emits a tool call (the planner), an `execute_tool` span whose tool fails, and
//! a final `chat` call that answers (the generator).

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

fn child(tracer: &SdkTracer, parent: &Context, name: &'static str, attrs: Vec<KeyValue>) -> Context {
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_attributes(attrs)
        .start_with_context(tracer, parent);
    parent.with_span(span)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:4317".to_owned());
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("example-agent").build())
        .build();
    let trace_id = tokio::task::spawn_blocking({
        let provider = provider.clone();
        move || {
            let tracer = provider.tracer("example");
            let root = child(
                &tracer,
                &Context::new(),
                "invoke_agent support_bot",
                vec![
                    KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                    KeyValue::new("gen_ai.agent.name", "support_bot"),
                    KeyValue::new("gen_ai.conversation.id", "example-session"),
                ],
            );
            let plan = child(
                &tracer,
                &root,
                "chat gpt-4o",
                vec![
                    KeyValue::new("gen_ai.operation.name", "chat"),
                    KeyValue::new("gen_ai.request.model", "gpt-4o"),
                    KeyValue::new(
                        "gen_ai.response.finish_reasons",
                        opentelemetry::Value::Array(vec![opentelemetry::StringValue::from("tool_calls")].into()),
                    ),
                ],
            );
            plan.span().end();
            let tool = child(
                &tracer,
                &root,
                "execute_tool lookup_order",
                vec![
                    KeyValue::new("gen_ai.operation.name", "execute_tool"),
                    KeyValue::new("gen_ai.tool.name", "lookup_order"),
                    KeyValue::new("gen_ai.tool.call.arguments", r#"{"order_id": "A-1001"}"#),
                ],
            );
            tool.span()
                .set_status(Status::error("orders API returned 503 Service Unavailable"));
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
            root.span().span_context().trace_id().to_string()
        }
    })
    .await?;
    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    println!("{trace_id}");
    Ok(())
}
