"""LangGraph support agent traced by OpenInference's LangChain instrumentor
(openinference-instrumentation-langchain).

See lg_agent.py (shared by the langgraph_* directories, which import it from here) and ../README.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lg_agent  # noqa: E402

lg_agent.quiet_env()


def instrument(provider):
    from openinference.instrumentation.langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=provider)


if __name__ == "__main__":
    lg_agent.main("langgraph_openinference", instrument)
