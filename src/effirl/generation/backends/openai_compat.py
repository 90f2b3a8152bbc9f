"""The ``openai`` backend: any OpenAI-compatible ``/v1/chat/completions`` server.

Why it exists: this is how real users serve models (``vllm serve``, SGLang, TGI, llama.cpp's server, a hosted
API), and the only route to a large model from a CPU machine. Requests go through the official ``openai`` SDK
(``AsyncOpenAI``), at most ``concurrency`` in flight, ``n`` completions per request where the server gives
them (a server that ignores ``n`` is detected and asked once per sample). Transient failures (408, 409, 429,
5xx, timeouts, refused connections, a malformed answer) are retried with exponential backoff and jitter,
honouring ``Retry-After``; other 4xx answers will not change and fail at once. A failure that persists is one
:class:`~effirl.errors.EffirlError` line; the samples already written stay.

Servers count tokens per request: with ``n > 1`` the completion tokens are one total, shared out here by text
length and marked ``tokens_estimated``. The seed sent is the first sample's; reproducibility then depends on
the server (vLLM honours per-request seeds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import threading
from collections.abc import Sequence
from typing import Any

from effirl.errors import EffirlError
from effirl.extras import require
from effirl.generation.backends.base import PROMPT_TOO_LONG, Backend, Completion, OnResult, Request
from effirl.generation.config import OpenAIOptions, Sampling

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"  # where `vllm serve` listens by default
RETRYABLE = {408, 409, 429}
_CONTEXT = re.compile(r"context|too long|maximum.{0,40}(length|tokens)|max_model_len|prompt.{0,20}tokens",
                      re.I)


class _Transient(Exception):
    """A failure worth retrying; ``wait_s`` is the server's Retry-After, if any."""

    def __init__(self, what: str, wait_s: float | None = None) -> None:
        super().__init__(what)
        self.wait_s = wait_s


class OpenAIBackend(Backend):
    """Chat completions from an OpenAI-compatible server, ``concurrency`` requests at a time."""

    name = "openai"

    def __init__(self, model: str, base_url: str = DEFAULT_BASE_URL, api_key: str = "EMPTY", *,
                 key_source: str = "OPENAI_API_KEY", concurrency: int = 8, max_n_per_request: int = 16,
                 timeout_s: float = 600.0, max_retries: int = 5, retry_base_s: float = 1.0,
                 retry_max_s: float = 30.0) -> None:
        self.openai = require("openai", "openai", "--backend openai")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.key_source = key_source
        self.concurrency = concurrency
        self.max_n = max_n_per_request
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.server_gives_n = True  # set False once a server answers fewer choices than asked
        self.requests_sent = 0
        self.retries = 0

    @classmethod
    def from_options(cls, model: str, options: OpenAIOptions) -> OpenAIBackend:
        base_url = options.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        var = options.api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(var)
        if key is None and options.api_key_env:
            raise EffirlError(f"--api-key-env {var}: the environment variable {var} is not set")
        return cls(model, base_url, key or "EMPTY", key_source=var, concurrency=options.concurrency,
                   max_n_per_request=options.max_n_per_request, timeout_s=options.timeout_s,
                   max_retries=options.max_retries, retry_base_s=options.retry_base_s,
                   retry_max_s=options.retry_max_s)

    def describe(self) -> str:
        return f"openai: {self.model} at {self.base_url} ({self.concurrency} requests in flight)"

    # ---- scheduling -------------------------------------------------------------------------------------
    def run(self, requests: Sequence[Request], sampling: Sampling, on_result: OnResult) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._run_all(requests, sampling, on_result))
            return
        # Called from inside an event loop (a notebook, an async trainer): run on a thread with its own loop.
        failure: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(self._run_all(requests, sampling, on_result))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=target, name="effirl-openai")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    async def _run_all(self, requests: Sequence[Request], sampling: Sampling, on_result: OnResult) -> None:
        client = self.openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0,
                                         timeout=self.timeout_s)
        gate = asyncio.Semaphore(self.concurrency)
        try:
            async with asyncio.TaskGroup() as group:

                def submit(req: Request, indices: list[int]) -> None:
                    size = self.max_n if self.server_gives_n else 1
                    for k in range(0, len(indices), size):
                        group.create_task(handle(req, indices[k:k + size]))

                async def handle(req: Request, indices: list[int]) -> None:
                    completions = await self._complete(client, gate, req, indices, sampling)
                    if len(completions) < len(indices):
                        if self.server_gives_n:
                            log.info("%s gave %d of %d completions asked; asking once per sample from now on",
                                     self.base_url, len(completions), len(indices))
                        self.server_gives_n = False
                        submit(req, indices[len(completions):])
                    for i, completion in zip(indices, completions, strict=False):
                        for follow in on_result(req, i, completion):
                            submit(follow, list(range(follow.n)))

                for req in requests:
                    submit(req, list(range(req.n)))
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        finally:
            await client.close()

    # ---- one request, with retries ----------------------------------------------------------------------
    async def _complete(self, client: Any, gate: asyncio.Semaphore, req: Request, indices: list[int],
                        sampling: Sampling) -> list[Completion]:
        openai = self.openai
        attempt = 0
        while True:
            try:
                async with gate:
                    self.requests_sent += 1
                    raw = await client.chat.completions.with_raw_response.create(
                        model=self.model, messages=req.messages, n=len(indices),
                        temperature=sampling.temperature, top_p=sampling.top_p,
                        max_tokens=sampling.max_new_tokens,
                        seed=req.seeds[indices[0]] % (1 << 31))
                    content = raw.content
                return self._parse(content, len(indices))
            except openai.APIStatusError as exc:
                status, message = exc.status_code, _server_message(exc)
                if status in RETRYABLE or status >= 500:
                    problem = _Transient(f"HTTP {status}: {message}", _retry_after(exc))
                elif status == 400 and _CONTEXT.search(message):
                    return [Completion("", None, 0, PROMPT_TOO_LONG, error=f"the server says: {message}")
                            for _ in indices]
                elif status in (401, 403):
                    raise EffirlError(f"{self.base_url} refused the API key (HTTP {status}: {message}); put "
                                      f"the right key in ${self.key_source} or name its variable with "
                                      "--api-key-env") from None
                elif status == 404:
                    raise EffirlError(f"{self.base_url}/chat/completions answered HTTP 404 ({message}); "
                                      f"check --base-url (it usually ends in /v1) and --model {self.model!r} "
                                      "(the served model's name)") from None
                else:
                    raise EffirlError(f"{self.base_url} rejected the request (HTTP {status}: {message})"
                                      ) from None
            except openai.APITimeoutError:
                problem = _Transient(f"no answer within {self.timeout_s:g} s")
            except openai.APIConnectionError as exc:
                problem = _Transient(f"cannot connect ({_cause(exc)})")
            except _Transient as exc:
                problem = exc
            if attempt >= self.max_retries:
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                raise EffirlError(f"{self.base_url}: {problem} (after {tries}); the samples already written "
                                  "are kept: rerun the same command to resume")
            wait = min(self.retry_max_s, self.retry_base_s * 2 ** attempt) * (0.5 + random.random() / 2)
            if problem.wait_s is not None:
                wait = min(max(wait, problem.wait_s), max(self.retry_max_s, 0.0))
            attempt += 1
            self.retries += 1
            log.debug("%s: %s; retry %d in %.2f s", self.base_url, problem, attempt, wait)
            await asyncio.sleep(wait)

    def _parse(self, content: bytes, asked: int) -> list[Completion]:
        """The completions of a chat-completions answer; a malformed one is a :class:`_Transient` failure."""
        try:
            body = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            snippet = content[:60].decode("utf-8", "replace")
            raise _Transient(f"the answer is not JSON ({exc.__class__.__name__} at {snippet!r}...)") from None
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices:
            raise _Transient("the answer is JSON but has no 'choices' list (not a chat-completions answer)")
        texts: list[tuple[int, str, str]] = []
        for k, choice in enumerate(choices):
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                raise _Transient(f"choice {k} of the answer has no 'message' object")
            text = message.get("content")
            index = choice.get("index", k)
            texts.append((index if isinstance(index, int) else k, text if isinstance(text, str) else "",
                          str(choice.get("finish_reason") or "unknown")))
        texts.sort(key=lambda x: x[0])
        texts = texts[:asked]
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        prompt = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None
        total = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None
        counts = _share(total, [t for _, t, _ in texts])
        shared = total is not None and len(texts) > 1
        return [Completion(text, prompt, count, finish, tokens_estimated=shared)
                for (_, text, finish), count in zip(texts, counts, strict=True)]


def _share(total: int | None, texts: list[str]) -> list[int | None]:
    """``total`` split over ``texts`` in proportion to their length (largest remainders: sums to it)."""
    if total is None:
        return [None] * len(texts)
    if len(texts) == 1:
        return [total]
    weights = [len(t) or 1 for t in texts]
    raw = [total * w / sum(weights) for w in weights]
    out = [int(x) for x in raw]
    for k in sorted(range(len(raw)), key=lambda j: raw[j] - out[j], reverse=True)[:total - sum(out)]:
        out[k] += 1
    return out


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    text = str(getattr(exc, "message", "") or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


def _cause(exc: BaseException) -> str:
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root) or type(root).__name__
    return text.splitlines()[0][:200]


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first effirl error in a task group's failures (else the first failure)."""
    first: BaseException | None = None
    for exc in group.exceptions:
        inner = _first_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(inner, EffirlError):
            return inner
        first = first or inner
    return first or group
