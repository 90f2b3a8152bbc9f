"""Hand-built scored folders with known verdicts and counts, in the exact layout ``effirl evaluate`` writes.

The samples file, ``run.json`` and each result's ``sample_digest`` come from effirl's own writers
(``effirl.batch``), so these folders cannot drift from the real format; only the verdicts and counts are
chosen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effirl.batch import RunSpec, record_run, sample_digest
from effirl.samples import read_samples
from effirl.tasks import by_id, load

BUILTIN = by_id(load("builtin"))


@dataclass(frozen=True)
class S:
    """One sample: status, total count (None: failed or unmeasured) and program (default: a distinct one)."""

    status: str = "pass"
    count: float | None = None
    code: str | None = None
    messages: list[dict[str, str]] | None = None


def program(task_id: str, tag: int | str) -> str:
    """A program for ``task_id`` whose AST differs for every ``tag``."""
    entry = BUILTIN[task_id].entry_point
    return f"def {entry}(*args):\n    return {tag!r}\n"


def make_scored(folder: Path, plan: dict[str, list[S]], meter: str | None = "callgrind") -> Path:
    """Write ``folder/samples.jsonl``, ``run.json`` and ``results.jsonl`` for ``plan`` (task -> samples)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    chosen: list[S] = []
    for task_id, samples in plan.items():
        for i, s in enumerate(samples):
            code = s.code if s.code is not None else program(task_id, i)
            row: dict[str, Any] = {"task_id": task_id, "solution": code}
            if s.messages is not None:
                row["messages"] = s.messages
            rows.append(row)
            chosen.append(s)
    path = folder / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parsed = read_samples(path, BUILTIN)
    record_run(RunSpec(suite="builtin", out=folder, samples=path), parsed)
    with (folder / "results.jsonl").open("w", encoding="utf-8") as fh:
        for sample, s in zip(parsed, chosen, strict=True):
            rec: dict[str, Any] = {"key": sample.key, "task_id": sample.task_id, "index": sample.index,
                                   "status": s.status, "verdict": {"status": s.status},
                                   "sample_digest": sample_digest(sample.record)}
            if s.status == "pass" and meter is not None:
                rec["meter"] = {"name": meter, "unit": "instructions"}
                rec["counts"] = None if s.count is None else [s.count * 0.25, s.count * 0.75]
            fh.write(json.dumps(rec) + "\n")
    return folder


def direct_prompt(task_id: str) -> list[dict[str, str]]:
    """A stand-in for the default prompt, so that tests of the builders do not depend on the templates."""
    return [{"role": "user", "content": f"Write {BUILTIN[task_id].entry_point}."}]


def prompt_fn(task: Any) -> list[dict[str, str]]:
    return direct_prompt(task.id)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
