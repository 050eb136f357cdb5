"""Expected step of every span of a crewai_openllmetry golden.

What the agent script does (agent.py, scenarios.json), span by span:
- `crewai.workflow`: the crew run -> chain.
- `<task description>.task` (traceloop.span.kind task): the task wrapper -> chain.
- `<role>.agent` (traceloop.span.kind agent, gen_ai.agent.name): an agent's run of a
  task, also a specialist run by the manager's delegate_work_to_coworker tool (nested
  straight under the manager's agent span) -> agent, or critic for the Reviewer.
- `openai.chat` (OpenAI instrumentor): a model call. Its response holds tool calls
  (search_docs, get_order_status, delegate_work_to_coworker) -> planner; it writes text
  -> generator (also CrewAI's forced final answer after max_iter); it failed -> planner
  before any tool result of its agent's turn, generator after one. Every call of the
  Reviewer -> critic.
OpenLLMetry's CrewAI instrumentation makes no span for tool executions: search_docs and
get_order_status (and their errors) show only in the next model call's input messages.
"""

import json

from capture import attrs

CRITIC_ROLES = {"reviewer"}


def _messages(a, key):
    try:
        value = json.loads(a.get(key) or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _has_tool_calls(a):
    return any(
        isinstance(p, dict) and p.get("type") == "tool_call"
        for m in _messages(a, "gen_ai.output.messages")
        for p in (m.get("parts") or [])
    )


def _saw_tool_result(a):
    return any(m.get("role") == "tool" for m in _messages(a, "gen_ai.input.messages") if isinstance(m, dict))


def _failed(span):
    return span.get("status", {}).get("code") == 2


def label(spans, scenario):
    by_id = {s["spanId"]: s for s in spans}
    A = {s["spanId"]: attrs(s) for s in spans}

    def nearest_agent(s):
        p = s.get("parentSpanId")
        while p and p in by_id:
            if A[p].get("traceloop.span.kind") == "agent":
                return A[p]
            p = by_id[p].get("parentSpanId")
        return None

    out = {}
    for s in spans:
        a = A[s["spanId"]]
        kind = a.get("traceloop.span.kind")
        if s["name"] == "crewai.workflow" or kind in ("workflow", "task"):
            step = "chain"
        elif kind == "agent":
            step = "critic" if str(a.get("gen_ai.agent.name", "")).lower() in CRITIC_ROLES else "agent"
        elif a.get("gen_ai.operation.name") == "chat":
            owner = nearest_agent(s)
            if owner is not None and str(owner.get("gen_ai.agent.name", "")).lower() in CRITIC_ROLES:
                step = "critic"
            elif _has_tool_calls(a):
                step = "planner"
            elif _failed(s):
                step = "generator" if _saw_tool_result(a) else "planner"
            else:
                step = "generator"
        else:
            raise ValueError(f"{scenario}: unexpected span {s['name']}")
        out[s["spanId"]] = step
    return out
