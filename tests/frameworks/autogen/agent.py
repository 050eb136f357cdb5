"""AutoGen AgentChat agent of the real-framework matrix (AutoGen's own OpenTelemetry spans).

One scenario per process:
    agent.py --scenario NAME --model-url http://127.0.0.1:PORT/v1 --otlp-endpoint http://127.0.0.1:PORT

autogen-core's GenAI spans (create_agent / invoke_agent / execute_tool) and, for teams,
the SingleThreadedAgentRuntime's message spans go to the global TracerProvider set here.
"""

import argparse
import asyncio
import json
import os
import sys

os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("OTEL_SDK_DISABLED", None)
os.environ.pop("AUTOGEN_DISABLE_RUNTIME_TRACING", None)
for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OPENAI_BASE_URL"):
    os.environ.pop(var, None)

from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

SERVICE = os.path.basename(os.path.dirname(os.path.abspath(__file__)))


class TraceIds(SpanProcessor):
    def __init__(self):
        self.ids = []

    def on_end(self, span):
        tid = format(span.context.trace_id, "032x")
        if tid not in self.ids:
            self.ids.append(tid)


def setup_tracing(endpoint):
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    ids = TraceIds()
    provider.add_span_processor(ids)
    trace.set_tracer_provider(provider)
    return provider, ids


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--otlp-endpoint", required=True)
    return p.parse_args()


ARGS = parse_args()
PROVIDER, TRACE_IDS = setup_tracing(ARGS.otlp_endpoint)

from autogen_agentchat.agents import AssistantAgent  # noqa: E402
from autogen_agentchat.conditions import MaxMessageTermination  # noqa: E402
from autogen_agentchat.teams import RoundRobinGroupChat, Swarm  # noqa: E402
from autogen_agentchat.tools import AgentTool  # noqa: E402
from autogen_core.models import ModelFamily  # noqa: E402
from autogen_ext.models.openai import OpenAIChatCompletionClient  # noqa: E402

SCENARIO = ARGS.scenario
ORDER_CALLS = {"n": 0}


async def search_docs(query: str) -> list[str]:
    """Search the product documentation."""
    if SCENARIO in ("empty_retrieval", "ma_subagent_empty_retrieval"):
        return []
    if "password" in query.lower():
        return ["To reset your password, open Settings > Security and click 'Reset password'."]
    return [
        "Refunds are accepted within 30 days of purchase.",
        "Refunds are paid back to the original payment method within 5 business days.",
    ]


async def get_order_status(order_id: str) -> str:
    """Get the status of an order by its id."""
    ORDER_CALLS["n"] += 1
    if SCENARIO in ("tool_error_gives_up", "ma_subagent_tool_error"):
        raise RuntimeError("order service unavailable (503)")
    if SCENARIO == "tool_error_retry_ok" and ORDER_CALLS["n"] == 1:
        raise RuntimeError("order service unavailable (503)")
    return f"Order {order_id} has shipped and arrives on Friday."


def model_client(url):
    return OpenAIChatCompletionClient(
        model="gpt-4o-mini",
        base_url=url,
        api_key="x",
        max_retries=0,
        model_info={
            "vision": False,
            "function_calling": True,
            "json_output": True,
            "family": ModelFamily.GPT_4O,
            "structured_output": True,
        },
    )


def build(url):
    """Returns (runnable agent or team, task)."""
    client = model_client(url)

    def support_agent(**kw):
        return AssistantAgent(
            name="support_agent",
            model_client=client,
            description="Customer support agent.",
            system_message="You are a customer support agent. Use the tools to answer the customer's question briefly.",
            tools=[search_docs, get_order_status],
            reflect_on_tool_use=True,
            max_tool_iterations=4,
            **kw,
        )

    def reviewer():
        return AssistantAgent(
            name="reviewer",
            model_client=client,
            description="Reviews the answer.",
            system_message="You review answers. Reply APPROVE if the answer is supported by the documents, else REJECT: and the reason.",
        )

    def specialist(name, description, system_message, tools, **kw):
        return AssistantAgent(
            name=name,
            model_client=client,
            description=description,
            system_message=system_message,
            tools=tools,
            reflect_on_tool_use=True,
            max_tool_iterations=4,
            **kw,
        )

    refund = "What is your refund policy?"
    order = "Where is my order 1234?"
    if SCENARIO == "critic_rejects":
        team = RoundRobinGroupChat([support_agent(), reviewer()], termination_condition=MaxMessageTermination(3))
        return team, refund
    if SCENARIO in ("ma_subagent_tool_error", "ma_subagent_empty_retrieval", "ma_subagent_model_error"):
        # Agents called as tools (AgentTool): the manager gets each specialist's answer back.
        orders = specialist(
            "orders_agent",
            "Handles questions about orders and deliveries.",
            "You are the orders specialist. Look orders up with get_order_status and answer briefly.",
            [get_order_status],
        )
        docs = specialist(
            "docs_agent",
            "Handles product and account questions from the documentation.",
            "You are the documentation specialist. Search the documentation with search_docs and answer briefly.",
            [search_docs],
        )
        triage = AssistantAgent(
            name="triage",
            model_client=client,
            description="Routes customer questions.",
            system_message="You are the triage agent. Route each customer question to the right specialist.",
            tools=[AgentTool(orders, return_value_as_last_message=True), AgentTool(docs, return_value_as_last_message=True)],
            reflect_on_tool_use=True,
        )
        return triage, (refund if SCENARIO == "ma_subagent_empty_retrieval" else order)
    if SCENARIO == "ma_handoff_pingpong":
        # Handoffs in a Swarm: triage hands off to orders_agent, which hands back, until
        # the team's MaxMessageTermination.
        triage = AssistantAgent(
            name="triage",
            model_client=client,
            description="Routes customer questions.",
            system_message="You are the triage agent. Route each customer question to the right specialist.",
            handoffs=["orders_agent"],
        )
        orders = specialist(
            "orders_agent",
            "Handles questions about orders and deliveries.",
            "You are the orders specialist. Look orders up with get_order_status and answer briefly.",
            [get_order_status],
            handoffs=["triage"],
        )
        return Swarm([triage, orders], termination_condition=MaxMessageTermination(5)), order
    q = order if "order" in SCENARIO or SCENARIO.startswith("tool_error") or SCENARIO.startswith("bad_tool") else refund
    return support_agent(), q


async def run():
    # As AutoGen's tracing guide shows: one application span around the run, so the
    # runtime's message spans of a team share one trace.
    tracer = trace.get_tracer("faultline-matrix")
    with tracer.start_as_current_span("runtime"):
        runnable, task = build(ARGS.model_url)
        result = await runnable.run(task=task)
    last = result.messages[-1]
    return f"{last.source}: {getattr(last, 'content', last)} (stop: {result.stop_reason})"


def main():
    try:
        final = asyncio.run(run())
        print(f"final: {final}", file=sys.stderr)
    except Exception as e:  # the run's own failure: recorded in the trace, not ours
        print(f"run failed: {type(e).__name__}: {e}", file=sys.stderr)
    PROVIDER.force_flush()
    PROVIDER.shutdown()
    print(json.dumps({"trace_ids": TRACE_IDS.ids}), flush=True)


if __name__ == "__main__":
    main()
