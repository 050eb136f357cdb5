"""Writes scenarios.json (run: python gen_scenarios.py DISPLAY).

The model speaks DSPy's ChatAdapter protocol. Three queues:
- the reviewer's dspy.Predict (critic_rejects), matched by its instructions;
- the ReAct predictor (`next_thought`, `next_tool_name`, `next_tool_args`), matched by
  its output field names;
- the ReAct extractor (a ChainOfThought writing `reasoning` and `answer`), everything else.
"""

import json
import os
import sys

# DSPy names no agent: the ReAct module's span is `ReAct.forward` (the attribute name
# `support_agent` of critic_rejects' module appears nowhere in the trace).
AGENT = "ReAct.forward"


def fields(**kv):
    out = []
    for k, v in kv.items():
        out.append(f"[[ ## {k} ## ]]\n{v}\n")
    out.append("[[ ## completed ## ]]")
    return {"content": "\n".join(out)}


def act(thought, tool, args):
    return fields(next_thought=thought, next_tool_name=tool, next_tool_args=json.dumps(args))


def answer(reasoning, text):
    return fields(reasoning=reasoning, answer=text)


SEARCH = act("I should look up the refund policy in the documentation.", "search_docs", {"query": "refund policy"})
ORDER = act("I should look up the order's status.", "get_order_status", {"order_id": "A-1001"})
RETRY = act("The order service failed; I will try again.", "get_order_status", {"order_id": "A-1001"})
FINISH = act("I have what I need to answer.", "finish", {})
GIVE_UP = act("The order service keeps failing; I will stop and apologise.", "finish", {})
REFUND = answer("The documentation states the refund policy.", "Refunds are accepted within 30 days of purchase with a receipt.")


def script(react, extract, reviewer=None):
    queues = []
    if reviewer:
        queues.append({"match": "You are REVIEWER", "responses": reviewer})
    queues.append({"match": "next_tool_name", "responses": react})
    queues.append({"match": None, "responses": extract})
    return {"queues": queues}


ERR500 = {"error": {"status": 500, "message": "The server had an error while processing your request."}}
ERR429 = {"error": {"status": 429, "message": "Rate limit reached for gpt-4o-mini."}}

scenarios = [
    ("ok", "search_docs returns the refund policy; the agent finishes; the extractor answers.",
     script([SEARCH, FINISH], [REFUND]), "success", None),
    ("tool_error_gives_up", "get_order_status raises twice (ReAct feeds 'Execution error in get_order_status: ...' back as the observation); the agent finishes; the extractor says sorry.",
     script([ORDER, RETRY, GIVE_UP], [answer("The order service failed twice.", "Sorry, I could not get the order status.")]), "failed", "tool"),
    ("tool_error_retry_ok", "get_order_status raises once, the second call works; the extractor answers with the status.",
     script([ORDER, RETRY, FINISH], [answer("The second lookup worked.", "Order A-1001 has shipped and will arrive on Friday.")]), "recovered", None),
    ("empty_retrieval", "search_docs returns []; the agent finishes; the extractor answers fluently anyway.",
     script([SEARCH, FINISH], [REFUND]), "failed", "retriever"),
    ("model_500_first_call", "the first model call answers HTTP 500 (DSPy's native engine: LMServerError, no retry); the program raises.",
     script([ERR500], [REFUND]), "failed", "planner"),
    ("model_429_after_tool", "search_docs works; the model call after the tool result answers HTTP 429 (LMRateLimitError, no retry); the program raises.",
     script([SEARCH, ERR429], [REFUND]), "failed", "generator"),
    ("bad_tool_args_gives_up", "the model calls get_order_status with {\"order\": 12} twice; dspy.Tool rejects the arguments (ValueError, fed back as an execution error observation); the agent finishes; the extractor gives up.",
     script([act("I should look up the order.", "get_order_status", {"order": 12}),
             act("The call failed; I will try again.", "get_order_status", {"order": 12}),
             act("I cannot look the order up; I will stop.", "finish", {})],
            [answer("The order lookup failed.", "Sorry, I could not look up the order.")]), "failed", "planner"),
    ("turn_limit_loop", "the model calls search_docs with the same arguments every turn until ReAct's max_iters=4 ends the loop (no error: ReAct then runs its extractor, which answers).",
     script([SEARCH], [REFUND]), "failed", "planner"),
    ("critic_rejects", "a SupportWithReview module runs the ReAct agent (search_docs, then an answer the documents do not support) and then a `reviewer` dspy.Predict judge that answers REJECT.",
     script([SEARCH, FINISH], [answer("The documents mention refunds.", "Refunds are accepted within 90 days, no receipt needed.")],
            reviewer=[fields(verdict="REJECT: the answer is not supported by the documents")]), "failed", "generator"),
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
