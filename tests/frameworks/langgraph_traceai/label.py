"""Expected step of every span of a langgraph_traceai capture.

The rules are lg_agent.label_spans's (shared with the other langgraph_* directories; see
its docstring). This file only says how traceAI (traceai-langchain) spans map onto
LangChain runs: `gen_ai.span.kind` LLM = a chat model call, TOOL = a tool execution
(span name = tool name); a CHAIN/AGENT span with `gen_ai.agent.graph.node_name` = a graph
node's run (the node name), without it = a graph run (span name = graph name).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "langgraph_openinference"))
from capture import attrs  # noqa: E402
import lg_agent  # noqa: E402


def classify(span):
    a = attrs(span)
    kind = a.get("gen_ai.span.kind")
    if kind == "LLM":
        return ("llm", None)
    if kind == "TOOL":
        return ("tool", a.get("gen_ai.tool.name") or span["name"])
    if kind in ("CHAIN", "AGENT"):
        node = a.get("gen_ai.agent.graph.node_name")
        return ("node", node) if node else ("graph", span["name"])
    return ("other", None)


def label(spans, scenario):
    return lg_agent.label_spans(spans, scenario, classify, os.path.join(HERE, "scenarios.json"))
