"""Expected step of every span of a mastra trace, from agent.mjs and scenarios.json.

Mastra's AI tracing (exported through @mastra/otel-exporter) nests, per agent call:

    agent.<id>                 (agent_run)         the agent's run
      chat <model>             (model_generation)  the whole multi-step generation loop
        step: N                (model_step)        one model API call, and the tools of its turn
          chunk: 'tool-call'   (model_chunk)       the call as the stream emitted it
          tool.execute <name>  (tool_call)         the tool's execution
          chunk: 'tool-result' (model_chunk)       the tool's result (or its validation error)
          chunk: 'text' | 'error'

and critic_rejects runs `workflow.support_workflow` > `workflow step: 'answer'` >
agent.support_agent, then `workflow step: 'review'` > agent.reviewer.

- workflow spans                                         -> chain
- agent.support_agent                                    -> agent
- agent.reviewer and everything under it                 -> critic
- `chat <model>`: it is not one model call but the loop that makes all of them (it spans
  every step and tool of the run; its output is just the last text), so it is plumbing
                                                         -> chain
- `step: N` of support_agent: the i-th received the i-th response of the scenario's
  model script (the fake model's queue; the last one repeats). Tool calls -> planner;
  text -> generator; an HTTP error -> planner before any tool result, else generator.
  The labels come from the script, not from the spans.
- `tool.execute search_docs` -> retriever; `tool.execute get_order_status` -> tool.
- `chunk: 'tool-result'`: the record of a tool's result, so it takes the step of the
  tool that produced it (retriever/tool) when that tool ran in the same step; when the
  framework rejected the arguments (bad_tool_args_gives_up: no tool.execute, the chunk
  holds the validation error) it takes its step's label (planner).
- other chunks ('tool-call', 'text', 'error') and anything else: the step of the parent.

When a model call fails, Mastra never ends the agent_run span (it is not exported); the
`chat` span is then the root of the trace, its parent id pointing at nothing. When the
model calls a tool the agent does not have (unknown_tool), Mastra fails the run inside
step 0 and ends none of agent_run, chat and step 0: only the step's chunks are exported
(the 'tool-call' and the 'error' "Tool get_weather not found"), their parent missing.
They take the step of that unexported model step (counted with the exported steps, by
time, against the model script): planner.
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
    kind = {s["spanId"]: attrs(s).get("mastra.span.type") for s in spans}
    labels = {}

    def under_reviewer(span):
        while span is not None:
            if kind[span["spanId"]] == "agent_run" and attrs(span).get("agent.id") == "reviewer":
                return True
            span = by_id.get(span.get("parentSpanId"))
        return False

    ordered = sorted(spans, key=lambda s: int(s["startTimeUnixNano"]))
    # The model steps of the worker: the exported `step: N` spans, and the steps that were
    # never ended (unknown_tool: Mastra fails the run inside step 0 and exports only its
    # chunks), known by the missing parent their chunks point to.
    steps = {s["spanId"]: int(s["startTimeUnixNano"]) for s in ordered if kind[s["spanId"]] == "model_step" and not under_reviewer(s)}
    for s in ordered:
        pid = s.get("parentSpanId")
        if kind[s["spanId"]] == "model_chunk" and pid and pid not in by_id:
            steps.setdefault(pid, int(s["startTimeUnixNano"]))
    step_ids = sorted(steps, key=steps.get)
    for sid, step in zip(step_ids, _model_steps(worker_queue, len(step_ids))):
        labels[sid] = step

    for span in ordered:
        sid, k = span["spanId"], kind[span["spanId"]]
        if sid in labels:
            continue
        if k in ("workflow_run", "workflow_step"):
            labels[sid] = "chain"
        elif under_reviewer(span):
            labels[sid] = "critic"
        elif k == "agent_run":
            labels[sid] = "agent"
        elif k == "model_generation":
            labels[sid] = "chain"
        elif k == "tool_call":
            labels[sid] = "retriever" if attrs(span).get("gen_ai.tool.name") == "search_docs" else "tool"

    for span in ordered:
        sid = span["spanId"]
        if sid in labels or kind[sid] != "model_chunk" or span["name"] != "chunk: 'tool-result'":
            continue
        tool_name = json.loads(attrs(span).get("output", "{}")).get("toolName")
        ran = [
            s for s in spans
            if s.get("parentSpanId") == span.get("parentSpanId")
            and kind[s["spanId"]] == "tool_call"
            and attrs(s).get("gen_ai.tool.name") == tool_name
        ]
        if ran:
            labels[sid] = labels[ran[0]["spanId"]]

    def inherit(span):
        sid = span["spanId"]
        if sid not in labels:
            pid = span.get("parentSpanId")
            parent = by_id.get(pid)
            labels[sid] = inherit(parent) if parent else labels.get(pid, "chain")
        return labels[sid]

    for span in spans:
        inherit(span)
    return {s["spanId"]: labels[s["spanId"]] for s in spans}
