"""The matrix's support agent built with the OpenAI Agents SDK (shared by the
openai_agents_openinference and openai_agents_openllmetry directories; only the
instrumentation differs, see each directory's agent.py).

Single-agent scenarios run `support_agent` (tools search_docs and get_order_status).
Multi-agent scenarios run a `triage` manager with handoffs to `orders_agent`,
`docs_agent` and `weather_agent`, or (ma_subagent_tool_error) with `orders_agent`
called as a tool (Agent.as_tool); a `reviewer` agent checks answers in critic_rejects,
ma_reviewer_rejects and ma_misrouted. slow_tool_timeout runs support_agent under a 4 s
`asyncio.wait_for` while get_order_status sleeps 6 s.
"""

import os

# Before any framework import: no telemetry or downloads of anyone's own.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "0")
os.environ.setdefault("OPENAI_AGENTS_TRACE_INCLUDE_SENSITIVE_DATA", "true")
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from openai import AsyncOpenAI  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

from agents import (  # noqa: E402
    Agent,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
    handoff,
    set_tracing_disabled,
    trace,
)

MAX_TURNS = 4
SLOW_TOOL_S = 6.0  # get_order_status's latency in slow_tool_timeout
RUN_DEADLINE_S = 4.0  # the application's deadline on the run in slow_tool_timeout (the first model call alone can take over 1 s)

SINGLE = {
    "ok",
    "tool_error_gives_up",
    "tool_error_retry_ok",
    "empty_retrieval",
    "model_500_first_call",
    "model_429_after_tool",
    "bad_tool_args_gives_up",
    "turn_limit_loop",
    "critic_rejects",
    "truncated_answer",
    "unknown_tool",
    "slow_tool_timeout",
}

QUESTIONS = {
    "ok": "What is the refund policy?",
    "tool_error_gives_up": "What is the status of order A123?",
    "tool_error_retry_ok": "What is the status of order A123?",
    "empty_retrieval": "How long is the warranty on the X200 blender?",
    "model_500_first_call": "What is the refund policy?",
    "model_429_after_tool": "What is the refund policy?",
    "bad_tool_args_gives_up": "What is the status of order 12?",
    "turn_limit_loop": "What is the refund policy?",
    "critic_rejects": "What is the refund policy?",
    "truncated_answer": "What is the refund policy?",
    "unknown_tool": "What is the weather in Paris today?",
    "slow_tool_timeout": "What is the status of order A123?",
    "ma_subagent_tool_error": "What is the status of order A123?",
    "ma_subagent_empty_retrieval": "How long is the warranty on the X200 blender?",
    "ma_subagent_model_error": "What is the status of order A123?",
    "ma_reviewer_rejects": "What is the refund policy?",
    "ma_misrouted": "How do I reset my password?",
    "ma_handoff_pingpong": "What is the refund policy?",
}

DOCS = [
    "Refunds are accepted within 30 days of purchase with a receipt.",
    "Refunds are paid back to the original payment method within 5 business days.",
]


class Faults:
    scenario = "ok"
    order_calls = 0


def _tool_error(ctx, error: Exception) -> str:
    """failure_error_function: tell the model what went wrong (the SDK's documented hook)."""
    return f"Tool error: {error}"


@function_tool(failure_error_function=_tool_error)
def search_docs(query: str) -> list[str]:
    """Search the product documentation.

    Args:
        query: What to search for.
    """
    if Faults.scenario in ("empty_retrieval", "ma_subagent_empty_retrieval"):
        return []
    return list(DOCS)


@function_tool(failure_error_function=_tool_error)
def get_order_status(order_id: str) -> str:
    """Get the status of an order by its id.

    Args:
        order_id: The order's id.
    """
    Faults.order_calls += 1
    if Faults.scenario == "slow_tool_timeout":
        time.sleep(SLOW_TOOL_S)
    if Faults.scenario in ("tool_error_gives_up", "ma_subagent_tool_error"):
        raise RuntimeError("order service unavailable (503)")
    if Faults.scenario == "tool_error_retry_ok" and Faults.order_calls == 1:
        raise RuntimeError("order service unavailable (503)")
    return f"Order {order_id} has shipped and will arrive on Friday."


def build_agents(model):
    support = Agent(
        name="support_agent",
        instructions=(
            "You are support_agent, a customer support agent. Answer questions about the "
            "product with search_docs and about orders with get_order_status. Be brief."
        ),
        model=model,
        tools=[search_docs, get_order_status],
    )
    reviewer = Agent(
        name="reviewer",
        instructions=(
            "You review answers written by support agents. Reply APPROVE if the answer is "
            "supported by the documents, else REJECT: and the reason."
        ),
        model=model,
    )
    orders = Agent(
        name="orders_agent",
        handoff_description="Answers questions about orders and their status.",
        instructions="You are orders_agent. Look up orders with get_order_status and report their status.",
        model=model,
        tools=[get_order_status],
    )
    docs = Agent(
        name="docs_agent",
        handoff_description="Answers product questions from the documentation.",
        instructions="You are docs_agent. Answer product questions with search_docs.",
        model=model,
        tools=[search_docs],
    )
    weather = Agent(
        name="weather_agent",
        handoff_description="Answers weather questions.",
        instructions="You are weather_agent. You answer questions about the weather.",
        model=model,
    )
    triage = Agent(
        name="triage",
        instructions=(
            "You are triage, the front desk. Hand the user's question off to the right "
            "specialist agent."
        ),
        model=model,
        handoffs=[orders, docs, weather],
    )
    return {
        "support_agent": support,
        "reviewer": reviewer,
        "orders_agent": orders,
        "docs_agent": docs,
        "weather_agent": weather,
        "triage": triage,
    }


async def run_scenario(scenario, model):
    a = build_agents(model)
    question = QUESTIONS[scenario]
    config = RunConfig(tracing_disabled=False, trace_include_sensitive_data=True)
    if scenario in ("critic_rejects", "ma_reviewer_rejects", "ma_misrouted"):
        worker = a["support_agent"] if scenario == "critic_rejects" else a["triage"]
        with trace("support workflow"):
            result = await Runner.run(worker, question, max_turns=MAX_TURNS, run_config=config)
            answer = str(result.final_output)
            print(f"{result.last_agent.name}: {answer}", file=sys.stderr)
            review = await Runner.run(
                a["reviewer"],
                f"Question: {question}\nAnswer: {answer}",
                max_turns=MAX_TURNS,
                run_config=config,
            )
            print(f"reviewer: {review.final_output}", file=sys.stderr)
        return
    if scenario in SINGLE:
        agent = a["support_agent"]
    elif scenario == "ma_subagent_tool_error":
        # The manager calls orders_agent as a tool and keeps the conversation.
        agent = Agent(
            name="triage",
            instructions=(
                "You are triage, the front desk. Call the specialist agent tools to answer "
                "the user's question."
            ),
            model=model,
            tools=[
                a["orders_agent"].as_tool(
                    tool_name="orders_agent",
                    tool_description="Answers questions about orders and their status.",
                )
            ],
        )
    elif scenario == "ma_handoff_pingpong":
        a["docs_agent"].handoffs = [handoff(a["triage"])]
        agent = a["triage"]
    else:
        agent = a["triage"]
    run = Runner.run(agent, question, max_turns=MAX_TURNS, run_config=config)
    if scenario == "slow_tool_timeout":
        # The application's deadline on the whole run: asyncio cancels it.
        run = asyncio.wait_for(run, RUN_DEADLINE_S)
    result = await run
    print(f"{result.last_agent.name}: {result.final_output}", file=sys.stderr)


class TraceIds(SpanProcessor):
    """Remembers the OpenTelemetry trace ids of the spans this process exported."""

    def __init__(self):
        self.ids = []

    def on_end(self, span):
        tid = format(span.context.trace_id, "032x")
        if tid not in self.ids:
            self.ids.append(tid)


def main(service_name, instrument):
    """Runs one scenario; `instrument(tracer_provider)` installs the instrumentation."""
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--otlp-endpoint", required=True)
    args = p.parse_args()
    if args.scenario not in QUESTIONS:
        sys.exit(f"unknown scenario {args.scenario}")
    Faults.scenario = args.scenario

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    ids = TraceIds()
    provider.add_span_processor(ids)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp_endpoint.rstrip("/") + "/v1/traces"))
    )
    set_tracing_disabled(False)
    instrument(provider)

    client = AsyncOpenAI(base_url=args.model_url, api_key="sk-fake", max_retries=0, timeout=10)
    model = OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client)
    try:
        asyncio.run(run_scenario(args.scenario, model))
    except Exception as e:  # the run's own failure (HTTP errors, MaxTurnsExceeded, ...)
        print(f"run failed: {type(e).__name__}: {e}", file=sys.stderr)
    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_ids": ids.ids}), flush=True)
