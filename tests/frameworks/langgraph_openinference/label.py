"""Expected step of every span of a langgraph_openinference capture.

The rules are lg_agent.label_spans's (shared with the other langgraph_* directories; see
its docstring). This file only says how OpenInference (openinference-instrumentation-
langchain) spans map onto LangChain runs: `openinference.span.kind` LLM = a chat model
call, TOOL = a tool execution (`tool.name`); a CHAIN/AGENT span whose `metadata`
`langgraph_node` is its own name = a graph node's run, any other CHAIN/AGENT span = a
graph run (span name = graph name; a subgraph's run inherits its parent node's
langgraph_node, so it is told apart by its name).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from capture import attrs  # noqa: E402
import lg_agent  # noqa: E402


def classify(span):
    a = attrs(span)
    kind = a.get("openinference.span.kind")
    if kind == "LLM":
        return ("llm", None)
    if kind == "TOOL":
        return ("tool", a.get("tool.name") or span["name"])
    if kind in ("CHAIN", "AGENT"):
        try:
            node = json.loads(a.get("metadata") or "{}").get("langgraph_node")
        except ValueError:
            node = None
        return ("node", node) if node == span["name"] else ("graph", span["name"])
    return ("other", None)


def label(spans, scenario):
    return lg_agent.label_spans(spans, scenario, classify, os.path.join(HERE, "scenarios.json"))
