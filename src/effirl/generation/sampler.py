"""``generate``: sample N solutions per task with a strategy and a backend, writing each as it finishes.

Why it exists: every stage of the paper's training starts by sampling (stage-1 data, RL rollouts'
evaluation, benchmark runs), and the same resumable, reproducible loop serves the CLI and the pipeline. Each
sample has a seed derived from (run seed, task id, sample index), so a sample's text does not depend on which
other samples ran with it: a resumed run, or one with a larger ``n``, adds exactly the missing samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError
from effirl.generation.backends.base import PROMPT_TOO_LONG, Backend, Completion, Request
from effirl.generation.config import GenerateConfig
from effirl.generation.prompts import Templates, load_templates
from effirl.generation.store import IDENTITY, MemoryStore, SampleFile, SampleStore
from effirl.generation.strategies import Chain, StepRecord, StepSpec, Strategy, derive_seed, make_strategy
from effirl.tasks.model import Task

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
LOAD = "load"  # progress phase while the backend is made (model loaded, client created): 0/1 then 1/1
PHASE = "generate"  # progress phase of the samples: done/total of this run's missing samples


@dataclass
class GenerateSummary:
    """What a run did. Token counts are those of the samples written by this run; ``generated_tokens``
    counts every step of multi-step strategies, the other two only the final step (the solution's)."""

    out: Path | None
    tasks: int
    requested: int  # (task, sample_index) pairs asked for: tasks x n
    existing: int  # of those, already in the file
    written: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generated_tokens: int = 0
    finish_reasons: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    elapsed_s: float = 0.0  # generation only (after the model was loaded)
    load_s: float = 0.0
    backend: str = ""
    records: list[dict[str, Any]] | None = None  # only without an output file

    @property
    def mean_completion_tokens(self) -> float | None:
        return self.completion_tokens / self.written if self.written else None

    @property
    def mean_prompt_tokens(self) -> float | None:
        return self.prompt_tokens / self.written if self.written else None

    @property
    def samples_per_s(self) -> float | None:
        return self.written / self.elapsed_s if self.elapsed_s > 0 else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.generated_tokens / self.elapsed_s if self.elapsed_s > 0 else None


def run_identity(config: GenerateConfig, templates: Templates) -> dict[str, Any]:
    """The settings a samples file must share to be resumed (see :mod:`effirl.generation.store`)."""
    return {**{k: getattr(config, k) for k in IDENTITY}, "templates": templates.digest}


def sample_seed(run_seed: int, task_id: str, index: int) -> int:
    """The seed of one sample: independent of batches, of ``n`` and of the other tasks."""
    return derive_seed(run_seed, task_id, index)


def make_backend(config: GenerateConfig) -> Backend:
    """The backend ``config`` names, loaded (a model) or connected (a client)."""
    from effirl.generation.backends import make_backend as make

    return make(config)


def generate(config: GenerateConfig, tasks: Sequence[Task], out: str | Path | None = None, *,
             backend: Backend | None = None, templates: Templates | None = None,
             progress: Progress | None = None,
             on_sample: Callable[[dict[str, Any]], None] | None = None) -> GenerateSummary:
    """Sample ``config.n`` solutions per task into ``out`` (JSONL, resumed if it exists) and summarise.

    ``backend``: an existing backend (such as a :class:`~effirl.generation.backends.hf.TransformersBackend`
    around a model being trained); by default one is made from ``config`` (and closed at the end) only if
    something is missing. ``out=None`` keeps the samples in memory (``summary.records``). ``progress`` is
    called as ``(phase, done, total)``; ``on_sample`` with each sample record as it is written.
    """
    ids = [t.id for t in tasks]
    dup = next((i for i, c in Counter(ids).items() if c > 1), None)
    if dup is not None:
        raise EffirlError(f"task {dup!r} is listed twice")
    templates = templates or load_templates(config.prompt_file)
    strategy = make_strategy(config.strategy, templates)
    identity = run_identity(config, templates)
    store: SampleStore = SampleFile(out, identity) if out is not None else MemoryStore()
    summary = GenerateSummary(out=Path(out) if out is not None else None, tasks=len(tasks),
                              requested=len(tasks) * config.n, existing=0)
    try:
        chains = [Chain(t, i, sample_seed(config.seed, t.id, i)) for t in tasks for i in range(config.n)
                  if (t.id, i) not in store.done]
        summary.existing = summary.requested - len(chains)
        if chains:
            own = backend is None
            if progress:
                progress(LOAD, 0, 1)
            start = time.perf_counter()
            active = backend or make_backend(config)
            summary.load_s = time.perf_counter() - start
            summary.backend = active.describe()
            if progress:
                progress(LOAD, 1, 1)
                progress(PHASE, 0, len(chains))
            try:
                _Run(config, strategy, identity, active, store, summary, progress, on_sample).run(chains)
            finally:
                if own:
                    active.close()
    finally:
        store.close()
    if isinstance(store, MemoryStore):
        summary.records = store.records
    return summary


def sample_records(config: GenerateConfig, tasks: Sequence[Task], *, backend: Backend | None = None,
                   templates: Templates | None = None) -> list[dict[str, Any]]:
    """The sample records of ``tasks`` without a file (e.g. a periodic evaluation of a policy in training)."""
    return generate(config, tasks, None, backend=backend, templates=templates).records or []


class _Run:
    """One pass over the missing samples: requests, follow-up steps, records."""

    def __init__(self, config: GenerateConfig, strategy: Strategy, identity: dict[str, Any], backend: Backend,
                 store: SampleStore, summary: GenerateSummary, progress: Progress | None,
                 on_sample: Callable[[dict[str, Any]], None] | None) -> None:
        self.config, self.strategy, self.identity, self.backend = config, strategy, identity, backend
        self.store, self.summary, self.progress, self.on_sample = store, summary, progress, on_sample
        self.run_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.total = 0

    def run(self, chains: list[Chain]) -> None:
        self.total = len(chains)
        by_task: dict[str, list[Chain]] = {}
        for chain in chains:
            by_task.setdefault(chain.task.id, []).append(chain)
        self._check_context([c[0].task for c in by_task.values()])
        requests = []
        for group in by_task.values():
            spec = self.strategy.first(group[0].task)
            requests.append(Request(spec.messages, tuple(c.step_seed(spec.name) for c in group),
                                    tuple((c, spec) for c in group)))
        start = time.perf_counter()
        try:
            self.backend.run(requests, self.config.sampling, self._on_result)
        finally:
            self.summary.elapsed_s = time.perf_counter() - start

    def _check_context(self, tasks: list[Task]) -> None:
        """Refuse, before generating anything, tasks whose prompt cannot fit in the model's context."""
        context = self.backend.context_length
        if context is None:
            return
        too_long = []
        for task in tasks:
            n = self.backend.count_prompt_tokens(self.strategy.required(task))
            if n is not None and n >= context:
                too_long.append(f"{task.id} ({n} tokens)")
        if too_long:
            more = f" and {len(too_long) - 3} more" if len(too_long) > 3 else ""
            raise EffirlError(f"prompt longer than the model's context ({context} tokens): "
                              f"{', '.join(too_long[:3])}{more}; leave those tasks out (--tasks) or use a "
                              "model with a longer context")

    def _on_result(self, request: Request, i: int, completion: Completion) -> list[Request]:
        chain, spec = request.tag[i]
        chain.steps.append(StepRecord.of(spec, completion))
        nxt: StepSpec | None = self.strategy.next(chain)
        if nxt is not None:
            return [Request(nxt.messages, (chain.step_seed(nxt.name),), ((chain, nxt),))]
        final = chain.steps[-1]
        if final.finish_reason == PROMPT_TOO_LONG:
            raise EffirlError(f"task {chain.task.id}: prompt longer than the model's context "
                              f"({completion.error}); leave it out (--tasks) or use a model with a longer "
                              "context")
        self._write(chain)
        return []

    def _write(self, chain: Chain) -> None:
        final = chain.steps[-1]
        rec: dict[str, Any] = {
            "task_id": chain.task.id, "solution": final.response, "sample_index": chain.index,
            **{k: self.identity[k] for k in IDENTITY},
            "prompt_tokens": final.prompt_tokens, "completion_tokens": final.completion_tokens,
            "finish_reason": final.finish_reason, "messages": final.messages,
        }
        meta: dict[str, Any] = {"run": self.run_id, "templates": self.identity["templates"],
                                "sample_seed": chain.seed}
        if self.strategy.multi_step:
            rec["steps"] = [s.as_dict() for s in chain.steps]
            meta["total_prompt_tokens"] = sum(s.prompt_tokens or 0 for s in chain.steps)
            meta["total_completion_tokens"] = sum(s.completion_tokens or 0 for s in chain.steps)
            meta.update({k: v for k, v in chain.state.items() if k in ("confidence", "kept")})
        if chain.fallback:
            meta["fallback"] = chain.fallback
        if any(s.tokens_estimated for s in chain.steps):
            meta["tokens_estimated"] = True
        rec["metadata"] = meta
        self.store.write(rec)
        s = self.summary
        s.written += 1
        s.prompt_tokens += final.prompt_tokens or 0
        s.completion_tokens += final.completion_tokens or 0
        s.generated_tokens += sum(st.completion_tokens or 0 for st in chain.steps)
        s.finish_reasons[final.finish_reason] += 1
        s.fallbacks += chain.fallback is not None
        chain.steps, chain.state = [], {}  # written: let the texts go
        if self.progress:
            self.progress(PHASE, s.written, self.total)
        if self.on_sample:
            self.on_sample(rec)
