"""Google ADK agent of the real-framework matrix (ADK's own OpenTelemetry spans).

One scenario per process:
    agent.py --scenario NAME --model-url http://127.0.0.1:PORT/v1 --otlp-endpoint http://127.0.0.1:PORT

The model is LiteLlm (openai/gpt-4o-mini) pointed at the fake model server; ADK's own
tracer ("gcp.vertex.agent") writes to the global TracerProvider set up here.
"""

import argparse
import asyncio
import json
import os
import sys

# No network but 127.0.0.1, no telemetry phoning home, no hub downloads.
os.environ["DO_NOT_TRACK"] = "1"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_TELEMETRY"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("OTEL_SDK_DISABLED", None)
# What a user debugging agent runs turns on: message content on ADK's GenAI spans.
os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "GOOGLE_CLOUD_PROJECT"):
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

import litellm  # noqa: E402

litellm.telemetry = False
litellm.num_retries = 0

from google.adk.agents import LlmAgent, RunConfig, SequentialAgent  # noqa: E402
from google.adk.models.lite_llm import LiteLlm  # noqa: E402
from google.adk.runners import InMemoryRunner  # noqa: E402
from google.adk.tools.agent_tool import AgentTool  # noqa: E402
from google.genai import types  # noqa: E402

SCENARIO = ARGS.scenario
ORDER_CALLS = {"n": 0}


def search_docs(query: str) -> list:
    """Search the product documentation.

    Args:
        query: What to search for.

    Returns:
        A list of short documents.
    """
    if SCENARIO in ("empty_retrieval", "ma_subagent_empty_retrieval"):
        return []
    if "password" in query.lower():
        return ["To reset your password, open Settings > Security and click 'Reset password'."]
    return [
        "Refunds are accepted within 30 days of purchase.",
        "Refunds are paid back to the original payment method within 5 business days.",
    ]


def get_order_status(order_id: str) -> str:
    """Get the status of an order by its id.

    Args:
        order_id: The order's id.

    Returns:
        The order's status.
    """
    ORDER_CALLS["n"] += 1
    if SCENARIO in ("tool_error_gives_up", "ma_subagent_tool_error"):
        raise RuntimeError("order service unavailable (503)")
    if SCENARIO == "tool_error_retry_ok" and ORDER_CALLS["n"] == 1:
        raise RuntimeError("order service unavailable (503)")
    return f"Order {order_id} has shipped and arrives on Friday."


def tool_error_to_model(tool, args, tool_context, error):
    """ADK's on_tool_error_callback: hand the tool's exception to the model as its result."""
    return {"error": f"{type(error).__name__}: {error}"}


def model(url):
    return LiteLlm(model="openai/gpt-4o-mini", api_base=url, api_key="x", num_retries=0, max_retries=0)


def build(url):
    """Returns (root agent, user question, run config)."""
    m = model(url)
    cfg = RunConfig(max_llm_calls=4 if SCENARIO in ("turn_limit_loop", "ma_handoff_pingpong") else 50)

    def support_agent():
        return LlmAgent(
            name="support_agent",
            model=m,
            description="Customer support agent.",
            instruction="You are a customer support agent. Use the tools to answer the customer's question briefly.",
            tools=[search_docs, get_order_status],
            on_tool_error_callback=tool_error_to_model,
        )

    def reviewer():
        return LlmAgent(
            name="reviewer",
            model=m,
            description="Reviews the answer.",
            instruction="You review answers. Reply APPROVE if the answer is supported by the documents, else REJECT: and the reason.",
        )

    def orders_agent():
        return LlmAgent(
            name="orders_agent",
            model=m,
            description="Handles questions about orders and deliveries.",
            instruction="You are the orders specialist. Look orders up with get_order_status and answer briefly.",
            tools=[get_order_status],
            on_tool_error_callback=tool_error_to_model,
        )

    def docs_agent():
        return LlmAgent(
            name="docs_agent",
            model=m,
            description="Handles product and account questions from the documentation.",
            instruction="You are the documentation specialist. Search the documentation with search_docs and answer briefly.",
            tools=[search_docs],
            on_tool_error_callback=tool_error_to_model,
        )

    def weather_agent():
        return LlmAgent(
            name="weather_agent",
            model=m,
            description="Handles questions about the weather.",
            instruction="You are the weather specialist. Answer weather questions briefly.",
        )

    triage_instruction = "You are the triage agent. Route each customer question to the right specialist."

    if SCENARIO == "critic_rejects":
        root = SequentialAgent(name="review_pipeline", sub_agents=[support_agent(), reviewer()])
        return root, "What is your refund policy?", cfg
    if SCENARIO in ("ma_subagent_tool_error", "ma_subagent_empty_retrieval", "ma_subagent_model_error"):
        # Agents called as tools: the manager gets each specialist's answer back.
        root = LlmAgent(
            name="triage",
            model=m,
            description="Routes customer questions.",
            instruction=triage_instruction,
            tools=[AgentTool(agent=orders_agent()), AgentTool(agent=docs_agent())],
        )
        q = "Where is my order 1234?" if SCENARIO != "ma_subagent_empty_retrieval" else "What is your refund policy?"
        return root, q, cfg
    if SCENARIO in ("ma_reviewer_rejects", "ma_misrouted", "ma_handoff_pingpong"):
        # Handoffs: transfer_to_agent between the manager and its sub-agents.
        triage = LlmAgent(
            name="triage",
            model=m,
            description="Routes customer questions.",
            instruction=triage_instruction,
            sub_agents=[orders_agent(), docs_agent(), weather_agent()],
        )
        q = {
            "ma_reviewer_rejects": "What is your refund policy?",
            "ma_misrouted": "How do I reset my password?",
            "ma_handoff_pingpong": "Where is my order 1234?",
        }[SCENARIO]
        if SCENARIO == "ma_handoff_pingpong":
            return triage, q, cfg
        return SequentialAgent(name="support_team", sub_agents=[triage, reviewer()]), q, cfg
    q = {
        "ok": "What is your refund policy?",
        "empty_retrieval": "What is your refund policy?",
        "model_500_first_call": "What is your refund policy?",
        "model_429_after_tool": "What is your refund policy?",
        "turn_limit_loop": "What is your refund policy?",
    }.get(SCENARIO, "Where is my order 1234?")
    return support_agent(), q, cfg


async def run():
    root, question, cfg = build(ARGS.model_url)
    runner = InMemoryRunner(agent=root, app_name="faultline_matrix")
    session = await runner.session_service.create_session(app_name="faultline_matrix", user_id="user")
    message = types.Content(role="user", parts=[types.Part(text=question)])
    final = None
    async for event in runner.run_async(user_id="user", session_id=session.id, new_message=message, run_config=cfg):
        if event.content and event.content.parts:
            for part in event.content.parts:
                if part.text:
                    final = f"{event.author}: {part.text}"
    return final


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
