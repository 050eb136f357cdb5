"""Expected step of every span of the AutoGen AgentChat goldens (autogen-core's own spans).

Written from agent.py and scenarios.json. AutoGen traces agents and tools but not model
calls, so no span is a planner or generator here:
- `runtime` (the application span around the run, as AutoGen's tracing guide shows) and
  `create_agent X` (agent construction): chain.
- `invoke_agent X`: agent; the reviewer's: critic.
- `execute_tool search_docs` → retriever, `execute_tool get_order_status` → tool,
  `execute_tool transfer_to_X` (a Swarm handoff) and `execute_tool <agent>` (an AgentTool
  call) → agent.
- the SingleThreadedAgentRuntime's messaging spans (`autogen send|publish|process|create|ack
  ...`): plumbing, chain, unless they sit under an agent or tool span, whose step they take.
"""

from capture import attrs

AGENT_TOOLS = {"orders_agent", "docs_agent", "weather_agent"}


def _own_step(span):
    a = attrs(span)
    op = a.get("gen_ai.operation.name")
    if op == "invoke_agent":
        return "critic" if a.get("gen_ai.agent.name") == "reviewer" else "agent"
    if op == "execute_tool":
        tool = a["gen_ai.tool.name"]
        if tool == "search_docs":
            return "retriever"
        if tool == "get_order_status":
            return "tool"
        if tool.startswith("transfer_to_") or tool in AGENT_TOOLS:
            return "agent"
        raise ValueError(f"unexpected tool {tool}")
    if op == "create_agent" or span["name"] == "runtime":
        return "chain"
    if span["name"].startswith("autogen "):
        return None  # runtime plumbing: the step of the step span above it, else chain
    raise ValueError(f"unexpected span {span['name']}")


def label(spans, scenario):
    by_id = {s["spanId"]: s for s in spans}
    out = {}

    def step(s):
        sid = s["spanId"]
        if sid not in out:
            own = _own_step(s)
            if own is None:
                parent = by_id.get(s.get("parentSpanId") or "")
                own = "chain" if parent is None else step(parent)
                if own not in ("agent", "critic", "retriever", "tool"):
                    own = "chain"
            out[sid] = own
        return out[sid]

    for s in spans:
        step(s)
    return out
