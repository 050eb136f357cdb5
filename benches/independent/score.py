#!/usr/bin/env python3
"""Score faultline's cohorts, alerts and reasons on the independent corpus.

    score.py [--binary target/release/faultline] [--runs 20000] [--minutes 120] [--seed 2]
             [--speedup 60] [--workdir DIR] [--keep] [--json FILE] [--no-paced]
             [--late-grace 20s] [--cohort-wait 150]

Generates the signal and the null corpus with gen.py (same seed: paired), then for each
scenario starts a fresh `faultline serve` on free ports with a temporary data directory,
replays the corpus with send.py (`--rebase`), waits for every run to be finalized, and reads
`/api/v1/cohorts`, `/api/v1/alerts` and `/api/v1/reasons` as a user would: no `refresh=true`
on the figures that are scored (a second, diagnostic reading after two refreshes is printed
beside them).

Attribution: `faultline analyze --trajectories` over the signal corpus (offline), compared
run by run with runs.jsonl: outcome agreement and root-cause step agreement on failed runs,
per convention.

Scenarios: signal at full speed (cohorts, alerts, reasons), signal paced at `--speedup`
(alerts), null at full speed (cohorts, alerts), null paced (alerts; skipped with
`--no-paced`, as is the signal paced replay).

Scoring (all from truth.json and runs.jsonl, never from faultline's own figures):
- A reported cohort is evaluated on the corpus: a dimension name (`route`, `model`,
  `prompt_version`, `user_segment`, `service`, `environment`) reads the run's true value;
  a numeric name reads the run's figure (`input_tokens`: summed over the run's model calls;
  a step-qualified name such as `generator.input_tokens`: that step's calls); any other key
  matches when some span or the resource of the run's trace carries that value.
- Recall@10: a planted interaction or route cohort is found when a top-10 cohort selects
  (Jaccard >= 0.8) the planted rows; the threshold cohort when a top-10 cohort has an
  input-token clause `>= t` with t within 25% of the planted threshold.
- Precision@10: a top-10 cohort is structure really in the data when its predicate names no
  symptom (durations, output sizes, step or tool-call counts, status codes, evaluation
  labels) and its rows' true rate of the outcome it reports (failures blamed on its step, or
  all failures) is above the rest's (risk ratio >= 1.25, one-sided p < 0.01).
- Null false discoveries: reported null cohorts (top 10) that are not real by the same test
  on the null corpus, over the cohorts reported (0 reported gives 0).
- Spike delay: event time from the planted spike's start to the `started_unix_nano` of the
  first non-pending tool-step alert starting within [start - 1 min, end + 10 min]; "missed"
  if none. Shift delay likewise for the generator step from minute 80.
- False alarms: non-pending alerts on the null corpus, counted per incident, per 24 h of
  event time. Symptom-step alerts: alerts of any state on `agent`, `chain` or `root`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

DIMENSIONS = {
    "route": "route",
    "model": "model",
    "prompt_version": "prompt_version",
    "user_segment": "user_segment",
}
SYMPTOM_STEPS = {"agent", "chain", "root"}
SYMPTOM_HINTS = ("duration", "output_tokens", "completion_tokens", "status_code", "steps",
                 "tool_calls", "evaluation", "finish_reason", "eval.", "score", "label",
                 "error.type", "documents")
INPUT_TOKEN_KEYS = ("llm.token_count.prompt", "gen_ai.usage.input_tokens",
                    "gen_ai.usage.prompt_tokens")
OUTPUT_TOKEN_KEYS = ("llm.token_count.completion", "gen_ai.usage.output_tokens",
                     "gen_ai.usage.completion_tokens")


# ---------------------------------------------------------------- corpus reading

def _value(v):
    for k in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if k in v:
            x = v[k]
            return str(x).lower() if k == "boolValue" else str(x)
    return None


def _attrs(lst):
    out = {}
    for kv in lst or ():
        x = _value(kv.get("value", {}))
        if x is not None and len(x) <= 120:
            out[kv["key"]] = x
    return out


def load_corpus(path):
    """Per-run truth (runs.jsonl) joined with what each trace carries."""
    runs = []
    with open(os.path.join(path, "runs.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    by_id = {r["trace_id"]: r for r in runs}
    with open(os.path.join(path, "traces.otlp.jsonl"), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            req = json.loads(line)
            carried = {}
            tid = None
            in_tok = out_tok = 0
            root_start = root_end = None
            for rs in req.get("resourceSpans", []):
                for k, v in _attrs(rs.get("resource", {}).get("attributes")).items():
                    carried.setdefault(k, set()).add(v)
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        tid = sp["traceId"]
                        a = _attrs(sp.get("attributes"))
                        for k, v in a.items():
                            carried.setdefault(k, set()).add(v)
                        for k in INPUT_TOKEN_KEYS:
                            if k in a:
                                in_tok += _num(a[k])
                                break
                        for k in OUTPUT_TOKEN_KEYS:
                            if k in a:
                                out_tok += _num(a[k])
                                break
                        if not sp.get("parentSpanId"):
                            root_start = int(sp["startTimeUnixNano"])
                            root_end = int(sp["endTimeUnixNano"])
            r = by_id.get(tid)
            if r is None:
                continue
            r["_carried"] = carried
            r["_input_tokens"] = in_tok
            r["_output_tokens"] = out_tok
            if root_start is not None:
                r["_duration_ms"] = (root_end - root_start) / 1e6
            svc = carried.get("service.name")
            r["_service"] = next(iter(svc)) if svc else None
            env = carried.get("deployment.environment.name")
            r["_environment"] = next(iter(env)) if env else None
    with open(os.path.join(path, "truth.json"), encoding="utf-8") as f:
        truth = json.load(f)
    return runs, truth


def _num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return 0.0


def run_value(r, key):
    """The run's value(s) of a cohort key as faultline names it: a set of strings, a number,
    or None when the corpus cannot say."""
    if key in DIMENSIONS:
        v = r.get(DIMENSIONS[key])
        return {str(v)} if v is not None else set()
    if key == "service":
        return {r["_service"]} if r.get("_service") else set()
    if key == "environment":
        return {r["_environment"]} if r.get("_environment") else set()
    if key == "input_tokens":
        return r.get("_input_tokens", 0.0)
    if key.endswith("input_tokens") and key.split(".")[0] == "generator":
        return float(r.get("gen_input_tokens") or 0)
    if key == "output_tokens":
        return r.get("_output_tokens", 0.0)
    if key == "duration_ms":
        return r.get("_duration_ms")
    return r.get("_carried", {}).get(key, set())


def matches(r, predicate):
    for c in predicate:
        v = run_value(r, c["key"])
        if v is None:
            return False
        if c["op"] == "=":
            if not isinstance(v, set) or str(c["value"]) not in v:
                return False
        else:
            if isinstance(v, set):
                nums = [_num(x) for x in v]
                v = max(nums) if nums else None
                if v is None:
                    return False
            t = float(c["value"])
            if c["op"] == ">=" and not v >= t:
                return False
            if c["op"] == "<" and not v < t:
                return False
    return True


def is_symptom(predicate):
    for c in predicate:
        k = c["key"]
        if any(h in k for h in SYMPTOM_HINTS) and "input_tokens" not in k:
            return True
    return False


def one_sided_p(f1, n1, f0, n0):
    if n1 == 0 or n0 == 0:
        return 1.0
    p = (f1 + f0) / (n1 + n0)
    if p <= 0 or p >= 1:
        return 1.0
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n0))
    z = (f1 / n1 - f0 / n0) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def truth_elevation(runs, predicate, step):
    """(risk ratio, p) of the reported outcome among the cohort's rows, from the truth."""
    f1 = n1 = f0 = n0 = 0
    for r in runs:
        bad = r["outcome"] == "failed" and (step is None or r.get("step") == step)
        if matches(r, predicate):
            n1 += 1
            f1 += bad
        else:
            n0 += 1
            f0 += bad
    if n1 == 0 or n0 == 0 or f0 == 0:
        return (float("inf") if f1 else 0.0), one_sided_p(f1, n1, f0, n0), n1
    return (f1 / n1) / (f0 / n0), one_sided_p(f1, n1, f0, n0), n1


def planted_rows(runs, item):
    """The runs of a planted categorical cohort (truth.json `attributes`: name, value)."""
    want = {a["name"]: str(a["value"]) for a in item.get("attributes", [])}
    return {r["trace_id"] for r in runs if all(str(r.get(k)) == v for k, v in want.items())}


def planted_threshold(item):
    for a in item.get("attributes", []):
        if "value" in a:
            return float(a["value"])
    raise SystemExit("truth.json: a threshold item without a value")


# ---------------------------------------------------------------- faultline

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Server:
    def __init__(self, binary, workdir, name, late_grace):
        self.api = f"127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        grpc = f"127.0.0.1:{free_port()}"
        data = os.path.join(workdir, f"data-{name}")
        os.makedirs(data, exist_ok=True)
        self.log = open(os.path.join(workdir, f"faultline-{name}.log"), "w")
        args = [binary, "serve", "--api-address", self.api, "--otlp-http-address", self.http,
                "--otlp-grpc-address", grpc, "--data-dir", data]
        if late_grace:
            args += ["--late-grace", late_grace]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.api}/readyz", timeout=2).read()
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"faultline did not become ready (see faultline-{name}.log)")

    def url(self, path, **q):
        qs = ("?" + urllib.parse.urlencode(q)) if q else ""
        return f"http://{self.api}{path}{qs}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_finalized(srv, expected, timeout):
    """Until the cohort window holds every run (rows are taken at finalization)."""
    deadline = time.time() + timeout
    last = -1
    while time.time() < deadline:
        try:
            # An empty filter matches every row of the cohort window.
            got = get_json(srv.url("/api/v1/compare", a="", b=""))["a"]["trajectories"]
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            got = -1
        if got >= expected:
            return got
        last = got
        time.sleep(2)
    return last


def replay(corpus, srv, mode, speedup):
    cmd = [sys.executable, os.path.join(HERE, "send.py"), corpus, "--endpoint",
           f"http://{srv.http}", "--mode", mode, "--rebase"]
    if mode == "paced":
        cmd += ["--speedup", str(speedup)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scenario(args, corpus, name, mode, n_runs, want_cohorts):
    srv = Server(args.binary, args.workdir, name, args.late_grace)
    try:
        sent = replay(corpus, srv, mode, args.speedup)
        got = wait_finalized(srv, n_runs, args.finalize_wait)
        res = {"name": name, "send": sent, "finalized": got}
        # Alerts are evaluated every few seconds of wall time; give them two rounds.
        time.sleep(12)
        if want_cohorts:
            # What a user sees: the first call of a windowed view, then the ring as served.
            first = get_json(srv.url("/api/v1/cohorts", window="1h", limit=10))
            res["first_windowed"] = {"runs": first.get("runs"), "pending": first.get("pending"),
                                     "cohorts": len(first.get("cohorts", []))}
            deadline = time.time() + args.cohort_wait
            served = get_json(srv.url("/api/v1/cohorts", limit=20))
            while time.time() < deadline and not (served.get("runs", 0) >= 2 and served.get("pending", 1) == 0):
                time.sleep(5)
                served = get_json(srv.url("/api/v1/cohorts", limit=20))
            res["cohorts"] = served
            get_json(srv.url("/api/v1/cohorts", limit=10, refresh="true"), timeout=120)
            res["cohorts_refreshed"] = get_json(srv.url("/api/v1/cohorts", limit=20, refresh="true"),
                                                timeout=120)
        res["alerts"] = get_json(srv.url("/api/v1/alerts", limit=1000))["alerts"]
        try:
            res["reasons"] = get_json(srv.url("/api/v1/reasons", window="6h", limit=10))["reasons"]
        except urllib.error.HTTPError:
            res["reasons"] = get_json(srv.url("/api/v1/reasons", limit=10))["reasons"]
        return res
    finally:
        srv.stop()


# ---------------------------------------------------------------- scoring

def score_cohorts(cohorts, runs, truth, planted=True):
    top = cohorts[:10]
    real = []
    for c in top:
        pred = c["predicate"]
        rr, p, n = truth_elevation(runs, pred, c.get("step"))
        ok = (not is_symptom(pred)) and rr >= 1.25 and p < 0.01
        real.append({"cohort": describe(c), "true_rr": rr, "p": p, "rows": n, "real": ok})
    found = {}
    if planted:
        items = [i for i in truth.get("planted", []) if i["kind"] in ("interaction", "route", "threshold")]
        for item in items:
            hit = None
            if item["kind"] == "threshold":
                t0 = planted_threshold(item)
                for rank, c in enumerate(top, 1):
                    for cl in c["predicate"]:
                        if "input_tokens" in cl["key"] and cl["op"] == ">=" and \
                                abs(float(cl["value"]) - t0) <= 0.25 * t0:
                            hit = rank
                            break
                    if hit:
                        break
            else:
                want = planted_rows(runs, item)
                for rank, c in enumerate(top, 1):
                    got = {r["trace_id"] for r in runs if matches(r, c["predicate"])}
                    inter = len(want & got)
                    union = len(want | got) or 1
                    if inter / union >= 0.8:
                        hit = rank
                        break
            found[item["id"] if "id" in item else item["kind"]] = hit
    return {"precision_items": real, "found": found,
            "precision": (sum(x["real"] for x in real) / len(real)) if real else None,
            "false": sum(not x["real"] for x in real), "reported": len(real)}


def describe(c):
    parts = []
    for cl in c["predicate"]:
        parts.append(f"{cl['key']}{cl['op']}{cl['value']}")
    return " & ".join(parts) + f" [{c.get('step') or 'all'}]"


def alert_started(a):
    return a["started_unix_nano"] / 1e9


def score_alerts(alerts, truth, delta, minutes):
    fired = [a for a in alerts if a["state"] != "pending"]
    out = {"symptom": sum(1 for a in alerts if a["step"] in SYMPTOM_STEPS),
           "fired": len(fired),
           "incidents": len({a.get("incident") or ("a", a["id"]) for a in fired})}
    for item in truth.get("planted", []):
        if item["kind"] not in ("spike", "shift"):
            continue
        s0 = item["start_unix"] + delta
        s1 = item["end_unix"] + delta
        step = item["step"]
        cands = [a for a in fired if a["step"] == step and
                 s0 - 60 <= alert_started(a) <= (s1 + 600 if item["kind"] == "spike" else s1)]
        out[item["kind"]] = (min(alert_started(a) for a in cands) - s0) if cands else None
    out["per_24h"] = out["incidents"] * 1440.0 / minutes
    return out


def fmt(x, nd=2):
    if x is None:
        return "missed"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/faultline")
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--speedup", type=float, default=60.0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", default=None, help="also write the figures as JSON here")
    ap.add_argument("--no-paced", action="store_true")
    ap.add_argument("--late-grace", default="20s")
    ap.add_argument("--cohort-wait", type=float, default=150.0)
    ap.add_argument("--finalize-wait", type=float, default=300.0)
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    args.binary = os.path.abspath(args.binary)
    own = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="faultline-bench-")
    os.makedirs(args.workdir, exist_ok=True)
    t0 = time.time()
    try:
        corpora = {}
        for kind in ("signal", "null"):
            d = os.path.join(args.workdir, kind)
            cmd = [sys.executable, os.path.join(HERE, "gen.py"), "--out", d, "--runs", str(args.runs),
                   "--minutes", str(args.minutes), "--seed", str(args.seed), "--quiet"]
            if kind == "null":
                cmd.append("--null")
            subprocess.run(cmd, check=True)
            corpora[kind] = (d,) + load_corpus(d)
        attribution = score_attribution(args, corpora["signal"][0], corpora["signal"][1])
        results = {}
        plan = [("signal-full", "signal", "full", True), ("null-full", "null", "full", True)]
        if not args.no_paced:
            plan += [("signal-paced", "signal", "paced", False), ("null-paced", "null", "paced", False)]
        for name, kind, mode, cohorts in plan:
            d, runs, truth = corpora[kind]
            print(f"score.py: {name} ...", file=sys.stderr, flush=True)
            results[name] = scenario(args, d, name, mode, len(runs), cohorts)
        table, figures = report(results, corpora, args)
        table += "\n" + attribution_table(attribution)
        figures["attribution"] = attribution
        print(table)
        print(f"(score.py: {time.time() - t0:.0f} s, {args.runs} runs, {args.minutes:g} min, seed {args.seed}, "
              f"paced x{args.speedup:g})")
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"figures": figures, "raw": results}, f, indent=1, default=str)
        if args.check and not figures["all_met"]:
            return 1
        return 0
    finally:
        if own and not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
        elif args.keep:
            print(f"score.py: work directory kept: {args.workdir}", file=sys.stderr)


def score_attribution(args, d, runs):
    """Outcome and root-cause step agreement with the corpus's truth, per convention, from
    `faultline analyze --trajectories` over the corpus files (offline, no server)."""
    out = os.path.join(d, "verdicts.jsonl")
    files = [os.path.join(d, f) for f in ("traces.otlp.jsonl", "logs.otlp.jsonl")
             if os.path.exists(os.path.join(d, f))]
    subprocess.run([args.binary, "analyze", "--trajectories", out] + files, check=True,
                   stdout=subprocess.DEVNULL)
    got = {}
    with open(out, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            got[r["trace_id"]] = r
    per = {}
    misses = {}
    for r in runs:
        c = per.setdefault(r["convention"], [0, 0, 0, 0])
        g = got.get(r["trace_id"])
        failed = r["outcome"] == "failed"
        ok = g is not None and (g["outcome"] == "failed") == failed
        c[0] += ok
        c[1] += 1
        if not ok:
            key = f"outcome {r['outcome']} as {g['outcome'] if g else 'missing'} ({r['convention']}, {r.get('fault')})"
            misses[key] = misses.get(key, 0) + 1
        if failed and ok:
            rc = g.get("root_cause") or {}
            hit = rc.get("step") == r.get("step")
            c[2] += hit
            c[3] += 1
            if not hit:
                key = f"{r.get('fault')} on {r.get('step')} blamed {rc.get('step')} ({r['convention']})"
                misses[key] = misses.get(key, 0) + 1
    return {"per_convention": per, "misses": misses}


def report(results, corpora, args):
    _, sruns, struth = corpora["signal"]
    _, nruns, ntruth = corpora["null"]
    sig = results["signal-full"]
    nul = results["null-full"]
    cs = score_cohorts(sig["cohorts"]["cohorts"], sruns, struth)
    cs_r = score_cohorts(sig["cohorts_refreshed"]["cohorts"], sruns, struth)
    cn = score_cohorts(nul["cohorts"]["cohorts"], nruns, ntruth, planted=False)
    cn_r = score_cohorts(nul["cohorts_refreshed"]["cohorts"], nruns, ntruth, planted=False)
    n_planted = len(cs["found"]) or 1
    recall = sum(1 for v in cs["found"].values() if v) / n_planted
    recall_r = sum(1 for v in cs_r["found"].values() if v) / n_planted
    null_fdr = (cn["false"] / cn["reported"]) if cn["reported"] else 0.0
    null_fdr_r = (cn_r["false"] / cn_r["reported"]) if cn_r["reported"] else 0.0
    al = {}
    for name, res in results.items():
        delta = res["send"].get("rebase_delta_s", 0.0)
        truth = struth if name.startswith("signal") else ntruth
        al[name] = score_alerts(res["alerts"], truth, delta, args.minutes)
    spike = [al[n].get("spike") for n in al if n.startswith("signal")]
    null_fa = max(al[n]["per_24h"] for n in al if n.startswith("null"))
    symptom = sum(a["symptom"] for a in al.values())
    spike_ok = all(s is not None and s <= 120 for s in spike)
    figures = {
        "recall": recall, "precision": cs["precision"], "null_fdr": null_fdr,
        "null_reported": cn["reported"], "spike_delay_s": {n: al[n].get("spike") for n in al if n.startswith("signal")},
        "shift_delay_s": {n: al[n].get("shift") for n in al if n.startswith("signal")},
        "null_false_alarms_per_24h": null_fa, "symptom_alerts": symptom,
        "recall_refreshed": recall_r, "precision_refreshed": cs_r["precision"], "null_fdr_refreshed": null_fdr_r,
        "found": cs["found"], "found_refreshed": cs_r["found"],
        "first_windowed": {"signal": sig["first_windowed"], "null": nul["first_windowed"]},
        "served": {k: {x: results[k]["cohorts"].get(x) for x in ("runs", "pending", "records")}
                   for k in ("signal-full", "null-full")},
        "alerts": al,
    }
    met = {
        "recall": recall >= 0.9,
        "precision": (cs["precision"] or 0) >= 0.8,
        "null_fdr": null_fdr <= 0.05,
        "spike": spike_ok,
        "null_fa": null_fa <= 1.0,
        "symptom": symptom == 0,
    }
    figures["met"] = met
    figures["all_met"] = all(met.values())
    rows = [
        ("cohort recall@10 (planted in top 10)", f"{recall:.2f}", f"{recall_r:.2f}", ">= 0.90", met["recall"]),
        ("cohort precision@10 (real structure)", fmt(cs["precision"]), fmt(cs_r["precision"]), ">= 0.80",
         met["precision"]),
        ("null false discoveries (share of reported)", f"{null_fdr:.2f} ({cn['false']}/{cn['reported']})",
         f"{null_fdr_r:.2f} ({cn_r['false']}/{cn_r['reported']})", "<= 0.05", met["null_fdr"]),
    ]
    for n in al:
        if n.startswith("signal"):
            rows.append((f"spike delay, event s ({n})", fmt(al[n].get("spike"), 0), "", "<= 120",
                         al[n].get("spike") is not None and al[n]["spike"] <= 120))
    for n in al:
        if n.startswith("signal"):
            rows.append((f"shift delay, event s ({n})", fmt(al[n].get("shift"), 0), "", "(info)", None))
    for n in al:
        if n.startswith("null"):
            rows.append((f"false alarms / 24 h ({n})", f"{al[n]['per_24h']:.1f} ({al[n]['incidents']} incidents)",
                         "", "<= 1", al[n]["per_24h"] <= 1.0))
    for n in al:
        rows.append((f"symptom-step alerts ({n})", str(al[n]["symptom"]), "", "0", al[n]["symptom"] == 0))
    for n in al:
        if n.startswith("signal"):
            rows.append((f"alerts fired / incidents ({n})", f"{al[n]['fired']} / {al[n]['incidents']}", "",
                         "(info)", None))
    fw = sig["first_windowed"]
    rows.append(("first call ?window=1h: runs/pending/cohorts", f"{fw['runs']}/{fw['pending']}/{fw['cohorts']}",
                 "", "cohorts > 0", fw["cohorts"] > 0))
    sv = sig["cohorts"]
    rows.append(("ring as served: runs/pending/cohorts", f"{sv.get('runs')}/{sv.get('pending')}/"
                 f"{len(sv.get('cohorts', []))}", "", "(info)", None))
    w = max(len(r[0]) for r in rows)
    lines = [f"{'figure':<{w}}  {'as served':<22} {'after refresh':<16} {'target':<12} met",
             "-" * (w + 58)]
    for name, v, vr, target, ok in rows:
        mark = "" if ok is None else ("yes" if ok else "NO")
        lines.append(f"{name:<{w}}  {v:<22} {vr:<16} {target:<12} {mark}")
    lines.append("")
    lines.append("planted found (rank in top 10, as served / after refresh): " +
                 ", ".join(f"{k}={cs['found'][k]}/{cs_r['found'].get(k)}" for k in cs["found"]))
    lines.append("signal top 10 as served:")
    for x in cs["precision_items"]:
        lines.append(f"  {'+' if x['real'] else '-'} {x['cohort']}  (true RR {x['true_rr']:.2f}, rows {x['rows']})")
    if cs_r["precision_items"] != cs["precision_items"]:
        lines.append("signal top 10 after refresh:")
        for x in cs_r["precision_items"]:
            lines.append(f"  {'+' if x['real'] else '-'} {x['cohort']}  (true RR {x['true_rr']:.2f}, rows {x['rows']})")
    below = sig["cohorts"].get("cohorts", [])[10:]
    if below:
        lines.append("signal ranks 11-20 as served (not scored): " + "; ".join(describe(c) for c in below))
    lines.append("null top 10 as served / after refresh:")
    for x in cn["precision_items"] + cn_r["precision_items"]:
        lines.append(f"  {'+' if x['real'] else '-'} {x['cohort']}  (true RR {x['true_rr']:.2f}, rows {x['rows']})")
    for n, res in results.items():
        fired = [a for a in res["alerts"] if a["state"] != "pending"]
        if fired:
            lines.append(f"alerts ({n}):")
            delta = res["send"].get("rebase_delta_s", 0.0)
            base = (struth if n.startswith("signal") else ntruth)["params"]["start_unix"] + delta
            for a in fired[:12]:
                lines.append(f"  {a['kind']:<9} {a['signal']:<10} step={a['step']:<10} cohort={a['cohort']} "
                             f"start=min {(alert_started(a) - base) / 60:.1f} incident={a.get('incident')}")
    lines.append("top reasons (signal-full):")
    for r in sig["reasons"][:8]:
        lines.append(f"  {r['count']:>5}  {r['template'][:110]}")
    return "\n".join(lines), figures


def attribution_table(a):
    lines = ["attribution (signal corpus, offline analyze): outcome agreement, root-cause step on failed runs"]
    tot = [0, 0, 0, 0]
    for conv, c in sorted(a["per_convention"].items()):
        lines.append(f"  {conv:<15} outcome {c[0]}/{c[1]} ({c[0] / max(1, c[1]):.3f})   "
                     f"root cause {c[2]}/{c[3]} ({c[2] / max(1, c[3]):.3f})")
        tot = [x + y for x, y in zip(tot, c)]
    lines.append(f"  {'all':<15} outcome {tot[0]}/{tot[1]} ({tot[0] / max(1, tot[1]):.3f})   "
                 f"root cause {tot[2]}/{tot[3]} ({tot[2] / max(1, tot[3]):.3f})")
    for k, v in sorted(a["misses"].items(), key=lambda kv: -kv[1])[:8]:
        lines.append(f"  miss x{v}: {k}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())