"""Expected step of every span of a pydantic_ai capture.

From the agent script (agent.py) and ../README.md's taxonomy:
- `invoke_agent support_agent` (the support agent's run): agent;
- `invoke_agent reviewer` (the reviewer agent's run in critic_rejects) and its model call:
  critic;
- `review_workflow` (the application span around both runs): chain;
- a model call (`chat gpt-4o-mini`, gen_ai.operation.name chat) of the support agent takes
  its step from the scripted response it got (the n-th call of the run gets the n-th
  response of the script's catch-all queue, the last one repeating): tool calls ->
  planner; text -> generator; an HTTP error -> planner when no tool result precedes it in
  its turn (the run's first call), else generator;
- `execute_tool search_docs`: retriever; `execute_tool get_order_status`: tool, also when
  it raised ModelRetry or pydantic-ai rejected its arguments before running it (that
  span is the tool call's own span, its validation is part of it);
- anything else: chain.
"""

import json
import os

from capture import attrs

HERE = os.path.dirname(os.path.abspath(__file__))


def label(spans, scenario):
    with open(os.path.join(HERE, "scenarios.json")) as f:
        spec = {s["name"]: s for s in json.load(f)["scenarios"]}[scenario]
    script = [q for q in spec["model"]["queues"] if q.get("match") is None][-1]["responses"]

    def model_step(i):
        r = script[min(i, len(script) - 1)]
        if r.get("tool_calls"):
            return "planner"
        if "error" in r:
            prev = script[min(i - 1, len(script) - 1)] if i > 0 else None
            return "generator" if prev and prev.get("tool_calls") else "planner"
        return "generator"

    labels, calls = {}, []
    for s in spans:
        a = attrs(s)
        op = a.get("gen_ai.operation.name")
        if op == "invoke_agent":
            labels[s["spanId"]] = "critic" if a.get("gen_ai.agent.name") == "reviewer" else "agent"
        elif op == "chat":
            if a.get("gen_ai.agent.name") == "reviewer":
                labels[s["spanId"]] = "critic"
            else:
                calls.append(s)
        elif op == "execute_tool":
            labels[s["spanId"]] = "retriever" if a.get("gen_ai.tool.name") == "search_docs" else "tool"
        else:
            labels[s["spanId"]] = "chain"
    calls.sort(key=lambda s: int(s["startTimeUnixNano"]))
    for i, s in enumerate(calls):
        labels[s["spanId"]] = model_step(i)
    return labels
