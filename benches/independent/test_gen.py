#!/usr/bin/env python3
"""Self-check for gen.py / send.py (stdlib unittest).

    python3 -m unittest -v test_gen.py        (from this directory)

Generates small corpora into a temporary directory (never into the repository) and checks that
the data is well-formed OTLP/JSON, that truth.json and runs.jsonl agree with what the traces
actually show, that the planted cohorts are visible with roughly the planted strength, and that
the null variant carries no planted structure.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
DIGITS = re.compile(r"^[0-9]+$")
START = 1750000000
N_SMALL = 2000
N_BAND = 8000


def _val(v):
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return v["doubleValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "arrayValue" in v:
        return [_val(x) for x in v["arrayValue"].get("values", [])]
    raise AssertionError(f"unknown AnyValue {v}")


def _amap(attrs):
    return {a["key"]: _val(a["value"]) for a in attrs}


def _lines(path):
    if os.path.exists(path + ".gz"):
        with gzip.open(path + ".gz", "rt", encoding="utf-8") as f:
            return [l for l in f.read().splitlines() if l.strip()]
    with open(path, encoding="utf-8") as f:
        return [l for l in f.read().splitlines() if l.strip()]


def load_corpus(d):
    traces = [json.loads(l) for l in _lines(os.path.join(d, "traces.otlp.jsonl"))]
    logs = [json.loads(l) for l in _lines(os.path.join(d, "logs.otlp.jsonl"))]
    runs = [json.loads(l) for l in _lines(os.path.join(d, "runs.jsonl"))]
    with open(os.path.join(d, "truth.json"), encoding="utf-8") as f:
        truth = json.load(f)
    return traces, logs, runs, truth


def flatten(treq):
    """-> (resource attrs, [span dict with parsed attrs])"""
    rs = treq["resourceSpans"][0]
    res = _amap(rs["resource"]["attributes"])
    spans = []
    for ss in rs["scopeSpans"]:
        for s in ss["spans"]:
            d = dict(s)
            d["a"] = _amap(s["attributes"])
            d["scope"] = ss["scope"]["name"]
            spans.append(d)
    return res, spans


def extract(conv, res, spans, logs_by_trace):
    """Read a run's outcome back from its spans, convention by convention."""
    by_id = {s["spanId"]: s for s in spans}
    root = [s for s in spans if "parentSpanId" not in s][0]
    agent = [s for s in spans if s.get("parentSpanId") == root["spanId"]][0]
    out = dict(root=root, agent=agent, planner_err=0, tool_err=0, n_docs=None, finish=None, gen_in=None,
               critic_neg=None, critic_err=False, planner_models=set())
    err = lambda s: s.get("status", {}).get("code") == 2

    def parent(s):
        return by_id.get(s.get("parentSpanId"))

    for s in spans:
        a = s["a"]
        if conv == "openinference":
            k = a.get("openinference.span.kind")
            if k == "LLM" and parent(s)["a"].get("openinference.span.kind") == "AGENT":
                node = json.loads(a["metadata"])["langgraph_node"]
                if node == "planner":
                    out["planner_err"] += err(s)
                    out["planner_models"].add(a["llm.model_name"])
                else:
                    out["finish"] = a.get("llm.finish_reason")
                    out["gen_in"] = a.get("llm.token_count.prompt")
            elif k == "RETRIEVER":
                out["n_docs"] = sum(1 for key in a if re.match(r"retrieval\.documents\.\d+\.document\.id$", key))
            elif k == "TOOL":
                out["tool_err"] += err(s)
            elif k == "EVALUATOR":
                out["critic_err"] = err(s)
                if "evaluations.0.evaluation.label" in a:
                    out["critic_neg"] = a["evaluations.0.evaluation.label"] == "hallucinated"
        elif conv == "genai":
            op = a.get("gen_ai.operation.name")
            if op == "chat" and parent(s)["spanId"] == agent["spanId"]:
                if "gen_ai.tool.definitions" in a:
                    out["planner_err"] += err(s)
                    out["planner_models"].add(a["gen_ai.request.model"])
                else:
                    out["finish"] = (a.get("gen_ai.response.finish_reasons") or [None])[0]
                    out["gen_in"] = a.get("gen_ai.usage.input_tokens")
            elif op == "retrieval":
                out["n_docs"] = len(json.loads(a["gen_ai.retrieval.documents"]))
            elif op == "execute_tool":
                out["tool_err"] += err(s)
            elif s["name"] == "evaluate_answer":
                out["critic_err"] = err(s)
        elif conv == "traceloop":
            k = a.get("traceloop.span.kind")
            p = parent(s)
            if k == "tool":
                out["tool_err"] += err(s)
            elif k == "task" and a["traceloop.entity.name"] == "critic":
                out["critic_err"] = err(s)
                if "traceloop.entity.output" in a:
                    out["critic_neg"] = json.loads(a["traceloop.entity.output"])["verdict"] == "hallucinated"
            elif "llm.request.type" in a and p["a"].get("traceloop.entity.name") == "plan":
                out["planner_err"] += err(s)
                out["planner_models"].add(a["gen_ai.request.model"])
            elif "llm.request.type" in a and p["a"].get("traceloop.entity.name") == "generate_answer":
                out["finish"] = a.get("gen_ai.completion.0.finish_reason")
                out["gen_in"] = a.get("gen_ai.usage.prompt_tokens")
            elif s["name"] == "pinecone.query":
                out["n_docs"] = sum(1 for e in s.get("events", []) if e["name"] == "db.query.result")
        elif conv == "traceai":
            k = a.get("gen_ai.span.kind") or a.get("fi.span.kind")
            if k == "LLM":
                node = a.get("gen_ai.agent.graph.node_name")
                if node == "planner":
                    out["planner_err"] += err(s)
                    out["planner_models"].add(a["gen_ai.request.model"])
                elif node == "generate":
                    out["finish"] = (a.get("gen_ai.response.finish_reasons") or [None])[0]
                    out["gen_in"] = a.get("gen_ai.usage.input_tokens")
            elif k == "RETRIEVER":
                out["n_docs"] = len(json.loads(a["gen_ai.retrieval.documents"]))
            elif k == "TOOL":
                out["tool_err"] += err(s)
            elif k == "EVALUATOR":
                out["critic_err"] = err(s)
                if "gen_ai.evaluation.score.label" in a:
                    out["critic_neg"] = a["gen_ai.evaluation.score.label"] == "Failed"
    if conv == "genai":
        for rec in logs_by_trace.get(root["traceId"], []):
            la = _amap(rec["attributes"])
            if "gen_ai.evaluation.score.label" in la:
                out["critic_neg"] = la["gen_ai.evaluation.score.label"] == "fail"
    return out


def lookup(key_spec, res, spans):
    """Value of a cohort attribute using the key table written to truth.json."""
    key = key_spec["key"]
    vals = set()
    if key in res:
        vals.add(res[key])
    for s in spans:
        if key in s["a"]:
            v = s["a"][key]
            if "json_field" in key_spec:
                v = json.loads(v).get(key_spec["json_field"])
            vals.add(v)
    return vals


def rr_from_runs(runs, pred, reach, step, fault):
    a_n = a_d = b_n = b_d = 0
    for r in runs:
        if not reach(r):
            continue
        hit = any(f["step"] == step and f["fault"] == fault for f in r["faults"])
        if pred(r):
            a_d += 1
            a_n += hit
        else:
            b_d += 1
            b_n += hit
    return (a_n / a_d) / (b_n / b_d) if a_d and b_d and b_n else None


class GenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="indep_gen_test_")
        t = cls.tmp.name
        cls.small = os.path.join(t, "small")
        cls.small_truth = gen.generate(cls.small, runs=N_SMALL, minutes=120, start=START, seed=2, quiet=True)
        cls.band = os.path.join(t, "band")
        cls.band_null = os.path.join(t, "band_null")
        gen.generate(cls.band, runs=N_BAND, minutes=120, start=START, seed=2, quiet=True)
        gen.generate(cls.band_null, runs=N_BAND, minutes=120, start=START, seed=2, null=True, quiet=True)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    # ------------------------------------------------------------------------------------
    def test_otlp_json_wellformed(self):
        traces, logs, runs, truth = load_corpus(self.small)
        self.assertEqual(len(traces), N_SMALL)
        seen_tids = set()
        span_ids = {}
        for raw in _lines(os.path.join(self.small, "traces.otlp.jsonl")):
            self.assertTrue(raw.startswith('{"resourceSpans":['))
        for treq in traces:
            self.assertEqual(list(treq), ["resourceSpans"])
            self.assertEqual(len(treq["resourceSpans"]), 1)
            res, spans = flatten(treq)
            self.assertIn("service.name", res)
            self.assertIn("service.version", res)
            tids = {s["traceId"] for s in spans}
            self.assertEqual(len(tids), 1, "one trace per line")
            tid = tids.pop()
            self.assertRegex(tid, HEX32)
            self.assertNotIn(tid, seen_tids)
            seen_tids.add(tid)
            ids = set()
            for s in spans:
                self.assertRegex(s["spanId"], HEX16)
                self.assertNotIn(s["spanId"], ids)
                ids.add(s["spanId"])
                self.assertIsInstance(s["startTimeUnixNano"], str)
                self.assertRegex(s["startTimeUnixNano"], DIGITS)
                self.assertRegex(s["endTimeUnixNano"], DIGITS)
                self.assertGreaterEqual(int(s["endTimeUnixNano"]), int(s["startTimeUnixNano"]))
                self.assertIn(s["kind"], (1, 2, 3))
                for a in s["attributes"]:
                    v = a["value"]
                    self.assertEqual(len(v), 1)
                    if "intValue" in v:
                        self.assertIsInstance(v["intValue"], str)
                        self.assertRegex(v["intValue"], r"^-?[0-9]+$")
                for e in s.get("events", []):
                    self.assertRegex(e["timeUnixNano"], DIGITS)
                for l in s.get("links", []):
                    self.assertRegex(l["traceId"], HEX32)
                    self.assertRegex(l["spanId"], HEX16)
            roots = [s for s in spans if "parentSpanId" not in s]
            self.assertEqual(len(roots), 1)
            self.assertEqual(roots[0]["kind"], 2, "root is the HTTP SERVER span")
            for s in spans:
                if "parentSpanId" in s:
                    self.assertRegex(s["parentSpanId"], HEX16)
                    self.assertIn(s["parentSpanId"], ids, "parent inside the same trace")
                for l in s.get("links", []):
                    self.assertIn(l["spanId"], ids)
            span_ids[tid] = ids
        self.assertGreater(len(logs), 0)
        for lreq in logs:
            self.assertEqual(list(lreq), ["resourceLogs"])
            for sl in lreq["resourceLogs"][0]["scopeLogs"]:
                for rec in sl["logRecords"]:
                    self.assertRegex(rec["traceId"], HEX32)
                    self.assertRegex(rec["spanId"], HEX16)
                    self.assertIn(rec["spanId"], span_ids[rec["traceId"]])
                    self.assertRegex(rec["timeUnixNano"], DIGITS)
                    self.assertEqual(rec["eventName"], "gen_ai.evaluation.result")

    def test_runs_file_matches_traces(self):
        traces, logs, runs, truth = load_corpus(self.small)
        self.assertEqual(len(runs), len(traces))
        prev = -1
        for r, treq in zip(runs, traces):
            res, spans = flatten(treq)
            root = [s for s in spans if "parentSpanId" not in s][0]
            self.assertEqual(r["trace_id"], root["traceId"])
            self.assertAlmostEqual(r["start_unix"], int(root["startTimeUnixNano"]) / 1e9, places=5)
            self.assertGreaterEqual(r["start_unix"], prev, "runs sorted by start time")
            prev = r["start_unix"]
            self.assertGreaterEqual(r["start_unix"], START)
            self.assertLess(r["start_unix"], START + 120 * 60)
        self.assertEqual(truth["overall"]["runs"], N_SMALL)
        self.assertEqual(truth["overall"]["failed"], sum(r["outcome"] == "failed" for r in runs))

    def test_traces_show_the_ground_truth(self):
        """What runs.jsonl says about each run can be read back from its spans (and logs)."""
        traces, logs, runs, truth = load_corpus(self.small)
        logs_by_trace = {}
        for lreq in logs:
            for sl in lreq["resourceLogs"][0]["scopeLogs"]:
                for rec in sl["logRecords"]:
                    logs_by_trace.setdefault(rec["traceId"], []).append(rec)
        keys = truth["cohort_attribute_keys"]
        length_reasons = {"length", "max_tokens", "MAX_TOKENS"}
        seen_faults = set()
        for r, treq in zip(runs, traces):
            conv = r["convention"]
            res, spans = flatten(treq)
            x = extract(conv, res, spans, logs_by_trace)
            faults = {f["fault"] for f in r["faults"]}
            seen_faults |= {(conv, f) for f in faults}
            failed = r["outcome"] == "failed"
            msg = f"{conv} {r['trace_id']} {r['faults']}"
            self.assertEqual(x["root"]["status"].get("code") == 2, failed, msg)
            self.assertEqual(x["agent"]["status"].get("code") == 2, failed, msg)
            self.assertEqual(x["root"]["a"]["http.response.status_code"], r["http_status"], msg)
            hard = bool(faults & {"provider_error", "tool_error", "evaluator_error"})
            self.assertEqual(r["http_status"] >= 500, hard, msg)
            self.assertEqual(x["planner_err"] > 0, "provider_error" in faults, msg)
            if r["reached"]["retriever"]:
                self.assertEqual(x["n_docs"] == 0, "empty_retrieval" in faults, msg)
            else:
                self.assertIsNone(x["n_docs"], msg)
            retried = sum(1 for v in r["recovered"] if v["kind"] == "tool_error_retried")
            self.assertEqual(x["tool_err"], int("tool_error" in faults) + retried, msg)
            if r["reached"]["generator"]:
                self.assertEqual(x["finish"] in length_reasons, "truncation" in faults, msg)
                self.assertEqual(x["gen_in"], r["gen_input_tokens"], msg)
            self.assertEqual(x["critic_err"], "evaluator_error" in faults, msg)
            if r["reached"]["critic"] and "evaluator_error" not in faults:
                expect_neg = "hallucination" in faults or "empty_retrieval" in faults
                self.assertEqual(x["critic_neg"], expect_neg, msg)
            if "hallucination" in faults:
                self.assertTrue(r["critic"], "hallucinations are only known through a critic")
            # cohort attributes are where truth.json says they are, with the run's values
            for name, field in (("route", "route"), ("prompt_version", "prompt_version"),
                                ("user_segment", "user_segment"), ("plan_tier", "plan_tier"),
                                ("region", "region"), ("service_version", "service_version")):
                self.assertEqual(lookup(keys[name][conv], res, spans), {r[field]}, f"{name} {msg}")
            models = lookup(keys["model"][conv], res, spans)
            self.assertIn(r["model"], models, msg)
            self.assertTrue(models <= {r["model"], gen.JUDGE_MODEL}, msg)
            self.assertTrue(x["planner_models"] == {r["model"]}, msg)
        for conv in gen.CONVENTIONS:
            for f in ("provider_error", "empty_retrieval", "tool_error", "truncation", "hallucination"):
                self.assertIn((conv, f), seen_faults, f"{conv} shows no {f} in the small corpus")

    def test_cohort_attributes_not_on_same_span_everywhere(self):
        keys = gen.COHORT_KEYS
        for name in ("prompt_version", "user_segment"):
            placements = {(v["key"], v["where"]) for v in keys[name].values()}
            self.assertGreaterEqual(len(placements), 3, name)

    def test_service_version_cooccurs_with_prompt_version(self):
        traces, logs, runs, truth = load_corpus(self.small)
        pairs = set()
        for r, treq in zip(runs, traces):
            res, spans = flatten(treq)
            pairs.add((r["prompt_version"], res["service.version"]))
        self.assertEqual(pairs, set(gen.SERVICE_VERSION.items()))
        self.assertEqual(sum(1 for p in pairs if p[1] == "1.6.1"), 1)

    def test_failure_rate_and_convention_shares(self):
        for d in (self.band, self.band_null):
            traces_n = len(_lines(os.path.join(d, "traces.otlp.jsonl")))
            with open(os.path.join(d, "truth.json")) as f:
                truth = json.load(f)
            self.assertEqual(traces_n, N_BAND)
            o = truth["overall"]
            self.assertGreaterEqual(o["failure_rate"], 0.08, d)
            self.assertLessEqual(o["failure_rate"], 0.12, d)
            for conv in gen.CONVENTIONS:
                share = o["by_convention"][conv]["runs"] / o["runs"]
                self.assertTrue(0.21 <= share <= 0.29, (conv, share))
            for step in ("planner", "retriever", "tool", "generator", "critic"):
                self.assertIn(step, o["failed_by_blamed_step"])

    def test_planted_cohorts_visible(self):
        _, _, runs, truth = load_corpus(self.band)
        pl = {p["id"]: p for p in truth["planted"]}
        self.assertEqual(set(pl), {"interaction", "route", "threshold", "spike", "shift"})
        for k in ("interaction", "route", "threshold"):
            p = pl[k]
            self.assertTrue(2.0 <= p["planted_rr"] <= 6.0)
            self.assertTrue(0.02 <= p["support"] <= 0.10, (k, p["support"]))
            self.assertIsNotNone(p["observed_rr"], k)
            self.assertTrue(p["planted_rr"] / 2.2 <= p["observed_rr"] <= p["planted_rr"] * 2.2,
                            (k, p["observed_rr"]))
        # interaction: each attribute alone is only weakly elevated
        for name, m in pl["interaction"]["marginals"].items():
            self.assertTrue(0.9 <= m["observed_rr"] <= 2.2, (name, m))
        self.assertGreater(pl["interaction"]["observed_rr"], 2 * max(
            m["observed_rr"] for m in pl["interaction"]["marginals"].values()))
        self.assertGreater(pl["spike"]["observed_rr"], 2.0)
        self.assertEqual(pl["spike"]["end_unix"] - pl["spike"]["start_unix"], 180.0)
        self.assertEqual(pl["shift"]["start_unix"], START + 80 * 60)
        self.assertTrue(1.5 <= pl["shift"]["observed_rr"] <= 4.0, pl["shift"]["observed_rr"])
        # truth.json's observed figures are exactly what runs.jsonl gives
        c = gen.PLANT
        reach_ret = lambda r: r["reached"]["retriever"]
        rr = rr_from_runs(runs, lambda r: r["model"] == c["interaction"]["model"]
                          and r["prompt_version"] == c["interaction"]["prompt_version"],
                          reach_ret, "retriever", "empty_retrieval")
        self.assertAlmostEqual(rr, pl["interaction"]["observed_rr"], places=4)
        rr = rr_from_runs(runs, lambda r: r["route"] == c["route"]["route"], lambda r: r["reached"]["tool"],
                          "tool", "tool_error")
        self.assertAlmostEqual(rr, pl["route"]["observed_rr"], places=4)
        thr = c["threshold"]["input_tokens_gt"]
        rr = rr_from_runs(runs, lambda r: (r["gen_input_tokens"] or 0) > thr, lambda r: r["reached"]["generator"],
                          "generator", "truncation")
        self.assertAlmostEqual(rr, pl["threshold"]["observed_rr"], places=4)
        s0 = pl["shift"]["start_unix"]
        rr = rr_from_runs(runs, lambda r: r["start_unix"] >= s0, lambda r: r["evaluated"], "generator",
                          "hallucination")
        self.assertAlmostEqual(rr, pl["shift"]["observed_rr"], places=2)

    def test_null_has_no_planted_structure(self):
        _, _, runs_s, truth_s = load_corpus(self.band)
        _, _, runs_n, truth_n = load_corpus(self.band_null)
        self.assertEqual(truth_n["planted"], [])
        self.assertEqual(truth_n["variant"], "null")
        self.assertEqual(len(runs_n), len(runs_s))
        self.assertEqual(truth_n["base_rates"], truth_s["base_rates"])
        # same attribute draws run by run (paired by seed), so identical attribute distributions
        fields = ("convention", "route", "model", "prompt_version", "service_version", "user_segment",
                  "plan_tier", "region", "critic", "start_unix")
        for a, b in zip(runs_s, runs_n):
            for f in fields:
                self.assertEqual(a[f], b[f], f)
        # the planted cohorts' definitions show nothing special on the null data
        for ref in truth_n["null_reference"]:
            self.assertIsNotNone(ref["observed_rr"], ref)
            self.assertTrue(0.3 <= ref["observed_rr"] <= 2.5, ref)
        # the rate functions themselves carry no structure in the null world
        w = gen.World(2, 10, 120, START, True)
        self.assertEqual(w.p_empty("gpt-4o", "v7"), gen.BASE["empty_retrieval"])
        self.assertEqual(w.p_tool("/v1/billing/explain", 0), gen.BASE["tool_error"])
        self.assertEqual(w.p_tool("/v1/chat", w.spike_start + 1), gen.BASE["tool_error"])
        self.assertEqual(w.p_trunc(11000), gen.BASE["truncation"])
        self.assertEqual(w.p_hallu(119 * 60), gen.BASE["hallucination"])
        self.assertLess(truth_n["overall"]["failure_rate"], truth_s["overall"]["failure_rate"])

    def test_deterministic_and_gzip(self):
        with tempfile.TemporaryDirectory() as t:
            a, b, c = (os.path.join(t, x) for x in "abc")
            gen.generate(a, runs=300, minutes=20, start=START, seed=11, quiet=True)
            gen.generate(b, runs=300, minutes=20, start=START, seed=11, quiet=True, use_gzip=True)
            gen.generate(c, runs=300, minutes=20, start=START, seed=12, quiet=True)
            for name in ("traces.otlp.jsonl", "logs.otlp.jsonl", "runs.jsonl"):
                with open(os.path.join(a, name), "rb") as f:
                    ha = hashlib.sha256(f.read()).hexdigest()
                with gzip.open(os.path.join(b, name + ".gz"), "rb") as f:
                    hb = hashlib.sha256(f.read()).hexdigest()
                self.assertEqual(ha, hb, name)
            self.assertFalse(os.path.exists(os.path.join(b, "traces.otlp.jsonl")))
            with open(os.path.join(a, "traces.otlp.jsonl"), "rb") as f1, \
                    open(os.path.join(c, "traces.otlp.jsonl"), "rb") as f2:
                self.assertNotEqual(f1.read(), f2.read())

    def test_cli_runs(self):
        with tempfile.TemporaryDirectory() as t:
            p = subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), "--out", t, "--runs", "50",
                                "--minutes", "5", "--seed", "3", "--null", "--quiet"],
                               capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(t, "truth.json")) as f:
                truth = json.load(f)
            self.assertEqual(truth["planted"], [])
            now = time.time()
            self.assertTrue(now - 5 * 60 - 120 <= truth["params"]["start_unix"] <= now - 5 * 60 + 1)


class _Sink(http.server.BaseHTTPRequestHandler):
    state = None

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        st = _Sink.state
        with st["lock"]:
            st["requests"] += 1
            reject = st["requests"] % 4 == 1  # every 4th request starting with the first: 429
        if reject:
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        d = json.loads(body)
        with st["lock"]:
            if self.path == "/v1/traces":
                for rs in d["resourceSpans"]:
                    for ss in rs["scopeSpans"]:
                        for s in ss["spans"]:
                            st["traces"].add(s["traceId"])
                            st["max_end"] = max(st["max_end"], int(s["endTimeUnixNano"]))
                            st["min_start"] = min(st["min_start"], int(s["startTimeUnixNano"]))
                            if "parentSpanId" not in s:
                                st["max_root_start"] = max(st["max_root_start"], int(s["startTimeUnixNano"]))
            elif self.path == "/v1/logs":
                for rl in d["resourceLogs"]:
                    for sl in rl["scopeLogs"]:
                        st["logs"] += len(sl["logRecords"])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


class SendTest(unittest.TestCase):
    def _serve(self):
        _Sink.state = dict(lock=threading.Lock(), requests=0, traces=set(), logs=0, max_end=0,
                           min_start=1 << 63, max_root_start=0)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        th = threading.Thread(target=srv.serve_forever, daemon=True)
        th.start()
        return srv

    def test_send_full_and_paced(self):
        import send
        with tempfile.TemporaryDirectory() as t:
            gen.generate(t, runs=400, minutes=2, start=START, seed=5, quiet=True, use_gzip=True)
            with gzip.open(os.path.join(t, "logs.otlp.jsonl.gz"), "rt") as f:
                n_logs = sum(1 for _ in f)
            for mode, extra in (("full", []), ("paced", ["--speedup", "600"])):
                srv = self._serve()
                try:
                    url = f"http://127.0.0.1:{srv.server_address[1]}"
                    t0 = time.time_ns()
                    rc = send.main([t, "--endpoint", url, "--mode", mode, "--rebase", "--batch", "25"] + extra)
                    t1 = time.time_ns()
                finally:
                    srv.shutdown()
                    srv.server_close()
                st = _Sink.state
                self.assertEqual(rc, 0)
                self.assertEqual(len(st["traces"]), 400, mode)
                self.assertEqual(st["logs"], n_logs, mode)
                if mode == "full":
                    # the corpus's event time ends at the moment sending starts
                    self.assertLessEqual(st["max_end"], t1, "rebased event time is not in the future")
                    self.assertGreaterEqual(st["max_end"], t0 - 10**9)
                else:
                    # runs start (event time) no later than the wall time they are sent at
                    self.assertLessEqual(st["max_root_start"], t1)
                    self.assertLess(abs(st["min_start"] - (t0 - 120 * 10**9)), 5 * 10**9)


if __name__ == "__main__":
    unittest.main(verbosity=2)
