"""Expected step of every span of a langgraph_openllmetry capture.

The rules are lg_agent.label_spans's (shared with the other langgraph_* directories; see
its docstring). This file only says how OpenLLMetry (opentelemetry-instrumentation-
langchain) spans map onto LangChain runs:
- `gen_ai.operation.name` chat (`ChatOpenAI.chat`) = a chat model call;
- execute_tool (`execute_tool <tool>`) = a tool execution (`gen_ai.tool.name`);
- invoke_agent = a graph run: both the `invoke_agent <graph>` span of its Pregel.stream
  wrapper and the callback span `<graph>.workflow` (`traceloop.span.kind` workflow) carry
  it; a subgraph's run is a `traceloop.span.kind` task span named `execute_task <graph>`;
- `traceloop.span.kind` task = a graph node's run (`traceloop.entity.name`);
- anything else (the middleware-hook wrapper spans `execute_task
  handle_tool_errors.before_model` without traceloop.span.kind, the build-time
  `create_agent support_agent` span) = other.
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
    op = a.get("gen_ai.operation.name")
    if op == "chat":
        return ("llm", None)
    if op == "execute_tool" or a.get("traceloop.span.kind") == "tool":
        return ("tool", a.get("gen_ai.tool.name") or a.get("traceloop.entity.name"))
    if op == "invoke_agent":
        return ("graph", a.get("gen_ai.agent.name"))
    if a.get("traceloop.span.kind") == "task":
        name = a.get("traceloop.entity.name")
        return ("graph", name) if name == lg_agent.AGENT_NAME else ("node", name)
    return ("other", None)


def label(spans, scenario):
    return lg_agent.label_spans(spans, scenario, classify, os.path.join(HERE, "scenarios.json"))
