"""pydantic-ai support agent with pydantic-ai's own OpenTelemetry instrumentation.

One scenario per process (see ../README.md). The agent is a pydantic-ai `Agent` over
`OpenAIChatModel` (OpenAIProvider with an AsyncOpenAI client whose retries are off), with
two `@agent.tool_plain` tools. Instrumentation: `Agent.instrument_all(InstrumentationSettings(
tracer_provider=...))` with our own TracerProvider (no logfire).

pydantic-ai aborts the run when a tool raises an ordinary exception; a tool that wants the
model to try again raises `ModelRetry` (pydantic-ai's documented way). get_order_status
therefore calls an order service that raises RuntimeError("order service unavailable
(503)") and turns that into ModelRetry, so the model sees the error and can call again
or give up (`retries=3`). Tool arguments are validated by pydantic-ai against the tool's
signature; invalid ones are sent back to the model as a retry prompt.

turn_limit_loop: UsageLimits(request_limit=4) -> UsageLimitExceeded.
slow_tool_timeout: the order service sleeps 3 s while the script waits 2 s for the run
(`asyncio.wait_for`), which cancels it and raises TimeoutError.
critic_rejects: after the support agent answers, a second agent `reviewer` reviews the
answer; both runs inside one application span `review_workflow` (one trace).
"""

import os

os.environ.update(
    {
        "DO_NOT_TRACK": "1",
        "LOGFIRE_SEND_TO_LOGFIRE": "false",
        "LOGFIRE_IGNORE_NO_CONFIG": "1",
        "OPENAI_API_KEY": "x",
        "TIKTOKEN_CACHE_DIR": "/nonexistent-faultline-tiktoken",
    }
)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

AGENT_NAME = "support_agent"
REVIEWER_NAME = "reviewer"
INSTRUCTIONS = "You are the support agent of the Acme store. Use the tools to answer the customer's question."
REVIEWER_INSTRUCTIONS = (
    "You review answers of a support agent. Reply APPROVE if the answer is supported by the "
    "documents, else REJECT: followed by the reason."
)
QUESTIONS = {
    "ok": "What is your refund policy?",
    "tool_error_gives_up": "Where is my order A123?",
    "tool_error_retry_ok": "Where is my order A123?",
    "empty_retrieval": "What is the warranty of the X200 blender?",
    "model_500_first_call": "What is your refund policy?",
    "model_429_after_tool": "What is your refund policy?",
    "bad_tool_args_gives_up": "Where is my order 12?",
    "turn_limit_loop": "What is your refund policy?",
    "critic_rejects": "What is your refund policy?",
    "truncated_answer": "What is your refund policy?",
    "unknown_tool": "What is the weather in Paris today?",
    "slow_tool_timeout": "Where is my order A123?",
}
REQUEST_LIMIT = 4  # UsageLimits(request_limit=...) in turn_limit_loop
SLOW_TOOL_S = 3.0  # the order service's latency in slow_tool_timeout
RUN_DEADLINE_S = 2.0  # the application's deadline on the run in slow_tool_timeout


def tracer_provider(endpoint):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    trace_ids = []

    class TraceIds(SpanProcessor):
        def on_start(self, span, parent_context=None):
            tid = format(span.context.trace_id, "032x")
            if tid not in trace_ids:
                trace_ids.append(tid)

    provider = TracerProvider(resource=Resource.create({"service.name": "pydantic_ai"}))
    provider.add_span_processor(TraceIds())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    return provider, trace_ids


async def run(scenario, model_url, provider):
    from openai import AsyncOpenAI
    from pydantic_ai import Agent, ModelRetry
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.usage import UsageLimits

    Agent.instrument_all(InstrumentationSettings(tracer_provider=provider))
    client = AsyncOpenAI(base_url=model_url, api_key="x", max_retries=0, timeout=10)
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))

    agent = Agent(model, name=AGENT_NAME, instructions=INSTRUCTIONS, retries=3)
    order_calls = {"n": 0}

    def order_service(order_id: str) -> str:
        order_calls["n"] += 1
        if scenario == "slow_tool_timeout":
            time.sleep(SLOW_TOOL_S)
        if scenario == "tool_error_gives_up" or (scenario == "tool_error_retry_ok" and order_calls["n"] == 1):
            raise RuntimeError("order service unavailable (503)")
        return f"Order {order_id}: shipped on 2024-05-02, arriving 2024-05-06."

    @agent.tool_plain
    def search_docs(query: str) -> list[str]:
        """Search the product documentation."""
        if scenario == "empty_retrieval":
            return []
        return [
            "Refund policy: refunds are accepted within 30 days of delivery.",
            "Refunds are paid back to the original payment method.",
        ]

    @agent.tool_plain
    def get_order_status(order_id: str) -> str:
        """Get the status of an order by its id."""
        try:
            return order_service(order_id)
        except RuntimeError as e:
            raise ModelRetry(str(e)) from e

    limits = UsageLimits(request_limit=REQUEST_LIMIT) if scenario == "turn_limit_loop" else None
    question = QUESTIONS[scenario]
    if scenario == "slow_tool_timeout":
        # The application's deadline on the whole run: asyncio cancels it.
        result = await asyncio.wait_for(agent.run(question), RUN_DEADLINE_S)
        return result.output
    if scenario != "critic_rejects":
        result = await agent.run(question, usage_limits=limits)
        return result.output

    reviewer = Agent(model, name=REVIEWER_NAME, instructions=REVIEWER_INSTRUCTIONS)
    tracer = provider.get_tracer("faultline.frameworks.pydantic_ai")
    with tracer.start_as_current_span("review_workflow"):
        answer = (await agent.run(question)).output
        verdict = (await reviewer.run(f"Question: {question}\nAnswer: {answer}")).output
    return verdict


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--otlp-endpoint", required=True)
    args = p.parse_args()

    provider, trace_ids = tracer_provider(args.otlp_endpoint)
    try:
        print("answer:", asyncio.run(run(args.scenario, args.model_url, provider)))
    except Exception as e:  # the run's own failure (model error, usage limit, retries exhausted)
        print(f"run failed: {type(e).__name__}: {e}")
    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_ids": trace_ids}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
