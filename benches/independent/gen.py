#!/usr/bin/env python3
"""Independent synthetic corpus generator: LLM-agent runs as OTLP/JSON traces.

One OTLP trace per agent run, one ExportTraceServiceRequest JSON object per line.
Four instrumentation conventions (OpenInference, OpenTelemetry GenAI, OpenLLMetry /
traceloop, FutureAGI traceAI), realistic failure mechanisms, and planted failure
structure recorded in truth.json (see SPEC.md next to this file for every choice).

Standard library only, Python 3.11. Deterministic given --seed and --start.

    python3 gen.py --out /tmp/corpus                # signal corpus, 20 000 runs / 120 min
    python3 gen.py --out /tmp/null --null           # null variant (no planted structure)
    python3 gen.py --out /tmp/c --runs 2000 --minutes 30 --start 1750000000 --seed 7 --gzip
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import sys
import time

# ----------------------------------------------------------------------------------------
# Static world: routes, tools, models, prompt versions, users
# ----------------------------------------------------------------------------------------

CONVENTIONS = ("openinference", "genai", "traceloop", "traceai")

# (http.route, share, method)
ROUTES = (
    ("/v1/chat", 0.34, "POST"),
    ("/v1/support/ticket", 0.22, "POST"),
    ("/v1/search", 0.16, "POST"),
    ("/v1/orders/{order_id}/assist", 0.12, "POST"),
    ("/v1/docs/summarize", 0.10, "POST"),
    ("/v1/billing/explain", 0.06, "POST"),
)

# tool -> (description, http (method, url, server.address, port) or None, argument example)
TOOLS = {
    "web_search": ("Search the public web for recent information",
                   ("GET", "https://api.search.brave.com/res/v1/web/search?q={q}", "api.search.brave.com", 443),
                   {"q": "oauth token rotation best practice"}),
    "calculator": ("Evaluate an arithmetic expression", None, {"expression": "1299 * 12 * 0.85"}),
    "get_weather": ("Current weather for a city",
                    ("GET", "https://api.open-meteo.com/v1/forecast?latitude=52.52&longitude=13.41", "api.open-meteo.com", 443),
                    {"city": "Berlin"}),
    "lookup_ticket": ("Fetch a support ticket by id",
                      ("GET", "http://tickets.internal:8080/api/tickets/{id}", "tickets.internal", 8080),
                      {"ticket_id": "T-48213"}),
    "create_ticket": ("Open a support ticket",
                      ("POST", "http://tickets.internal:8080/api/tickets", "tickets.internal", 8080),
                      {"subject": "Login loop on SSO", "priority": "normal"}),
    "kb_feedback": ("Record that a KB article did not help", None, {"article_id": "kb-1187"}),
    "get_order_status": ("Look up the status of an order",
                         ("GET", "http://orders-api.internal:8080/v2/orders/{id}", "orders-api.internal", 8080),
                         {"order_id": "884213"}),
    "check_refund_eligibility": ("Decide whether an order can be refunded", None, {"order_id": "884213"}),
    "fetch_url": ("Download a document by URL",
                  ("GET", "https://docs.example.com/handbook/{id}.md", "docs.example.com", 443),
                  {"url": "https://docs.example.com/handbook/security.md"}),
    "get_invoice": ("Fetch an invoice from billing",
                    ("GET", "http://billing-api.internal:8080/v1/invoices/{id}", "billing-api.internal", 8080),
                    {"invoice_id": "in_1PqX92"}),
    "convert_currency": ("Convert an amount between currencies",
                         ("GET", "https://api.frankfurter.app/latest?from=EUR&to=USD", "api.frankfurter.app", 443),
                         {"amount": 118.0, "from": "EUR", "to": "USD"}),
}
ROUTE_TOOLS = {
    "/v1/chat": ("web_search", "calculator", "get_weather"),
    "/v1/support/ticket": ("lookup_ticket", "create_ticket", "kb_feedback"),
    "/v1/search": ("web_search", "fetch_url"),
    "/v1/orders/{order_id}/assist": ("get_order_status", "check_refund_eligibility"),
    "/v1/docs/summarize": ("fetch_url", "web_search"),
    "/v1/billing/explain": ("get_invoice", "convert_currency"),
}
QUESTIONS = {
    "/v1/chat": ("How do I rotate an API key without downtime?",
                 "What is the difference between the Team and Business plans?",
                 "Can I export my workspace to CSV?",
                 "Is there a way to schedule reports weekly?"),
    "/v1/support/ticket": ("I am stuck in a login loop after enabling SSO.",
                           "The mobile app crashes when I open attachments.",
                           "Why was my seat count reduced?"),
    "/v1/search": ("Find the data retention policy for EU customers.",
                   "Which regions support private networking?",
                   "Latest guidance on webhook signature verification"),
    "/v1/orders/{order_id}/assist": ("Where is my order?", "Can I still get a refund for this order?",
                                     "The package arrived damaged, what now?"),
    "/v1/docs/summarize": ("Summarize the security handbook.", "Give me the key points of the onboarding guide.",
                           "Summarize the incident runbook for on-call."),
    "/v1/billing/explain": ("Why is my invoice higher this month?", "Explain the proration on my last invoice.",
                            "What is this 'platform fee' line item?"),
}

# model, share, provider, response model, ms per output token
MODELS = (
    ("gpt-4o", 0.30, "openai", "gpt-4o-2024-08-06", 11.0),
    ("claude-3-5-sonnet-20241022", 0.25, "anthropic", "claude-3-5-sonnet-20241022", 13.0),
    ("gpt-4o-mini", 0.25, "openai", "gpt-4o-mini-2024-07-18", 7.0),
    ("gemini-1.5-pro-002", 0.20, "google", "gemini-1.5-pro-002", 10.0),
)
MODEL_INFO = {m[0]: m for m in MODELS}
JUDGE_MODEL = "gpt-4o-mini"

PROVIDERS = {
    "openai": dict(oi_provider="openai", oi_system="openai", genai="openai", tl_system="openai",
                   traceai="openai", oi_span="ChatOpenAI", tl_span="openai.chat",
                   finish_len="length", finish_stop="stop", finish_tool="tool_calls",
                   host="api.openai.com", path="/v1/chat/completions"),
    "anthropic": dict(oi_provider="anthropic", oi_system="anthropic", genai="anthropic", tl_system="Anthropic",
                      traceai="anthropic", oi_span="ChatAnthropic", tl_span="anthropic.chat",
                      finish_len="max_tokens", finish_stop="end_turn", finish_tool="tool_use",
                      host="api.anthropic.com", path="/v1/messages"),
    "google": dict(oi_provider="google", oi_system="vertexai", genai="gcp.vertex_ai", tl_system="VertexAI",
                   traceai="google", oi_span="ChatVertexAI", tl_span="vertexai.generate_content",
                   finish_len="MAX_TOKENS", finish_stop="STOP", finish_tool="STOP",
                   host="us-central1-aiplatform.googleapis.com",
                   path="/v1/projects/acme-prod/locations/us-central1/publishers/google/models/gemini-1.5-pro-002:generateContent"),
}

# provider errors: (http status, exception type (python), short class name, message)
PROVIDER_ERRORS = {
    "openai": (
        (500, "openai.InternalServerError", "InternalServerError",
         "Error code: 500 - {'error': {'message': 'The server had an error while processing your request. Sorry about that!', 'type': 'server_error', 'param': None, 'code': None}}"),
        (429, "openai.RateLimitError", "RateLimitError",
         "Error code: 429 - {'error': {'message': 'Rate limit reached for {model} in organization org-7Hq2 on tokens per min (TPM): Limit 800000, Used 799214, Requested 2310. Please try again in 120ms.', 'type': 'tokens', 'param': None, 'code': 'rate_limit_exceeded'}}"),
        (503, "openai.InternalServerError", "InternalServerError",
         "Error code: 503 - {'error': {'message': 'The engine is currently overloaded, please try again later', 'type': 'server_error'}}"),
    ),
    "anthropic": (
        (500, "anthropic.InternalServerError", "InternalServerError",
         "Error code: 500 - {'type': 'error', 'error': {'type': 'api_error', 'message': 'Internal server error'}}"),
        (429, "anthropic.RateLimitError", "RateLimitError",
         "Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error', 'message': 'Number of request tokens has exceeded your per-minute rate limit'}}"),
        (529, "anthropic.InternalServerError", "InternalServerError",
         "Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}"),
    ),
    "google": (
        (500, "google.api_core.exceptions.InternalServerError", "InternalServerError",
         "500 Internal error encountered."),
        (429, "google.api_core.exceptions.ResourceExhausted", "ResourceExhausted",
         "429 Resource exhausted. Please try again later."),
        (503, "google.api_core.exceptions.ServiceUnavailable", "ServiceUnavailable",
         "503 The service is currently unavailable."),
    ),
}
PROVIDER_ERROR_WEIGHTS = (0.55, 0.35, 0.10)

HTTP_REASON = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
               503: "Service Unavailable", 504: "Gateway Timeout", 529: "Site Overloaded"}
TOOL_HTTP_FAIL = ((500, 0.25), (502, 0.15), (503, 0.30), (504, 0.15), (429, 0.15))
LOCAL_TOOL_ERRORS = (
    ("TimeoutError", "tool execution exceeded 10.0s"),
    ("RuntimeError", "sandbox worker crashed (exit code 137)"),
    ("sqlite3.OperationalError", "database is locked"),
)

PROMPT_VERSIONS = ("v5", "v6", "v7")
SERVICE_VERSION = {"v5": "1.4.3", "v6": "1.5.2", "v7": "1.6.1"}  # bijection: perfect co-occurrence

SEGMENTS = (("consumer", 0.45), ("smb", 0.30), ("enterprise", 0.20), ("internal", 0.05))
TIERS_BY_SEGMENT = {"consumer": (("free", 0.7), ("pro", 0.3)), "smb": (("team", 0.8), ("pro", 0.2)),
                    "enterprise": (("enterprise", 0.85), ("team", 0.15)), "internal": (("enterprise", 1.0),)}
REGIONS = (("us-east-1", 0.45), ("eu-west-1", 0.30), ("ap-southeast-2", 0.25))
USER_AGENTS = (("acme-web/3.2.1", 0.45), ("acme-ios/5.4.0 CFNetwork/1498.700.2", 0.20),
               ("acme-android/5.3.2 okhttp/4.12.0", 0.15), ("python-requests/2.32.3", 0.12),
               ("acme-cli/0.9.4", 0.08))
LOCALES = (("en-US", 0.55), ("en-GB", 0.12), ("de-DE", 0.12), ("fr-FR", 0.09), ("es-ES", 0.07), ("ja-JP", 0.05))
N_USERS = 4000

SERVICES = {
    "openinference": dict(name="answer-engine", lang="python", sdk_version="1.29.0"),
    "genai": dict(name="assist-gateway", lang="python", sdk_version="1.33.1"),
    "traceloop": dict(name="helpdesk-copilot", lang="python", sdk_version="1.30.0"),
    "traceai:python": dict(name="concierge-agent", lang="python", sdk_version="1.31.1"),
    "traceai:nodejs": dict(name="concierge-agent-web", lang="nodejs", sdk_version="1.30.1"),
}

KB_SOURCES = ("kb-articles", "product-docs", "policies")

# ----------------------------------------------------------------------------------------
# Failure model (base rates and planted structure)
# ----------------------------------------------------------------------------------------

BASE = dict(
    planner_error=0.011,       # per planner model call: provider 5xx/429 after SDK retries
    empty_retrieval=0.020,     # per run reaching retrieval: zero documents, no error status
    tool_error=0.020,          # per tool call: error status + exception (HTTP 5xx/429 child for HTTP tools)
    truncation=0.012,          # per generator call: finish reason length / max_tokens
    hallucination=0.030,       # per critic-evaluated answer (critic present and answer grounded)
    critic_error=0.006,        # per critic run: judge model call fails
    tool_transient=0.010,      # per tool call: first attempt fails, retried OK (recovered, run ok)
    provider_retry=0.015,      # per model call: one 429 absorbed by the SDK retry (recovered, run ok)
)
P_SECOND_PLANNER = 0.35
P_CRITIC = 0.60
TOOL_COUNT_P = ((0, 0.30), (1, 0.45), (2, 0.25))

PLANT = dict(
    interaction=dict(model="gpt-4o", prompt_version="v7", rr=5.5),
    route=dict(route="/v1/billing/explain", rr=2.3),
    threshold=dict(input_tokens_gt=6000, rr=4.0),
    # spike/shift positions are fractions of the event window; at the default 120 minutes they
    # are exactly minute 47..50 and minute 80..120
    spike=dict(route="/v1/chat", start_min=47.0, minutes=3.0, rr=5.0),
    shift=dict(start_min=80.0, rr=2.5),
)
# prompt-version mix: v7 is a 10% canary on the planted model, the main version elsewhere
P_V7_GIVEN_MODEL = {"gpt-4o": 0.10}
P_V7_OTHER = (0.30 - 0.30 * 0.10) / 0.70   # overall v7 share 30%, joint share 3%


def _wchoice(r, items):
    """items: sequence of (value, weight) with weights summing to ~1."""
    x = r.random()
    acc = 0.0
    for v, w in items:
        acc += w
        if x < acc:
            return v
    return items[-1][0]


class World:
    """Everything fixed by (seed, runs, minutes, start, null)."""

    def __init__(self, seed, runs, minutes, start, null):
        self.seed, self.runs, self.minutes, self.start, self.null = seed, runs, minutes, start, null
        scale = minutes / 120.0
        self.spike_start = PLANT["spike"]["start_min"] * scale * 60.0
        self.spike_end = self.spike_start + PLANT["spike"]["minutes"] * scale * 60.0
        self.shift_start = PLANT["shift"]["start_min"] * scale * 60.0
        r = random.Random(f"{seed}:users")
        self.users = []
        for u in range(N_USERS):
            seg = _wchoice(r, SEGMENTS)
            self.users.append(dict(
                id=f"u_{r.getrandbits(40):010x}", segment=seg, tier=_wchoice(r, TIERS_BY_SEGMENT[seg]),
                region=_wchoice(r, REGIONS), ua=_wchoice(r, USER_AGENTS), locale=_wchoice(r, LOCALES)))
        r = random.Random(f"{seed}:clock")
        span_s = minutes * 60.0
        self.offsets = sorted(r.random() * span_s for _ in range(runs))

    # --- rate functions: the only place where planted structure enters -----------------
    def p_planner(self):
        return BASE["planner_error"]

    def p_empty(self, model, pv):
        p = BASE["empty_retrieval"]
        c = PLANT["interaction"]
        if not self.null and model == c["model"] and pv == c["prompt_version"]:
            p *= c["rr"]
        return p

    def p_tool(self, route, t_off):
        p = BASE["tool_error"]
        if not self.null:
            if route == PLANT["route"]["route"]:
                p *= PLANT["route"]["rr"]
            if route == PLANT["spike"]["route"] and self.spike_start <= t_off < self.spike_end:
                p *= PLANT["spike"]["rr"]
        return min(p, 1.0)

    def p_trunc(self, in_tokens):
        p = BASE["truncation"]
        if not self.null and in_tokens > PLANT["threshold"]["input_tokens_gt"]:
            p *= PLANT["threshold"]["rr"]
        return p

    def p_hallu(self, t_off):
        p = BASE["hallucination"]
        if not self.null and t_off >= self.shift_start:
            p *= PLANT["shift"]["rr"]
        return p

    def p_critic_err(self):
        return BASE["critic_error"]


# ----------------------------------------------------------------------------------------
# Simulation of one run (convention independent)
# ----------------------------------------------------------------------------------------

MS = 1_000_000  # ns per ms


def _lognorm_ms(r, median, sigma, lo=1.0):
    return max(lo, median * math.exp(r.gauss(0.0, sigma)))


def simulate(world: World, i: int) -> dict:
    seed = world.seed
    ra = random.Random(f"{seed}:{i}:a")   # attributes / structure: identical in null and signal
    rf = random.Random(f"{seed}:{i}:f")   # fault uniforms: identical in null and signal (paired)
    rt = random.Random(f"{seed}:{i}:t:{int(world.null)}")  # ids, timings, contents
    U = [rf.random() for _ in range(16)]
    # U: 0 plan1, 1 plan2, 2 empty, 3-4 tool err, 5-6 tool transient, 7 trunc, 8 critic err,
    #    9 hallu, 10-15 provider retry per model call

    off = world.offsets[i]
    conv = CONVENTIONS[ra.randrange(4)]
    sdk = "python"
    if conv == "traceai" and ra.random() < 0.40:
        sdk = "nodejs"
    route, _, method = ROUTES[0]
    x = ra.random()
    acc = 0.0
    for rr_, share, mth in ROUTES:
        acc += share
        if x < acc:
            route, method = rr_, mth
            break
    model = _wchoice(ra, [(m[0], m[1]) for m in MODELS])
    p7 = P_V7_GIVEN_MODEL.get(model, P_V7_OTHER)
    y = ra.random()
    if y < p7:
        pv = "v7"
    else:
        pv = "v5" if (y - p7) / (1 - p7) < 3.0 / 7.0 else "v6"
    user = world.users[ra.randrange(N_USERS)]
    host = f"{SERVICES[conv if conv != 'traceai' else 'traceai:' + sdk]['name']}-{ra.choice(('7c9f4', '7c9f4', '5d8b1'))}-{ra.choice('abcdefgh')}{ra.randrange(10)}"
    temperature = ra.choice((0.0, 0.2, 0.2, 0.7))
    n_plan = 2 if ra.random() < P_SECOND_PLANNER else 1
    n_tools = _wchoice(ra, TOOL_COUNT_P)
    tools_avail = ROUTE_TOOLS[route]
    tool_names = ra.sample(tools_avail, min(n_tools, len(tools_avail)))
    while len(tool_names) < n_tools:
        tool_names.append(ra.choice(tools_avail))
    critic = ra.random() < P_CRITIC
    top_k = ra.choice((4, 5, 5, 6, 8))
    source = ra.choice(KB_SOURCES)
    ctx_tokens = int(1500 * math.exp(ra.gauss(0.0, 0.81)))
    question = ra.choice(QUESTIONS[route])
    order_id = str(100000 + ra.randrange(900000))
    max_tokens = 2048 if route == "/v1/docs/summarize" else 1024

    minfo = MODEL_INFO[model]
    provider = minfo[2]
    ms_per_tok = minfo[4]

    run = dict(i=i, offset=off, conv=conv, sdk=sdk, route=route, method=method, model=model,
               provider=provider, response_model=minfo[3], pv=pv, service_version=SERVICE_VERSION[pv],
               user=user, host=host, temperature=temperature, question=question, order_id=order_id,
               source=source, top_k=top_k, max_tokens=max_tokens, critic=critic)
    run["trace_id"] = "%032x" % (rt.getrandbits(128) | 1)
    run["session_id"] = "sess_%012x" % ra.getrandbits(48)
    faults, recovered = [], []
    steps = []
    llm_idx = [0]

    t = int((world.start + off) * 1e9)
    run["start_ns"] = t
    t += int(rt.uniform(0.3, 2.5) * MS)          # server overhead before the agent starts
    run["agent_start_ns"] = t
    t += int(rt.uniform(0.2, 3.0) * MS)

    def model_call(t0, role, in_tok, out_tok, mdl, fail_u, fail_p, retry_u, finish):
        """Simulate a model call starting at t0; returns step dict (and end time)."""
        pinfo = MODEL_INFO[mdl]
        prov = pinfo[2]
        attempts = []
        ts = t0
        err = None
        if fail_u < fail_p:
            kind = _wchoice(rt, list(zip(PROVIDER_ERRORS[prov], PROVIDER_ERROR_WEIGHTS)))
            status = kind[0]
            # SDK max_retries=2 -> three attempts, all failing
            for a in range(3):
                d = _lognorm_ms(rt, 60 if status == 429 else 900, 0.6) * MS
                attempts.append((ts, int(ts + d), status))
                ts = int(ts + d)
                if a < 2:
                    ts += int((rt.uniform(0.4, 0.9) * (2 ** a)) * 1000 * MS)
            err = dict(status=status, type=kind[1], short=kind[2], message=kind[3].replace("{model}", mdl))
            out_tok = 0
        else:
            if retry_u < BASE["provider_retry"]:
                d = _lognorm_ms(rt, 60, 0.5) * MS
                attempts.append((ts, int(ts + d), 429))
                ts = int(ts + d + rt.uniform(0.4, 0.9) * 1000 * MS)
                recovered.append(dict(step="critic" if role == "critic_llm" else role, kind="provider_retry",
                                      status=429))
            dur = (_lognorm_ms(rt, 450, 0.35) + out_tok * pinfo[4] * rt.uniform(0.85, 1.25)
                   + in_tok * 0.02) * MS
            attempts.append((ts, int(ts + dur), 200))
            ts = int(ts + dur)
        llm_idx[0] += 1
        return dict(type=role, start=t0, end=ts + int(rt.uniform(0.1, 1.5) * MS), model=mdl, provider=prov,
                    response_model=pinfo[3], in_tok=in_tok, out_tok=out_tok, attempts=attempts, error=err,
                    finish=finish, response_id=_resp_id(rt, prov))

    def gap():
        return int(rt.uniform(0.5, 12.0) * MS)

    aborted = False
    hard_error = None  # (step, exception type, short, message, root status)

    # 1) planner call 1 ---------------------------------------------------------------------
    plan_in = 650 + len(tools_avail) * 120 + int(rt.uniform(20, 140))
    plan_out = int(rt.uniform(25, 70)) + 45 * n_tools
    pinfo_run = PROVIDERS[provider]
    s = model_call(t, "planner", plan_in, plan_out, model, U[0], world.p_planner(), U[10],
                   pinfo_run["finish_tool"] if n_tools else pinfo_run["finish_stop"])
    s["tool_calls"] = list(tool_names)
    s["plan_no"] = 1
    steps.append(s)
    t = s["end"] + gap()
    if s["error"]:
        faults.append(dict(step="planner", fault="provider_error", status=s["error"]["status"]))
        aborted = True
        hard_error = ("planner", s["error"]["type"], s["error"]["short"], s["error"]["message"],
                      503 if s["error"]["status"] == 429 else 500)

    # 2) retrieval -----------------------------------------------------------------------
    empty = False
    if not aborted:
        pe = world.p_empty(model, pv)
        empty = U[2] < pe
        run["reached_retriever"] = True
        d = (_lognorm_ms(rt, 45, 0.4) + _lognorm_ms(rt, 70, 0.5)) * MS  # embed + vector search
        if empty:
            docs = []
        else:
            n_docs = top_k if rt.random() < 0.8 else rt.randint(2, top_k)
            docs = []
            for k in range(n_docs):
                docs.append(("%s-%d" % (source.split("-")[0], rt.randrange(100, 4000)),
                             round(0.88 - 0.05 * k - rt.uniform(0, 0.04), 4)))
        s = dict(type="retriever", start=t, end=t + int(d), docs=docs, query=question, top_k=top_k,
                 source=source, ctx_tokens=0 if empty else ctx_tokens)
        steps.append(s)
        t = s["end"] + gap()
        if empty:
            faults.append(dict(step="retriever", fault="empty_retrieval"))

    # 3) tools ----------------------------------------------------------------------------
    tool_result_tokens = 0
    if not aborted and n_tools:
        run["reached_tool"] = True
        for k, tn in enumerate(tool_names):
            desc, http, args = TOOLS[tn]
            pt = world.p_tool(route, off)
            fail = U[3 + k] < pt
            transient = (not fail) and U[5 + k] < BASE["tool_transient"]
            for attempt in ((0, 1) if transient else (0,)):
                is_fail = fail or (transient and attempt == 0)
                st = dict(type="tool", name=tn, desc=desc, args=args, start=t, call_id=_call_id(rt, provider),
                          http=None, error=None, attempt=attempt)
                tt = t + int(rt.uniform(0.2, 2.0) * MS)
                if http:
                    hm, url, srv, port = http
                    url = url.replace("{id}", str(args.get("ticket_id") or args.get("order_id")
                                                  or args.get("invoice_id") or "security")).replace("{q}", "query")
                    if is_fail:
                        status = _wchoice(rt, TOOL_HTTP_FAIL)
                        hd = _lognorm_ms(rt, 30000 if status == 504 else (40 if status == 429 else 250), 0.4) * MS
                    else:
                        status = 201 if hm == "POST" else 200
                        hd = _lognorm_ms(rt, 180, 0.6) * MS
                    st["http"] = dict(method=hm, url=url, server=srv, port=port, status=status,
                                      start=tt, end=tt + int(hd))
                    tt = tt + int(hd)
                    if is_fail:
                        reason = HTTP_REASON[status]
                        if sdk == "nodejs":
                            st["error"] = dict(type="Error", short="Error",
                                               message=f"{tn} failed: {srv} returned {status} {reason}",
                                               exc_message=f"Request failed with status code {status}")
                        else:
                            kind = "Server error" if status >= 500 else "Client error"
                            st["error"] = dict(type="httpx.HTTPStatusError", short="HTTPStatusError",
                                               message=f"{tn} failed: {srv} returned {status} {reason}",
                                               exc_message=f"{kind} '{status} {reason}' for url '{url}'")
                else:
                    if is_fail:
                        et, em = LOCAL_TOOL_ERRORS[rt.randrange(len(LOCAL_TOOL_ERRORS))]
                        tt += int((10000 if et == "TimeoutError" else rt.uniform(3, 60)) * MS)
                        st["error"] = dict(type=et, short=et.split(".")[-1], message=f"{tn} failed: {em}",
                                           exc_message=em)
                    else:
                        tt += int(rt.uniform(2, 40) * MS)
                st["end"] = tt + int(rt.uniform(0.1, 1.0) * MS)
                if not is_fail:
                    tool_result_tokens += rt.randint(60, 600)
                steps.append(st)
                t = st["end"] + gap()
                if is_fail and transient:
                    recovered.append(dict(step="tool", kind="tool_error_retried", tool=tn,
                                          status=st["http"]["status"] if st["http"] else None))
            if fail:
                faults.append(dict(step="tool", fault="tool_error", tool=tn,
                                   status=st["http"]["status"] if st["http"] else None))
                aborted = True
                err = st["error"]
                hard_error = ("tool", "ToolExecutionError" if sdk == "python" else "Error", "ToolExecutionError",
                              err["message"], 500)
                break

    # 4) optional second planner call ------------------------------------------------------
    if not aborted and n_plan == 2:
        s = model_call(t, "planner", plan_in + plan_out + tool_result_tokens + 40, int(rt.uniform(20, 60)),
                       model, U[1], world.p_planner(), U[11], pinfo_run["finish_stop"])
        s["tool_calls"] = []
        s["plan_no"] = 2
        steps.append(s)
        t = s["end"] + gap()
        if s["error"]:
            faults.append(dict(step="planner", fault="provider_error", status=s["error"]["status"]))
            aborted = True
            hard_error = ("planner", s["error"]["type"], s["error"]["short"], s["error"]["message"],
                          503 if s["error"]["status"] == 429 else 500)

    # 5) generator ------------------------------------------------------------------------
    gen_in = None
    truncated = False
    if not aborted:
        gen_in = min(12000, 280 + int(rt.uniform(10, 90)) + (0 if empty else ctx_tokens) + tool_result_tokens)
        run["reached_generator"] = True
        truncated = U[7] < world.p_trunc(gen_in)
        if truncated:
            gen_out = max_tokens
        else:
            gen_out = int(min(max_tokens - rt.randint(8, 120), 40 + 260 * math.exp(rt.gauss(0, 0.55))))
            if empty:
                gen_out = int(gen_out * 0.6) + 20
        pi = PROVIDERS[provider]
        s = model_call(t, "generator", gen_in, gen_out, model, 1.0, 0.0, U[12],
                       pi["finish_len"] if truncated else pi["finish_stop"])
        s["truncated"] = truncated
        steps.append(s)
        t = s["end"] + gap()
        if truncated:
            faults.append(dict(step="generator", fault="truncation"))

    # 6) critic ---------------------------------------------------------------------------
    hallucinated = False
    if not aborted and critic:
        run["reached_critic"] = True
        c_start = t
        t += int(rt.uniform(0.2, 2.0) * MS)
        judge = model_call(t, "critic_llm", gen_in + (gen_out if gen_out else 0) + 220, int(rt.uniform(40, 130)),
                           JUDGE_MODEL, U[8], world.p_critic_err(), U[13], "stop")
        t = judge["end"] + int(rt.uniform(0.2, 2.0) * MS)
        c = dict(type="critic", start=c_start, end=t, judge=judge, error=None, label=None, score=None,
                 explanation=None, grounded=not empty)
        if judge["error"]:
            c["error"] = judge["error"]
            faults.append(dict(step="critic", fault="evaluator_error", status=judge["error"]["status"]))
            aborted = True
            hard_error = ("critic", judge["error"]["type"], judge["error"]["short"],
                          "hallucination check failed: " + judge["error"]["message"], 500)
        else:
            if empty:
                c.update(flag=True, score=round(rt.uniform(0.02, 0.25), 3),
                         explanation="The answer states specific facts but no context documents were retrieved; "
                                     "none of its claims can be grounded in the knowledge base.")
            elif not truncated and U[9] < world.p_hallu(off):
                hallucinated = True
                claim = rt.choice(("a 30-day refund window", "an 'Enterprise Lite' plan", "a /v2/keys/rotate endpoint",
                                   "a 15% annual discount", "SAML support on the Free tier"))
                c.update(flag=True, score=round(rt.uniform(0.05, 0.35), 3),
                         explanation=f"The answer claims {claim}, which does not appear in any of the "
                                     f"{len(steps[1]['docs']) if steps[1]['type'] == 'retriever' else 0} retrieved documents.")
                faults.append(dict(step="generator", fault="hallucination"))
            else:
                c.update(flag=False, score=round(rt.uniform(0.75, 0.99), 3),
                         explanation="All claims in the answer are supported by the retrieved documents.")
        steps.append(c)
        t = c["end"] + gap()

    # propagate -------------------------------------------------------------------------------
    agent_end = t + int(rt.uniform(0.2, 2.0) * MS)
    run["agent_end_ns"] = agent_end
    run["end_ns"] = agent_end + int(rt.uniform(0.3, 4.0) * MS)
    run["steps"] = steps
    run["faults"] = faults
    run["recovered"] = recovered
    run["gen_in"] = gen_in
    run["hallucinated"] = hallucinated
    run["empty"] = empty
    run["truncated"] = truncated
    if hard_error:
        run["hard_error"] = hard_error
        run["http_status"] = hard_error[4]
        run["agent_message"] = hard_error[3]
    elif faults:
        run["hard_error"] = None
        run["http_status"] = 200
        f0 = faults[0]["fault"]
        if f0 == "empty_retrieval":
            run["agent_message"] = f"no documents retrieved from {source} (top_k={top_k}); answered without context"
            run["soft_type"] = "NoDocumentsRetrieved"
        elif f0 == "truncation":
            run["agent_message"] = f"answer truncated: generation stopped at max_tokens={max_tokens}"
            run["soft_type"] = "AnswerTruncated"
        else:
            run["agent_message"] = "answer rejected by critic: hallucination"
            run["soft_type"] = "AnswerRejected"
    else:
        run["hard_error"] = None
        run["http_status"] = 200
        run["agent_message"] = None
    run["failed"] = bool(faults)
    return run


def _resp_id(r, prov):
    if prov == "openai":
        return "chatcmpl-" + "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(29))
    if prov == "anthropic":
        return "msg_01" + "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789") for _ in range(22))
    return "%024x" % r.getrandbits(96)


def _call_id(r, prov):
    if prov == "anthropic":
        return "toolu_01" + "%020x" % r.getrandbits(80)
    return "call_" + "%024x" % r.getrandbits(96)


# ----------------------------------------------------------------------------------------
# OTLP/JSON helpers
# ----------------------------------------------------------------------------------------

K_INTERNAL, K_SERVER, K_CLIENT = 1, 2, 3
ST_UNSET, ST_OK, ST_ERROR = 0, 1, 2


def _av(v):
    t = type(v)
    if t is str:
        return {"stringValue": v}
    if t is bool:
        return {"boolValue": v}
    if t is int:
        return {"intValue": str(v)}
    if t is float:
        return {"doubleValue": v}
    if t is list or t is tuple:
        return {"arrayValue": {"values": [_av(x) for x in v]}}
    raise TypeError(f"unsupported attribute type {t}")


def _attrs(d):
    return [{"key": k, "value": _av(v)} for k, v in d.items() if v is not None]


def _jd(o):
    return json.dumps(o, separators=(",", ":"), ensure_ascii=False)


class Trace:
    """Collects spans of one run grouped by instrumentation scope."""

    def __init__(self, run, rt):
        self.run = run
        self.rt = rt
        self.tid = run["trace_id"]
        self.scopes = {}  # (name, version) -> [spans]
        self.order = []

    def sid(self):
        return "%016x" % (self.rt.getrandbits(64) | 1)

    def add(self, scope, name, kind, start, end, attrs, parent=None, sid=None, status=None, events=None,
            links=None):
        sid = sid or self.sid()
        sp = {"traceId": self.tid, "spanId": sid}
        if parent:
            sp["parentSpanId"] = parent
        sp["name"] = name
        sp["kind"] = kind
        sp["startTimeUnixNano"] = str(int(start))
        sp["endTimeUnixNano"] = str(int(end))
        sp["attributes"] = _attrs(attrs)
        if events:
            sp["events"] = events
        if links:
            sp["links"] = links
        if status:
            sp["status"] = status
        else:
            sp["status"] = {}
        if scope not in self.scopes:
            self.scopes[scope] = []
            self.order.append(scope)
        self.scopes[scope].append(sp)
        return sid

    def request(self, resource):
        return {"resourceSpans": [{
            "resource": {"attributes": _attrs(resource)},
            "scopeSpans": [{"scope": {"name": s[0], "version": s[1]}, "spans": self.scopes[s]} for s in self.order],
        }]}


def _exc_event(ts, etype, msg, lang="python", escaped=None):
    if lang == "python":
        st = (f"Traceback (most recent call last):\n  File \"/app/agent/runtime.py\", line 212, in run_step\n"
              f"    return await step(state)\n{etype}: {msg}")
    else:
        st = f"{etype}: {msg}\n    at runStep (/app/dist/agent/runtime.js:212:19)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)"
    a = {"exception.type": etype, "exception.message": msg, "exception.stacktrace": st}
    if escaped is not None:
        a["exception.escaped"] = escaped
    return {"timeUnixNano": str(int(ts)), "name": "exception", "attributes": _attrs(a)}


def _err_status(msg):
    return {"code": ST_ERROR, "message": msg}


def _resource(run, conv_key, extra=None):
    svc = SERVICES[conv_key]
    r = {
        "service.name": svc["name"],
        "service.namespace": "assistants",
        "service.version": run["service_version"],
        "deployment.environment.name": "production",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": svc["lang"],
        "telemetry.sdk.version": svc["sdk_version"],
        "cloud.provider": "aws",
        "cloud.region": run["user"]["region"],
        "host.name": run["host"],
    }
    if extra:
        r.update(extra)
    return r


def _root_span(tr, run, scope, extra_attrs=None):
    """HTTP server span created by the web framework instrumentation."""
    route = run["route"]
    path = route.replace("{order_id}", run["order_id"])
    a = {
        "http.request.method": run["method"],
        "http.route": route,
        "url.path": path,
        "url.scheme": "https",
        "server.address": "api.acme.example",
        "network.protocol.version": "1.1",
        "user_agent.original": run["user"]["ua"],
        "http.response.status_code": run["http_status"],
    }
    if extra_attrs:
        a.update(extra_attrs)
    status = None
    if run["failed"]:
        if run["http_status"] >= 500:
            a["error.type"] = str(run["http_status"])
            status = {"code": ST_ERROR}
        else:
            status = _err_status("agent run failed: " + run["agent_message"])
    return tr.add(scope, f"{run['method']} {route}", K_SERVER, run["start_ns"], run["end_ns"], a, status=status)


def _http_client_children(tr, scope, parent, attempts, host, path, lang):
    """Child CLIENT spans of model calls (httpx / undici auto-instrumentation)."""
    for (s, e, status) in attempts:
        a = {"http.request.method": "POST", "url.full": f"https://{host}{path}", "server.address": host,
             "server.port": 443, "http.response.status_code": status}
        st = None
        if status >= 400:
            a["error.type"] = str(status)
            st = {"code": ST_ERROR}
        tr.add(scope, "POST", K_CLIENT, s, e, a, parent=parent, status=st)


def _tool_http_child(tr, scope, parent, h):
    a = {"http.request.method": h["method"], "url.full": h["url"], "server.address": h["server"],
         "server.port": h["port"], "http.response.status_code": h["status"]}
    st = None
    if h["status"] >= 400:
        a["error.type"] = str(h["status"])
        st = {"code": ST_ERROR}
    tr.add(scope, h["method"], K_CLIENT, h["start"], h["end"], a, parent=parent, status=st)


SYSTEM_PROMPT = {
    "planner": "You are the planning module of Acme's support assistant. Decide which tools to call.",
    "generator": "You are Acme's support assistant. Answer using only the provided context.",
    "critic_llm": "You are a strict fact-checker. Is every claim in the answer supported by the context?",
}


def _answer_text(run, step):
    if step.get("truncated"):
        return "Here is a detailed walkthrough. 1. Open Settings > Security. 2. Under API keys, ... 14. Finally, confirm that the"
    if run["empty"]:
        return "You can usually do this from the Settings page; contact support if the option is missing."
    return "Go to Settings > Security > API keys, create a new key, deploy it, then revoke the old key."


def _plan_text(step):
    if step["tool_calls"]:
        return ""
    return "I have enough information to answer."


# ----------------------------------------------------------------------------------------
# Convention renderers
# ----------------------------------------------------------------------------------------

def _agent_failure(run, lang):
    """(status, events, error_type) for the agent span."""
    if not run["failed"]:
        return None, None, None
    he = run["hard_error"]
    if he:
        step, etype, short, msg, _ = he
        ev = [_exc_event(run["agent_end_ns"] - 100_000, etype, msg, lang)]
        return _err_status(f"{short}: {msg}" if lang == "python" else msg), ev, short
    return _err_status(run["agent_message"]), None, run.get("soft_type")


def render_openinference(run, rt):
    tr = Trace(run, rt)
    S_HTTP = ("opentelemetry.instrumentation.fastapi", "0.50b0")
    S_APP = ("answer_engine.agent", "1.0.0")
    S_LC = ("openinference.instrumentation.langchain", "0.1.29")
    S_HTTPX = ("opentelemetry.instrumentation.httpx", "0.50b0")
    u = run["user"]
    ctx = {"session.id": run["session_id"], "user.id": u["id"]}
    meta_base = {"user_segment": u["segment"], "plan_tier": u["tier"]}
    root = _root_span(tr, run, S_HTTP)
    st, ev, _ = _agent_failure(run, "python")
    agent_attrs = {"openinference.span.kind": "AGENT", "agent.name": "support_agent",
                   "input.value": run["question"], "input.mime_type": "text/plain", **ctx,
                   "metadata": _jd(meta_base)}
    gen_step = next((s for s in run["steps"] if s["type"] == "generator"), None)
    if gen_step and not run["hard_error"]:
        agent_attrs["output.value"] = _answer_text(run, gen_step)
        agent_attrs["output.mime_type"] = "text/plain"
    agent = tr.add(S_APP, "support_agent", K_INTERNAL, run["agent_start_ns"], run["agent_end_ns"], agent_attrs,
                   parent=root, status=st, events=ev)
    pinfo = PROVIDERS[run["provider"]]
    step_no = 0
    gen_sid = None
    for s in run["steps"]:
        step_no += 1
        ty = s["type"]
        if ty in ("planner", "generator"):
            node = "planner" if ty == "planner" else "generate"
            meta = dict(meta_base, langgraph_node=node, langgraph_step=step_no,
                        ls_provider=pinfo["oi_provider"], ls_model_name=run["model"])
            a = {"openinference.span.kind": "LLM", "llm.model_name": run["model"],
                 "llm.provider": pinfo["oi_provider"], "llm.system": pinfo["oi_system"],
                 "llm.prompt_template.version": run["pv"],
                 "llm.invocation_parameters": _jd({"model": run["model"], "temperature": run["temperature"],
                                                   "max_tokens": run["max_tokens"] if ty == "generator" else 512}),
                 "llm.input_messages.0.message.role": "system",
                 "llm.input_messages.0.message.content": SYSTEM_PROMPT[ty],
                 "llm.input_messages.1.message.role": "user",
                 "llm.input_messages.1.message.content": run["question"],
                 **ctx, "metadata": _jd(meta)}
            if ty == "planner":
                for k, tn in enumerate(ROUTE_TOOLS[run["route"]]):
                    a[f"llm.tools.{k}.tool.json_schema"] = _jd({"type": "function", "function": {
                        "name": tn, "description": TOOLS[tn][0]}})
            status, events = None, None
            if s["error"]:
                e = s["error"]
                status = _err_status(f"{e['short']}: {e['message']}")
                events = [_exc_event(s["end"] - 50_000, e["type"], e["message"])]
            else:
                a["llm.token_count.prompt"] = s["in_tok"]
                a["llm.token_count.completion"] = s["out_tok"]
                a["llm.token_count.total"] = s["in_tok"] + s["out_tok"]
                a["llm.finish_reason"] = s["finish"]
                a["llm.output_messages.0.message.role"] = "assistant"
                if ty == "planner" and s["tool_calls"]:
                    for k, tn in enumerate(s["tool_calls"]):
                        a[f"llm.output_messages.0.message.tool_calls.{k}.tool_call.function.name"] = tn
                        a[f"llm.output_messages.0.message.tool_calls.{k}.tool_call.function.arguments"] = _jd(TOOLS[tn][2])
                else:
                    a["llm.output_messages.0.message.content"] = (_plan_text(s) if ty == "planner"
                                                                   else _answer_text(run, s))
                    if ty == "generator":
                        a["output.value"] = a["llm.output_messages.0.message.content"]
            sid = tr.add(S_LC, pinfo["oi_span"], K_INTERNAL, s["start"], s["end"], a, parent=agent,
                         status=status, events=events)
            _http_client_children(tr, S_HTTPX, sid, s["attempts"], pinfo["host"], pinfo["path"], "python")
            if ty == "generator":
                gen_sid = sid
        elif ty == "retriever":
            meta = dict(meta_base, langgraph_node="retrieve", langgraph_step=step_no)
            a = {"openinference.span.kind": "RETRIEVER", "input.value": s["query"], **ctx, "metadata": _jd(meta)}
            for k, (did, score) in enumerate(s["docs"]):
                a[f"retrieval.documents.{k}.document.id"] = did
                a[f"retrieval.documents.{k}.document.score"] = score
                a[f"retrieval.documents.{k}.document.content"] = f"[{did}] excerpt from {s['source']} ..."
                a[f"retrieval.documents.{k}.document.metadata"] = _jd({"source": s["source"]})
            tr.add(S_LC, "VectorStoreRetriever", K_INTERNAL, s["start"], s["end"], a, parent=agent)
        elif ty == "tool":
            meta = dict(meta_base, langgraph_node="tools", langgraph_step=step_no)
            a = {"openinference.span.kind": "TOOL", "tool.name": s["name"], "tool.description": s["desc"],
                 "tool.parameters": _jd({"type": "object", "properties": {k: {"type": "string"} for k in s["args"]}}),
                 "input.value": _jd(s["args"]), "input.mime_type": "application/json", **ctx, "metadata": _jd(meta)}
            status, events = None, None
            if s["error"]:
                e = s["error"]
                status = _err_status(e["message"])
                events = [_exc_event(s["end"] - 50_000, e["type"], e["exc_message"])]
            else:
                a["output.value"] = _jd({"ok": True, "data": {"status": "found"}})
                a["output.mime_type"] = "application/json"
            sid = tr.add(S_LC, s["name"], K_INTERNAL, s["start"], s["end"], a, parent=agent, status=status,
                         events=events)
            if s["http"]:
                _tool_http_child(tr, S_HTTPX, sid, s["http"])
        elif ty == "critic":
            # OpenInference feedback carrier: EVALUATOR span, child of the agent, linked to the
            # evaluated generator span (parentage does not identify the target)
            a = {"openinference.span.kind": "EVALUATOR", **ctx, "metadata": _jd(meta_base)}
            status, events = None, None
            if s["error"]:
                e = s["error"]
                status = _err_status(f"{e['short']}: {e['message']}")
                events = [_exc_event(s["end"] - 50_000, e["type"], e["message"])]
            else:
                a.update({"evaluations.0.evaluation.name": "hallucination",
                          "evaluations.0.evaluation.label": "hallucinated" if s["flag"] else "factual",
                          "evaluations.0.evaluation.score": s["score"],
                          "evaluations.0.evaluation.explanation": s["explanation"],
                          "evaluations.0.evaluation.annotator_kind": "LLM"})
            links = [{"traceId": tr.tid, "spanId": gen_sid, "attributes": []}] if gen_sid else None
            cid = tr.add(S_APP, "hallucination_check", K_INTERNAL, s["start"], s["end"], a, parent=agent,
                         status=status, events=events, links=links)
            j = s["judge"]
            ja = {"openinference.span.kind": "LLM", "llm.model_name": JUDGE_MODEL, "llm.provider": "openai",
                  "llm.system": "openai", **ctx}
            jst, jev = None, None
            if j["error"]:
                jst = _err_status(f"{j['error']['short']}: {j['error']['message']}")
                jev = [_exc_event(j["end"] - 50_000, j["error"]["type"], j["error"]["message"])]
            else:
                ja.update({"llm.token_count.prompt": j["in_tok"], "llm.token_count.completion": j["out_tok"],
                           "llm.token_count.total": j["in_tok"] + j["out_tok"], "llm.finish_reason": "stop"})
            jid = tr.add(S_LC, "ChatOpenAI", K_INTERNAL, j["start"], j["end"], ja, parent=cid, status=jst,
                         events=jev)
            _http_client_children(tr, S_HTTPX, jid, j["attempts"], "api.openai.com", "/v1/chat/completions",
                                  "python")
    return tr.request(_resource(run, "openinference")), None


def render_genai(run, rt):
    tr = Trace(run, rt)
    S_HTTP = ("opentelemetry.instrumentation.fastapi", "0.50b0")
    S_APP = ("assist_gateway.agent", "2.3.0")
    S_OAI = {"openai": ("opentelemetry.instrumentation.openai_v2", "2.1b0"),
             "anthropic": ("opentelemetry.instrumentation.anthropic", "0.1b0"),
             "google": ("opentelemetry.instrumentation.vertexai", "2.0b0")}
    S_HTTPX = ("opentelemetry.instrumentation.httpx", "0.50b0")
    u = run["user"]
    pinfo = PROVIDERS[run["provider"]]
    root = _root_span(tr, run, S_HTTP, {"app.user.segment": u["segment"], "app.plan.tier": u["tier"],
                                         "enduser.id": u["id"]})
    st, ev, etype = _agent_failure(run, "python")
    aa = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support_agent",
          "gen_ai.agent.id": "asst_support_01", "gen_ai.conversation.id": run["session_id"],
          "gen_ai.provider.name": pinfo["genai"], "gen_ai.request.model": run["model"]}
    if etype:
        aa["error.type"] = etype
    agent = tr.add(S_APP, "invoke_agent support_agent", K_INTERNAL, run["agent_start_ns"], run["agent_end_ns"], aa,
                   parent=root, status=st, events=ev)
    logs = []
    gen_sid, gen_resp = None, None

    def chat_span(s, mdl, prov, parent, tools=None):
        pi = PROVIDERS[prov]
        a = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": pi["genai"], "gen_ai.request.model": mdl,
             "gen_ai.request.temperature": run["temperature"] if mdl == run["model"] else 0.0,
             "gen_ai.request.max_tokens": (run["max_tokens"] if s["type"] == "generator" else 512),
             "server.address": pi["host"], "server.port": 443}
        if tools:
            a["gen_ai.tool.definitions"] = _jd([{"type": "function", "name": tn, "description": TOOLS[tn][0]}
                                                 for tn in tools])
        status, events = None, None
        if s["error"]:
            e = s["error"]
            a["error.type"] = e["short"]
            status = _err_status(e["message"])
            events = [_exc_event(s["end"] - 50_000, e["type"], e["message"])]
        else:
            a.update({"gen_ai.response.model": s["response_model"], "gen_ai.response.id": s["response_id"],
                      "gen_ai.response.finish_reasons": [s["finish"]],
                      "gen_ai.usage.input_tokens": s["in_tok"], "gen_ai.usage.output_tokens": s["out_tok"]})
            if s["type"] == "planner" and s.get("tool_calls"):
                a["gen_ai.output.messages"] = _jd([{"role": "assistant", "parts": [
                    {"type": "tool_call", "id": f"call_{k}", "name": tn, "arguments": TOOLS[tn][2]}
                    for k, tn in enumerate(s["tool_calls"])], "finish_reason": s["finish"]}])
            elif s["type"] == "generator":
                a["gen_ai.output.messages"] = _jd([{"role": "assistant", "parts": [
                    {"type": "text", "content": _answer_text(run, s)}], "finish_reason": s["finish"]}])
        sid = tr.add(S_OAI[prov], f"chat {mdl}", K_CLIENT, s["start"], s["end"], a, parent=parent, status=status,
                     events=events)
        _http_client_children(tr, S_HTTPX, sid, s["attempts"], pi["host"], pi["path"], "python")
        return sid

    for s in run["steps"]:
        ty = s["type"]
        if ty == "planner":
            chat_span(s, run["model"], run["provider"], agent, tools=ROUTE_TOOLS[run["route"]])
        elif ty == "generator":
            gen_sid = chat_span(s, run["model"], run["provider"], agent)
            gen_resp = s["response_id"]
        elif ty == "retriever":
            a = {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": s["source"],
                 "gen_ai.retrieval.query.text": s["query"],
                 "gen_ai.retrieval.documents": _jd([{"id": d, "score": sc} for d, sc in s["docs"]])}
            tr.add(S_APP, f"retrieval {s['source']}", K_INTERNAL, s["start"], s["end"], a, parent=agent)
        elif ty == "tool":
            a = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": s["name"],
                 "gen_ai.tool.description": s["desc"], "gen_ai.tool.type": "function",
                 "gen_ai.tool.call.id": s["call_id"], "gen_ai.tool.call.arguments": _jd(s["args"])}
            status, events = None, None
            if s["error"]:
                e = s["error"]
                a["error.type"] = e["type"]
                status = _err_status(e["message"])
                events = [_exc_event(s["end"] - 50_000, e["type"], e["exc_message"])]
            else:
                a["gen_ai.tool.call.result"] = _jd({"ok": True, "data": {"status": "found"}})
            sid = tr.add(S_APP, f"execute_tool {s['name']}", K_INTERNAL, s["start"], s["end"], a, parent=agent,
                         status=status, events=events)
            if s["http"]:
                _tool_http_child(tr, S_HTTPX, sid, s["http"])
        elif ty == "critic":
            # the judge call is an ordinary chat span under an app span; the verdict is a
            # gen_ai.evaluation.result event (log record) parented to the generator span
            cst = _err_status("judge call failed") if s["error"] else None
            cid = tr.add(S_APP, "evaluate_answer", K_INTERNAL, s["start"], s["end"], {}, parent=agent, status=cst)
            chat_span(s["judge"], JUDGE_MODEL, "openai", cid)
            la = {"event.name": "gen_ai.evaluation.result", "gen_ai.evaluation.name": "hallucination",
                  "gen_ai.response.id": gen_resp}
            if s["error"]:
                la["error.type"] = s["error"]["short"]
            else:
                la.update({"gen_ai.evaluation.score.value": s["score"],
                           "gen_ai.evaluation.score.label": "fail" if s["flag"] else "pass",
                           "gen_ai.evaluation.explanation": s["explanation"]})
            logs.append({"timeUnixNano": str(s["end"]), "observedTimeUnixNano": str(s["end"] + 2 * MS),
                         "severityNumber": 9, "severityText": "INFO", "eventName": "gen_ai.evaluation.result",
                         "attributes": _attrs(la), "traceId": tr.tid, "spanId": gen_sid or cid})
    res = _resource(run, "genai", {"app.prompt.version": run["pv"]})
    logreq = None
    if logs:
        logreq = {"resourceLogs": [{"resource": {"attributes": _attrs(res)}, "scopeLogs": [
            {"scope": {"name": "assist_gateway.evals", "version": "2.3.0"}, "logRecords": logs}]}]}
    return tr.request(res), logreq


def render_traceloop(run, rt):
    tr = Trace(run, rt)
    S_HTTP = ("opentelemetry.instrumentation.fastapi", "0.50b0")
    S_TL = ("traceloop.tracer", "0.40.2")
    S_LLM = {"openai": ("opentelemetry.instrumentation.openai.v1", "0.40.2"),
             "anthropic": ("opentelemetry.instrumentation.anthropic", "0.40.2"),
             "google": ("opentelemetry.instrumentation.vertexai", "0.40.2")}
    S_PC = ("opentelemetry.instrumentation.pinecone", "0.40.2")
    S_HTTPX = ("opentelemetry.instrumentation.httpx", "0.50b0")
    u = run["user"]
    assoc = {"traceloop.association.properties.user_id": u["id"],
             "traceloop.association.properties.session_id": run["session_id"],
             "traceloop.association.properties.user_segment": u["segment"],
             "traceloop.association.properties.plan_tier": u["tier"],
             "traceloop.association.properties.prompt_version": run["pv"]}
    wf = {"traceloop.workflow.name": "support_agent"}
    root = _root_span(tr, run, S_HTTP)
    st, ev, _ = _agent_failure(run, "python")
    aa = {"traceloop.span.kind": "agent", "traceloop.entity.name": "support_agent", **wf, **assoc,
          "traceloop.entity.input": _jd({"args": [run["question"]], "kwargs": {}})}
    gen_step = next((s for s in run["steps"] if s["type"] == "generator"), None)
    if gen_step and not run["hard_error"]:
        aa["traceloop.entity.output"] = _jd(_answer_text(run, gen_step))
    agent = tr.add(S_TL, "support_agent.agent", K_INTERNAL, run["agent_start_ns"], run["agent_end_ns"], aa,
                   parent=root, status=st, events=ev)

    def task(name, s, inp, out, err=None, err_ev=None):
        a = {"traceloop.span.kind": "task", "traceloop.entity.name": name,
             "traceloop.entity.path": "support_agent", **wf, **assoc, "traceloop.entity.input": _jd(inp)}
        if out is not None:
            a["traceloop.entity.output"] = _jd(out)
        return tr.add(S_TL, f"{name}.task", K_INTERNAL, s["start"], s["end"], a, parent=agent, status=err,
                      events=err_ev)

    def llm(s, mdl, prov, parent, tools=None, content=None):
        pi = PROVIDERS[prov]
        a = {"llm.request.type": "chat", "gen_ai.system": pi["tl_system"], "gen_ai.request.model": mdl,
             "gen_ai.request.temperature": run["temperature"] if mdl == run["model"] else 0.0,
             "gen_ai.request.max_tokens": run["max_tokens"] if s["type"] == "generator" else 512,
             "llm.is_streaming": False, **wf, **assoc,
             "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": SYSTEM_PROMPT[s["type"]],
             "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": run["question"]}
        if tools:
            for k, tn in enumerate(tools):
                a[f"llm.request.functions.{k}.name"] = tn
                a[f"llm.request.functions.{k}.description"] = TOOLS[tn][0]
        status, events = None, None
        if s["error"]:
            e = s["error"]
            status = _err_status(e["message"])
            events = [_exc_event(s["end"] - 50_000, e["type"], e["message"])]
        else:
            a.update({"gen_ai.response.model": s["response_model"], "gen_ai.response.id": s["response_id"],
                      "gen_ai.usage.prompt_tokens": s["in_tok"], "gen_ai.usage.completion_tokens": s["out_tok"],
                      "llm.usage.total_tokens": s["in_tok"] + s["out_tok"],
                      "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": s["finish"]})
            if s["type"] == "planner" and s.get("tool_calls"):
                for k, tn in enumerate(s["tool_calls"]):
                    a[f"gen_ai.completion.0.tool_calls.{k}.name"] = tn
                    a[f"gen_ai.completion.0.tool_calls.{k}.arguments"] = _jd(TOOLS[tn][2])
            elif content is not None:
                a["gen_ai.completion.0.content"] = content
        return tr.add(S_LLM[prov], pi["tl_span"], K_CLIENT, s["start"], s["end"], a, parent=parent,
                      status=status, events=events)

    for s in run["steps"]:
        ty = s["type"]
        if ty in ("planner", "generator"):
            name = "plan" if ty == "planner" else "generate_answer"
            terr, tev = None, None
            if s["error"]:
                terr = _err_status(s["error"]["message"])
                tev = [_exc_event(s["end"], s["error"]["type"], s["error"]["message"])]
            out = None
            if not s["error"]:
                out = ({"tool_calls": s["tool_calls"]} if ty == "planner" else {"answer": _answer_text(run, s)})
            ts = dict(s, start=s["start"] - 200_000, end=s["end"] + 300_000)
            tid = task(name, ts, {"question": run["question"]}, out, terr, tev)
            llm(s, run["model"], run["provider"], tid, tools=ROUTE_TOOLS[run["route"]] if ty == "planner" else None,
                content=_answer_text(run, s) if ty == "generator" else _plan_text(s))
        elif ty == "retriever":
            out = {"documents": [{"id": d, "score": sc} for d, sc in s["docs"]]}
            tid = task("retrieve_documents", s, {"query": s["query"], "top_k": s["top_k"]}, out)
            a = {"db.system": "pinecone", "db.operation": "query", "pinecone.query.top_k": s["top_k"],
                 "pinecone.query.namespace": s["source"], "pinecone.query.include_metadata": True,
                 "pinecone.usage.read_units": 5 + len(s["docs"]), **wf, **assoc}
            evs = []
            for k, (d, sc) in enumerate(s["docs"]):
                evs.append({"timeUnixNano": str(s["end"] - 1_000_000), "name": "db.query.result",
                            "attributes": _attrs({"db.query.result.id": d, "db.query.result.score": sc})})
            tr.add(S_PC, "pinecone.query", K_CLIENT, s["start"] + (s["end"] - s["start"]) // 3,
                   s["end"] - 100_000, a, parent=tid, events=evs or None)
        elif ty == "tool":
            a = {"traceloop.span.kind": "tool", "traceloop.entity.name": s["name"],
                 "traceloop.entity.path": "support_agent", **wf, **assoc,
                 "traceloop.entity.input": _jd({"args": [], "kwargs": s["args"]})}
            status, events = None, None
            if s["error"]:
                e = s["error"]
                status = _err_status(e["message"])
                events = [_exc_event(s["end"] - 50_000, e["type"], e["exc_message"])]
            else:
                a["traceloop.entity.output"] = _jd({"ok": True, "data": {"status": "found"}})
            sid = tr.add(S_TL, f"{s['name']}.tool", K_INTERNAL, s["start"], s["end"], a, parent=agent,
                         status=status, events=events)
            if s["http"]:
                _tool_http_child(tr, S_HTTPX, sid, s["http"])
        elif ty == "critic":
            out = None
            cst, cev = None, None
            if s["error"]:
                cst = _err_status(s["error"]["message"])
                cev = [_exc_event(s["end"], s["error"]["type"], s["error"]["message"])]
            else:
                out = {"verdict": "hallucinated" if s["flag"] else "grounded", "score": s["score"],
                       "explanation": s["explanation"]}
            cid = task("critic", s, {"answer": "...", "n_context_docs": len(run["steps"][1]["docs"])
                                     if len(run["steps"]) > 1 and run["steps"][1]["type"] == "retriever" else 0},
                       out, cst, cev)
            llm(s["judge"], JUDGE_MODEL, "openai", cid, content=None if s["error"] else _jd(out))
    return tr.request(_resource(run, "traceloop")), None


def render_traceai(run, rt):
    tr = Trace(run, rt)
    node = run["sdk"] == "nodejs"
    kind_key = "fi.span.kind" if node else "gen_ai.span.kind"
    lang = "nodejs" if node else "python"
    if node:
        S_HTTP = ("@opentelemetry/instrumentation-http", "0.57.2")
        S_APP = ("concierge-agent-web", "0.8.0")
        S_LLM = {"openai": ("@traceai/openai", "0.1.16"), "anthropic": ("@traceai/anthropic", "0.1.9"),
                 "google": ("@traceai/google-genai", "0.1.4")}
        S_HTTPC = ("@opentelemetry/instrumentation-undici", "0.10.1")
    else:
        S_HTTP = ("opentelemetry.instrumentation.fastapi", "0.50b0")
        S_APP = ("concierge_agent", "0.8.0")
        S_LLM = {"openai": ("traceai_openai", "0.1.12"), "anthropic": ("traceai_anthropic", "0.1.8"),
                 "google": ("traceai_vertexai", "0.1.5")}
        S_HTTPC = ("opentelemetry.instrumentation.httpx", "0.50b0")
    u = run["user"]
    pinfo = PROVIDERS[run["provider"]]
    root = _root_span(tr, run, S_HTTP)
    st, ev, etype = _agent_failure(run, lang)
    aa = {kind_key: "AGENT", "gen_ai.agent.name": "support_agent", "input.value": run["question"],
          "gen_ai.conversation.id": run["session_id"], "user.id": u["id"],
          "metadata": _jd({"user_segment": u["segment"], "plan_tier": u["tier"]})}
    if etype:
        aa["error.type"] = etype
        aa["error.message"] = run["agent_message"]
    gen_step = next((s for s in run["steps"] if s["type"] == "generator"), None)
    if gen_step and not run["hard_error"]:
        aa["output.value"] = _answer_text(run, gen_step)
    agent = tr.add(S_APP, "support_agent", K_INTERNAL, run["agent_start_ns"], run["agent_end_ns"], aa, parent=root,
                   status=st, events=ev)
    gen_sid = None

    def llm(s, mdl, prov, parent, node_name, tools=None):
        pi = PROVIDERS[prov]
        a = {kind_key: "LLM", "gen_ai.operation.name": "chat", "gen_ai.provider.name": pi["traceai"],
             "gen_ai.request.model": mdl,
             "gen_ai.request.temperature": run["temperature"] if mdl == run["model"] else 0.0,
             "gen_ai.request.max_tokens": run["max_tokens"] if s["type"] == "generator" else 512,
             "gen_ai.agent.graph.node_name": node_name,
             "input.value": run["question"], "gen_ai.conversation.id": run["session_id"]}
        if mdl == run["model"]:
            a["gen_ai.prompt.template.name"] = "support_" + ("plan" if s["type"] == "planner" else "answer")
            a["gen_ai.prompt.template.version"] = run["pv"]
        if tools:
            a["gen_ai.tool.definitions"] = _jd([{"type": "function", "function": {"name": tn,
                                                 "description": TOOLS[tn][0]}} for tn in tools])
        status, events = None, None
        if s["error"]:
            e = s["error"]
            et = e["short"] if node else e["type"]
            msg = e["message"] if not node else f"{e['status']} {e['message'].split(' - ', 1)[-1]}"
            a["error.type"] = e["short"]
            a["error.message"] = msg
            status = _err_status(msg)
            events = [_exc_event(s["end"] - 50_000, et, msg, lang)]
        else:
            a.update({"gen_ai.response.model": s["response_model"], "gen_ai.response.id": s["response_id"],
                      "gen_ai.response.finish_reasons": [s["finish"]],
                      "gen_ai.usage.input_tokens": s["in_tok"], "gen_ai.usage.output_tokens": s["out_tok"],
                      "gen_ai.usage.total_tokens": s["in_tok"] + s["out_tok"]})
            if s["type"] == "planner" and s.get("tool_calls"):
                a["gen_ai.output.messages"] = _jd([{"role": "assistant", "tool_calls": [
                    {"id": f"call_{k}", "type": "function",
                     "function": {"name": tn, "arguments": _jd(TOOLS[tn][2])}}
                    for k, tn in enumerate(s["tool_calls"])]}])
            elif s["type"] == "generator":
                a["output.value"] = _answer_text(run, s)
        return tr.add(S_LLM[prov], f"chat {mdl}", K_CLIENT, s["start"], s["end"], a, parent=parent, status=status,
                      events=events)

    for s in run["steps"]:
        ty = s["type"]
        if ty == "planner":
            llm(s, run["model"], run["provider"], agent, "planner", tools=ROUTE_TOOLS[run["route"]])
        elif ty == "generator":
            gen_sid = llm(s, run["model"], run["provider"], agent, "generate")
        elif ty == "retriever":
            a = {kind_key: "RETRIEVER", "gen_ai.agent.graph.node_name": "retrieve",
                 "gen_ai.retrieval.query": s["query"], "gen_ai.retrieval.top_k": s["top_k"],
                 "input.value": s["query"],
                 "gen_ai.retrieval.documents": _jd([{"id": d, "score": sc} for d, sc in s["docs"]])}
            a["output.value"] = a["gen_ai.retrieval.documents"]
            tr.add(S_APP, "retriever", K_INTERNAL, s["start"], s["end"], a, parent=agent)
        elif ty == "tool":
            a = {kind_key: "TOOL", "gen_ai.tool.name": s["name"], "gen_ai.tool.description": s["desc"],
                 "gen_ai.tool.call.id": s["call_id"], "gen_ai.tool.call.arguments": _jd(s["args"]),
                 "gen_ai.agent.graph.node_name": "tools", "input.value": _jd(s["args"])}
            status, events = None, None
            if s["error"]:
                e = s["error"]
                a["error.type"] = e["short"]
                a["error.message"] = e["message"]
                status = _err_status(e["message"])
                events = [_exc_event(s["end"] - 50_000, e["type"], e["exc_message"], lang)]
            else:
                a["gen_ai.tool.call.result"] = _jd({"ok": True, "data": {"status": "found"}})
                a["output.value"] = a["gen_ai.tool.call.result"]
            sid = tr.add(S_APP, s["name"], K_INTERNAL, s["start"], s["end"], a, parent=agent, status=status,
                         events=events)
            if s["http"]:
                _tool_http_child(tr, S_HTTPC, sid, s["http"])
        elif ty == "critic":
            a = {kind_key: "EVALUATOR", "gen_ai.evaluation.name": "detect_hallucination",
                 "eval.model": JUDGE_MODEL, "eval.evaluator_version": "2.4.0"}
            if gen_sid:
                a["gen_ai.evaluation.target_span_id"] = gen_sid
            status = None
            if s["error"]:
                a["error.type"] = s["error"]["short"]
                a["error.message"] = s["error"]["message"]
                status = _err_status(s["error"]["message"])
            else:
                a.update({"gen_ai.evaluation.score.value": s["score"],
                          "gen_ai.evaluation.score.label": "Failed" if s["flag"] else "Passed",
                          "gen_ai.evaluation.explanation": s["explanation"][:1000],
                          "eval.detect_hallucination": s["score"],
                          "eval.detect_hallucination.reason": s["explanation"],
                          "eval.detect_hallucination.latency_ms": (s["end"] - s["start"]) // MS})
            cid = tr.add(S_APP, "eval.detect_hallucination", K_INTERNAL, s["start"], s["end"], a, parent=agent,
                         status=status)
            llm(s["judge"], JUDGE_MODEL, "openai", cid, "critic")
    res = _resource(run, "traceai:" + run["sdk"], {"project_name": "concierge-agent", "project_type": "observe"})
    return tr.request(res), None


RENDER = {"openinference": render_openinference, "genai": render_genai, "traceloop": render_traceloop,
          "traceai": render_traceai}

# ----------------------------------------------------------------------------------------
# Where each cohort attribute lives, per convention (also written to truth.json)
# ----------------------------------------------------------------------------------------

COHORT_KEYS = {
    "route": {c: {"key": "http.route", "where": "root SERVER span (HTTP framework instrumentation)"}
              for c in CONVENTIONS},
    "model": {
        "openinference": {"key": "llm.model_name", "where": "LLM spans (planner, generator); judge LLM span carries the judge model"},
        "genai": {"key": "gen_ai.request.model", "where": "'chat {model}' CLIENT spans (planner, generator) and the invoke_agent span; judge chat span carries the judge model"},
        "traceloop": {"key": "gen_ai.request.model", "where": "LLM CLIENT spans (openai.chat / anthropic.chat / vertexai.generate_content); judge span carries the judge model"},
        "traceai": {"key": "gen_ai.request.model", "where": "LLM spans (planner, generator); judge LLM span carries the judge model"},
    },
    "prompt_version": {
        "openinference": {"key": "llm.prompt_template.version", "where": "LLM spans (planner, generator)"},
        "genai": {"key": "app.prompt.version", "where": "resource attribute"},
        "traceloop": {"key": "traceloop.association.properties.prompt_version", "where": "agent span and every descendant traceloop/LLM/vector-db span (not the HTTP root)"},
        "traceai": {"key": "gen_ai.prompt.template.version", "where": "LLM spans (planner, generator)"},
    },
    "user_segment": {
        "openinference": {"key": "metadata", "json_field": "user_segment", "where": "JSON string attribute on every OpenInference span (AGENT, LLM, RETRIEVER, TOOL, EVALUATOR)"},
        "genai": {"key": "app.user.segment", "where": "root SERVER span"},
        "traceloop": {"key": "traceloop.association.properties.user_segment", "where": "agent span and descendants"},
        "traceai": {"key": "metadata", "json_field": "user_segment", "where": "JSON string attribute on the AGENT span only"},
    },
    "plan_tier": {
        "openinference": {"key": "metadata", "json_field": "plan_tier", "where": "as user_segment"},
        "genai": {"key": "app.plan.tier", "where": "root SERVER span"},
        "traceloop": {"key": "traceloop.association.properties.plan_tier", "where": "agent span and descendants"},
        "traceai": {"key": "metadata", "json_field": "plan_tier", "where": "AGENT span only"},
    },
    "region": {c: {"key": "cloud.region", "where": "resource attribute"} for c in CONVENTIONS},
    "service_version": {c: {"key": "service.version", "where": "resource attribute"} for c in CONVENTIONS},
    "input_tokens": {
        "openinference": {"key": "llm.token_count.prompt", "where": "generator LLM span"},
        "genai": {"key": "gen_ai.usage.input_tokens", "where": "generator chat span"},
        "traceloop": {"key": "gen_ai.usage.prompt_tokens", "where": "generator LLM span"},
        "traceai": {"key": "gen_ai.usage.input_tokens", "where": "generator LLM span"},
    },
}
FAULT_MARKERS = {
    "planner/provider_error": "status ERROR + exception event on the planner LLM span (+ error.type in genai/traceai); "
                              "3 HTTP CLIENT children with the provider status in openinference/genai; agent span ERROR "
                              "with the same exception; root ERROR with HTTP 500 (503 for rate limits)",
    "retriever/empty_retrieval": "retriever span OK with zero documents (openinference: no retrieval.documents.* keys; "
                                 "genai/traceai: documents attribute '[]'; traceloop: no db.query.result events and "
                                 "entity.output documents []); generator runs with a small prompt; critic (if any) "
                                 "flags the answer; agent ERROR 'no documents retrieved ...'; root ERROR, HTTP 200",
    "tool/tool_error": "tool span ERROR + exception event, message '<tool> failed: ...'; HTTP tools have a CLIENT child "
                       "with http.response.status_code 5xx/429; agent ERROR (ToolExecutionError); root ERROR HTTP 500",
    "generator/truncation": "generator span finish reason length (openai) / max_tokens (anthropic) / MAX_TOKENS (gemini), "
                            "output tokens == max_tokens; agent ERROR 'answer truncated ...'; root ERROR, HTTP 200",
    "generator/hallucination": "critic verdict negative (openinference: EVALUATOR span evaluations.0.evaluation.label="
                               "hallucinated linked to the generator span; genai: gen_ai.evaluation.result log record "
                               "label 'fail' parented to the generator span; traceloop: critic.task entity.output "
                               "verdict 'hallucinated'; traceai: EVALUATOR span gen_ai.evaluation.score.label 'Failed' "
                               "with gen_ai.evaluation.target_span_id); agent ERROR 'answer rejected by critic'; root "
                               "ERROR, HTTP 200",
    "critic/evaluator_error": "judge LLM call ERROR + exception under the critic span; critic span ERROR; agent ERROR; "
                              "root ERROR HTTP 500 (genai: evaluation event carries error.type and no score)",
}


# ----------------------------------------------------------------------------------------
# Truth computation
# ----------------------------------------------------------------------------------------

def _rate(num, den):
    return num / den if den else None


def _rr(a_num, a_den, b_num, b_den):
    ra, rb = _rate(a_num, a_den), _rate(b_num, b_den)
    if ra is None or rb is None or rb == 0:
        return None
    return ra / rb


def _has(rec, step, fault):
    return any(f["step"] == step and f["fault"] == fault for f in rec["faults"])


def compute_truth(world, recs, evaluate_plants=None):
    n = len(recs)
    P = PLANT
    out = []
    if evaluate_plants is None:
        evaluate_plants = not world.null

    def cohort_rr(pred, reach, step, fault):
        a_n = a_d = b_n = b_d = 0
        sup = 0
        for r in recs:
            inside = pred(r)
            if inside:
                sup += 1
            if not reach(r):
                continue
            hit = _has(r, step, fault)
            if inside:
                a_d += 1
                a_n += hit
            else:
                b_d += 1
                b_n += hit
        return dict(support_runs=sup, support=round(sup / n, 5) if n else None,
                    inside=dict(runs_reaching_step=a_d, faults=a_n, rate=_round(_rate(a_n, a_d))),
                    outside=dict(runs_reaching_step=b_d, faults=b_n, rate=_round(_rate(b_n, b_d))),
                    observed_rr=_round(_rr(a_n, a_d, b_n, b_d)))

    reach_ret = lambda r: r["reached"]["retriever"]
    reach_tool = lambda r: r["reached"]["tool"]
    reach_gen = lambda r: r["reached"]["generator"]
    reach_eval = lambda r: r["evaluated"]

    if evaluate_plants:
        c = P["interaction"]
        st = cohort_rr(lambda r: r["model"] == c["model"] and r["prompt_version"] == c["prompt_version"],
                       reach_ret, "retriever", "empty_retrieval")
        m_only = cohort_rr(lambda r: r["model"] == c["model"], reach_ret, "retriever", "empty_retrieval")
        p_only = cohort_rr(lambda r: r["prompt_version"] == c["prompt_version"], reach_ret, "retriever",
                           "empty_retrieval")
        out.append(dict(id="interaction", kind="interaction",
                        attributes=[dict(name="model", value=c["model"], keys=COHORT_KEYS["model"]),
                                    dict(name="prompt_version", value=c["prompt_version"],
                                         keys=COHORT_KEYS["prompt_version"],
                                         note="service.version 1.6.1 co-occurs perfectly with prompt_version v7")],
                        step="retriever", fault="empty_retrieval", planted_rr=c["rr"], **st,
                        marginals=dict(model=dict(value=c["model"], observed_rr=m_only["observed_rr"],
                                                  support=m_only["support"]),
                                       prompt_version=dict(value=c["prompt_version"],
                                                           observed_rr=p_only["observed_rr"],
                                                           support=p_only["support"])),
                        mechanism="the planner's query rewrite under prompt v7 on gpt-4o adds over-specific "
                                  "filters; the vector search returns zero documents (no error status)"))
        c = P["route"]
        st = cohort_rr(lambda r: r["route"] == c["route"], reach_tool, "tool", "tool_error")
        out.append(dict(id="route", kind="route",
                        attributes=[dict(name="route", value=c["route"], keys=COHORT_KEYS["route"])],
                        step="tool", fault="tool_error", planted_rr=c["rr"], planted_rr_unit="per tool call", **st,
                        mechanism="billing-api / currency API behind this route's tools return 5xx/429 more often"))
        c = P["threshold"]
        st = cohort_rr(lambda r: r["gen_input_tokens"] is not None and r["gen_input_tokens"] > c["input_tokens_gt"],
                       reach_gen, "generator", "truncation")
        out.append(dict(id="threshold", kind="threshold",
                        attributes=[dict(name="input_tokens", op=">", value=c["input_tokens_gt"],
                                         keys=COHORT_KEYS["input_tokens"])],
                        step="generator", fault="truncation", planted_rr=c["rr"], **st,
                        mechanism="long retrieved context leads to long answers that hit max_tokens"))
        # spike
        c = P["spike"]
        s0, s1 = world.spike_start, world.spike_end
        inside = lambda r: r["route"] == c["route"] and s0 <= r["offset_s"] < s1
        st = cohort_rr(inside, reach_tool, "tool", "tool_error")
        same_route_out = cohort_rr(lambda r: r["route"] == c["route"] and not (s0 <= r["offset_s"] < s1),
                                   reach_tool, "tool", "tool_error")
        other_in = cohort_rr(lambda r: r["route"] != c["route"] and s0 <= r["offset_s"] < s1,
                             reach_tool, "tool", "tool_error")
        out.append(dict(id="spike", kind="spike",
                        attributes=[dict(name="route", value=c["route"], keys=COHORT_KEYS["route"])],
                        step="tool", fault="tool_error", planted_rr=c["rr"], planted_rr_unit="per tool call",
                        start_unix=world.start + s0, end_unix=world.start + s1,
                        start_offset_min=s0 / 60, end_offset_min=s1 / 60,
                        observed_rr=st["observed_rr"], support=st["support"], support_runs=st["support_runs"],
                        rate_inside=st["inside"], rate_outside_any=st["outside"],
                        rate_same_route_outside_window=same_route_out["inside"],
                        rate_other_routes_inside_window=other_in["inside"],
                        mechanism="3-minute incident of the tools behind this route (HTTP 5xx/429)"))
        c = P["shift"]
        s0 = world.shift_start
        st = cohort_rr(lambda r: r["offset_s"] >= s0, reach_eval, "generator", "hallucination")
        out.append(dict(id="shift", kind="shift", attributes=[],
                        step="generator", fault="hallucination", detected_by="critic", planted_rr=c["rr"],
                        start_unix=world.start + s0, end_unix=world.start + world.minutes * 60,
                        start_offset_min=s0 / 60, end_offset_min=world.minutes,
                        observed_rr=st["observed_rr"], support=st["support"], support_runs=st["support_runs"],
                        rate_inside=st["inside"], rate_outside=st["outside"],
                        rate_denominator="runs whose answer was evaluated by a critic with grounded context",
                        mechanism="sustained regression: hallucinations flagged by the critic rise 2.5x"))

    failed = sum(r["outcome"] == "failed" for r in recs)
    by_step, by_fault, by_conv = {}, {}, {}
    for r in recs:
        c = by_conv.setdefault(r["convention"], dict(runs=0, failed=0))
        c["runs"] += 1
        if r["outcome"] == "failed":
            c["failed"] += 1
            by_step[r["step"]] = by_step.get(r["step"], 0) + 1
            k = f"{r['step']}/{r['fault']}"
            by_fault[k] = by_fault.get(k, 0) + 1
    for c in by_conv.values():
        c["failure_rate"] = round(c["failed"] / c["runs"], 5)
    base_obs = {}
    # observed base rates outside every planted cohort (for the null variant: overall)
    for key, reach, step, fault in (("planner_error", lambda r: True, "planner", "provider_error"),
                                    ("empty_retrieval", reach_ret, "retriever", "empty_retrieval"),
                                    ("tool_error", reach_tool, "tool", "tool_error"),
                                    ("truncation", reach_gen, "generator", "truncation"),
                                    ("hallucination", reach_eval, "generator", "hallucination"),
                                    ("critic_error", lambda r: r["reached"]["critic"], "critic", "evaluator_error")):
        d = sum(1 for r in recs if reach(r))
        k = sum(1 for r in recs if reach(r) and _has(r, step, fault))
        base_obs[key] = dict(runs_reaching_step=d, faults=k, rate=_round(_rate(k, d)))
    return dict(
        overall=dict(runs=n, failed=failed, failure_rate=round(failed / n, 5) if n else None,
                     failed_by_blamed_step=by_step, failed_by_fault=by_fault, by_convention=by_conv,
                     observed_step_rates=base_obs,
                     recovered_runs=sum(1 for r in recs if r["recovered"])),
        planted=out)


def _round(x, nd=5):
    return None if x is None else round(x, nd)


# ----------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------

def run_record(run):
    f0 = run["faults"][0] if run["faults"] else None
    reached = dict(planner=True, retriever=bool(run.get("reached_retriever")), tool=bool(run.get("reached_tool")),
                   generator=bool(run.get("reached_generator")), critic=bool(run.get("reached_critic")))
    evaluated = bool(run.get("reached_critic")) and not run["empty"] and not run["truncated"] and not any(
        f["fault"] == "evaluator_error" for f in run["faults"])
    u = run["user"]
    return dict(
        trace_id=run["trace_id"], start_unix=round(run["start_ns"] / 1e9, 6), offset_s=round(run["offset"], 3),
        convention=run["conv"], sdk=run["sdk"],
        outcome="failed" if run["failed"] else "ok",
        step=f0["step"] if f0 else None, fault=f0["fault"] if f0 else None,
        faults=run["faults"], recovered=run["recovered"], http_status=run["http_status"],
        route=run["route"], model=run["model"], prompt_version=run["pv"], service_version=run["service_version"],
        user_segment=u["segment"], plan_tier=u["tier"], region=u["region"], user_agent=u["ua"], locale=u["locale"],
        host=run["host"], temperature=run["temperature"],
        gen_input_tokens=run["gen_in"], critic=run["critic"], reached=reached, evaluated=evaluated,
        n_tool_calls=sum(1 for s in run["steps"] if s["type"] == "tool"),
        n_planner_calls=sum(1 for s in run["steps"] if s["type"] == "planner"),
    )


def generate(out_dir, runs=20000, minutes=120.0, start=None, seed=2, null=False, use_gzip=False, quiet=False):
    t0 = time.time()
    if start is None:
        start = int(time.time() - minutes * 60)
    world = World(seed, runs, minutes, start, null)
    os.makedirs(out_dir, exist_ok=True)
    op = (lambda p: gzip.open(p + ".gz", "wt", encoding="utf-8", compresslevel=6)) if use_gzip else \
        (lambda p: open(p, "w", encoding="utf-8"))
    ft = op(os.path.join(out_dir, "traces.otlp.jsonl"))
    fl = op(os.path.join(out_dir, "logs.otlp.jsonl"))
    fr = op(os.path.join(out_dir, "runs.jsonl"))
    recs = []
    n_spans = n_logs = 0
    try:
        for i in range(runs):
            run = simulate(world, i)
            rt = random.Random(f"{seed}:{i}:r:{int(null)}")
            treq, lreq = RENDER[run["conv"]](run, rt)
            for ss in treq["resourceSpans"][0]["scopeSpans"]:
                n_spans += len(ss["spans"])
            ft.write(_jd(treq))
            ft.write("\n")
            if lreq:
                n_logs += sum(len(sl["logRecords"]) for sl in lreq["resourceLogs"][0]["scopeLogs"])
                fl.write(_jd(lreq))
                fl.write("\n")
            rec = run_record(run)
            recs.append(rec)
            fr.write(_jd(rec))
            fr.write("\n")
    finally:
        ft.close()
        fl.close()
        fr.close()
    truth = dict(
        generator="benches/independent/gen.py",
        format=dict(traces="traces.otlp.jsonl" + (".gz" if use_gzip else ""),
                    logs="logs.otlp.jsonl" + (".gz" if use_gzip else ""),
                    runs="runs.jsonl" + (".gz" if use_gzip else ""),
                    encoding="OTLP/JSON, one Export*ServiceRequest per line; ids hex; int64 as strings"),
        params=dict(seed=seed, runs=runs, minutes=minutes, start_unix=start, end_unix=start + minutes * 60,
                    null=null, gzip=use_gzip),
        variant="null" if null else "signal",
        conventions={c: dict(share=0.25) for c in CONVENTIONS},
        services={k: v["name"] for k, v in SERVICES.items()},
        base_rates=BASE, structure=dict(p_second_planner=P_SECOND_PLANNER, p_critic=P_CRITIC,
                                        tool_calls=dict(TOOL_COUNT_P), judge_model=JUDGE_MODEL),
        attribute_distributions=dict(
            routes={r[0]: r[1] for r in ROUTES}, models={m[0]: m[1] for m in MODELS},
            prompt_version=dict(p_v7_given_gpt4o=P_V7_GIVEN_MODEL["gpt-4o"], p_v7_given_other=round(P_V7_OTHER, 5),
                                v5_to_v6_ratio_in_rest="3:4"),
            service_version_by_prompt_version=SERVICE_VERSION,
            user_segment=dict(SEGMENTS), region=dict(REGIONS)),
        cohort_attribute_keys=COHORT_KEYS,
        noise_attributes=dict(
            region="resource cloud.region (us-east-1, eu-west-1, ap-southeast-2)",
            host="resource host.name (pod names)",
            user_agent="root span user_agent.original (5 clients)",
            temperature="request temperature on the run's model calls (0.0, 0.2, 0.7)",
            user_segment="no planted effect", plan_tier="no planted effect",
            locale="runs.jsonl only (not emitted)"),
        symptom_attributes="span durations (retries, 10 s tool timeouts, 30 s 504s), output token counts "
                           "(0 on failed calls, == max_tokens on truncation, shorter answers after empty "
                           "retrieval), retrieved document count, root http.response.status_code",
        fault_markers=FAULT_MARKERS,
        counts=dict(spans=n_spans, log_records=n_logs),
    )
    truth.update(compute_truth(world, recs))
    if null:
        truth["planted"] = []
        # the planted cohorts' definitions evaluated on the null data (should all be near 1)
        ref = compute_truth(world, recs, evaluate_plants=True)["planted"]
        truth["null_reference"] = [dict(id=p["id"], observed_rr=p["observed_rr"], support=p["support"])
                                   for p in ref]
    truth["generation_seconds"] = round(time.time() - t0, 3)
    with open(os.path.join(out_dir, "truth.json"), "w", encoding="utf-8") as f:
        json.dump(truth, f, indent=2)
        f.write("\n")
    if not quiet:
        o = truth["overall"]
        print(f"wrote {runs} runs ({n_spans} spans, {n_logs} log records) to {out_dir} in "
              f"{truth['generation_seconds']} s; failure rate {o['failure_rate']:.4f}", file=sys.stderr)
    return truth


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--start", type=float, default=None, help="unix seconds (default: now - minutes)")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--null", action="store_true", help="null variant: no planted cohort, spike or shift")
    ap.add_argument("--gzip", action="store_true", help="gzip the .jsonl outputs")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    start = None if a.start is None else (int(a.start) if float(a.start).is_integer() else a.start)
    generate(a.out, a.runs, a.minutes, start, a.seed, a.null, a.gzip, a.quiet)


if __name__ == "__main__":
    main()
