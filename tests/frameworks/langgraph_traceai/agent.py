"""LangGraph support agent traced by traceAI's LangChain instrumentor (traceai-langchain).

See ../langgraph_openinference/lg_agent.py (shared by the langgraph_* directories) and ../README.md.
No Future AGI registration: our own TracerProvider is passed to the instrumentor.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "langgraph_openinference"))
import lg_agent  # noqa: E402

lg_agent.quiet_env()


def instrument(provider):
    from traceai_langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=provider)


if __name__ == "__main__":
    lg_agent.main("langgraph_traceai", instrument)
