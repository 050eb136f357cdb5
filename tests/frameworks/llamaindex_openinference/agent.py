"""LlamaIndex FunctionAgent traced by openinference-instrumentation-llama-index.

One scenario per process (see ../README.md):
    agent.py --scenario NAME --model-url http://127.0.0.1:PORT/v1 --otlp-endpoint http://127.0.0.1:PORT

critic_rejects runs a small LlamaIndex Workflow (answer step -> review step) whose review
step asks a second FunctionAgent, `reviewer`, to judge the support agent's answer.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile

# No telemetry, no downloads: set before any framework import. llama_index.core points
# tiktoken and nltk at the caches it ships (_static/), so nothing is fetched.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LLAMA_INDEX_CACHE_DIR", os.path.join(tempfile.gettempdir(), "faultline-llamaindex-cache"))
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)

from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from llama_index.core.workflow import Context, Event, StartEvent, StopEvent, Workflow, step  # noqa: E402

SERVICE = "llamaindex_openinference"
MAX_ITERATIONS = 4

REFUND_Q = "What is the refund policy?"
ORDER_Q = "What is the status of order A-1001?"

DOCS = [
    "Refund policy: refunds are accepted within 30 days of purchase with a receipt.",
    "Refunds are paid back to the original payment method within 5 business days.",
]


# What the tools do in this run (set from --scenario in main()).
STATE = {"empty": False, "order_fails": None, "order_calls": 0}


def search_docs(query: str) -> list:
    """Search the product documentation."""
    return [] if STATE["empty"] else list(DOCS)


def get_order_status(order_id: str) -> str:
    """Get the status of an order by its id."""
    STATE["order_calls"] += 1
    fails = STATE["order_fails"]
    if fails == "always" or (fails == "once" and STATE["order_calls"] == 1):
        raise RuntimeError("order service unavailable (503)")
    return f"Order {order_id} has shipped and will arrive on Friday."


class TraceIds(SpanProcessor):
    def __init__(self):
        self.ids = []

    def on_start(self, span, parent_context=None):
        tid = format(span.get_span_context().trace_id, "032x")
        if tid not in self.ids:
            self.ids.append(tid)


class Answered(Event):
    question: str
    answer: str


class SupportWithReview(Workflow):
    """A LlamaIndex Workflow: the support agent answers, then the reviewer agent judges."""

    def __init__(self, support_agent, reviewer, **kwargs):
        super().__init__(**kwargs)
        self.support_agent = support_agent
        self.reviewer = reviewer

    @step
    async def answer(self, ctx: Context, ev: StartEvent) -> Answered:
        out = await self.support_agent.run(user_msg=ev.question, max_iterations=MAX_ITERATIONS)
        return Answered(question=ev.question, answer=str(out))

    @step
    async def review(self, ctx: Context, ev: Answered) -> StopEvent:
        verdict = str(await self.reviewer.run(user_msg=f"Question: {ev.question}\nAnswer: {ev.answer}"))
        approved = not verdict.strip().upper().startswith("REJECT")
        return StopEvent(result={"answer": ev.answer, "approved": approved, "verdict": verdict})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--otlp-endpoint", required=True)
    args = p.parse_args()
    scenario = args.scenario

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    ids = TraceIds()
    provider.add_span_processor(ids)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp_endpoint.rstrip("/") + "/v1/traces"))
    )
    trace.set_tracer_provider(provider)

    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

    LlamaIndexInstrumentor().instrument(tracer_provider=provider)

    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.tools import FunctionTool
    from llama_index.llms.openai import OpenAI

    STATE["empty"] = scenario == "empty_retrieval"
    STATE["order_fails"] = {"tool_error_gives_up": "always", "tool_error_retry_ok": "once"}.get(scenario)

    llm = OpenAI(model="gpt-4o-mini", api_base=args.model_url, api_key="sk-fake", max_retries=0, timeout=30)

    support_agent = FunctionAgent(
        name="support_agent",
        description="Answers customer support questions.",
        tools=[FunctionTool.from_defaults(fn=search_docs), FunctionTool.from_defaults(fn=get_order_status)],
        llm=llm,
        system_prompt="You are SUPPORT_AGENT, a customer support agent. Use the tools, then answer briefly.",
    )
    task = ORDER_Q if ("order" in scenario or "tool_" in scenario) else REFUND_Q

    async def run():
        if scenario != "critic_rejects":
            return await support_agent.run(user_msg=task, max_iterations=MAX_ITERATIONS)

        reviewer = FunctionAgent(
            name="reviewer",
            description="Reviews a support agent's answer.",
            tools=[],
            llm=llm,
            system_prompt="You are REVIEWER. You review answers of a support agent: reply APPROVE, or REJECT: reason.",
        )

        return await SupportWithReview(support_agent, reviewer, timeout=60).run(question=task)

    try:
        result = asyncio.run(run())
        print(f"result: {result!r}", file=sys.stderr)
    except Exception as e:  # the run's own failure: recorded in the trace, not a harness error
        print(f"run failed: {type(e).__name__}: {e}", file=sys.stderr)

    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_ids": ids.ids}))


if __name__ == "__main__":
    main()
