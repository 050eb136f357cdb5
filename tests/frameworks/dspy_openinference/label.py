"""Expected step of every span of a DSPy ReAct + OpenInference trace (see ../README.md).

Written from the agent script (agent.py, scenarios.json), not from faultline's output:

- `ReAct.forward` (openinference.span.kind CHAIN): the agent's run -> agent.
- `SupportWithReview.forward` (critic_rejects' program module) -> chain.
- The reviewer: the `Predict.forward` whose child is `Predict(ReviewAnswer).forward`, and
  everything under it (adapter, model call) -> critic.
- `Predict.forward`, `Predict(StringSignature).forward`, `ChainOfThought.forward` (module
  wrappers) and `ChatAdapter.__call__` (prompt formatting and output parsing) -> chain.
- `LM.__call__` (LLM, the model call):
  - the ReAct predictor's calls (output fields next_thought / next_tool_name /
    next_tool_args: every one picks a tool, `finish` included) -> planner;
  - the extractor's call (ChainOfThought writing reasoning / answer) -> generator;
  - a failed call: planner before any tool result of the run, generator after one.
- Tool spans (TOOL, named `<tool>.__call__`): search_docs -> retriever,
  get_order_status -> tool, `finish` (ReAct's built-in stop marker, returns "Completed.")
  -> chain.
"""

from capture import attrs

TOOL_STEPS = {"search_docs.__call__": "retriever", "get_order_status.__call__": "tool", "finish.__call__": "chain"}


def label(spans, scenario):
    by_id = {s["spanId"]: s for s in spans}
    a = {s["spanId"]: attrs(s) for s in spans}
    children = {}
    for s in spans:
        children.setdefault(s.get("parentSpanId"), []).append(s)

    def ancestors(s):
        out = []
        p = s.get("parentSpanId")
        while p and p in by_id:
            out.append(by_id[p])
            p = by_id[p].get("parentSpanId")
        return out

    def is_reviewer(s):
        return s["name"].startswith("Predict(ReviewAnswer)") or (
            s["name"] == "Predict.forward"
            and any(c["name"].startswith("Predict(ReviewAnswer)") for c in children.get(s["spanId"], []))
        )

    def run_of(s):
        for x in [s] + ancestors(s):
            if x["name"] == "ReAct.forward":
                return x["spanId"]
        return None

    tool_ends = {}
    for s in spans:
        if s["name"] in ("search_docs.__call__", "get_order_status.__call__"):
            tool_ends.setdefault(run_of(s), []).append(int(s["endTimeUnixNano"]))

    labels = {}
    for s in spans:
        sid, name = s["spanId"], s["name"]
        if any(is_reviewer(x) for x in [s] + ancestors(s)):
            labels[sid] = "critic"
        elif name == "ReAct.forward":
            labels[sid] = "agent"
        elif name in TOOL_STEPS:
            labels[sid] = TOOL_STEPS[name]
        elif a[sid].get("openinference.span.kind") == "LLM":
            if s.get("status", {}).get("code") == 2:
                before = [e for e in tool_ends.get(run_of(s), []) if e <= int(s["startTimeUnixNano"])]
                labels[sid] = "generator" if before else "planner"
            elif "[[ ## next_tool_name ## ]]" in str(a[sid].get("output.value", "")):
                labels[sid] = "planner"
            else:
                labels[sid] = "generator"
        else:
            labels[sid] = "chain"
    return labels
