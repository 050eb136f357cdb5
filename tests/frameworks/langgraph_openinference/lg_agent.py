"""The LangGraph support agent shared by the langgraph_* framework directories.

Identical copies live in langgraph_traceai/, langgraph_openllmetry/ and
langgraph_openinference/; each directory's agent.py only differs in the instrumentor it
installs. The agent is LangChain's `create_agent` (the LangGraph-based agent factory that
replaces the deprecated `langgraph.prebuilt.create_react_agent`) over `ChatOpenAI`, with
two `@tool` tools and the documented `@wrap_tool_call` middleware that turns a tool's
exception into an error ToolMessage for the model. `critic_rejects` wraps the agent in a
small StateGraph: an `agent` node (the agent graph as a subgraph) and a `reviewer` node
that asks the model to review the answer. `slow_tool_timeout` sets the compiled graph's
own deadline (`step_timeout`, 2 s) while get_order_status sleeps 3 s: LangGraph raises
TimeoutError("Timed out") out of the run once the tool's step is over its deadline.
"""

import argparse
import json
import os
import sys
import time

QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "ANONYMIZED_TELEMETRY": "false",
    "TRACELOOP_TELEMETRY": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING": "false",
    "LANGSMITH_API_KEY": "",
    "LANGCHAIN_API_KEY": "",
    "OPENAI_API_KEY": "x",
    "FI_BASE_URL": "http://127.0.0.1:9",
    "FI_GRPC_URL": "http://127.0.0.1:9",
    "TIKTOKEN_CACHE_DIR": "/nonexistent-faultline-tiktoken",
}


def quiet_env():
    """Telemetry off, no hosted tracing; call before importing any framework."""
    os.environ.update(QUIET_ENV)


SYSTEM_PROMPT = "You are the support agent of the Acme store. Use the tools to answer the customer's question."
REVIEWER_PROMPT = (
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
AGENT_NAME = "support_agent"
TURN_LIMIT = 10  # LangGraph recursion_limit (supersteps) in turn_limit_loop
SLOW_TOOL_S = 3.0  # get_order_status's latency in slow_tool_timeout
RUN_DEADLINE_S = 2.0  # the graph's step_timeout in slow_tool_timeout


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--otlp-endpoint", required=True)
    return p.parse_args()


class TraceIdList(list):
    processor = None


def tracer_provider(service_name, endpoint):
    """An SDK TracerProvider exporting OTLP/HTTP protobuf, and the set of trace ids it saw."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    trace_ids = TraceIdList()

    class TraceIds(SpanProcessor):
        """Trace ids of the spans started while `on` (around the run's invoke): not of
        spans from building the agent (OpenLLMetry's own one-span `create_agent` trace)."""

        on = False

        def on_start(self, span, parent_context=None):
            tid = format(span.context.trace_id, "032x")
            if TraceIds.on and tid not in trace_ids:
                trace_ids.append(tid)

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(TraceIds())
    trace_ids.processor = TraceIds
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    return provider, trace_ids


def build(scenario, model_url):
    from typing import Annotated, TypedDict

    from langchain.agents import create_agent
    from langchain.agents.middleware import wrap_tool_call
    from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    order_calls = {"n": 0}

    @tool
    def search_docs(query: str) -> list[str]:
        """Search the product documentation."""
        if scenario == "empty_retrieval":
            return []
        return [
            "Refund policy: refunds are accepted within 30 days of delivery.",
            "Refunds are paid back to the original payment method.",
        ]

    @tool
    def get_order_status(order_id: str) -> str:
        """Get the status of an order by its id."""
        order_calls["n"] += 1
        if scenario == "slow_tool_timeout":
            time.sleep(SLOW_TOOL_S)
        if scenario == "tool_error_gives_up" or (scenario == "tool_error_retry_ok" and order_calls["n"] == 1):
            raise RuntimeError("order service unavailable (503)")
        return f"Order {order_id}: shipped on 2024-05-02, arriving 2024-05-06."

    @wrap_tool_call
    def handle_tool_errors(request, handler):
        """Hand a tool's failure back to the model (LangChain docs, "Tool error handling")."""
        try:
            return handler(request)
        except Exception as e:
            return ToolMessage(
                content=f"Tool error: Please check your input and try again. ({e})",
                tool_call_id=request.tool_call["id"],
                status="error",
            )

    model = ChatOpenAI(model="gpt-4o-mini", base_url=model_url, api_key="x", max_retries=0, timeout=10)
    agent = create_agent(
        model,
        tools=[search_docs, get_order_status],
        system_prompt=SYSTEM_PROMPT,
        middleware=[handle_tool_errors],
        name=AGENT_NAME,
    )
    if scenario != "critic_rejects":
        return agent

    class ReviewState(TypedDict):
        messages: Annotated[list, add_messages]

    def reviewer(state: ReviewState):
        question = state["messages"][0].content
        answer = state["messages"][-1].content
        verdict = model.invoke(
            [SystemMessage(REVIEWER_PROMPT), HumanMessage(f"Question: {question}\nAnswer: {answer}")]
        )
        return {"messages": [verdict]}

    graph = StateGraph(ReviewState)
    graph.add_node("agent", agent)
    graph.add_node("reviewer", reviewer)
    graph.add_edge(START, "agent")
    graph.add_edge("agent", "reviewer")
    graph.add_edge("reviewer", END)
    return graph.compile(name="review_workflow")


def main(service_name, instrument):
    """Runs one scenario; `instrument(provider)` installs the directory's instrumentor."""
    args = parse_args()
    provider, trace_ids = tracer_provider(service_name, args.otlp_endpoint)
    instrument(provider)

    app = build(args.scenario, args.model_url)
    config = {"recursion_limit": TURN_LIMIT} if args.scenario == "turn_limit_loop" else {}
    trace_ids.processor.on = True
    state = {"messages": [{"role": "user", "content": QUESTIONS[args.scenario]}]}
    try:
        if args.scenario == "slow_tool_timeout":
            # LangGraph's own deadline: a superstep still running after step_timeout
            # seconds raises TimeoutError out of the graph run.
            app.step_timeout = RUN_DEADLINE_S
        result = app.invoke(state, config)
        print("answer:", result["messages"][-1].content)
    except Exception as e:  # the run's own failure (model error, recursion limit, deadline)
        print(f"run failed: {type(e).__name__}: {e}")
    trace_ids.processor.on = False
    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_ids": list(trace_ids)}))
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# Expected steps (used by each directory's label.py; no framework imports here)


def label_spans(spans, scenario, classify, scenarios_path):
    """The expected step of every span of a captured run of `scenario`.

    `classify(span)` (one per instrumentation) says what LangChain/LangGraph run a span
    records: ("llm", None) a chat model call, ("tool", tool_name) a tool execution,
    ("graph", graph_name) a graph run (a compiled graph's invoke/stream, or a subgraph's
    run), ("node", node_name) a graph node's run, or ("other", None) anything else
    (instrumentation wrappers, middleware hooks, agent construction).

    Rules, from the agent script in lg_agent.py and ../README.md's taxonomy:
    - the `support_agent` graph run (the create_agent graph, also as a subgraph) and the
      `agent` node of the critic workflow that runs it: agent;
    - the `review_workflow` graph run: chain (a workflow wrapper);
    - the `reviewer` node and the model call inside it: critic;
    - every other node (`model`, `tools`, the middleware hook nodes
      `handle_tool_errors.before_model` etc.) is graph plumbing: chain. The `model` node
      only wraps the model call and the `tools` node (ToolNode) only wraps the tool
      executions; the step belongs to the model call / tool execution span itself, the
      container stays chain;
    - a model call of the support agent takes its step from the scripted response it got
      (the n-th call of the run gets the n-th response of the script's catch-all queue,
      the last one repeating): tool calls -> planner; text -> generator; an HTTP error ->
      planner when no tool result precedes it in its turn (the run's first call), else
      generator;
    - search_docs execution: retriever; get_order_status execution: tool (also when it
      raised or its arguments failed validation);
    - anything else: chain.
    """
    with open(scenarios_path) as f:
        spec = {s["name"]: s for s in json.load(f)["scenarios"]}[scenario]
    script = [q for q in spec["model"]["queues"] if q.get("match") is None][-1]["responses"]

    by_id = {s["spanId"]: s for s in spans}
    kinds = {s["spanId"]: classify(s) for s in spans}

    def under_node(span, name):
        pid = span.get("parentSpanId")
        while pid and pid in by_id:
            if kinds[pid] == ("node", name):
                return True
            pid = by_id[pid].get("parentSpanId")
        return False

    def model_step(i):
        r = script[min(i, len(script) - 1)]
        if r.get("tool_calls"):
            return "planner"
        if "error" in r:
            prev = script[min(i - 1, len(script) - 1)] if i > 0 else None
            return "generator" if prev and prev.get("tool_calls") else "planner"
        return "generator"

    labels = {}
    calls = []
    for s in spans:
        role, name = kinds[s["spanId"]]
        if role == "llm":
            if under_node(s, "reviewer"):
                labels[s["spanId"]] = "critic"
            else:
                calls.append(s)
        elif role == "tool":
            labels[s["spanId"]] = "retriever" if name == "search_docs" else "tool"
        elif role == "graph":
            labels[s["spanId"]] = "agent" if name == AGENT_NAME else "chain"
        elif role == "node":
            labels[s["spanId"]] = {"agent": "agent", "reviewer": "critic"}.get(name, "chain")
        else:
            labels[s["spanId"]] = "chain"
    calls.sort(key=lambda s: int(s["startTimeUnixNano"]))
    for i, s in enumerate(calls):
        labels[s["spanId"]] = model_step(i)
    return labels
