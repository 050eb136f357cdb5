"""Expected step of every span of the OpenAI Agents SDK + OpenInference goldens.

Written from the agent's script (support_agents.py) and the README's taxonomy:

- the trace's root span (named after `trace(...)`: "Agent workflow" or "support
  workflow"; OpenInference gives it openinference.span.kind AGENT) is the workflow
  wrapper: chain. So are the SDK's per-Runner.run task spans ("Agent workflow", CHAIN)
  and its per-turn spans ("turn", CHAIN).
- an agent span (AGENT, agent.name) is agent; the `reviewer` agent and everything
  under it is critic.
- a handoff span ("handoff to X", TOOL) is agent; so is the function span of an agent
  called as a tool (orders_agent in ma_subagent_tool_error).
- a model call (LLM "response" span) whose output holds tool calls (including the
  transfer_to_X handoff calls) is planner; one that writes text is generator; a failed
  one is planner before any tool result of its agent's run, generator after one.
- search_docs execution is retriever, get_order_status execution is tool.
"""

import re

from capture import attrs

TOOL_CALL_KEY = re.compile(r"^llm\.output_messages\.\d+\.message\.tool_calls\.")
REVIEWER = "reviewer"
AGENT_TOOLS = {"orders_agent", "docs_agent", "weather_agent"}


def label(spans, scenario):
    by_id = {s["spanId"]: s for s in spans}
    children = {}
    for s in spans:
        children.setdefault(s.get("parentSpanId") or "", []).append(s)
    for kids in children.values():
        kids.sort(key=lambda s: int(s["startTimeUnixNano"]))

    def kind(s):
        return attrs(s).get("openinference.span.kind")

    def ancestors(s):
        while s.get("parentSpanId") in by_id:
            s = by_id[s["parentSpanId"]]
            yield s

    def agent_of(s):
        for a in ancestors(s):
            if kind(a) == "AGENT" and "agent.name" in attrs(a):
                return a
        return None

    def is_tool_exec(s):
        a = attrs(s)
        return kind(s) == "TOOL" and a.get("tool.name") in ("search_docs", "get_order_status")

    def tool_results_before(llm):
        """Tool executions of the same agent run that ended before this model call."""
        agent = agent_of(llm)
        start = int(llm["startTimeUnixNano"])
        for s in spans:
            if is_tool_exec(s) and agent_of(s) is agent and int(s["endTimeUnixNano"]) <= start:
                return True
        return False

    labels = {}
    for s in spans:
        a = attrs(s)
        k = kind(s)
        sid = s["spanId"]
        in_reviewer = any(
            kind(x) == "AGENT" and attrs(x).get("agent.name") == REVIEWER for x in [s, *ancestors(s)]
        )
        if not s.get("parentSpanId"):
            labels[sid] = "chain"  # the trace() wrapper
        elif in_reviewer:
            labels[sid] = "critic"
        elif k == "AGENT":
            labels[sid] = "agent"
        elif k == "CHAIN":
            labels[sid] = "chain"  # the SDK's task ("Agent workflow") and "turn" spans
        elif k == "LLM":
            if any(TOOL_CALL_KEY.match(key) for key in a):
                labels[sid] = "planner"
            elif s.get("status", {}).get("code") == 2 and "llm.output_messages.0.message.role" not in a:
                labels[sid] = "generator" if tool_results_before(s) else "planner"
            else:
                labels[sid] = "generator"
        elif k == "TOOL":
            name = a.get("tool.name")
            if name is None and s["name"].startswith("handoff to "):
                labels[sid] = "agent"
            elif name == "search_docs":
                labels[sid] = "retriever"
            elif name == "get_order_status":
                labels[sid] = "tool"
            elif name in AGENT_TOOLS:
                labels[sid] = "agent"  # Agent.as_tool
            else:
                raise ValueError(f"{scenario}: unexpected tool span {s['name']}")
        else:
            raise ValueError(f"{scenario}: unexpected span {s['name']} kind {k}")
    return labels
