"""smolagents ToolCallingAgent (+ managed agents) traced by openinference-instrumentation-smolagents.

One scenario per process (see ../README.md):
    agent.py --scenario NAME --model-url http://127.0.0.1:PORT/v1 --otlp-endpoint http://127.0.0.1:PORT
"""

import argparse
import json
import os
import sys
import threading
import time

# No telemetry, no hub: set before any framework import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["HF_HOME"] = os.path.join(__import__("tempfile").gettempdir(), "faultline-smolagents-hf-unused")
os.environ.pop("OPENAI_API_KEY", None)

from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

SERVICE = "smolagents_openinference"

# Task texts.
REFUND_Q = "What is the refund policy?"
ORDER_Q = "What is the status of order A-1001?"
PASSWORD_Q = "How do I reset my password?"
WEATHER_Q = "What is the weather in Paris today?"

SLOW_TOOL_S = 3.0  # get_order_status's latency in slow_tool_timeout
RUN_DEADLINE_S = 2.0  # the application's deadline on the run in slow_tool_timeout

DOCS = [
    "Refund policy: refunds are accepted within 30 days of purchase with a receipt.",
    "Refunds are paid back to the original payment method within 5 business days.",
]


class TraceIds(SpanProcessor):
    def __init__(self):
        self.ids = []

    def on_start(self, span, parent_context=None):
        tid = format(span.get_span_context().trace_id, "032x")
        if tid not in self.ids:
            self.ids.append(tid)


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

    from openinference.instrumentation.smolagents import SmolagentsInstrumentor

    SmolagentsInstrumentor().instrument(tracer_provider=provider)

    from smolagents import LogLevel, OpenAIServerModel, ToolCallingAgent, tool

    state = {"order_calls": 0}
    empty = scenario in ("empty_retrieval", "ma_subagent_empty_retrieval")
    order_fails = {
        "tool_error_gives_up": "always",
        "ma_subagent_tool_error": "always",
        "tool_error_retry_ok": "once",
    }.get(scenario)

    @tool
    def search_docs(query: str) -> list:
        """Search the product documentation.

        Args:
            query: What to look for in the documentation.
        """
        return [] if empty else list(DOCS)

    @tool
    def get_order_status(order_id: str) -> str:
        """Get the status of an order by its id.

        Args:
            order_id: The order's id, e.g. "A-1001".
        """
        state["order_calls"] += 1
        if scenario == "slow_tool_timeout":
            time.sleep(SLOW_TOOL_S)
        if order_fails == "always" or (order_fails == "once" and state["order_calls"] == 1):
            raise RuntimeError("order service unavailable (503)")
        return f"Order {order_id} has shipped and will arrive on Friday."

    model = OpenAIServerModel(
        model_id="gpt-4o-mini",
        api_base=args.model_url,
        api_key="sk-fake",
        client_kwargs={"max_retries": 0, "timeout": 30},
        retry=False,  # smolagents' own rate-limit retryer (would wait 60 s on a 429)
    )

    def review_answer(final_answer, memory, agent=None):
        """A judge model call, as smolagents' docs show for final_answer_checks."""
        verdict = model.generate(
            [
                {"role": "system", "content": [{"type": "text", "text": "You review answers of a support agent. Reply APPROVE or REJECT: reason."}]},
                {"role": "user", "content": [{"type": "text", "text": f"Question: {REFUND_Q}\nAnswer: {final_answer}"}]},
            ]
        ).content
        if verdict.strip().upper().startswith("REJECT"):
            raise Exception(verdict)
        return True

    quiet = dict(verbosity_level=LogLevel.OFF)
    if scenario.startswith("ma_"):
        orders_agent = ToolCallingAgent(
            tools=[get_order_status],
            model=model,
            name="orders_agent",
            description="Looks up the status of customer orders by order id.",
            instructions="You are ORDERS_AGENT. Look up orders with get_order_status and report their status.",
            max_steps=4,
            **quiet,
        )
        docs_agent = ToolCallingAgent(
            tools=[search_docs],
            model=model,
            name="docs_agent",
            description="Answers product and policy questions from the product documentation.",
            instructions="You are DOCS_AGENT. Answer from the documentation found with search_docs.",
            max_steps=4,
            **quiet,
        )
        weather_agent = ToolCallingAgent(
            tools=[],
            model=model,
            name="weather_agent",
            description="Answers questions about the weather.",
            instructions="You are WEATHER_AGENT. Answer weather questions.",
            max_steps=4,
            **quiet,
        )
        reviewer = ToolCallingAgent(
            tools=[],
            model=model,
            name="reviewer",
            description="Reviews a team member's answer; replies APPROVE or REJECT with a reason.",
            instructions="You are REVIEWER. You review answers: reply APPROVE, or REJECT: reason.",
            max_steps=4,
            **quiet,
        )
        agent = ToolCallingAgent(
            tools=[],
            model=model,
            name="manager",
            managed_agents=[orders_agent, docs_agent, weather_agent, reviewer],
            instructions="You are the MANAGER of a support team. Route each question to the right team member, then have the reviewer check answers when asked.",
            max_steps=4,
            **quiet,
        )
        task = {
            "ma_subagent_tool_error": ORDER_Q,
            "ma_subagent_model_error": ORDER_Q,
            "ma_subagent_empty_retrieval": REFUND_Q,
            "ma_reviewer_rejects": REFUND_Q,
            "ma_misrouted": PASSWORD_Q,
            "ma_handoff_pingpong": PASSWORD_Q,
        }[scenario]
    else:
        agent = ToolCallingAgent(
            tools=[search_docs, get_order_status],
            model=model,
            name="support_agent",
            instructions="You are SUPPORT_AGENT, a customer support agent. Use the tools, then answer briefly.",
            max_steps=4,
            final_answer_checks=[review_answer] if scenario == "critic_rejects" else None,
            **quiet,
        )
        if scenario == "unknown_tool":
            task = WEATHER_Q
        elif "order" in scenario or "tool_" in scenario or "bad_tool" in scenario:
            task = ORDER_Q
        else:
            task = REFUND_Q

    deadline = None
    if scenario == "slow_tool_timeout":
        # The application's deadline on the run: smolagents has no timeout of its own; its
        # documented way to stop a run from outside is agent.interrupt(), which takes
        # effect before the next step (the tool's step still ends on its own).
        deadline = threading.Timer(RUN_DEADLINE_S, agent.interrupt)
        deadline.start()
    try:
        result = agent.run(task)
        print(f"result: {result!r}", file=sys.stderr)
    except Exception as e:  # the run's own failure: recorded in the trace, not a harness error
        print(f"run failed: {type(e).__name__}: {e}", file=sys.stderr)

    if deadline is not None:
        deadline.cancel()
    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_ids": ids.ids}))


if __name__ == "__main__":
    main()
