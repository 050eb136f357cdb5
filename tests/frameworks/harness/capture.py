"""Runs one framework's agent over its scenarios and writes the goldens.

Usage: capture.py FRAMEWORK [--scenario NAME ...] [--out tests/data/frameworks]

For each scenario of tests/frameworks/FRAMEWORK/scenarios.json: loads the scenario's
model script into a fake model server, runs the agent (its venv's Python for agent.py,
node for agent.mjs) with this process as its OTLP/HTTP endpoint, and writes
<out>/FRAMEWORK/<scenario>.otlp.json (one OTLP/JSON ExportTraceServiceRequest per line,
hex ids) and <scenario>.label.json (the scenario's expectations, and the expected step of
every span from FRAMEWORK/label.py). Runs under the repository's .venv (it needs
opentelemetry-proto to read protobuf requests).
"""

import argparse
import base64
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMEWORKS = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(FRAMEWORKS))
sys.path.insert(0, HERE)

import fake_model  # noqa: E402


def hex_ids(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids(item)


def decode_request(body, content_type):
    if "json" in content_type:
        return json.loads(body)
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    msg = ExportTraceServiceRequest()
    msg.ParseFromString(body)
    doc = json_format.MessageToDict(msg, use_integers_for_enums=True)
    hex_ids(doc)
    return doc


def read_chunked(rfile):
    """The body of a request sent with Transfer-Encoding: chunked (the OTLP JS exporter)."""
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return body
        body += rfile.read(size)
        rfile.readline()  # the CRLF after each chunk


class Receiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    body = read_chunked(self.rfile)
                else:
                    n = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(n)
                enc = (self.headers.get("Content-Encoding") or "").lower()
                if enc == "gzip":
                    body = gzip.decompress(body)
                elif enc == "deflate":
                    body = zlib.decompress(body)
                ctype = self.headers.get("Content-Type") or ""
                if self.path.rstrip("/").endswith("/v1/traces"):
                    with outer.lock:
                        outer.requests.append(decode_request(body, ctype))
                # Logs and metrics are accepted and ignored.
                reply = b"{}" if "json" in ctype else b""
                self.send_response(200)
                self.send_header("Content-Type", "application/json" if "json" in ctype else "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self):
        with self.lock:
            out, self.requests = self.requests, []
        return out


def agent_command(framework):
    d = os.path.join(FRAMEWORKS, framework)
    if os.path.exists(os.path.join(d, "agent.mjs")):
        return ["node", os.path.join(d, "agent.mjs")]
    python = os.path.join(ROOT, ".venvs", framework, "bin", "python")
    if not os.path.exists(python):
        sys.exit(f"{python} is missing: run scripts/framework-envs {framework}")
    return [python, os.path.join(d, "agent.py")]


def scrub(text):
    """The machine's paths out of captured text (stack traces name files): the
    repository, the venvs and the Python installation become placeholders."""
    cache = os.environ.get("FAULTLINE_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "faultline-test")
    for path, name in (
        (os.path.join(cache, "venvs"), "<venvs>"),
        (ROOT, "<repo>"),
        (sys.base_prefix, "<python>"),
        (os.path.expanduser("~"), "<home>"),
    ):
        if path and len(path) > 1:
            text = text.replace(path, name)
    return text


def spans_of(requests):
    out = []
    for req in requests:
        for rs in req.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    out.append(span)
    return out


def attrs(span):
    """A span's attributes as a plain dict (for label.py)."""
    out = {}
    for kv in span.get("attributes", []):
        v = kv.get("value", {})
        for k in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if k in v:
                out[kv["key"]] = v[k]
                break
        else:
            out[kv["key"]] = v
    return out


def run_scenario(framework, scenario, model_url, receiver, timeout):
    cmd = agent_command(framework) + [
        "--scenario",
        scenario["name"],
        "--model-url",
        model_url,
        "--otlp-endpoint",
        receiver.endpoint,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{framework}/{scenario['name']}: agent exited {proc.returncode}\n{proc.stderr[-4000:]}")
    lines = [l for l in proc.stdout.splitlines() if l.strip().startswith("{")]
    if not lines:
        raise SystemExit(f"{framework}/{scenario['name']}: no result line\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1])
    return result, proc.stderr


def main():
    p = argparse.ArgumentParser()
    p.add_argument("framework")
    p.add_argument("--scenario", action="append")
    p.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "frameworks"))
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args()

    fw_dir = os.path.join(FRAMEWORKS, args.framework)
    with open(os.path.join(fw_dir, "scenarios.json")) as f:
        spec = json.load(f)
    spec_label = importlib.util.spec_from_file_location("label", os.path.join(fw_dir, "label.py"))
    label_mod = importlib.util.module_from_spec(spec_label)
    spec_label.loader.exec_module(label_mod)

    server, script = fake_model.serve()
    model_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    receiver = Receiver()
    out_dir = os.path.join(args.out, args.framework)
    os.makedirs(out_dir, exist_ok=True)

    for scenario in spec["scenarios"]:
        if args.scenario and scenario["name"] not in args.scenario:
            continue
        script.reset(scenario["model"])
        receiver.take()
        result, stderr = run_scenario(args.framework, scenario, model_url, receiver, args.timeout)
        requests = receiver.take()
        trace_ids = set(result.get("trace_ids") or [])
        spans = [s for s in spans_of(requests) if not trace_ids or s.get("traceId") in trace_ids]
        if not spans:
            raise SystemExit(f"{args.framework}/{scenario['name']}: no spans received\n{stderr[-4000:]}")
        stem = os.path.join(out_dir, scenario["name"])
        with open(stem + ".otlp.json", "w") as f:
            for req in requests:
                f.write(scrub(json.dumps(req, sort_keys=True)) + "\n")
        expect = scenario["expect"]
        labels = label_mod.label(spans, scenario["name"])
        missing = [s["spanId"] for s in spans if s["spanId"] not in labels]
        if missing:
            raise SystemExit(f"{args.framework}/{scenario['name']}: label.py left spans unlabelled: {missing}")
        doc = {
            "framework": args.framework,
            "scenario": scenario["name"],
            "outcome": expect["outcome"],
            "root_cause": expect.get("root_cause"),
            "trace_ids": sorted({s["traceId"] for s in spans}),
            "spans": {sid: labels[sid] for sid in sorted(labels)},
        }
        with open(stem + ".label.json", "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        names = ", ".join(f"{s.get('name')}={labels[s['spanId']]}" for s in spans)
        print(f"{args.framework}/{scenario['name']}: {len(spans)} spans, model calls {len(script.log)}: {names}")


if __name__ == "__main__":
    main()
