"""A fake OpenAI-compatible model server driven by a script (see ../README.md).

Serves POST /v1/chat/completions and POST /v1/responses (both also streamed as
server-sent events), GET /v1/models, and the control endpoints POST /_script and
GET /_log. Standard library only, so every framework's venv (and Node agents, through
a subprocess) can use it.

Usage: fake_model.py [--port 0]   prints {"port": N} on its first stdout line.
"""

import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "gpt-4o-mini"


class Script:
    """Queues of responses; a request takes the next response of the first matching queue."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset({"queues": [{"match": None, "responses": [{"content": "OK."}]}]})

    def reset(self, script):
        queues = script.get("queues")
        if not isinstance(queues, list) or not queues:
            raise ValueError("a script needs a non-empty list `queues`")
        for q in queues:
            if not isinstance(q.get("responses"), list) or not q["responses"]:
                raise ValueError("every queue needs a non-empty list `responses`")
        with self.lock:
            self.queues = [{"match": q.get("match"), "responses": q["responses"], "next": 0} for q in queues]
            self.log = []

    def take(self, request):
        system = system_text(request)
        body = json.dumps(request)
        with self.lock:
            self.log.append(request)
            for q in self.queues:
                m = q["match"]
                if m is None or m in system or (not system and m in body):
                    i = min(q["next"], len(q["responses"]) - 1)
                    q["next"] += 1
                    return q["responses"][i]
        return {"error": {"status": 400, "message": "no queue of the fake model's script matches this request"}}


def system_text(request):
    """The system/developer messages and `instructions` of a chat or responses request."""
    parts = []
    if isinstance(request.get("instructions"), str):
        parts.append(request["instructions"])
    for key in ("messages", "input"):
        items = request.get(key)
        if not isinstance(items, list):
            continue
        for m in items:
            if isinstance(m, dict) and m.get("role") in ("system", "developer"):
                parts.append(content_text(m.get("content")))
    return "\n".join(parts)


def content_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            c.get("text", "") if isinstance(c, dict) else str(c) for c in content
        )
    return ""


def arguments_text(args):
    return args if isinstance(args, str) else json.dumps(args)


def usage(prompt=12, completion=8):
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_completion(resp, model):
    message = {"role": "assistant", "content": resp.get("content")}
    calls = [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": c["name"], "arguments": arguments_text(c.get("arguments", {}))},
        }
        for c in resp.get("tool_calls", [])
    ]
    if calls:
        message["tool_calls"] = calls
    finish = resp.get("finish_reason") or ("tool_calls" if calls else "stop")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage(),
    }


def chat_chunks(resp, model):
    full = chat_completion(resp, model)
    base = {k: full[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    msg = full["choices"][0]["message"]
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    if msg.get("content"):
        yield {**base, "choices": [{"index": 0, "delta": {"content": msg["content"]}, "finish_reason": None}]}
    for i, call in enumerate(msg.get("tool_calls", [])):
        yield {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": i, "id": call["id"], "type": "function", "function": call["function"]}]},
                    "finish_reason": None,
                }
            ],
        }
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": full["choices"][0]["finish_reason"]}]}
    yield {**base, "choices": [], "usage": full["usage"]}


def responses_output(resp):
    output = []
    if resp.get("content") is not None:
        output.append(
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": resp["content"], "annotations": []}],
            }
        )
    for c in resp.get("tool_calls", []):
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex[:24]}",
                "call_id": f"call_{uuid.uuid4().hex[:24]}",
                "name": c["name"],
                "arguments": arguments_text(c.get("arguments", {})),
                "status": "completed",
            }
        )
    return output


def response_object(resp, model, request=None, status="completed"):
    """A Responses API object; like the real API it echoes the request's
    `instructions` and `tools`."""
    request = request or {}
    incomplete = resp.get("finish_reason") == "length"
    return {
        "id": f"resp_{uuid.uuid4().hex[:24]}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else status,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "model": model,
        "output": responses_output(resp),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "instructions": request.get("instructions"),
        "tools": request.get("tools") or [],
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 8,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 20,
        },
    }


def response_events(resp, model, request=None):
    done = response_object(resp, model, request)
    start = {**done, "status": "in_progress", "output": [], "usage": None}
    seq = 0

    def ev(kind, **fields):
        nonlocal seq
        seq += 1
        return {"type": kind, "sequence_number": seq, **fields}

    yield ev("response.created", response=start)
    yield ev("response.in_progress", response=start)
    for i, item in enumerate(done["output"]):
        yield ev("response.output_item.added", output_index=i, item={**item, "status": "in_progress"})
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            yield ev("response.content_part.added", item_id=item["id"], output_index=i, content_index=0, part=part)
            yield ev("response.output_text.delta", item_id=item["id"], output_index=i, content_index=0, delta=text)
            yield ev("response.output_text.done", item_id=item["id"], output_index=i, content_index=0, text=text)
            yield ev("response.content_part.done", item_id=item["id"], output_index=i, content_index=0, part=item["content"][0])
        else:
            yield ev("response.function_call_arguments.delta", item_id=item["id"], output_index=i, delta=item["arguments"])
            yield ev("response.function_call_arguments.done", item_id=item["id"], output_index=i, arguments=item["arguments"])
        yield ev("response.output_item.done", output_index=i, item=item)
    yield ev("response.completed", response=done)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: Script = None  # set by serve()

    def log_message(self, *args):
        pass

    def _json(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _sse(self, events, done_marker):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for e in events:
            if "type" in e and not done_marker:
                self.wfile.write(f"event: {e['type']}\n".encode())
            self.wfile.write(f"data: {json.dumps(e)}\n\n".encode())
        if done_marker:
            self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw or b"{}")

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        if path == "/_log":
            with self.script.lock:
                return self._json(200, list(self.script.log))
        if path.endswith("/models"):
            return self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "fake"}]})
        self._json(404, {"error": {"message": f"no route {path}"}})

    def do_POST(self):
        path = self.path.split("?")[0].rstrip("/")
        try:
            request = self._body()
        except ValueError as e:
            return self._json(400, {"error": {"message": f"request body is not JSON: {e}"}})
        if path == "/_script":
            try:
                self.script.reset(request)
            except ValueError as e:
                return self._json(400, {"error": {"message": str(e)}})
            return self._json(200, {"ok": True})
        chat = path.endswith("/chat/completions")
        responses = path.endswith("/responses")
        if not (chat or responses):
            return self._json(404, {"error": {"message": f"no route {path}"}})
        resp = self.script.take(request)
        if resp.get("delay_s"):
            time.sleep(float(resp["delay_s"]))
        if "error" in resp:
            err = resp["error"]
            status = int(err.get("status", 500))
            kind = {429: "rate_limit_exceeded", 400: "invalid_request_error"}.get(status, "server_error")
            return self._json(status, {"error": {"message": err.get("message", "error"), "type": kind, "param": None, "code": kind}})
        model = request.get("model") or MODEL
        if request.get("stream"):
            if chat:
                return self._sse(chat_chunks(resp, model), done_marker=True)
            return self._sse(response_events(resp, model, request), done_marker=False)
        if chat:
            return self._json(200, chat_completion(resp, model))
        return self._json(200, response_object(resp, model, request))


def serve(port=0):
    """Starts the server on a thread; returns (server, Script)."""
    script = Script()
    handler = type("BoundHandler", (Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, script


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (a parent that dies takes the server with it)")
    args = p.parse_args()
    server, _ = serve(args.port)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        if args.exit_on_stdin_eof:
            sys.stdin.read()
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
