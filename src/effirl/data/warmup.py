"""The warm-up corpus of a model trained from scratch: the stand-in for an LLM's prior on a suite's tasks.

Why it exists: the CPU miniature has no pretrained model, so its base model learns to write Python for the
suite's tasks from this corpus, as pretraining would teach an LLM. The corpus is shaped like the prior the
paper's method works against:

* every task's references, the slowest one weighted above the faster ones (``slow_weight`` copies against
  ``fast_weight``): LLMs favour the straightforward, brute-force solution;
* some plausible broken variants (``effirl.data.mutants``: an off-by-one bound, a flipped comparison, a dropped
  edge case), kept only when the sandbox judges them wrong, so that the base model fails sometimes.

The reference order (slowest first) is the suite's own labelling, used here and nowhere after: what the later
stages learn about speed comes from the measured reward alone. Rows are chat ``messages``: the task's prompt
rendered with a generation strategy, and the answer as one fenced Python block, as that prompt asks.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from effirl.data.mutants import failing_variants
from effirl.execution.pool import Pool
from effirl.generation.prompts import render
from effirl.tasks.model import Task


class WarmupMix(BaseModel):
    """How many copies of each kind of answer the corpus holds per task."""

    model_config = ConfigDict(extra="forbid")

    slow_weight: int = Field(3, ge=0, description="Copies of the slowest reference")
    fast_weight: int = Field(1, ge=0, description="Copies of each faster reference")
    broken_per_task: int = Field(2, ge=0, description="Broken variants (verified wrong) per task")
    broken_weight: int = Field(1, ge=0, description="Copies of each broken variant")
    strategy: str = Field("direct", description="Generation strategy whose prompt the rows use")


def answer(code: str) -> str:
    """An answer in the format the generation prompts ask for: one fenced Python block."""
    return "```python\n" + code.strip("\n") + "\n```"


def warmup_rows(tasks: list[Task], mix: WarmupMix, pool: Pool, seed: int = 0) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, Any]]:
    """The corpus rows (shuffled with ``seed``) and what they hold, by kind and status."""
    rng = random.Random(seed)
    broken = failing_variants(pool, tasks, per_reference=max(1, mix.broken_per_task), seed=seed) \
        if mix.broken_per_task and mix.broken_weight else []
    broken_by_task: dict[str, list[Any]] = {}
    for b in broken:
        broken_by_task.setdefault(b.task_id, []).append(b)
    rows: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for task in tasks:
        prompt = render(task, mix.strategy)
        for i, ref in enumerate(task.references):
            copies = mix.slow_weight if i == 0 and len(task.references) > 1 else mix.fast_weight
            kind = "slow reference" if i == 0 and len(task.references) > 1 else "faster reference"
            for _ in range(copies):
                rows.append({"task_id": task.id, "kind": kind, "messages": [*prompt, {
                    "role": "assistant", "content": answer(ref.code)}]})
                kinds[kind] += 1
        candidates = broken_by_task.get(task.id, [])
        for b in rng.sample(candidates, min(mix.broken_per_task, len(candidates))):
            for _ in range(mix.broken_weight):
                rows.append({"task_id": task.id, "kind": "broken variant", "operator": b.mutant.operator,
                             "status": b.status, "messages": [*prompt, {
                                 "role": "assistant", "content": answer(b.mutant.code)}]})
                kinds["broken variant"] += 1
                statuses[b.status] += 1
    rng.shuffle(rows)
    stats = {"rows": len(rows), "tasks": len(tasks), "by_kind": dict(kinds), "broken_statuses": dict(statuses),
             "mix": mix.model_dump(), "messages_sha256_16": corpus_digest(rows)}
    return rows, stats


def corpus_digest(rows: list[dict[str, Any]]) -> str:
    """A short digest of what a corpus teaches (its messages, in order): the same corpus, the same digest."""
    return hashlib.sha256(json.dumps([r["messages"] for r in rows], sort_keys=True).encode()).hexdigest()[:16]
