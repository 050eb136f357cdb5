"""Writes scenarios.json (run: python gen_scenarios.py DISPLAY)."""

import json
import os
import sys

SUPPORT = "You are SUPPORT_AGENT"
REVIEWER = "You are REVIEWER"
AGENT = "support_agent"


def call(name, **arguments):
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def text(content):
    return {"content": content}


def support(*responses):
    return {"queues": [{"match": SUPPORT, "responses": list(responses)}]}


SEARCH = call("search_docs", query="refund policy")
ORDER = call("get_order_status", order_id="A-1001")
REFUND_ANSWER = text("Refunds are accepted within 30 days of purchase with a receipt.")

scenarios = [
    ("ok", "search_docs returns the refund policy; the model answers.",
     support(SEARCH, REFUND_ANSWER), "success", None),
    ("tool_error_gives_up", "get_order_status raises twice (FunctionAgent feeds the error back as the tool result); the model gives up in text.",
     support(ORDER, ORDER, text("Sorry, I could not get the order status.")), "failed", "tool"),
    ("tool_error_retry_ok", "get_order_status raises once, the second call works; the model answers with the status.",
     support(ORDER, ORDER, text("Order A-1001 has shipped and will arrive on Friday.")), "recovered", None),
    ("empty_retrieval", "search_docs returns []; the model answers fluently anyway.",
     support(SEARCH, REFUND_ANSWER), "failed", "retriever"),
    ("model_500_first_call", "the first model call answers HTTP 500; the agent run raises.",
     support({"error": {"status": 500, "message": "The server had an error while processing your request."}}), "failed", "planner"),
    ("model_429_after_tool", "search_docs works; the model call after the tool result answers HTTP 429; the agent run raises.",
     support(SEARCH, {"error": {"status": 429, "message": "Rate limit reached for gpt-4o-mini."}}), "failed", "generator"),
    ("bad_tool_args_gives_up", "the model calls get_order_status with {\"order\": 12} twice; FunctionTool's call rejects the unexpected keyword (fed back as an error tool result); the model gives up in text.",
     support(call("get_order_status", order=12), call("get_order_status", order=12), text("Sorry, I could not look up the order.")), "failed", "planner"),
    ("turn_limit_loop", "the model calls search_docs with the same arguments every turn until the run's max_iterations=4 raises WorkflowRuntimeError.",
     support(SEARCH), "failed", "planner"),
    ("critic_rejects", "a Workflow runs the support agent (search_docs, then an answer the documents do not support) and then a `reviewer` FunctionAgent that answers REJECT.",
     {"queues": [
         {"match": REVIEWER, "responses": [text("REJECT: the answer is not supported by the documents")]},
         {"match": SUPPORT, "responses": [SEARCH, text("Refunds are accepted within 90 days, no receipt needed.")]},
     ]}, "failed", "generator"),
]

doc = {
    "framework": os.path.basename(os.path.dirname(os.path.abspath(__file__))),
    "display": sys.argv[1] if len(sys.argv) > 1 else "DISPLAY",
    "scenarios": [
        {
            "name": name,
            "description": desc,
            "model": model,
            "expect": {"outcome": outcome, "root_cause": {"step": step, "agent": AGENT} if step else None},
        }
        for name, desc, model, outcome, step in scenarios
    ],
}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios.json"), "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
