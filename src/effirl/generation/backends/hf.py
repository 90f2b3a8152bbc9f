"""The ``transformers`` backend: a local model folder, a hub id, or a model already in memory.

Why it exists: tests and the CPU miniature sample from ``effirl model init``'s tiny model, and the RL trainer
evaluates the policy it is training without saving it first. Prompts go through the tokenizer's chat template
and are batched with left padding; a batch whose rows are whole groups of one prompt uses
``num_return_sequences``. Sampling is seeded per sample (see :mod:`.hf_sampling`), so a rerun, a resume or
another ``--batch-size`` gives the same text. The device is CUDA when present (bf16 there), else the CPU.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError
from effirl.extras import require
from effirl.generation.backends.base import PROMPT_TOO_LONG, Backend, Completion, Messages, OnResult, Request
from effirl.generation.config import Sampling

log = logging.getLogger(__name__)

_UNBOUNDED = 1_000_000  # tokenizers without a known limit report model_max_length as ~1e30


def pick_device(device: str = "auto") -> str:
    """``auto``: the first CUDA device when there is one, else the CPU."""
    torch = require("torch", "train", "--backend transformers")
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: str = "auto") -> Any:
    """``auto``: bf16 on a GPU that supports it (else fp16), float32 on the CPU."""
    torch = require("torch", "train", "--backend transformers")
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _looks_local(spec: str) -> bool:
    """A path rather than a hub id ("org/name"): absolute, dotted, home-relative, or with several slashes."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or spec.endswith("/") or "\\" in spec


def load_model(spec: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False
               ) -> tuple[Any, Any]:
    """The causal LM and tokenizer of a local folder or a hub id, on ``device``, in eval mode."""
    transformers = require("transformers", "train", "--backend transformers")
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise EffirlError(f"{spec} is not a model folder (it has no config.json); make one with "
                              f"`effirl model init --out {spec}` or give a Hugging Face model folder or "
                              "hub id")
        source = str(path)
    elif _looks_local(spec):
        raise EffirlError(f"no model folder at {spec}; make one with `effirl model init --out {spec}` or "
                          "give a Hugging Face model folder or hub id")
    else:
        source = spec
    dev = pick_device(device)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=pick_dtype(dev, dtype),
                                                                  trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - hub, file and config errors come in many types; report one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "folder" if path.exists() else "hub id (is the hub reachable? HF_HUB_OFFLINE set?)"
        raise EffirlError(f"cannot load model {spec!r} as a {where}: {first}") from None
    model.to(dev)
    model.eval()
    return model, tokenizer


class TransformersBackend(Backend):
    """Batched, per-sample-seeded generation with a Hugging Face causal LM.

    ``model``: a folder or hub id (loaded here), or a loaded ``PreTrainedModel`` (then ``tokenizer`` is
    needed; the model stays where it is and its train/eval mode is restored after each call to :meth:`run`).
    """

    name = "transformers"

    def __init__(self, model: str | Any, tokenizer: Any | None = None, *, batch_size: int = 16,
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False) -> None:
        self.torch = require("torch", "train", "--backend transformers")
        self.transformers = require("transformers", "train", "--backend transformers")
        if isinstance(model, str):
            self.label = model
            self.model, loaded_tok = load_model(model, device, dtype, trust_remote_code)
            self.tokenizer = tokenizer or loaded_tok
        else:
            if tokenizer is None:
                raise EffirlError("a model object needs its tokenizer: TransformersBackend(model, tokenizer)")
            self.label = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
            self.model, self.tokenizer = model, tokenizer
        if batch_size < 1:
            raise EffirlError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        if not getattr(self.tokenizer, "chat_template", None):
            raise EffirlError(f"the tokenizer of {self.label} has no chat template; effirl sends chat "
                              "messages (use an instruct model, or set tokenizer.chat_template)")
        self.eos_ids = self._eos_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        self._context = self._find_context()

    # ---- facts about the model --------------------------------------------------------------------------
    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        gen = getattr(self.model, "generation_config", None)
        for source in (getattr(gen, "eos_token_id", None), self.tokenizer.eos_token_id):
            for x in source if isinstance(source, (list, tuple)) else [source]:
                if x is not None and int(x) not in ids:
                    ids.append(int(x))
        if not ids:
            raise EffirlError(f"{self.label}: neither the model nor its tokenizer names an end-of-sequence "
                              "token")
        return ids

    def _find_context(self) -> int | None:
        limits = []
        cfg = getattr(self.model, "config", None)
        text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        n = getattr(text_cfg, "max_position_embeddings", None)
        if isinstance(n, int) and n > 0:
            limits.append(n)
        m = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(m, int) and 0 < m < _UNBOUNDED:
            limits.append(m)
        return min(limits) if limits else None

    @property
    def context_length(self) -> int | None:
        return self._context

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def describe(self) -> str:
        p = next(self.model.parameters())
        return f"transformers: {self.label} on {p.device} ({str(p.dtype).replace('torch.', '')})"

    def _prompt_ids(self, messages: Messages) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def count_prompt_tokens(self, messages: Messages) -> int | None:
        return len(self._prompt_ids(messages))

    # ---- generation -------------------------------------------------------------------------------------
    def run(self, requests: Sequence[Request], sampling: Sampling, on_result: OnResult) -> None:
        rows: deque[tuple[Request, int]] = deque()
        prompts: dict[int, list[int]] = {}  # token ids of each request's prompt, while it has rows left
        left: dict[int, int] = {}

        def push_front(follow: Sequence[Request]) -> None:
            """Follow-up steps go first, so that a sample's chain finishes (and is written) soon."""
            for r in follow:
                left[id(r)] = left.get(id(r), 0) + r.n
            rows.extendleft(reversed([(r, i) for r in follow for i in range(r.n)]))

        def finished(req: Request) -> None:
            left[id(req)] -= 1
            if not left[id(req)]:
                del left[id(req)]
                prompts.pop(id(req), None)

        push_front(requests)
        with self._generation_mode():
            while rows:
                batch: list[tuple[Request, int]] = []
                while rows and len(batch) < self.batch_size:
                    req, i = rows.popleft()
                    ids = prompts.get(id(req))
                    if ids is None:
                        ids = prompts[id(req)] = self._prompt_ids(req.messages)
                    if self._context is not None and len(ids) >= self._context:
                        error = f"the prompt is {len(ids)} tokens; the model's context is {self._context}"
                        finished(req)
                        skipped = Completion("", len(ids), 0, PROMPT_TOO_LONG, error=error)
                        push_front(on_result(req, i, skipped))
                        continue
                    batch.append((req, i))
                if not batch:
                    continue
                follow: list[Request] = []
                for (req, i), completion in zip(batch, self._generate(batch, prompts, sampling), strict=True):
                    finished(req)
                    follow.extend(on_result(req, i, completion))
                push_front(follow)

    @contextlib.contextmanager
    def _generation_mode(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            with self.torch.inference_mode():
                yield
        finally:
            if was_training:
                self.model.train()

    def _generate(self, batch: list[tuple[Request, int]], prompts: dict[int, list[int]],
                  sampling: Sampling) -> list[Completion]:
        torch, transformers = self.torch, self.transformers
        from effirl.generation.backends.hf_sampling import RowBudget, SeededGumbelSampler

        groups = _groups(batch)
        sizes = {len(g) for g in groups}
        repeat = sizes.pop() if len(sizes) == 1 else 1
        units = [g[0] for g in groups] if repeat > 1 else batch
        prompt_ids = [prompts[id(req)] for req, _ in units]
        width = max(len(p) for p in prompt_ids)
        device = self.device
        input_ids = torch.full((len(units), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(units), width), dtype=torch.long)
        for row, ids in enumerate(prompt_ids):
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids):] = 1
        # num_return_sequences repeats each prompt ``repeat`` times in place: the order of ``batch``.
        lengths = [len(prompts[id(req)]) for req, _ in batch]
        budgets = [max(1, min(sampling.max_new_tokens, self._context - n)) if self._context else
                   sampling.max_new_tokens for n in lengths]
        seeds = [req.seeds[i] for req, i in batch]
        config = transformers.GenerationConfig(
            max_new_tokens=max(budgets), do_sample=True, num_return_sequences=repeat,
            eos_token_id=self.eos_ids, pad_token_id=self.pad_id, use_cache=True,
            # Neutral values for everything that could reshape the distribution, so that the model's own
            # generation_config defaults (repetition penalty, top-k, ...) do not leak in: effirl samples
            # softmax(logits / T) within the top-p nucleus, on every backend.
            temperature=1.0, top_k=0, top_p=1.0, min_p=None, typical_p=1.0, epsilon_cutoff=0.0,
            eta_cutoff=0.0,
            repetition_penalty=1.0, encoder_repetition_penalty=1.0, no_repeat_ngram_size=0, min_length=0,
            bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None,
            forced_bos_token_id=None, forced_eos_token_id=None, renormalize_logits=False)
        processors = transformers.LogitsProcessorList(
            [SeededGumbelSampler(seeds, sampling.temperature, sampling.top_p, device)])
        stopping = transformers.StoppingCriteriaList([RowBudget(budgets, width, device)])
        out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                  generation_config=config, logits_processor=processors,
                                  stopping_criteria=stopping)
        generated = out[:, width:].tolist()
        return [self._completion(tokens[:budget], n_prompt)
                for tokens, budget, n_prompt in zip(generated, budgets, lengths, strict=True)]

    def _completion(self, tokens: list[int], n_prompt: int) -> Completion:
        end = next((k for k, t in enumerate(tokens) if t in self.eos_ids), None)
        if end is None:
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            return Completion(text, n_prompt, len(tokens), "length")
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        return Completion(text, n_prompt, end + 1, "stop")

    def close(self) -> None:
        self.model = None
        self.tokenizer = None


def _groups(batch: list[tuple[Request, int]]) -> list[list[tuple[Request, int]]]:
    """Consecutive rows of the same request."""
    out: list[list[tuple[Request, int]]] = []
    for row in batch:
        if out and out[-1][0][0] is row[0]:
            out[-1].append(row)
        else:
            out.append([row])
    return out
