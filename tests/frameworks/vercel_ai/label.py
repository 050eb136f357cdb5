"""Expected step of every span of a vercel_ai trace, from agent.mjs and scenarios.json.

The agent is an AI SDK `ToolLoopAgent` (which runs `generateText`) with telemetry on,
functionId "support_agent"; in critic_rejects a second ToolLoopAgent (functionId
"reviewer") reviews the answer, both under our own "support workflow" span.

- "support workflow" (our wrapper)                     -> chain
- `ai.generateText` of support_agent (the agent's run)  -> agent
- `ai.generateText` of reviewer and everything under it -> critic
- `ai.generateText.doGenerate` (one model call per step): the i-th one of the support
  agent received the i-th response of the scenario's model script (the fake model's
  queue; the last response repeats). A response with tool calls -> planner; a text
  response -> generator; an HTTP error -> planner when no tool call came before it in the
  run (no tool result yet), else generator. The labels come from the script, not from
  the span's attributes.
- `ai.toolCall`: search_docs -> retriever, get_order_status -> tool.
- Any other span (none expected: the SDK emits no HTTP spans, and we register no HTTP
  instrumentation) takes the step of its parent.

The AI SDK's `ai.generateText` is the outer span of the agent's run; its
`ai.generateText.doGenerate` children are the provider calls, and are themselves the
step spans (there is no lower layer beneath them in this trace).
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
    """Steps of the first n model calls answered by this queue of responses."""
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
    labels = {}

    def function_id(span):
        """functionId of the nearest ai.* ancestor-or-self span."""
        while span is not None:
            fid = attrs(span).get("ai.telemetry.functionId")
            if fid:
                return fid
            span = by_id.get(span.get("parentSpanId"))
        return None

    ordered = sorted(spans, key=lambda s: int(s["startTimeUnixNano"]))
    worker_calls = [s for s in ordered if s["name"] == "ai.generateText.doGenerate" and function_id(s) == "support_agent"]
    for span, step in zip(worker_calls, _model_steps(worker_queue, len(worker_calls))):
        labels[span["spanId"]] = step

    for span in ordered:
        sid, name = span["spanId"], span["name"]
        if sid in labels:
            continue
        fid = function_id(span)
        if name == "support workflow":
            labels[sid] = "chain"
        elif fid == "reviewer":
            labels[sid] = "critic"
        elif name == "ai.generateText":
            labels[sid] = "agent"
        elif name == "ai.toolCall":
            labels[sid] = "retriever" if attrs(span).get("ai.toolCall.name") == "search_docs" else "tool"

    def inherit(span):
        sid = span["spanId"]
        if sid not in labels:
            parent = by_id.get(span.get("parentSpanId"))
            labels[sid] = inherit(parent) if parent else "chain"
        return labels[sid]

    for span in spans:
        inherit(span)
    return labels
