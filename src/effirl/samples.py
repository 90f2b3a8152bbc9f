"""Reading model samples (evalplus JSONL) and writing results that survive interruption.

Samples are ``{"task_id", "solution"}`` (a full program, possibly a raw markdown response) or
``{"task_id", "completion"}`` (appended to the prompt). Every problem in the file is reported once, naming the
file, line and field. Results are appended a line at a time and flushed, so an interrupted run resumes
without redoing finished samples.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from effirl.execution.checking import Sample
from effirl.tasks._records import read_jsonl
from effirl.tasks.model import Task


def read_samples(path: str | Path, tasks: dict[str, Task]) -> list[Sample]:
    """Parse a samples file (``.jsonl`` or ``.jsonl.gz``); a sample's index is its line number (stable across
    resumes)."""
    samples = []
    for row in read_jsonl(Path(path)):
        rec = row.data
        task_id = rec.get("task_id")
        if not isinstance(task_id, str):
            raise row.error("missing or not a string", field="task_id")
        if task_id not in tasks:
            some = ", ".join(list(tasks)[:3])
            raise row.error(f"unknown task {task_id!r} (the suite has {len(tasks)} tasks, e.g. {some})",
                            field="task_id")
        if not isinstance(rec.get("solution"), str) and not isinstance(rec.get("completion"), str):
            raise row.error("a sample needs a 'solution' or a 'completion' string", field="solution")
        samples.append(Sample(task_id=task_id, record=rec, index=row.index))
    return samples


def reference_samples(tasks: Iterable[Task]) -> list[Sample]:
    """Every reference solution of every task, as samples (the built-in demo and self-checks)."""
    out = []
    i = 0
    for t in tasks:
        for ref in t.references:
            i += 1
            out.append(Sample(task_id=t.id, index=i, record={"task_id": t.id, "solution": ref.code,
                                                             "reference": ref.label,
                                                             "complexity": ref.complexity}))
    return out


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a file written a line at a time (results, metrics); a line cut by an interruption,
    or one that is not an object, is skipped. A missing file has none."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def write_subset(src: str | Path, dst: str | Path, task_ids: set[str]) -> Path:
    """The lines of samples file ``src`` whose task is in ``task_ids`` (one split's samples), written to
    ``dst`` once and atomically (an existing ``dst`` is kept: its lines' results may already exist)."""
    target = Path(dst)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = [line for line in Path(src).read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line).get("task_id") in task_ids]
    tmp = target.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(target)
    return target


class ResultsFile:
    """Append-only JSONL of results keyed by ``key``; what is already there is skipped on resume."""

    def __init__(self, path: str | Path, key: str = "key") -> None:
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by an interruption: redo that sample
                    if isinstance(rec, dict) and self.key in rec:
                        self.done[rec[self.key]] = rec
            self._rewrite()
        self._fh = self.path.open("a", encoding="utf-8")

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in self.done.values():
                fh.write(json.dumps(rec) + "\n")
        tmp.replace(self.path)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()
        self.done[record[self.key]] = record

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self) -> Iterator[dict[str, Any]]:
        return iter(self.done.values())
