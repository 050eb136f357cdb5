"""DSPy ReAct agent traced by openinference-instrumentation-dspy.

(DSPy 3.4 sends an `openai/...` LM with api_base/api_key through its native engine, not
litellm, so openinference-instrumentation-litellm would record nothing: it is not used.)

One scenario per process (see ../README.md):
    agent.py --scenario NAME --model-url http://127.0.0.1:PORT/v1 --otlp-endpoint http://127.0.0.1:PORT

The model speaks DSPy's ChatAdapter protocol (`[[ ## field ## ]]` sections): the ReAct
module's predictor writes next_thought / next_tool_name / next_tool_args, its extractor
(a ChainOfThought) writes reasoning / answer. critic_rejects adds a `reviewer` module (a
dspy.Predict judge) that answers a verdict "REJECT: ...".
"""

import argparse
import json
import os
import sys
import tempfile

# No telemetry, no network: set before any framework import.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm: no price map download
os.environ.setdefault("LITELLM_TELEMETRY", "False")
os.environ["DSPY_CACHEDIR"] = os.path.join(tempfile.gettempdir(), "faultline-dspy-cache")
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)

from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

SERVICE = "dspy_openinference"
MAX_ITERS = 4

REFUND_Q = "What is the refund policy?"
ORDER_Q = "What is the status of order A-1001?"

DOCS = [
    "Refund policy: refunds are accepted within 30 days of purchase with a receipt.",
    "Refunds are paid back to the original payment method within 5 business days.",
]

# What the tools do in this run (set from --scenario in main()).
STATE = {"empty": False, "order_fails": None, "order_calls": 0}


def search_docs(query: str) -> list[str]:
    """Search the product documentation."""
    return [] if STATE["empty"] else list(DOCS)


def get_order_status(order_id: str) -> str:
    """Get the status of an order by its id."""
    STATE["order_calls"] += 1
    fails = STATE["order_fails"]
    if fails == "always" or (fails == "once" and STATE["order_calls"] == 1):
        raise RuntimeError("order service unavailable (503)")
    return f"Order {order_id} has shipped and will arrive on Friday."


class TraceIds(SpanProcessor):
    def __init__(self):
        self.ids = []

    def on_start(self, span, parent_context=None):
        tid = format(span.get_span_context().trace_id, "032x")
        if tid not in self.ids:
            self.ids.append(tid)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--otlp-endpoint", required=True)
    args = p.parse_args()
    scenario = args.scenario

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    ids = TraceIds()
    provider.add_span_processor(ids)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp_endpoint.rstrip("/") + "/v1/traces"))
    )
    trace.set_tracer_provider(provider)

    from openinference.instrumentation.dspy import DSPyInstrumentor

    DSPyInstrumentor().instrument(tracer_provider=provider)

    import dspy

    STATE["empty"] = scenario == "empty_retrieval"
    STATE["order_fails"] = {"tool_error_gives_up": "always", "tool_error_retry_ok": "once"}.get(scenario)

    lm = dspy.LM("openai/gpt-4o-mini", api_base=args.model_url, api_key="sk-fake", num_retries=0, cache=False)
    dspy.configure(lm=lm)

    class SupportQuestion(dspy.Signature):
        """You are SUPPORT_AGENT, a customer support agent. Use the tools, then answer briefly."""

        question: str = dspy.InputField()
        answer: str = dspy.OutputField()

    class ReviewAnswer(dspy.Signature):
        """You are REVIEWER. You review answers of a support agent: reply APPROVE, or REJECT: reason."""

        question: str = dspy.InputField()
        answer: str = dspy.InputField()
        verdict: str = dspy.OutputField()

    class SupportWithReview(dspy.Module):
        def __init__(self):
            super().__init__()
            self.support_agent = dspy.ReAct(SupportQuestion, tools=[search_docs, get_order_status], max_iters=MAX_ITERS)
            self.reviewer = dspy.Predict(ReviewAnswer)

        def forward(self, question):
            answer = self.support_agent(question=question).answer
            verdict = self.reviewer(question=question, answer=answer).verdict
            approved = not verdict.strip().upper().startswith("REJECT")
            return dspy.Prediction(answer=answer, verdict=verdict, approved=approved)

    task = ORDER_Q if ("order" in scenario or "tool_" in scenario) else REFUND_Q
    if scenario == "critic_rejects":
        program = SupportWithReview()
    else:
        program = dspy.ReAct(SupportQuestion, tools=[search_docs, get_order_status], max_iters=MAX_ITERS)

    try:
        result = program(question=task)
        print(f"result: {result!r}", file=sys.stderr)
    except Exception as e:  # the run's own failure: recorded in the trace, not a harness error
        print(f"run failed: {type(e).__name__}: {e}", file=sys.stderr)

    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_ids": ids.ids}))


if __name__ == "__main__":
    main()
