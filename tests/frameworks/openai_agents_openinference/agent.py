"""OpenAI Agents SDK support agent, traced by OpenInference's instrumentor.

The agent itself lives in support_agents.py (shared with ../openai_agents_openllmetry).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import support_agents  # noqa: E402  (sets the environment before the framework's imports)
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor  # noqa: E402


def instrument(tracer_provider):
    # exclusive_processor (the default) replaces the SDK's own processors, so nothing is
    # uploaded to OpenAI's trace backend.
    OpenAIAgentsInstrumentor().instrument(tracer_provider=tracer_provider)


if __name__ == "__main__":
    support_agents.main("openai_agents_openinference", instrument)
