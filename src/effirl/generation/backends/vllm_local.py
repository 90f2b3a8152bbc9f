"""The ``vllm`` backend: vLLM in-process (``vllm.LLM``), an optional extra for GPU machines.

Why it exists: on a GPU box, running vLLM inside the process saves starting a server. The server route (``vllm
serve`` + ``--backend openai``) stays the main one: it is what effirl tests here (vLLM is not installed on the
CPU test machine, so this module is exercised only where vLLM is). Every sample is its own vLLM request with
its own seed (``SamplingParams(seed=...)``), so samples reproduce whatever they are batched with; vLLM's
prefix cache shares the prompt of a task's samples. Requests are handed over ``chunk`` samples at a time, and
written as each chunk finishes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from effirl.extras import require
from effirl.generation.backends.base import PROMPT_TOO_LONG, Backend, Completion, Messages, OnResult, Request
from effirl.generation.config import Sampling, VLLMOptions


class VLLMBackend(Backend):
    """Generation with an in-process ``vllm.LLM``."""

    name = "vllm"

    def __init__(self, model: str, *, chunk: int = 1024, **llm_kwargs: Any) -> None:
        self.vllm = require("vllm", "vllm", "--backend vllm")
        self.label = model
        self.chunk = chunk
        self.llm = self.vllm.LLM(model=model, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._context = int(self.llm.llm_engine.model_config.max_model_len)

    @classmethod
    def from_options(cls, model: str, options: VLLMOptions) -> VLLMBackend:
        extra: dict[str, Any] = {"dtype": options.dtype, "tensor_parallel_size": options.tensor_parallel_size,
                                 "gpu_memory_utilization": options.gpu_memory_utilization}
        if options.max_model_len:
            extra["max_model_len"] = options.max_model_len
        return cls(model, chunk=options.chunk, **extra)

    @property
    def context_length(self) -> int | None:
        return self._context

    def describe(self) -> str:
        return f"vllm: {self.label} (in-process, context {self._context})"

    def count_prompt_tokens(self, messages: Messages) -> int | None:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def run(self, requests: Sequence[Request], sampling: Sampling, on_result: OnResult) -> None:
        rows: deque[tuple[Request, int]] = deque((r, i) for r in requests for i in range(r.n))
        while rows:
            batch: list[tuple[Request, int]] = []
            while rows and len(batch) < self.chunk:
                batch.append(rows.popleft())
            follow: list[Request] = []
            for (req, i), completion in zip(batch, self._generate(batch, sampling), strict=True):
                follow.extend(on_result(req, i, completion))
            rows.extendleft(reversed([(r, i) for r in follow for i in range(r.n)]))

    def _generate(self, batch: list[tuple[Request, int]], sampling: Sampling) -> list[Completion]:
        lengths = [self.count_prompt_tokens(req.messages) or 0 for req, _ in batch]
        out: list[Completion] = [
            Completion("", n, 0, PROMPT_TOO_LONG,
                       error=f"the prompt is {n} tokens; the model's context is {self._context}")
            for n in lengths]
        todo = [k for k, n in enumerate(lengths) if n < self._context]
        if not todo:
            return out
        params = [self.vllm.SamplingParams(
            n=1, temperature=sampling.temperature, top_p=sampling.top_p, seed=batch[k][0].seeds[batch[k][1]],
            max_tokens=max(1, min(sampling.max_new_tokens, self._context - lengths[k]))) for k in todo]
        results = self.llm.chat([batch[k][0].messages for k in todo], params, use_tqdm=False)
        for k, result in zip(todo, results, strict=True):
            choice = result.outputs[0]
            out[k] = Completion(choice.text, len(result.prompt_token_ids or []), len(choice.token_ids),
                                str(choice.finish_reason or "unknown"))
        return out

    def close(self) -> None:
        self.llm = None
