"""SFT rows: per task, the K fastest distinct correct samples (the paper: the two fastest, 5,000 rows).

Why it exists: the paper's first SFT stage teaches the model its own best answers: among the samples that
pass, the ones with the lowest instruction count. Ranking needs counts, so a folder without any (``effirl
check``) is refused; a correct sample whose count is missing (its task's performance inputs could not be
built) is not ranked. When ``max_rows`` cuts, every task's fastest sample comes before any task's second.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

from effirl.data.config import SFTDataConfig
from effirl.data.export import check_out, write_all
from effirl.data.prepare import prepare
from effirl.data.scored import Progress, PromptFn, ScoredSample
from effirl.data.stats import DataStats
from effirl.errors import EffirlError

log = logging.getLogger(__name__)
DEFAULT_PER_TASK = 2


def rank_correct(samples: list[ScoredSample]) -> list[ScoredSample]:
    """The measured correct samples, fastest first (ties: file order)."""
    return sorted((s for s in samples if s.passed and s.measured), key=lambda s: (s.count, s.index))


def select_sft(by_task: dict[str, list[ScoredSample]], per_task: int, max_rows: int | None,
               rng: random.Random) -> tuple[list[tuple[ScoredSample, int]], list[str]]:
    """``(sample, rank)`` rows in task order, and the tasks with correct samples of which none is measured.

    Under ``max_rows`` the rows are taken rank by rank (every task's fastest, then every task's second, ...),
    tasks in a seeded random order within a rank.
    """
    ranked = {tid: rank_correct(ss)[:per_task] for tid, ss in by_task.items()}
    unmeasured = [tid for tid, ss in by_task.items() if not ranked[tid] and any(s.passed for s in ss)]
    order = list(by_task)
    chosen: set[tuple[str, int]] = set()
    for rank in range(per_task):
        tids = [t for t in order if len(ranked[t]) > rank]
        rng.shuffle(tids)
        for tid in tids:
            if max_rows is not None and len(chosen) >= max_rows:
                break
            chosen.add((tid, rank))
    rows = [(ranked[tid][rank], rank + 1) for tid in order for rank in range(per_task)
            if (tid, rank) in chosen]
    return rows, unmeasured


def sft_row(sample: ScoredSample, rank: int) -> dict[str, Any]:
    """One row in TRL's conversational format: the prompt's messages, then the response as the assistant's
    turn."""
    return {"task_id": sample.task_id, "key": sample.key, "rank": rank, "count": sample.count,
            "messages": [*sample.prompt, {"role": "assistant", "content": sample.response}]}


def build_sft(config: SFTDataConfig, prompt_fn: PromptFn | None = None,
              progress: Progress | None = None) -> DataStats:
    """Build ``config.out`` (``sft.jsonl``, ``dataset/``, ``llamafactory/``, ``stats.json``); the stats."""
    check_out(config.out, "sft")
    pool = prepare(config, "sft", prompt_fn, progress)
    stats = pool.stats
    if not pool.scored.measured:
        raise EffirlError(f"{config.scored} has no instruction counts (an effirl check folder?): SFT takes "
                          "the fastest correct samples; score them with effirl evaluate or measure")
    per_task = config.per_task or DEFAULT_PER_TASK
    rows, unmeasured = select_sft(pool.by_task, per_task, config.max_rows, random.Random(config.seed))
    if unmeasured:
        stats.skipped["correct but none measured"] = unmeasured
    if not rows:
        raise EffirlError(f"no SFT rows: none of the {stats.tasks_kept} kept task(s) has a measured correct "
                          "sample")
    per = Counter(Counter(s.task_id for s, _ in rows).values())
    stats.rows = len(rows)
    stats.tasks_used = len({s.task_id for s, _ in rows})
    stats.rows_per_task = {str(k): v for k, v in sorted(per.items())}
    log.info("%d SFT rows from %d task(s)", len(rows), stats.tasks_used)
    return write_all(config.out, [sft_row(s, rank) for s, rank in rows], "sft", stats)
