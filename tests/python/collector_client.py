"""Sends agent runs and their evaluator results through an OpenTelemetry Collector.

Usage: collector_client.py --protocol grpc|http --endpoint URL [--runs N] [--service NAME]
                           [--evaluations log|span-event]

Each run is a small RAG agent as OpenInference-instrumented LangGraph emits it; every run
whose index is 0 mod 3 has a failing tool, and every run whose index is 1 mod 3 gets a
`gen_ai.evaluation.result` labelled `incorrect` on its ChatOpenAI span: a log event
emitted with the real Logs SDK inside that span (`log`, the default: the collector's logs
pipeline must carry it to the trace's faultline), or an event on the span itself
(`span-event`: it travels with the trace). Prints one JSON object per run on
stdout: {"trace_id": "<32 hex>", "failing_tool": bool, "failing_evaluation": bool}.
"""

import argparse
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def exporters(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPSpanExporter(endpoint=endpoint, insecure=True),
            OTLPLogExporter(endpoint=endpoint, insecure=True),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    return (
        OTLPSpanExporter(endpoint=base + "/v1/traces"),
        OTLPLogExporter(endpoint=base + "/v1/logs"),
    )


EVALUATION = {
    "gen_ai.evaluation.name": "Correctness",
    "gen_ai.evaluation.score.value": 0.0,
    "gen_ai.evaluation.score.label": "incorrect",
    "gen_ai.evaluation.explanation": "the answer contradicts the retrieved document",
}


def run(tracer, logger, i, failing_tool, failing_evaluation, evaluations):
    kind = "openinference.span.kind"
    with tracer.start_as_current_span(
        "LangGraph", attributes={kind: "AGENT", "session.id": f"session-{i % 3}"}
    ) as root:
        with tracer.start_as_current_span("retrieve", attributes={kind: "CHAIN"}):
            with tracer.start_as_current_span(
                "VectorStoreRetriever",
                attributes={
                    kind: "RETRIEVER",
                    "retrieval.documents.0.document.id": "doc-1",
                    "retrieval.documents.0.document.content": "faultline blames steps",
                },
            ):
                pass
        with tracer.start_as_current_span("generate", attributes={kind: "CHAIN"}):
            with tracer.start_as_current_span(
                "ChatOpenAI",
                attributes={
                    kind: "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.token_count.prompt": 120,
                    "llm.token_count.completion": 40,
                    "output.value": "faultline blames the step that caused a failure",
                },
            ) as llm:
                if failing_evaluation and evaluations == "log":
                    logger.emit(event_name="gen_ai.evaluation.result", attributes=EVALUATION)
                elif failing_evaluation:
                    llm.add_event("gen_ai.evaluation.result", attributes=EVALUATION)
        with tracer.start_as_current_span("tools", attributes={kind: "CHAIN"}):
            with tracer.start_as_current_span(
                "search_web", attributes={kind: "TOOL", "tool.name": "search_web"}
            ) as tool:
                if failing_tool:
                    err = TimeoutError("search backend timed out after 30s")
                    tool.record_exception(err)
                    tool.set_status(trace.Status(trace.StatusCode.ERROR, str(err)))
        return format(root.get_span_context().trace_id, "032x")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--service", default="py-agent-collector")
    p.add_argument("--evaluations", choices=["log", "span-event"], default="log")
    args = p.parse_args()

    resource = Resource.create({"service.name": args.service})
    span_exporter, log_exporter = exporters(args.protocol, args.endpoint)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    tracer = tracer_provider.get_tracer("collector_client")
    logger = logger_provider.get_logger("collector_client")

    results = []
    for i in range(args.runs):
        failing_tool = i % 3 == 0
        failing_evaluation = i % 3 == 1
        trace_id = run(tracer, logger, i, failing_tool, failing_evaluation, args.evaluations)
        results.append(
            {
                "trace_id": trace_id,
                "failing_tool": failing_tool,
                "failing_evaluation": failing_evaluation,
            }
        )
    ok = tracer_provider.force_flush(timeout_millis=30_000)
    ok = logger_provider.force_flush(timeout_millis=30_000) and ok
    if not ok:
        print("force_flush timed out", file=sys.stderr)
        sys.exit(1)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
