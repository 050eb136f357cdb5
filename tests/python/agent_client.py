"""Sends multi-step LLM-agent traces to faultline with the real OpenTelemetry Python SDK.

Usage: agent_client.py --protocol grpc|http --endpoint URL [--runs N]

Each run is a small RAG agent as OpenInference-instrumented LangGraph emits it: an AGENT
root, a `retrieve` node with a RETRIEVER span, a `generate` node with an LLM span and an
output parser, and a `tools` node with a TOOL span and an HTTP call under it. One run in
each batch has a failing tool (exception recorded, error status). Prints one JSON object
per run on stdout: {"trace_id": "<32 hex>", "failing_tool": bool}.
"""

import argparse
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode


def exporter(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")


def run(tracer, i, failing_tool):
    with tracer.start_as_current_span(
        "LangGraph",
        attributes={"openinference.span.kind": "AGENT", "session.id": f"session-{i % 3}"},
    ) as root:
        with tracer.start_as_current_span(
            "retrieve", attributes={"openinference.span.kind": "CHAIN"}
        ):
            with tracer.start_as_current_span(
                "VectorStoreRetriever",
                attributes={
                    "openinference.span.kind": "RETRIEVER",
                    "retrieval.documents.0.document.id": "doc-1",
                    "retrieval.documents.0.document.content": "faultline blames steps",
                },
            ):
                pass
        with tracer.start_as_current_span(
            "generate", attributes={"openinference.span.kind": "CHAIN"}
        ):
            with tracer.start_as_current_span(
                "ChatOpenAI",
                attributes={
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.token_count.prompt": 812,
                },
            ):
                pass
            with tracer.start_as_current_span(
                "StrOutputParser", attributes={"openinference.span.kind": "CHAIN"}
            ):
                pass
        with tracer.start_as_current_span(
            "tools", attributes={"openinference.span.kind": "CHAIN"}
        ):
            with tracer.start_as_current_span(
                "search_web",
                attributes={"openinference.span.kind": "TOOL", "tool.name": "search_web"},
            ) as tool:
                with tracer.start_as_current_span(
                    "GET", kind=trace.SpanKind.CLIENT, attributes={"http.request.method": "GET"}
                ):
                    pass
                if failing_tool:
                    err = TimeoutError("search backend timed out after 30s")
                    tool.record_exception(err)
                    tool.set_status(Status(StatusCode.ERROR, str(err)))
        return format(root.get_span_context().trace_id, "032x")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": f"py-agent-{args.protocol}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter(args.protocol, args.endpoint)))
    tracer = provider.get_tracer("agent_client")
    results = []
    for i in range(args.runs):
        failing = i == 0
        results.append({"trace_id": run(tracer, i, failing), "failing_tool": failing})
    if not provider.force_flush(timeout_millis=30_000):
        print("force_flush timed out", file=sys.stderr)
        sys.exit(1)
    provider.shutdown()
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
