"""Expected step of every span of a smolagents + OpenInference trace (see ../README.md).

Written from the agent script (agent.py, scenarios.json), not from faultline's output:

- `<name>.run` (openinference.span.kind AGENT): an agent's run -> agent; the `reviewer`
  managed agent's run -> critic, and so is everything under it (its steps, model calls,
  final_answer tool).
- `Step N` (CHAIN): one ReAct step of smolagents' loop -> chain.
- `OpenAIModel.generate` (LLM):
  - the judge call of critic_rejects' final_answer_checks (system "You review answers")
    -> critic;
  - a response with tool calls other than final_answer (a tool or a managed agent)
    -> planner;
  - a response calling only final_answer (the answer) or a text response (the answer
    forced by smolagents after max_steps) -> generator;
  - a failed call (no response): planner before any tool result of its agent run,
    generator after one.
- Tool spans (TOOL, all @tool functions are named `SimpleTool`): search_docs ->
  retriever, get_order_status -> tool, final_answer (`FinalAnswerTool`, smolagents'
  output plumbing that echoes the answer) -> chain.
"""

from capture import attrs

REVIEWER_RUN = "reviewer.run"


def _start(s):
    return int(s.get("startTimeUnixNano", 0))


def _end(s):
    return int(s.get("endTimeUnixNano", 0))


def label(spans, scenario):
    by_id = {s["spanId"]: s for s in spans}
    a = {s["spanId"]: attrs(s) for s in spans}

    def ancestors(s):
        out = []
        p = s.get("parentSpanId")
        while p and p in by_id:
            out.append(by_id[p])
            p = by_id[p].get("parentSpanId")
        return out

    def run_key(s):
        """The agent run a span belongs to: its nearest AGENT span, or, when the run span
        was never exported (the instrumentation drops a run span whose run raised), the
        missing parent both orphaned steps point to."""
        cur = s
        while True:
            if a[cur["spanId"]].get("openinference.span.kind") == "AGENT":
                return cur["spanId"]
            p = cur.get("parentSpanId")
            if not p:
                return cur["spanId"]
            if p not in by_id:
                return p
            cur = by_id[p]

    def in_reviewer(s):
        return s["name"] == REVIEWER_RUN or any(x["name"] == REVIEWER_RUN for x in ancestors(s))

    def called_tools(sid):
        return [v for k, v in a[sid].items() if k.endswith("tool_call.function.name")]

    def system_text(sid):
        out = []
        for k, v in a[sid].items():
            if k.startswith("llm.input_messages.") and k.endswith(".message.role") and v == "system":
                prefix = k[: -len("message.role")]
                out += [str(v2) for k2, v2 in a[sid].items() if k2.startswith(prefix) and (k2.endswith("text") or k2.endswith("message.content"))]
        return "\n".join(out)

    # Tool results per agent run (for failed model calls).
    tool_ends = {}
    for s in spans:
        if a[s["spanId"]].get("openinference.span.kind") == "TOOL" and a[s["spanId"]].get("tool.name") != "final_answer":
            tool_ends.setdefault(run_key(s), []).append(_end(s))

    labels = {}
    for s in spans:
        sid = s["spanId"]
        kind = a[sid].get("openinference.span.kind")
        if in_reviewer(s):
            labels[sid] = "critic"
        elif kind == "AGENT":
            labels[sid] = "agent"
        elif kind == "CHAIN":
            labels[sid] = "chain"
        elif kind == "TOOL":
            name = a[sid].get("tool.name")
            labels[sid] = {"search_docs": "retriever", "get_order_status": "tool"}.get(name, "chain")
        elif kind == "LLM":
            calls = called_tools(sid)
            failed = s.get("status", {}).get("code") == 2
            if "You review answers" in system_text(sid):
                labels[sid] = "critic"
            elif failed:
                before = [e for e in tool_ends.get(run_key(s), []) if e <= _start(s)]
                labels[sid] = "generator" if before else "planner"
            elif any(c != "final_answer" for c in calls):
                labels[sid] = "planner"
            else:
                labels[sid] = "generator"
        else:
            labels[sid] = "chain"
    return labels
