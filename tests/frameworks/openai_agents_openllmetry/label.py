"""Expected step of every span of the OpenAI Agents SDK + OpenLLMetry goldens.

Written from the agent's script (../openai_agents_openinference/support_agents.py) and
the README's taxonomy:

- the trace's root span "Agent Workflow" (traceloop.span.kind workflow) is chain.
- an agent span ("X.agent", traceloop.span.kind agent) is agent; the `reviewer` agent
  and its model calls are critic.
- a handoff span ("X → unknown.handoff", traceloop.span.kind handoff) is agent; so is the
  tool span of an agent called as a tool ("orders_agent.tool" in ma_subagent_tool_error).
- a model call ("openai.response") whose output holds tool calls (including the
  transfer_to_X handoff calls) is planner; one that writes text is generator; a failed
  one is planner before any tool result of its agent's run, generator after one.
- search_docs execution is retriever, get_order_status execution is tool.
"""

import json

from capture import attrs

REVIEWER = "reviewer"
AGENT_TOOLS = {"orders_agent", "docs_agent", "weather_agent"}


def label(spans, scenario):
    by_id = {s["spanId"]: s for s in spans}

    def kind(s):
        return attrs(s).get("traceloop.span.kind")

    def ancestors(s):
        while s.get("parentSpanId") in by_id:
            s = by_id[s["parentSpanId"]]
            yield s

    def agent_of(s):
        for a in ancestors(s):
            if kind(a) == "agent":
                return a
        return None

    def is_tool_exec(s):
        return kind(s) == "tool" and attrs(s).get("gen_ai.tool.name") in ("search_docs", "get_order_status")

    def tool_results_before(llm):
        agent = agent_of(llm)
        start = int(llm["startTimeUnixNano"])
        return any(
            is_tool_exec(s) and agent_of(s) is agent and int(s["endTimeUnixNano"]) <= start for s in spans
        )

    def has_tool_calls(a):
        out = a.get("gen_ai.output.messages")
        if not isinstance(out, str):
            return False
        return any(p.get("type") == "tool_call" for m in json.loads(out) for p in m.get("parts", []))

    labels = {}
    for s in spans:
        a = attrs(s)
        k = kind(s)
        sid = s["spanId"]
        in_reviewer = any(
            kind(x) == "agent" and attrs(x).get("gen_ai.agent.name") == REVIEWER for x in [s, *ancestors(s)]
        )
        if k == "workflow":
            labels[sid] = "chain"
        elif in_reviewer:
            labels[sid] = "critic"
        elif k in ("agent", "handoff"):
            labels[sid] = "agent"
        elif k == "tool":
            name = a.get("gen_ai.tool.name")
            if name == "search_docs":
                labels[sid] = "retriever"
            elif name == "get_order_status":
                labels[sid] = "tool"
            elif name in AGENT_TOOLS:
                labels[sid] = "agent"  # Agent.as_tool
            else:
                raise ValueError(f"{scenario}: unexpected tool span {s['name']}")
        elif s["name"] == "openai.response":
            if has_tool_calls(a):
                labels[sid] = "planner"
            elif s.get("status", {}).get("code") == 2 and "gen_ai.output.messages" not in a:
                labels[sid] = "generator" if tool_results_before(s) else "planner"
            else:
                labels[sid] = "generator"
        else:
            raise ValueError(f"{scenario}: unexpected span {s['name']}")
    return labels
