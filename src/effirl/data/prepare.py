"""The steps both builders share: join the scored folder, drop contaminated tasks, deduplicate, count.

Why it exists: SFT rows and DPO pairs are chosen from the same pool of distinct samples; building that pool
once, with its numbers in a :class:`DataStats`, keeps the two builders to their own selection rule.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

from effirl.data.config import DataConfig
from effirl.data.decontaminate import decontaminate, load_suites
from effirl.data.dedup import dedup
from effirl.data.scored import Progress, PromptFn, ScoredSample, ScoredSet, load_scored
from effirl.data.stats import DataStats, DedupStats, DroppedTask

log = logging.getLogger(__name__)


@dataclass
class Pool:
    """The distinct samples of each kept task (tasks in suite order), with the build's stats so far."""

    scored: ScoredSet
    by_task: dict[str, list[ScoredSample]]
    stats: DataStats


def prepare(config: DataConfig, kind: Literal["sft", "dpo"], prompt_fn: PromptFn | None = None,
            progress: Progress | None = None) -> Pool:
    """Load ``config.scored``, decontaminate and deduplicate; the stats count every step."""
    scored = load_scored(config.scored, config.samples, prompt_fn, progress=progress)
    present = {s.task_id for s in scored.samples}
    tasks = [t for tid, t in scored.tasks.items() if tid in present]
    dropped = []
    if config.decontaminate:
        tasks, dropped = decontaminate(tasks, load_suites(config.decontaminate))
        for d in dropped:
            log.info("decontamination drops %s (%s matches %s: %s)", d.task_id, d.reason, d.match, d.detail)
    kept_ids = {t.id for t in tasks}
    candidates = [s for s in scored.samples if s.task_id in kept_ids]
    result = dedup(candidates, config.dedup, config.seed, progress)
    by_task: dict[str, list[ScoredSample]] = defaultdict(list)
    for s in result.kept:
        by_task[s.task_id].append(s)
    ordered = {t.id: by_task[t.id] for t in tasks if by_task.get(t.id)}
    statuses = Counter(s.status for s in result.kept)
    stats = DataStats(
        kind=kind, scored=str(config.scored),
        samples_file=str(scored.samples_path) if scored.samples_path else None,
        suite=scored.suite, source=scored.source, meter=scored.meter,
        config=config.model_dump(mode="json"), tasks=len(present), tasks_kept=len(tasks),
        samples=len(scored.samples), unscored=scored.unscored,
        dedup=DedupStats(mode=config.dedup, groups=len(result.kept), removed=result.removed,
                         group_sizes={str(k): v for k, v in result.group_sizes.items()},
                         mixed_groups=result.mixed_groups, largest=result.largest),
        distinct=len(result.kept),
        correct=sum(1 for s in result.kept if s.passed),
        correct_unmeasured=(sum(1 for s in result.kept if s.passed and not s.measured)
                            if scored.measured else 0),
        incorrect=sum(1 for s in result.kept if not s.passed),
        statuses=dict(statuses.most_common()),
        decontaminated_against=list(config.decontaminate),
        dropped=[DroppedTask(task_id=d.task_id, reason=d.reason, match=d.match, detail=d.detail)
                 for d in dropped],
        notes=list(scored.notes),
    )
    only_failing = [tid for tid, ss in ordered.items() if not any(s.passed for s in ss)]
    if only_failing:
        stats.skipped["only failing samples"] = only_failing
    return Pool(scored=scored, by_task=ordered, stats=stats)
