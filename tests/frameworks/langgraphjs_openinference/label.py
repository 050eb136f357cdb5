"""Expected step of every span of a langgraphjs_openinference trace, from agent.mjs and
scenarios.json.

OpenInference's LangChain.js instrumentation turns every LangChain run into a span named
after the run. A createReactAgent graph named "support_agent" gives:

    support_agent        CHAIN  the agent's graph run            -> agent
      __start__          CHAIN  graph entry node                 -> chain
      agent              CHAIN  the graph node calling the model -> chain (a graph task)
        RunnableSequence CHAIN  prompt | model                   -> chain
          prompt         CHAIN  builds the messages              -> chain (request builder)
          ChatOpenAI     LLM    the model call                   -> planner / generator
        RunnableLambda   CHAIN  the conditional edge (returns "tools" or "__end__"); it only
                                follows the model's tool calls, no decision of its own
                                                                 -> chain
      tools              CHAIN  the ToolNode                     -> chain (a graph task)
        search_docs      TOOL                                    -> retriever
        get_order_status TOOL                                    -> tool

critic_rejects wraps two agents in our own StateGraph "support_workflow" (nodes "support"
and "review", both chain): the "reviewer" agent graph and everything under it -> critic.

The i-th ChatOpenAI span of support_agent (by start time) received the i-th response of
the scenario's model script (the fake model's queue; the last response repeats): tool
calls -> planner; text -> generator; an HTTP error -> planner before any tool result of
the run, else generator. The labels come from the script, not from the spans.
Anything else takes the step of its parent.
"""

import json
import os

from capture import attrs

HERE = os.path.dirname(os.path.abspath(__file__))


def _script(scenario):
    with open(os.path.join(HERE, "scenarios.json")) as f:
        spec = json.load(f)
    for s in spec["scenarios"]:
        if s["name"] == scenario:
            return s["model"]["queues"]
    raise KeyError(scenario)


def _model_steps(responses, n):
    out, tool_called = [], False
    for i in range(n):
        r = responses[min(i, len(responses) - 1)]
        if "error" in r:
            out.append("generator" if tool_called else "planner")
        elif r.get("tool_calls"):
            out.append("planner")
            tool_called = True
        else:
            out.append("generator")
    return out


def label(spans, scenario):
    queues = _script(scenario)
    worker_queue = next(q for q in queues if q["match"] is None)["responses"]
    by_id = {s["spanId"]: s for s in spans}
    kind = {s["spanId"]: attrs(s).get("openinference.span.kind") for s in spans}
    labels = {}

    def agent_of(span):
        """Name of the nearest enclosing agent graph run (support_agent / reviewer)."""
        while span is not None:
            if span["name"] in ("support_agent", "reviewer"):
                return span["name"]
            span = by_id.get(span.get("parentSpanId"))
        return None

    ordered = sorted(spans, key=lambda s: int(s["startTimeUnixNano"]))
    calls = [s for s in ordered if kind[s["spanId"]] == "LLM" and agent_of(s) == "support_agent"]
    for span, step in zip(calls, _model_steps(worker_queue, len(calls))):
        labels[span["spanId"]] = step

    for span in ordered:
        sid, k = span["spanId"], kind[span["spanId"]]
        if sid in labels:
            continue
        owner = agent_of(span)
        if owner == "reviewer":
            labels[sid] = "critic"
        elif span["name"] == "support_agent":
            labels[sid] = "agent"
        elif k == "TOOL":
            labels[sid] = "retriever" if span["name"] == "search_docs" else "tool"
        elif k == "CHAIN":
            labels[sid] = "chain"

    def inherit(span):
        sid = span["spanId"]
        if sid not in labels:
            parent = by_id.get(span.get("parentSpanId"))
            labels[sid] = inherit(parent) if parent else "chain"
        return labels[sid]

    for span in spans:
        inherit(span)
    return labels
