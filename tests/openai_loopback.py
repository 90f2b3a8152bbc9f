"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks, scriptable per request.

It speaks the chat-completions schema over real HTTP/1.1 (keep-alive, JSON bodies,
                                                          OpenAI-style error objects):
``POST /v1/chat/completions`` and ``GET /v1/models``. A *script* decides each answer from the request body and
its arrival number: a :class:`Reply` (``n`` choices, or one when the server is told to ignore ``n``), a
:class:`Fail` (any status, headers such as ``retry-after-ms``), or :class:`Raw` bytes (malformed JSON). Every
request is recorded (body, headers, arrival time) for assertions; ``delay_s`` makes each answer wait, so that
overlapping requests show in wall time.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """A 200 answer. ``texts``: one per choice (cycled when fewer than asked); ``None``: the default texts."""

    texts: list[str] | None = None
    finish_reason: str = "stop"
    usage: bool = True
    delay_s: float = 0.0


@dataclass
class Fail:
    """An error answer with an OpenAI-style error body."""

    status: int
    message: str = "failure scripted by the test"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Raw:
    """Bytes as they are (e.g. malformed JSON) with a status and content type."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"


Action = Reply | Fail | Raw
Script = Callable[[dict[str, Any], int], Action]


def words(text: str) -> int:
    """The loopback's token count: whitespace-separated words (at least 1 for non-empty text)."""
    return len(text.split()) or (1 if text else 0)


def default_text(body: dict[str, Any], choice: int) -> str:
    """A deterministic answer: a fenced function named after a hash of the prompt, the seed and the choice."""
    last = body["messages"][-1]["content"]
    key = f"{last}|{body.get('seed')}|{choice}"
    h = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"Here it is.\n```python\ndef f_{h}(x):\n    return x\n```\n"


@dataclass
class Seen:
    """One request as the server received it."""

    body: dict[str, Any]
    headers: dict[str, str]  # names lower-cased
    at: float
    path: str


class Loopback:
    """The server; use as a context manager (``with Loopback(script) as srv: ... srv.url``)."""

    def __init__(self, script: Script | None = None, *, delay_s: float = 0.0, supports_n: bool = True,
                 api_key: str | None = None, model: str = "loopback-model") -> None:
        self.script = script or (lambda body, i: Reply())
        self.delay_s = delay_s
        self.supports_n = supports_n
        self.api_key = api_key
        self.model = model
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most chat requests being answered at once
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The base URL (``.../v1``); it stays readable after the server stopped."""
        assert self._url, "the server has not started"
        return self._url

    @property
    def chat_requests(self) -> list[Seen]:
        """Every POST received (whatever its path or key), in order of arrival."""
        return [s for s in self.seen if s.path.endswith("/chat/completions")]

    def __enter__(self) -> Loopback:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        handler = _handler_for(self)
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _record(self, body: dict[str, Any], headers: dict[str, str], path: str) -> int:
        with self._lock:
            self.seen.append(Seen(body, headers, time.monotonic(), path))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return len(self.chat_requests) - 1

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def answer(self, body: dict[str, Any], action: Reply) -> dict[str, Any]:
        n = int(body.get("n") or 1) if self.supports_n else 1
        texts = [action.texts[i % len(action.texts)] if action.texts else default_text(body,
                                                                                       i) for i in range(n)]
        out: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.seen)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": i, "message": {"role": "assistant", "content": t},
                         "finish_reason": action.finish_reason, "logprobs": None}
                        for i, t in enumerate(texts)],
        }
        if action.usage:
            prompt = sum(words(m.get("content") or "") for m in body.get("messages", []))
            completion = sum(words(t) for t in texts)
            out["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                            "total_tokens": prompt + completion}
        return out


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog (5) drops simultaneous connections: they retry after 1 s
    daemon_threads = True


def _handler_for(srv: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart (delayed ACKs)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
            body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})
            self._send(status, body.encode(), headers=headers)

        def _authorised(self) -> bool:
            if srv.api_key is None:
                return True
            if self.headers.get("Authorization") == f"Bearer {srv.api_key}":
                return True
            self._error(401, "Incorrect API key provided")
            return False

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/").endswith("/v1/models"):
                body = {"object": "list", "data": [{"id": srv.model, "object": "model",
                                                    "owned_by": "loopback"}]}
                self._send(200, json.dumps(body).encode())
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._error(400, "request body is not JSON")
                return
            index = srv._record(body, {k.lower(): v for k, v in self.headers.items()}, self.path)
            try:
                if not self._authorised():
                    return
                if not self.path.rstrip("/").endswith("/v1/chat/completions"):
                    self._error(404, f"no route {self.path}")
                    return
                action = srv.script(body, index)
                delay = srv.delay_s + getattr(action, "delay_s", 0.0)
                if delay:
                    time.sleep(delay)
                if isinstance(action, Raw):
                    self._send(action.status, action.body, action.content_type)
                elif isinstance(action, Fail):
                    self._error(action.status, action.message, action.headers)
                else:
                    self._send(200, json.dumps(srv.answer(body, action)).encode())
            finally:
                srv._done()

    return Handler
