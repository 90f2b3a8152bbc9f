"""DPO pairs: correctness pairs and efficiency pairs, mixed with a share p of efficiency pairs.

Why it exists: the paper's offline stage prefers correct over incorrect code (correctness pairs: chosen
passes, rejected fails in any way) and faster over slower correct code (efficiency pairs: both pass, and the
rejected one costs at least ``min_ratio`` times the chosen one's instructions, so that no pair sits inside
measurement noise). The final method mixes 10 % efficiency pairs; the paper sweeps 0 / 0.5 / 0.9 / 1.0.

Pairs are formed within a task, between samples that answered the same prompt. A task of 100 samples has
thousands of candidate pairs, so each task's candidates are indexed, not listed, and drawn without replacement
(seeded). The rows of each kind are spread across tasks as evenly as their candidates allow (water-filling),
so that no task dominates; ``per_task`` caps each kind per task. The share of efficiency pairs is exact up to
rounding; when one kind runs short the set shrinks to keep the share (or, with ``fill``, the other kind fills
up and the share that results is reported).
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from effirl.data.config import DPODataConfig
from effirl.data.export import check_out, write_all
from effirl.data.prepare import prepare
from effirl.data.scored import Progress, PromptFn, ScoredSample
from effirl.data.stats import DataStats
from effirl.errors import EffirlError

log = logging.getLogger(__name__)
KINDS = ("correctness", "efficiency")
Pair = tuple[ScoredSample, ScoredSample]  # (chosen, rejected)


class _Block:
    """The candidate pairs among the samples of one task that answered one prompt, by index."""

    def __init__(self, samples: list[ScoredSample], kind: str, min_ratio: float) -> None:
        self.kind = kind
        if kind == "correctness":
            self.good = sorted((s for s in samples if s.passed), key=lambda s: s.index)
            self.bad = sorted((s for s in samples if not s.passed), key=lambda s: s.index)
            self.size = len(self.good) * len(self.bad)
            self.near_ties = 0
            return
        self.fast = sorted((s for s in samples if s.passed and s.measured), key=lambda s: (s.count, s.index))
        counts = [float(s.count or 0.0) for s in self.fast]
        # For the i-th fastest, the slower partners are a suffix: counts[j] >= min_ratio * counts[i], j > i.
        self.start = [max(bisect.bisect_left(counts, min_ratio * c), bisect.bisect_right(counts, c), i + 1)
                      for i, c in enumerate(counts)]
        self.cum = list(itertools.accumulate(len(counts) - lo for lo in self.start))
        self.size = self.cum[-1] if self.cum else 0
        self.near_ties = len(counts) * (len(counts) - 1) // 2 - self.size

    def get(self, i: int) -> Pair:
        if self.kind == "correctness":
            return self.good[i // len(self.bad)], self.bad[i % len(self.bad)]
        a = bisect.bisect_right(self.cum, i)
        before = self.cum[a - 1] if a else 0
        return self.fast[a], self.fast[self.start[a] + (i - before)]


@dataclass
class PairPool:
    """All candidate pairs of one kind for one task, across its prompts."""

    blocks: list[_Block] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blocks)

    def get(self, i: int) -> Pair:
        for b in self.blocks:
            if i < b.size:
                return b.get(i)
            i -= b.size
        raise IndexError(i)

    def draw(self, k: int, rng: random.Random) -> list[Pair]:
        """``k`` distinct pairs at random."""
        return [self.get(i) for i in sorted(rng.sample(range(self.size), k))]


def pair_pools(samples: list[ScoredSample], min_ratio: float) -> tuple[dict[str, PairPool], int]:
    """The pools of one task by kind (pairs only between samples of the same prompt), and its near-ties."""
    by_prompt: dict[str, list[ScoredSample]] = defaultdict(list)
    for s in samples:
        by_prompt[json.dumps(s.prompt, sort_keys=True)].append(s)
    pools = {kind: PairPool() for kind in KINDS}
    near = 0
    for group in by_prompt.values():
        for kind in KINDS:
            block = _Block(group, kind, min_ratio)
            if kind == "efficiency":
                near += block.near_ties
            if block.size:
                pools[kind].blocks.append(block)
    return pools, near


def balanced_quotas(sizes: dict[str, int], n: int, rng: random.Random) -> dict[str, int]:
    """How many of ``n`` items to take from each task: as even as the sizes allow (water-filling); the last
    few go to tasks drawn at random."""
    quotas = dict.fromkeys(sizes, 0)
    remaining = min(n, sum(sizes.values()))
    active = [t for t in sizes if sizes[t] > 0]
    while remaining > 0 and active:
        share = remaining // len(active)
        if share == 0:
            for t in rng.sample(active, remaining):
                quotas[t] += 1
            break
        for t in active:
            give = min(share, sizes[t] - quotas[t])
            quotas[t] += give
            remaining -= give
        active = [t for t in active if quotas[t] < sizes[t]]
    return quotas


@dataclass(frozen=True)
class Mix:
    """How many pairs of each kind to write."""

    correctness: int
    efficiency: int
    short: str | None  # the kind that limited the set, if the share (or the cap) could not be met from both


def mix(n_correct: int, n_efficient: int, proportion: float, max_rows: int | None, fill: bool = False) -> Mix:
    """The counts of each kind: a share ``proportion`` of efficiency pairs, exactly up to rounding.

    The set is as large as ``max_rows`` (default: every candidate) and the share allow. ``short`` names the
    kind whose candidates kept the set under that size (with ``fill``: the kind that kept the share from
    holding).
    """

    def share(total: int) -> int:
        return math.floor(proportion * total + 0.5)

    if not fill and proportion in (0.0, 1.0):  # one kind only
        have = n_correct if proportion == 0.0 else n_efficient
        n = min(have, max_rows) if max_rows is not None else have
        limited = max_rows is not None and n < max_rows
        short = ("correctness" if proportion == 0.0 else "efficiency") if limited else None
        return Mix(n if proportion == 0.0 else 0, n if proportion == 1.0 else 0, short)
    everything = n_correct + n_efficient
    cap = min(max_rows, everything) if max_rows is not None else everything
    if fill:
        target = share(cap)
        e = min(n_efficient, target)
        c = min(n_correct, cap - e)
        e = min(n_efficient, cap - c)
        short = "efficiency" if e < target else "correctness" if c < cap - target else None
        return Mix(c, e, short)
    if n_efficient == 0 or n_correct == 0:  # no mix of both kinds at all
        total = 0
    else:
        total = min(cap, math.ceil((n_efficient + 0.5) / proportion),
                    math.ceil((n_correct + 0.5) / (1.0 - proportion)))
    while total > 0 and (share(total) > n_efficient or total - share(total) > n_correct):
        total -= 1
    short = None
    if total < cap:  # the share left candidates of one kind unused: the other kind ran short
        short = "efficiency" if n_efficient / proportion < n_correct / (1.0 - proportion) else "correctness"
    return Mix(total - share(total), share(total), short)


def dpo_row(pair: Pair, kind: str) -> dict[str, Any]:
    """One row in TRL's conversational preference format, with both sides' statuses and counts."""
    chosen, rejected = pair
    return {"task_id": chosen.task_id, "kind": kind, "prompt": chosen.prompt,
            "chosen": [{"role": "assistant", "content": chosen.response}],
            "rejected": [{"role": "assistant", "content": rejected.response}],
            "chosen_key": chosen.key, "rejected_key": rejected.key,
            "chosen_status": chosen.status, "rejected_status": rejected.status,
            "chosen_count": chosen.count, "rejected_count": rejected.count}


def select_dpo(by_task: dict[str, list[ScoredSample]], config: DPODataConfig,
               rng: random.Random) -> tuple[list[tuple[Pair, str]], dict[str, Any]]:
    """The pairs (in task order) and what the selection saw: ``available``, ``near_ties``, ``mix``."""
    pools: dict[str, dict[str, PairPool]] = {}
    near = 0
    for tid, samples in by_task.items():
        pools[tid], n = pair_pools(samples, config.min_ratio)
        near += n
    cap = config.per_task
    sizes = {kind: {tid: min(p[kind].size, cap) if cap else p[kind].size for tid, p in pools.items()}
             for kind in KINDS}
    available = {kind: sum(sizes[kind].values()) for kind in KINDS}
    m = mix(available["correctness"], available["efficiency"], config.proportion, config.max_rows,
            config.fill)
    picked: list[tuple[Pair, str]] = []
    for kind, n in (("correctness", m.correctness), ("efficiency", m.efficiency)):
        quotas = balanced_quotas(sizes[kind], n, rng)
        for tid in by_task:
            if quotas.get(tid):
                picked += [(pair, kind) for pair in pools[tid][kind].draw(quotas[tid], rng)]
    order = {tid: i for i, tid in enumerate(by_task)}
    picked.sort(key=lambda pk: (order[pk[0][0].task_id], KINDS.index(pk[1]), pk[0][0].index, pk[0][1].index))
    return picked, {"available": available, "near_ties": near, "mix": m}


def build_dpo(config: DPODataConfig, prompt_fn: PromptFn | None = None,
              progress: Progress | None = None) -> DataStats:
    """Build ``config.out`` (``dpo.jsonl``, ``dataset/``, ``llamafactory/``, ``stats.json``); the stats."""
    check_out(config.out, "dpo")
    pool = prepare(config, "dpo", prompt_fn, progress)
    stats = pool.stats
    if config.proportion > 0 and not pool.scored.measured:
        raise EffirlError(f"{config.scored} has no instruction counts (an effirl check folder?), so it has "
                          "no efficiency pairs: score it with effirl evaluate or measure, or use "
                          "--proportion 0")
    usable = {tid: ss for tid, ss in pool.by_task.items() if any(s.passed for s in ss)}
    picked, seen = select_dpo(usable, config, random.Random(config.seed))
    m: Mix = seen["mix"]
    stats.pairs_available = dict(seen["available"])
    stats.near_ties = int(seen["near_ties"])
    stats.pairs = {kind: sum(1 for _, k in picked if k == kind) for kind in KINDS}
    stats.proportion_requested = config.proportion
    stats.proportion = stats.pairs["efficiency"] / len(picked) if picked else None
    stats.short = m.short
    if m.short:
        stats.notes.append(f"{m.short} pairs ran short ({stats.pairs_available[m.short]} available): "
                           f"{len(picked)} rows, efficiency share {stats.proportion or 0:.3f} "
                           f"(asked {config.proportion})")
    used = {pair[0].task_id for pair, _ in picked}
    no_pairs = [tid for tid in usable if tid not in used]
    if no_pairs:
        stats.skipped["no pair drawn (all one status, or near-ties)"] = no_pairs
    if not picked:
        hint = ("lower --min-ratio or use --fill" if config.proportion > 0
                else "no task has both a passing and a failing sample")
        raise EffirlError(f"no DPO pairs (available: {stats.pairs_available['correctness']} correctness, "
                          f"{stats.pairs_available['efficiency']} efficiency at min ratio "
                          f"{config.min_ratio}); "
                          f"{hint}")
    per = Counter(Counter(p[0].task_id for p, _ in picked).values())
    stats.rows = len(picked)
    stats.tasks_used = len({p[0].task_id for p, _ in picked})
    stats.rows_per_task = {str(k): v for k, v in sorted(per.items())}
    log.info("%d DPO pairs (%s) from %d task(s)", len(picked), stats.pairs, stats.tasks_used)
    return write_all(config.out, [dpo_row(p, k) for p, k in picked], "dpo", stats)
