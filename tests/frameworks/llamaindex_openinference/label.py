"""Expected step of every span of a LlamaIndex FunctionAgent + OpenInference trace (see ../README.md).

Written from the agent script (agent.py, scenarios.json), not from faultline's output:

- `FunctionAgent.run` (openinference.span.kind CHAIN, the only span of an agent run): the
  support agent's run -> agent; the reviewer agent's run (critic_rejects) -> critic.
- `SupportWithReview.run` and its `answer` step (critic_rejects' Workflow) -> chain; its
  `review` step, which runs the reviewer and reads its verdict -> critic; everything under
  the review step (the reviewer's run, steps and model calls) -> critic.
- `BaseWorkflowAgent.<step>` (init_run, setup_agent, run_agent_step, parse_agent_output,
  call_tool, aggregate_tool_results; CHAIN): the agent workflow's steps -> chain.
- `OpenAI._prepare_chat_with_tools` (typed LLM, but it only builds the request: no model
  call) -> chain.
- `OpenAI.astream_chat` (LLM, the model call):
  - a response with tool calls -> planner; a text response -> generator;
  - a failed call: planner before any tool result of its agent run, generator after one.
- `FunctionTool.acall` (TOOL): search_docs -> retriever, get_order_status -> tool.
"""

from capture import attrs

MODEL_CALLS = ("OpenAI.astream_chat", "OpenAI.achat", "OpenAI.chat", "OpenAI.stream_chat")


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

    def agent_run(s):
        for x in [s] + ancestors(s):
            if x["name"].endswith("Agent.run"):
                return x["spanId"]
        return None

    def in_review(s):
        return any(x["name"].endswith("SupportWithReview.review") for x in [s] + ancestors(s))

    tool_ends = {}
    for s in spans:
        if a[s["spanId"]].get("openinference.span.kind") == "TOOL":
            tool_ends.setdefault(agent_run(s), []).append(int(s["endTimeUnixNano"]))

    labels = {}
    for s in spans:
        sid, name = s["spanId"], s["name"]
        kind = a[sid].get("openinference.span.kind")
        if in_review(s):
            labels[sid] = "critic"
        elif name.endswith("Agent.run"):
            labels[sid] = "agent"
        elif kind == "TOOL":
            labels[sid] = {"search_docs": "retriever", "get_order_status": "tool"}[a[sid]["tool.name"]]
        elif name in MODEL_CALLS:
            calls = [v for k, v in a[sid].items() if k.startswith("llm.output_messages.") and k.endswith("tool_call.function.name")]
            if s.get("status", {}).get("code") == 2:
                before = [e for e in tool_ends.get(agent_run(s), []) if e <= int(s["startTimeUnixNano"])]
                labels[sid] = "generator" if before else "planner"
            else:
                labels[sid] = "planner" if calls else "generator"
        else:
            # Workflow runs and steps, the request builder typed LLM: plumbing.
            labels[sid] = "chain"
    return labels
