"""A fake OpenAI-compatible chat server on 127.0.0.1 for fault tests (stdlib only).

Each scenario lives under its own path prefix: ``http://127.0.0.1:PORT/<name>/v1`` is the api
base, so one server serves every scenario at once and counts the requests of each
(``server.count(name)``). The server records, per request, the ``Authorization`` header it got
and the JSON body, and per stream how many content chunks it wrote before the client went away
(``server.chunks_sent(name)``), i.e. what a real provider would bill.

Scenarios (``Scenario.kind``):

- ``ok``: a streamed completion of ``n_tokens`` one-word chunks, honest usage at the end.
- ``status``: HTTP ``status`` with ``headers`` (e.g. 429 + ``Retry-After``) for the first
  ``fail_times`` requests (-1: always), then ``ok``.
- ``hang``: accepts the request, then sleeps ``sleep_s`` without answering.
- ``not_json``: 200 with a plain-text body.
- ``json_on_stream``: 200 with a non-streamed completion object although a stream was asked.
- ``sse_garbage``: 200 ``text/event-stream`` whose data lines are not JSON.
- ``empty_stream``: 200 ``text/event-stream`` with only ``data: [DONE]``.
- ``no_choices``: 200 stream of chunks without ``choices`` (and no usage).
- ``lying_usage``: streams ``n_tokens`` chunks and reports usage of 1 prompt / 1 completion token.
- ``endless``: ignores ``max_tokens`` and streams until the client closes the connection
  (bounded by ``max_stream_s`` so a broken client cannot keep it busy for ever).
- ``keepalive``: a 200 stream of SSE comments (``: ping``) and empty deltas every
  ``chunk_delay_s``, no content, until the client closes it (or ``max_stream_s``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# one token each in every common BPE vocabulary; rotated, because litellm rejects a stream that
# repeats the same chunk 100 times
WORDS = (" the", " of", " and", " to", " in", " is", " it", " that")


@dataclass
class Scenario:
    kind: str = "ok"
    n_tokens: int = 8
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    fail_times: int = -1
    sleep_s: float = 30.0
    chunk_tokens: int = 1          # tokens per streamed chunk
    chunk_delay_s: float = 0.0
    max_stream_s: float = 30.0
    prompt_tokens: int | None = None   # reported prompt tokens (None: a rough honest count)


@dataclass
class Request:
    scenario: str
    authorization: str
    body: dict[str, Any]
    t: float
    chunks_sent: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client closing its connection early is a scenario here, not a server error."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """``with FakeOpenAI() as srv: srv.add("r429", Scenario("status", status=429, ...))``."""

    def __init__(self) -> None:
        self.scenarios: dict[str, Scenario] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _handler(self))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # ------------------------------------------------------------ control
    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def add(self, name: str, scenario: Scenario) -> str:
        """Register a scenario; returns its api base."""
        self.scenarios[name] = scenario
        return self.api_base(name)

    def api_base(self, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{name}/v1"

    # ------------------------------------------------------------ what happened
    def of(self, name: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.scenario == name]

    def count(self, name: str) -> int:
        return len(self.of(name))

    def chunks_sent(self, name: str) -> int:
        return sum(r.chunks_sent for r in self.of(name))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()


def _chunk(content: str | None = None, finish: str | None = None, usage: dict | None = None,
           choices: bool = True) -> bytes:
    obj: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                           "created": 1, "model": "fake"}
    if choices:
        delta = {} if content is None else {"role": "assistant", "content": content}
        obj["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    else:
        obj["choices"] = []
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:   # quiet
            pass

        def _name(self) -> str:
            parts = self.path.strip("/").split("/")
            return parts[0] if parts else ""

        def do_GET(self) -> None:   # noqa: N802 - GET {api_base}/models for check_models
            body = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]})
            self._send(200, body.encode(), "application/json")

        def do_POST(self) -> None:  # noqa: N802
            name = self._name()
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            req = Request(name, self.headers.get("Authorization", ""), body, time.monotonic())
            with server._lock:
                server.requests.append(req)
                seen = sum(r.scenario == name for r in server.requests)
            sc = server.scenarios.get(name)
            if sc is None:
                self._send(404, b'{"error": {"message": "unknown scenario"}}', "application/json")
                return
            try:
                self._serve(sc, req, seen)
            except (BrokenPipeError, ConnectionResetError):
                pass          # the client closed the stream: that is what 'endless' waits for

        def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _prompt_tokens(self, sc: Scenario, req: Request) -> int:
            if sc.prompt_tokens is not None:
                return sc.prompt_tokens
            chars = sum(len(str(m.get("content", ""))) for m in req.body.get("messages", []))
            return max(1, chars // 4)

        def _stream(self, sc: Scenario, req: Request, n_chunks: int | None,
                    usage: dict | None, deadline: float | None = None) -> None:
            self._start_stream()
            self.wfile.write(_chunk(content=""))
            i = 0
            while n_chunks is None or i < n_chunks:
                if deadline is not None and time.monotonic() > deadline:
                    break
                self.wfile.write(_chunk(WORDS[i % len(WORDS)] * sc.chunk_tokens))
                self.wfile.flush()
                req.chunks_sent += 1
                i += 1
                if sc.chunk_delay_s:
                    time.sleep(sc.chunk_delay_s)
            self.wfile.write(_chunk(finish="stop"))
            if usage is not None and (req.body.get("stream_options") or {}).get("include_usage"):
                self.wfile.write(_chunk(usage=usage, choices=False))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _serve(self, sc: Scenario, req: Request, seen: int) -> None:
            kind = sc.kind
            if kind == "status" and (sc.fail_times < 0 or seen <= sc.fail_times):
                msg = json.dumps({"error": {"message": f"fake {sc.status}", "type": "fake"}})
                self._send(sc.status, msg.encode(), "application/json", sc.headers)
                return
            if kind == "hang":
                time.sleep(sc.sleep_s)
                self.close_connection = True
                return
            if kind == "not_json":
                self._send(200, b"<html>upstream proxy says hello</html>", "text/plain")
                return
            if kind == "json_on_stream":
                obj = {"id": "x", "object": "chat.completion", "created": 1, "model": "fake",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "hi"}}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
                self._send(200, json.dumps(obj).encode(), "application/json")
                return
            if kind == "sse_garbage":
                self._start_stream()
                self.wfile.write(b"data: {this is not json\n\ndata: [DONE]\n\n")
                self.wfile.flush()
                return
            if kind == "empty_stream":
                self._start_stream()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                return
            if kind == "no_choices":
                self._start_stream()
                for _ in range(3):
                    self.wfile.write(_chunk(choices=False))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                return
            n_tok = sc.n_tokens
            if kind == "lying_usage":
                self._stream(sc, req, n_tok, {"prompt_tokens": 1, "completion_tokens": 1,
                                              "total_tokens": 2})
                return
            if kind == "keepalive":
                self._start_stream()
                end = time.monotonic() + sc.max_stream_s
                while time.monotonic() < end:
                    self.wfile.write(b": ping\n\n" + _chunk())
                    self.wfile.flush()
                    time.sleep(sc.chunk_delay_s or 0.5)
                return
            if kind == "endless":
                self._stream(sc, req, None, None, deadline=time.monotonic() + sc.max_stream_s)
                return
            # ok (and 'status' after its failures): honour max_tokens like a real server
            n_tok = min(n_tok, int(req.body.get("max_tokens") or n_tok))
            n_chunks = max(1, n_tok // max(1, sc.chunk_tokens))
            pt = self._prompt_tokens(sc, req)
            self._stream(sc, req, n_chunks, {"prompt_tokens": pt, "completion_tokens": n_tok,
                                             "total_tokens": pt + n_tok})

    return Handler
