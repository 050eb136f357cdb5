"""pydantic-ai agents with fake models, traced by pydantic-ai's own OpenTelemetry
instrumentation (OTel GenAI conventions).

Usage: pydantic_ai_agent.py --endpoint http://127.0.0.1:4318 [--console]

Runs three agents, each failing in one planted way, and exports their traces over OTLP/HTTP:
- `tool_exception`: the model calls `get_weather`, which raises;
- `empty_retrieval`: the model calls `search_docs` (a retriever, by the user rule of the
  test's config), which returns no documents; the model then answers without context and an
  evaluator (a `gen_ai.evaluation.result` event) marks the answer as not grounded;
- `rate_limit`: the agent's first model call fails with HTTP 429. A failed call takes
  the role of the turn it served: before any tool result, the planner.
Prints one JSON line per run: {"scenario", "trace_id", "expected_step"}.
"""

import argparse
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings


def calls_tool(tool_name, args):
    """A model that calls `tool_name` once, then answers with the tool's result."""

    def model(messages, info: AgentInfo):
        returned = [
            p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)
        ]
        if not returned:
            return ModelResponse(parts=[ToolCallPart(tool_name=tool_name, args=args)])
        return ModelResponse(parts=[TextPart(f"Based on {returned[-1].content!r}: the answer is 42.")])

    return FunctionModel(model)


def rate_limited(messages, info: AgentInfo):
    raise ModelHTTPError(
        status_code=429,
        model_name="gpt-4o-mini",
        body={"error": {"message": "Rate limit reached for gpt-4o-mini on requests per min (RPM)"}},
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", default="http://127.0.0.1:4318")
    p.add_argument("--fixtures", metavar="DIR", help="write OTLP/JSON golden inputs instead")
    p.add_argument("--console", action="store_true")
    args = p.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": "pydantic-ai-agent"}))
    memory = None
    if args.fixtures:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    elif args.console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=args.endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = InstrumentationSettings(tracer_provider=provider, include_content=True)
    Agent.instrument_all(settings)
    tracer = provider.get_tracer("pydantic_ai_agent")

    weather = Agent(calls_tool("get_weather", {"city": "Paris"}), name="weather_agent")

    @weather.tool_plain
    def get_weather(city: str) -> str:
        raise ConnectionError(f"weather service unreachable for {city}: connection reset by peer")

    rag = Agent(calls_tool("search_docs", {"query": "refund policy"}), name="support_agent")

    @rag.tool_plain
    def search_docs(query: str) -> list:
        return []

    limited = Agent(FunctionModel(rate_limited), name="trip_agent")

    scenarios = [
        ("tool_exception", "tool", lambda: weather.run_sync("Weather in Paris?")),
        ("empty_retrieval", "retriever", lambda: rag.run_sync("What is the refund policy?")),
        ("rate_limit", "planner", lambda: limited.run_sync("Plan my trip")),
    ]
    names = {}
    for name, expected, run in scenarios:
        with tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER) as root:
            trace_id = format(root.get_span_context().trace_id, "032x")
            try:
                run()
                if name == "empty_retrieval":
                    # An LLM judge grading the answer, reported as the GenAI convention's
                    # evaluation event would be; here as a span event on the run.
                    root.add_event(
                        "gen_ai.evaluation.result",
                        {
                            "gen_ai.evaluation.name": "groundedness",
                            "gen_ai.evaluation.score.value": 0.1,
                            "gen_ai.evaluation.score.label": "fail",
                            "gen_ai.evaluation.explanation": "the answer is not supported by any retrieved document",
                        },
                    )
                    root.set_status(trace.Status(trace.StatusCode.ERROR, "answer not grounded"))
            except Exception as e:
                root.record_exception(e)
                root.set_status(trace.Status(trace.StatusCode.ERROR, str(e)))
        names[int(trace_id, 16)] = f"pydantic_ai_{name}"
        print(json.dumps({"scenario": name, "trace_id": trace_id, "expected_step": expected}))
    provider.force_flush()
    if memory is not None:
        from otlp_fixture import write_fixtures

        write_fixtures(memory.get_finished_spans(), names, args.fixtures)
    provider.shutdown()


if __name__ == "__main__":
    main()
