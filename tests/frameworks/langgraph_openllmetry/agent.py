"""LangGraph support agent traced by OpenLLMetry's LangChain instrumentor
(opentelemetry-instrumentation-langchain, without traceloop-sdk).

See ../langgraph_openinference/lg_agent.py (shared by the langgraph_* directories) and ../README.md.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "langgraph_openinference"))
import lg_agent  # noqa: E402

lg_agent.quiet_env()


def instrument(provider):
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    LangchainInstrumentor().instrument(tracer_provider=provider)


if __name__ == "__main__":
    lg_agent.main("langgraph_openllmetry", instrument)
