"""Expected step of every span of the Google ADK goldens (ADK's own telemetry, schema v2).

Written from agent.py and scenarios.json:
- `invoke_workflow X` is the runner's wrapper of one run (nested under an AgentTool call for
  an agent called as a tool): chain.
- `invoke_agent X` of an LlmAgent: agent; of a SequentialAgent (review_pipeline,
  support_team), a pipeline with no behaviour of its own: chain; of the reviewer: critic.
- `generate_content M` (a model call, attributed to its agent by gen_ai.agent.name): the
  n-th call of an agent took the n-th response of that agent's queue in the scenario's
  model script, so its step is the step of that response: tool calls (transfer_to_agent
  and agents-as-tools included) → planner, text → generator, an HTTP error → planner when
  it is the agent's first call (no tool result yet), generator after a tool result.
  The reviewer's calls are critic.
- `execute_tool search_docs` → retriever, `execute_tool get_order_status` → tool,
  `execute_tool transfer_to_agent` (a handoff) and `execute_tool <agent>` (an AgentTool
  call) → agent.
"""

import json
import os

from capture import attrs

HERE = os.path.dirname(os.path.abspath(__file__))

# The queue (by its match string) of each agent's model calls.
AGENT_QUEUE = {
    "support_agent": None,
    "triage": "You are the triage agent",
    "orders_agent": "You are the orders specialist",
    "docs_agent": "You are the documentation specialist",
    "weather_agent": "You are the weather specialist",
    "reviewer": "You review answers",
}
PIPELINES = {"review_pipeline", "support_team"}
AGENT_TOOLS = {"orders_agent", "docs_agent", "weather_agent"}


def _script(scenario):
    with open(os.path.join(HERE, "scenarios.json")) as f:
        for s in json.load(f)["scenarios"]:
            if s["name"] == scenario:
                return s["model"]["queues"]
    raise KeyError(scenario)


def _response_step(responses, i):
    r = responses[min(i, len(responses) - 1)]
    if r.get("tool_calls"):
        return "planner"
    if "error" in r:
        # A failed call: planner before any tool result of the agent's turn, else generator.
        earlier = responses[:i]
        return "generator" if any(p.get("tool_calls") for p in earlier) else "planner"
    return "generator"


def label(spans, scenario):
    queues = {q["match"]: q["responses"] for q in _script(scenario)}
    out = {}
    calls = {}
    for s in sorted(spans, key=lambda s: int(s["startTimeUnixNano"])):
        a = attrs(s)
        op = a.get("gen_ai.operation.name")
        sid = s["spanId"]
        if op == "invoke_workflow":
            out[sid] = "chain"
        elif op == "invoke_agent":
            name = a.get("gen_ai.agent.name")
            out[sid] = "chain" if name in PIPELINES else "critic" if name == "reviewer" else "agent"
        elif op == "generate_content":
            agent = a["gen_ai.agent.name"]
            if agent == "reviewer":
                out[sid] = "critic"
                continue
            i = calls.get(agent, 0)
            calls[agent] = i + 1
            out[sid] = _response_step(queues[AGENT_QUEUE[agent]], i)
        elif op == "execute_tool":
            tool = a["gen_ai.tool.name"]
            if tool == "search_docs":
                out[sid] = "retriever"
            elif tool == "get_order_status":
                out[sid] = "tool"
            elif tool == "transfer_to_agent" or tool in AGENT_TOOLS:
                out[sid] = "agent"
            else:
                raise ValueError(f"unexpected tool {tool}")
        else:
            raise ValueError(f"unexpected span {s['name']}")
    return out
