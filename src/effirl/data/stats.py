"""What a data build did, as numbers: ``OUT/stats.json`` and the table ``effirl data`` prints.

Why it exists: a training set is only as good as what went into it. Every filter (decontamination, AST dedup,
tasks with no correct sample, pairs inside measurement noise, a kind of pair running short) is counted here,
so that a build can be checked and two builds compared.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class DedupStats(BaseModel):
    """The groups of equivalent samples (see :mod:`effirl.data.dedup`)."""

    mode: str
    groups: int = 0
    removed: int = 0
    group_sizes: dict[str, int] = Field(default_factory=dict)  # size -> number of groups (keys: strings)
    mixed_groups: int = 0
    largest: list[tuple[str, int]] = Field(default_factory=list)


class DroppedTask(BaseModel):
    task_id: str
    reason: str
    match: str
    detail: str


class DataStats(BaseModel):
    """The numbers of one build."""

    kind: Literal["sft", "dpo"]
    scored: str
    samples_file: str | None
    suite: str
    source: str | None
    meter: str | None
    config: dict[str, Any]
    tasks: int = 0  # tasks with at least one result
    tasks_kept: int = 0  # after decontamination
    tasks_used: int = 0  # tasks with at least one row
    samples: int = 0  # results joined with their sample
    unscored: int = 0  # sample lines without a result
    dedup: DedupStats
    distinct: int = 0  # samples left after dedup (of kept tasks)
    correct: int = 0
    correct_unmeasured: int = 0  # of the correct: passed, but no count (its task's performance inputs failed)
    incorrect: int = 0
    statuses: dict[str, int] = Field(default_factory=dict)
    decontaminated_against: list[str] = Field(default_factory=list)
    dropped: list[DroppedTask] = Field(default_factory=list)
    skipped: dict[str, list[str]] = Field(default_factory=dict)  # reason -> task ids
    rows: int = 0
    rows_per_task: dict[str, int] = Field(default_factory=dict)  # rows -> number of tasks
    pairs_available: dict[str, int] = Field(default_factory=dict)  # DPO: kind -> candidate pairs
    pairs: dict[str, int] = Field(default_factory=dict)  # DPO: kind -> pairs written
    near_ties: int = 0  # DPO: correct measured pairs dropped for a count ratio under min_ratio
    proportion_requested: float | None = None
    proportion: float | None = None  # DPO: share of efficiency pairs written
    short: str | None = None  # DPO: the kind that ran short, if any
    notes: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)


def table_rows(stats: DataStats) -> list[tuple[str, str]]:
    """(label, value) lines of the summary table, in reading order."""
    rows = [
        ("tasks (scored / kept / used)", f"{stats.tasks} / {stats.tasks_kept} / {stats.tasks_used}"),
        ("dropped by decontamination", str(len(stats.dropped))),
        ("samples (joined)", f"{stats.samples}" + (f", {stats.unscored} unscored" if stats.unscored else "")),
        (f"{stats.dedup.mode} groups (distinct samples)", str(stats.dedup.groups)),
        ("duplicates removed", str(stats.dedup.removed)),
        ("group sizes (size: groups)", _pairs(stats.dedup.group_sizes)),
        ("correct / incorrect", f"{stats.correct} / {stats.incorrect}"
         + (f" ({stats.correct_unmeasured} correct ones unmeasured)" if stats.correct_unmeasured else "")),
    ]
    for reason, ids in stats.skipped.items():
        rows.append((f"tasks skipped: {reason}", str(len(ids))))
    if stats.kind == "dpo":
        for kind in ("correctness", "efficiency"):
            rows.append((f"{kind} pairs (written / available)",
                         f"{stats.pairs.get(kind, 0)} / {stats.pairs_available.get(kind, 0)}"))
        rows.append(("near-ties dropped (min ratio)", f"{stats.near_ties} ({stats.config.get('min_ratio')})"))
        share = "-" if stats.proportion is None else f"{stats.proportion:.3f}"
        rows.append(("efficiency share (asked / got)", f"{stats.proportion_requested} / {share}"
                     + (f", {stats.short} pairs ran short" if stats.short else "")))
    rows.append(("rows written", str(stats.rows)))
    rows.append(("rows per task (rows: tasks)", _pairs(stats.rows_per_task)))
    return rows


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "-"
