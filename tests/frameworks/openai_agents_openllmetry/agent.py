"""OpenAI Agents SDK support agent, traced by OpenLLMetry's (Traceloop's)
opentelemetry-instrumentation-openai-agents, without the traceloop-sdk.

The agent itself is shared with ../openai_agents_openinference (support_agents.py).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "openai_agents_openinference"))

os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "true")
os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")

import support_agents  # noqa: E402  (sets the environment before the framework's imports)
from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor  # noqa: E402


def instrument(tracer_provider):
    # replace_existing_processors drops the SDK's own processor, so nothing is uploaded
    # to OpenAI's trace backend.
    OpenAIAgentsInstrumentor(replace_existing_processors=True).instrument(tracer_provider=tracer_provider)


if __name__ == "__main__":
    support_agents.main("openai_agents_openllmetry", instrument)
