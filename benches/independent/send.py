#!/usr/bin/env python3
"""Replay a corpus written by gen.py to an OTLP/HTTP (JSON) endpoint.

    send.py DIR --endpoint http://127.0.0.1:4318 [--mode full|paced] [--speedup N] [--rebase]
            [--batch 50] [--concurrency 4] [--timeout 30] [--no-logs] [--limit N]

Reads DIR/traces.otlp.jsonl[.gz] (one ExportTraceServiceRequest per line = one run, sorted by
start time) and, if present, DIR/logs.otlp.jsonl[.gz] (ExportLogsServiceRequest lines; each is
sent right after the trace of the same traceId, in the same batch). POSTs JSON to
{endpoint}/v1/traces and {endpoint}/v1/logs with Content-Type: application/json.

Modes
  full   send as fast as the server accepts: --concurrency workers (default 4) each POST one batch
         of --batch runs (default 50) at a time, merged into one request (resourceSpans arrays
         concatenated; the matching log records go in one /v1/logs request after it).
  paced  run i is released when wall-clock time since sending started >= (its event offset /
         speedup), where event offset = run start - first run start (same batching/workers; due
         runs are grouped up to --batch per request). --speedup defaults to 1.

Retries: HTTP 429 and 503 are retried honouring Retry-After (delta-seconds or HTTP-date; 1 s if
absent), other 5xx and connection errors are retried with exponential backoff (0.5 s doubling,
max 10 s). Nothing is dropped: a request is retried until accepted; only a non-retryable 4xx
(e.g. 400) is reported as failed, and the exit status is then 1.

--rebase shifts every timestamp (startTimeUnixNano, endTimeUnixNano, timeUnixNano,
observedTimeUnixNano) by one constant delta D, computed once when sending starts (wall W0):
  full:  D = W0 - E_max, where E_max is the latest timestamp in the corpus (span ends, log times):
         the corpus's event time ends exactly at the moment sending starts.
  paced: D = (W0 - L) - S, where S = truth.json params.start_unix (else the first run's start) and
         L = truth.json minutes*60 (else E_max - S). Run i (event start S+o_i) is sent at wall
         W0 + o_i/speedup with event start W0 - L + o_i: event time advances speedup x faster than
         wall time from the base W0 - L. A run's start never lies in the future: at send time it
         trails wall time by L - o_i*(1 - 1/speedup) >= min(L, L/speedup) > 0. (Its later spans
         end up to the run's duration after its start, so with a large speedup the last runs'
         span end times can exceed wall time by at most that duration minus L/speedup.)
Without --rebase timestamps are sent unchanged.

Prints a summary: runs sent, requests (traces/logs), retries, failures, seconds, runs/s.
"""
from __future__ import annotations

import argparse
import email.utils
import gzip
import json
import os
import queue
import re
import sys
import threading
import time
import urllib.error
import urllib.request

TIME_RE = re.compile(r'("(?:startTimeUnixNano|endTimeUnixNano|timeUnixNano|observedTimeUnixNano)"\s*:\s*")(\d+)(")')
TRACE_ID_RE = re.compile(r'"traceId"\s*:\s*"([0-9a-fA-F]{32})"')
START_RE = re.compile(r'"startTimeUnixNano"\s*:\s*"(\d+)"')


def _open(path):
    if os.path.exists(path + ".gz"):
        return gzip.open(path + ".gz", "rt", encoding="utf-8")
    if os.path.exists(path):
        return open(path, "r", encoding="utf-8")
    return None


def load(dirpath, with_logs=True, limit=None):
    f = _open(os.path.join(dirpath, "traces.otlp.jsonl"))
    if f is None:
        sys.exit(f"no traces.otlp.jsonl[.gz] in {dirpath}")
    runs = []  # [trace_id, start_ns, trace_line, [log_lines]]
    idx = {}
    with f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            m = TRACE_ID_RE.search(line)
            tid = m.group(1) if m else None
            starts = [int(x) for x in START_RE.findall(line)]
            runs.append([tid, min(starts) if starts else 0, line, []])
            if tid:
                idx[tid] = len(runs) - 1
            if limit and len(runs) >= limit:
                break
    orphans = []
    if with_logs:
        f = _open(os.path.join(dirpath, "logs.otlp.jsonl"))
        if f is not None:
            with f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    m = TRACE_ID_RE.search(line)
                    if m and m.group(1) in idx:
                        runs[idx[m.group(1)]][3].append(line)
                    elif not limit:
                        orphans.append(line)
    runs.sort(key=lambda r: r[1])
    truth = None
    tp = os.path.join(dirpath, "truth.json")
    if os.path.exists(tp):
        with open(tp, encoding="utf-8") as fh:
            truth = json.load(fh)
    return runs, orphans, truth


def max_time(runs):
    m = 0
    for r in runs:
        for line in [r[2]] + r[3]:
            for mt in TIME_RE.finditer(line):
                v = int(mt.group(2))
                if v > m:
                    m = v
    return m


def shift(line, delta):
    if not delta:
        return line
    return TIME_RE.sub(lambda m: m.group(1) + str(int(m.group(2)) + delta) + m.group(3), line)


def merge(lines, key):
    """Merge several Export*ServiceRequest JSON lines into one request body (bytes)."""
    parts = []
    for ln in lines:
        # each line is {"resourceSpans":[...]}: take the array content textually (fast, exact)
        i = ln.index("[")
        j = ln.rindex("]")
        inner = ln[i + 1:j].strip()
        if inner:
            parts.append(inner)
    return ('{"%s":[%s]}' % (key, ",".join(parts))).encode("utf-8")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.runs = self.trace_requests = self.log_requests = self.retries = self.failures = 0
        self.bytes = 0
        self.errors = []


def _retry_after(h):
    if not h:
        return 1.0
    try:
        return max(0.0, float(h))
    except ValueError:
        try:
            dt = email.utils.parsedate_to_datetime(h)
            return max(0.0, dt.timestamp() - time.time())
        except Exception:
            return 1.0


def post(url, body, timeout, stats):
    backoff = 0.5
    while True:
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
                return True
        except urllib.error.HTTPError as e:
            code = e.code
            ra = e.headers.get("Retry-After") if e.headers else None
            try:
                e.read()
            except Exception:
                pass
            if code in (429, 503):
                wait = _retry_after(ra)
            elif code >= 500 or code == 408:
                wait = backoff
                backoff = min(backoff * 2, 10.0)
            else:
                with stats.lock:
                    stats.failures += 1
                    if len(stats.errors) < 5:
                        stats.errors.append(f"{url}: HTTP {code}")
                return False
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            wait = backoff
            backoff = min(backoff * 2, 10.0)
            if stats.retries and stats.retries % 50 == 0:
                print(f"send.py: still retrying ({e})", file=sys.stderr)
        with stats.lock:
            stats.retries += 1
        time.sleep(wait)


def worker(q, endpoint, timeout, stats):
    while True:
        item = q.get()
        if item is None:
            q.task_done()
            return
        tlines, llines = item
        if tlines:
            body = merge(tlines, "resourceSpans")
            post(endpoint + "/v1/traces", body, timeout, stats)
            with stats.lock:
                stats.trace_requests += 1
                stats.runs += len(tlines)
                stats.bytes += len(body)
        if llines:
            lb = merge(llines, "resourceLogs")
            post(endpoint + "/v1/logs", lb, timeout, stats)
            with stats.lock:
                stats.log_requests += 1
                stats.bytes += len(lb)
        q.task_done()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--endpoint", default="http://127.0.0.1:4318")
    ap.add_argument("--mode", choices=("full", "paced"), default="full")
    ap.add_argument("--speedup", type=float, default=1.0)
    ap.add_argument("--rebase", action="store_true")
    ap.add_argument("--batch", type=int, default=50, help="runs (traces) per request")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--no-logs", action="store_true", help="do not send logs.otlp.jsonl")
    ap.add_argument("--limit", type=int, default=None, help="send only the first N runs")
    a = ap.parse_args(argv)
    endpoint = a.endpoint.rstrip("/")
    if a.speedup <= 0:
        sys.exit("--speedup must be > 0")

    t_load = time.time()
    runs, orphans, truth = load(a.dir, not a.no_logs, a.limit)
    if not runs:
        sys.exit("empty corpus")
    first = runs[0][1]
    print(f"send.py: loaded {len(runs)} runs, {sum(len(r[3]) for r in runs)} log lines "
          f"in {time.time() - t_load:.1f} s", file=sys.stderr)

    S = first
    L = None
    if truth and "params" in truth:
        S = int(truth["params"]["start_unix"] * 1e9)
        L = int(truth["params"]["minutes"] * 60 * 1e9)
    need_max = a.rebase and (a.mode == "full" or L is None)
    e_max = max_time(runs) if need_max else None

    stats = Stats()
    q = queue.Queue(maxsize=a.concurrency * 4)
    threads = [threading.Thread(target=worker, args=(q, endpoint, a.timeout, stats), daemon=True)
               for _ in range(a.concurrency)]
    for t in threads:
        t.start()

    w0 = time.time()
    w0_ns = time.time_ns()
    delta = 0
    if a.rebase:
        if a.mode == "full":
            delta = w0_ns - e_max
        else:
            if L is None:
                L = e_max - S
            delta = (w0_ns - L) - S
    if a.rebase:
        print(f"send.py: rebase delta {delta / 1e9:+.3f} s", file=sys.stderr)

    def emit(batch):
        tl = [shift(r[2], delta) for r in batch]
        ll = [shift(x, delta) for r in batch for x in r[3]]
        q.put((tl, ll))

    if a.mode == "full":
        for k in range(0, len(runs), a.batch):
            emit(runs[k:k + a.batch])
    else:
        k = 0
        n = len(runs)
        while k < n:
            due_at = w0 + (runs[k][1] - first) / 1e9 / a.speedup
            now = time.time()
            if due_at > now:
                time.sleep(min(due_at - now, 0.5))
                continue
            now_off = (time.time() - w0) * a.speedup * 1e9 + first
            j = k + 1
            while j < n and j - k < a.batch and runs[j][1] <= now_off:
                j += 1
            emit(runs[k:j])
            k = j
    if orphans:
        for k in range(0, len(orphans), a.batch):
            q.put(([], [shift(x, delta) for x in orphans[k:k + a.batch]]))
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join()
    secs = time.time() - w0
    summary = dict(runs_sent=stats.runs, requests=stats.trace_requests + stats.log_requests,
                   trace_requests=stats.trace_requests, log_requests=stats.log_requests,
                   retries=stats.retries, failed_requests=stats.failures, seconds=round(secs, 3),
                   runs_per_second=round(stats.runs / secs, 1) if secs > 0 else None,
                   mb_sent=round(stats.bytes / 1e6, 1), mode=a.mode, rebase=a.rebase,
                   rebase_delta_s=round(delta / 1e9, 3))
    print(json.dumps(summary))
    if stats.errors:
        print("send.py: errors: " + "; ".join(stats.errors), file=sys.stderr)
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
