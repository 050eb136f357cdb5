"""LangGraph agents with fake models, traced by OpenInference's LangChain instrumentation.

Usage: langgraph_agent.py --endpoint http://127.0.0.1:4318 [--console]

Runs three agents, each failing in one planted way, and exports their traces over OTLP/HTTP:
- `tool_exception`: a ReAct loop whose planner calls `get_weather`, which raises;
- `empty_retrieval`: a RAG graph whose retriever returns no documents, after which the
  generate node fails for lack of context;
- `rate_limit`: a ReAct loop whose planner LLM call fails with a 429 rate-limit error.
Prints one JSON line per run: {"scenario", "trace_id", "expected_step"}.
"""

import argparse
import json
import sys
from typing import Any, List, Optional, TypedDict

from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.output_parsers import StrOutputParser
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from openinference.instrumentation.langchain import LangChainInstrumentor
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from typing_extensions import Annotated


class RateLimitError(Exception):
    """Shaped like the OpenAI SDK's error of the same name."""


class ScriptedChatModel(BaseChatModel):
    """A fake chat model that replays scripted replies (or raises one)."""

    replies: List[Any]
    index: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[CallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self.replies[min(self.index, len(self.replies) - 1)]
        self.index += 1
        if isinstance(reply, Exception):
            raise reply
        return ChatResult(generations=[ChatGeneration(message=reply)])


class EmptyRetriever(BaseRetriever):
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> List[Document]:
        return []


@tool
def get_weather(city: str) -> str:
    """Returns the weather of a city."""
    raise ConnectionError(f"weather service unreachable for {city}: connection reset by peer")


class AgentState(TypedDict):
    messages: Annotated[list, add_messages]


def react_graph(model):
    def planner(state):
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(AgentState)
    g.add_node("planner", planner)
    g.add_node("tools", ToolNode([get_weather], handle_tool_errors=False))
    g.add_edge(START, "planner")
    g.add_conditional_edges("planner", tools_condition)
    g.add_edge("tools", "planner")
    return g.compile()


class RagState(TypedDict):
    question: str
    docs: list
    answer: str


def rag_graph(model):
    retriever = EmptyRetriever()

    def retrieve(state):
        return {"docs": retriever.invoke(state["question"])}

    def generate(state):
        if not state["docs"]:
            raise ValueError("cannot answer: the context is empty (0 documents retrieved)")
        chain = model | StrOutputParser()
        return {"answer": chain.invoke(state["question"])}

    g = StateGraph(RagState)
    g.add_node("retrieve", retrieve)
    g.add_node("generate", generate)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "generate")
    g.add_edge("generate", END)
    return g.compile()


def tool_call_reply():
    return AIMessage(
        content="",
        tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", default="http://127.0.0.1:4318")
    p.add_argument("--fixtures", metavar="DIR", help="write OTLP/JSON golden inputs instead")
    p.add_argument("--console", action="store_true", help="print spans instead of exporting")
    args = p.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": "langgraph-agent"}))
    memory = None
    if args.fixtures:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    elif args.console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=args.endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    LangChainInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("langgraph_agent")

    scenarios = [
        (
            "tool_exception",
            "tool",
            lambda: react_graph(ScriptedChatModel(replies=[tool_call_reply()])).invoke(
                {"messages": [HumanMessage("What is the weather in Paris?")]}
            ),
        ),
        (
            "empty_retrieval",
            "retriever",
            lambda: rag_graph(ScriptedChatModel(replies=[AIMessage("unused")])).invoke(
                {"question": "What does the refund policy say?", "docs": [], "answer": ""}
            ),
        ),
        (
            "rate_limit",
            "planner",
            lambda: react_graph(
                ScriptedChatModel(
                    replies=[
                        RateLimitError(
                            "Error code: 429 - Rate limit reached for gpt-4o-mini in "
                            "organization org-123 on tokens per min (TPM)"
                        )
                    ]
                )
            ).invoke({"messages": [HumanMessage("Plan my trip")]}),
        ),
    ]
    names = {}
    for name, expected, run in scenarios:
        # A wrapping span gives the test the trace id; the graph's spans sit under it.
        with tracer.start_as_current_span(
            "agent_run", attributes={"openinference.span.kind": "AGENT"}
        ) as root:
            trace_id = format(root.get_span_context().trace_id, "032x")
            try:
                run()
            except Exception as e:  # the planted failure
                root.record_exception(e)
                root.set_status(trace.Status(trace.StatusCode.ERROR, str(e)))
        names[int(trace_id, 16)] = f"langgraph_{name}"
        print(json.dumps({"scenario": name, "trace_id": trace_id, "expected_step": expected}))
    provider.force_flush()
    if memory is not None:
        from otlp_fixture import write_fixtures

        write_fixtures(memory.get_finished_spans(), names, args.fixtures)
    provider.shutdown()


if __name__ == "__main__":
    main()
