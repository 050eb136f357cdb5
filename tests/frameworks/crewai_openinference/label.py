"""Expected step of every span of a crewai_openinference golden.

What the agent script does (agent.py, scenarios.json), span by span:
- `Crew_<uuid>.kickoff` (openinference.span.kind CHAIN): the crew run -> chain.
- `<role>._execute_core` (kind AGENT): a task executed by its agent; the only span of the
  agent's own run -> agent, or critic for the Reviewer's task.
- `ChatCompletion` (kind LLM, OpenAI instrumentor): a model call. Its response holds tool
  calls (search_docs, get_order_status, delegate_work_to_coworker) -> planner; it writes
  text -> generator (also CrewAI's forced final answer after max_iter); it failed ->
  planner before any tool result of its agent's turn, generator after one. Every call of
  the Reviewer -> critic.
- `search_docs.run` (kind TOOL) -> retriever; `get_order_status.run` -> tool.
- `Delegate work to coworker.run` / `Ask question to coworker.run` (kind TOOL): a
  specialist called as a tool (its model calls and tools are children) -> agent, or
  critic when the coworker is the Reviewer.
"""

import json

from capture import attrs

CRITIC_ROLES = {"reviewer"}
DELEGATION_TOOLS = {"delegate work to coworker", "ask question to coworker"}


def _is_critic(a):
    kind = a.get("openinference.span.kind")
    if kind == "AGENT":
        return str(a.get("graph.node.id", "")).lower() in CRITIC_ROLES
    if kind == "TOOL" and str(a.get("tool.name", "")).lower() in DELEGATION_TOOLS:
        try:
            coworker = json.loads(a.get("input.value", "{}")).get("coworker", "")
        except ValueError:
            coworker = ""
        return str(coworker).strip().lower() in CRITIC_ROLES
    return False


def _has_tool_calls(a):
    return any(k.startswith("llm.output_messages.") and ".tool_calls." in k for k in a)


def _saw_tool_result(a):
    return any(k.startswith("llm.input_messages.") and k.endswith(".message.role") and v == "tool" for k, v in a.items())


def _failed(span):
    return span.get("status", {}).get("code") == 2


def label(spans, scenario):
    by_id = {s["spanId"]: s for s in spans}
    A = {s["spanId"]: attrs(s) for s in spans}

    def ancestors(s):
        p = s.get("parentSpanId")
        while p and p in by_id:
            yield by_id[p]
            p = by_id[p].get("parentSpanId")

    def nearest_agent(s):
        """The closest agent-ish span above: a task (AGENT) or a delegation tool."""
        for up in ancestors(s):
            a = A[up["spanId"]]
            if a.get("openinference.span.kind") == "AGENT" or str(a.get("tool.name", "")).lower() in DELEGATION_TOOLS:
                return up
        return None

    out = {}
    for s in spans:
        a = A[s["spanId"]]
        kind = a.get("openinference.span.kind")
        owner = nearest_agent(s)
        in_critic = owner is not None and _is_critic(A[owner["spanId"]])
        if kind == "CHAIN":
            step = "chain"
        elif kind == "AGENT":
            step = "critic" if _is_critic(a) else "agent"
        elif kind == "TOOL":
            name = str(a.get("tool.name", "")).lower()
            if name in DELEGATION_TOOLS:
                step = "critic" if _is_critic(a) else "agent"
            elif in_critic:
                step = "critic"
            elif name == "search_docs":
                step = "retriever"
            else:
                step = "tool"
        elif kind == "LLM":
            if in_critic:
                step = "critic"
            elif _has_tool_calls(a):
                step = "planner"
            elif _failed(s):
                step = "generator" if _saw_tool_result(a) else "planner"
            else:
                step = "generator"
        else:
            raise ValueError(f"{scenario}: unexpected span {s['name']} (kind {kind})")
        out[s["spanId"]] = step
    return out
