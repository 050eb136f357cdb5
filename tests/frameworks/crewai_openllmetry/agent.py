"""CrewAI agent instrumented with OpenLLMetry (CrewAI + OpenAI instrumentors).

One scenario per process (see ../README.md):
    agent.py --scenario NAME --model-url http://127.0.0.1:PORT/v1 --otlp-endpoint http://127.0.0.1:PORT
"""

import atexit
import os
import shutil
import sys
import tempfile

# No telemetry, no CrewAI+ tracing service, no first-run prompt, nothing from the home dir.
_STATE = tempfile.mkdtemp(prefix="crewai-state-")
atexit.register(shutil.rmtree, _STATE, ignore_errors=True)
os.environ.update(
    {
        "CREWAI_DISABLE_TELEMETRY": "true",
        "CREWAI_DISABLE_TRACKING": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "TRACELOOP_TELEMETRY": "false",
        "TRACELOOP_TRACE_CONTENT": "true",
        "OPENAI_API_KEY": "x",
        "XDG_DATA_HOME": _STATE,
        "XDG_CONFIG_HOME": _STATE,
        "XDG_CACHE_HOME": _STATE,
        "CREWAI_STORAGE_DIR": "faultline",
    }
)
os.environ.pop("OTEL_SDK_DISABLED", None)
sys.stdin = open(os.devnull)  # never wait on a prompt

import argparse  # noqa: E402
import json  # noqa: E402

SERVICE_NAME = os.path.basename(os.path.dirname(os.path.abspath(__file__)))


def _decline_crewai_tracing():
    """Record 'tracing declined' in CrewAI's (temporary) user-data file, so the
    first-run trace collection to CrewAI's service never starts."""
    from crewai_core.user_data import _user_data_file

    _user_data_file().write_text(
        json.dumps({"first_execution_done": True, "trace_consent": False, "user_id": "faultline"})
    )


def setup_tracing(endpoint):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.crewai import CrewAIInstrumentor
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    CrewAIInstrumentor().instrument(tracer_provider=provider)
    # CrewAI 1.x calls OpenAI models through the OpenAI SDK (its native provider), so the
    # model calls come from OpenLLMetry's OpenAI instrumentor.
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider


def make_recorder():
    from opentelemetry.sdk.trace import SpanProcessor

    class Recorder(SpanProcessor):
        """Collects the trace ids of every finished span (the process's traces)."""

        def __init__(self):
            self.trace_ids = []

        def on_end(self, span):
            tid = format(span.context.trace_id, "032x")
            if tid not in self.trace_ids:
                self.trace_ids.append(tid)

    return Recorder()


DOCS = [
    "Refunds: purchases can be refunded within 30 days with the receipt.",
    "Passwords: reset your password from Settings > Security > Reset password.",
]

QUESTIONS = {
    "docs": "What is the refund policy?",
    "order": "What is the status of order A-1001?",
    "password": "How do I reset my password?",
}

SCENARIO_QUESTION = {
    "ok": "docs",
    "tool_error_gives_up": "order",
    "tool_error_retry_ok": "order",
    "empty_retrieval": "docs",
    "model_500_first_call": "docs",
    "model_429_after_tool": "docs",
    "bad_tool_args_gives_up": "order",
    "turn_limit_loop": "docs",
    "critic_rejects": "docs",
    "ma_subagent_tool_error": "order",
    "ma_subagent_empty_retrieval": "docs",
    "ma_subagent_model_error": "order",
    "ma_reviewer_rejects": "docs",
    "ma_misrouted": "password",
    "ma_handoff_pingpong": "order",
}


def build_tools(scenario):
    from pydantic import BaseModel, Field

    from crewai.tools import BaseTool, tool

    state = {"order_calls": 0}

    @tool("search_docs")
    def search_docs(query: str) -> list:
        """Search the product documentation."""
        if scenario in ("empty_retrieval", "ma_subagent_empty_retrieval"):
            return []
        return list(DOCS)

    class OrderInput(BaseModel):
        order_id: str = Field(..., description="The order id, e.g. A-1001.")

    class GetOrderStatus(BaseTool):
        name: str = "get_order_status"
        description: str = "Get the status of an order by its id."
        args_schema: type[BaseModel] = OrderInput

        def _run(self, order_id: str) -> str:
            state["order_calls"] += 1
            if scenario in ("tool_error_gives_up", "ma_subagent_tool_error"):
                raise RuntimeError("order service unavailable (503)")
            if scenario == "tool_error_retry_ok" and state["order_calls"] == 1:
                raise RuntimeError("order service unavailable (503)")
            return f"Order {order_id}: shipped on 2024-05-02, arriving in 2 days."

    return search_docs, GetOrderStatus()


def make_llm(model_url):
    from crewai import LLM

    return LLM(model="openai/gpt-4o-mini", base_url=model_url, api_key="x", max_retries=0, temperature=0)


def single_agent_crew(scenario, llm, search_docs, get_order_status):
    from crewai import Agent, Crew, Process, Task

    max_iter = 4 if scenario == "turn_limit_loop" else 10
    support = Agent(
        role="Support Agent",
        goal="Answer customer questions about the product and their orders.",
        backstory="You are the concise support agent of the Acme store. Use your tools.",
        tools=[search_docs, get_order_status],
        llm=llm,
        max_iter=max_iter,
        max_retry_limit=0,
        allow_delegation=False,
        verbose=False,
    )
    answer = Task(
        description="Answer the customer's question: {question}",
        expected_output="A short plain-text answer for the customer.",
        agent=support,
    )
    agents, tasks = [support], [answer]
    if scenario == "critic_rejects":
        reviewer = Agent(
            role="Reviewer",
            goal="Check that support answers are supported by the documentation.",
            backstory="You review answers written by the support agent before they are sent.",
            llm=llm,
            max_iter=4,
            max_retry_limit=0,
            allow_delegation=False,
            verbose=False,
        )
        review = Task(
            description="Review the support agent's answer to: {question}. Reply APPROVE, or REJECT: <reason>.",
            expected_output="APPROVE or REJECT: <reason>.",
            agent=reviewer,
            context=[answer],
        )
        agents.append(reviewer)
        tasks.append(review)
    return Crew(agents=agents, tasks=tasks, process=Process.sequential, verbose=False)


def multi_agent_crew(scenario, llm, search_docs, get_order_status):
    """A support manager that delegates to specialists (allow_delegation=True), and a
    reviewer task after it."""
    from crewai import Agent, Crew, Process, Task

    common = dict(llm=llm, max_retry_limit=0, verbose=False)
    manager = Agent(
        role="Support Manager",
        goal="Route each customer question to the right specialist and relay the answer.",
        backstory="You manage the Acme support team. You never answer from your own knowledge.",
        allow_delegation=True,
        max_iter=4,
        **common,
    )
    order = Agent(
        role="Order Specialist",
        goal="Answer questions about customer orders using the order system.",
        backstory="You handle order status questions for Acme.",
        tools=[get_order_status],
        allow_delegation=False,
        max_iter=6,
        **common,
    )
    docs = Agent(
        role="Docs Specialist",
        goal="Answer product questions from the product documentation.",
        backstory="You know where everything is in the Acme documentation.",
        tools=[search_docs],
        allow_delegation=False,
        max_iter=6,
        **common,
    )
    weather = Agent(
        role="Weather Specialist",
        goal="Answer questions about the weather forecast.",
        backstory="You are Acme's weather desk and answer weather questions.",
        allow_delegation=False,
        max_iter=6,
        **common,
    )
    reviewer = Agent(
        role="Reviewer",
        goal="Check that support answers are supported by the documentation.",
        backstory="You review answers written by the support team before they are sent.",
        allow_delegation=False,
        max_iter=4,
        **common,
    )
    answer = Task(
        description="Answer the customer's question: {question}",
        expected_output="A short plain-text answer for the customer.",
        agent=manager,
    )
    review = Task(
        description="Review the support team's answer to: {question}. Reply APPROVE, or REJECT: <reason>.",
        expected_output="APPROVE or REJECT: <reason>.",
        agent=reviewer,
        context=[answer],
    )
    tasks = [answer]
    if scenario in ("ma_reviewer_rejects", "ma_misrouted"):
        tasks.append(review)
    return Crew(
        agents=[manager, order, docs, weather, reviewer],
        tasks=tasks,
        process=Process.sequential,
        verbose=False,
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--otlp-endpoint", required=True)
    args = p.parse_args()
    if args.scenario not in SCENARIO_QUESTION:
        sys.exit(f"unknown scenario {args.scenario}")

    provider = setup_tracing(args.otlp_endpoint)
    recorder = make_recorder()
    provider.add_span_processor(recorder)

    _decline_crewai_tracing()
    # CrewAI retries a rate-limited (429) model call itself, 3 attempts with backoff, on
    # top of the OpenAI client's retries; the contract wants a planted 429 to reach the
    # agent, so that retry loop gets one attempt, like max_retries=0 on the client.
    import crewai.llms.retry as crewai_retry

    crewai_retry._LLM_RATE_LIMIT_MAX_ATTEMPTS = 1

    llm = make_llm(args.model_url)
    search_docs, get_order_status = build_tools(args.scenario)
    if args.scenario.startswith("ma_"):
        crew = multi_agent_crew(args.scenario, llm, search_docs, get_order_status)
    else:
        crew = single_agent_crew(args.scenario, llm, search_docs, get_order_status)

    try:
        result = crew.kickoff(inputs={"question": QUESTIONS[SCENARIO_QUESTION[args.scenario]]})
        print(f"result: {result}", file=sys.stderr)
    except Exception as e:  # the run's own failure is part of the scenario
        print(f"run failed: {type(e).__name__}: {e}", file=sys.stderr)

    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_ids": recorder.trace_ids}), flush=True)


if __name__ == "__main__":
    main()
