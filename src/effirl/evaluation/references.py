"""The reference pool of each task, re-measured on this machine with the run's own meter and inputs.

Why it exists: efficiency scores compare a sample's count with reference counts, and counts are only
comparable when taken by the same meter, in the same environment, on the same inputs. Dataset numbers
(EvalPerf's, Mercury's LeetCode runtimes) are never used: the references are written as samples into
``DIR/reference_samples.jsonl`` and run through the ordinary batch run into ``DIR/references.jsonl``, which
therefore resumes like any results file.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from effirl.batch import Progress, RunSpec, run
from effirl.samples import ResultsFile
from effirl.tasks.model import Reference, Task

log = logging.getLogger(__name__)

REFERENCE_SAMPLES = "reference_samples.jsonl"
REFERENCE_RESULTS = "references.jsonl"


def reference_pool(task: Task) -> list[Reference]:
    """The task's references, slowest first; the canonical solution alone when a task has none (HumanEval+)."""
    if task.references:
        return list(task.references)
    if task.canonical_solution:
        return [Reference(label="canonical", code=task.canonical_solution)]
    return []


@dataclass
class PoolLayout:
    """Where each task's references sit in the reference samples file (their result keys, in pool order)."""

    path: Path
    keys: dict[str, list[str]]  # task id -> result key of each reference
    labels: dict[str, list[str]]  # task id -> label of each reference


def write_reference_samples(out: Path, tasks: list[Task]) -> PoolLayout:
    """Write the pool of ``tasks`` as a samples file (one line per reference, suite order).

    The file is deterministic, so an interrupted run finds the same keys. If a file from an earlier run of
    this folder lists other references, the reference results whose key now means another reference are
    dropped (they will be measured again) rather than silently reused.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / REFERENCE_SAMPLES
    lines: list[str] = []
    keys: dict[str, list[str]] = {}
    labels: dict[str, list[str]] = {}
    meaning: dict[str, tuple[str, str]] = {}
    for task in tasks:
        for ref in reference_pool(task):
            lines.append(json.dumps({"task_id": task.id, "solution": ref.code, "reference": ref.label,
                                     "complexity": ref.complexity}))
            key = f"{task.id}#{len(lines)}"  # read_samples: the index is the line number
            keys.setdefault(task.id, []).append(key)
            labels.setdefault(task.id, []).append(ref.label)
            meaning[key] = (task.id, ref.label)
    text = "".join(line + "\n" for line in lines)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        _drop_stale(out / REFERENCE_RESULTS, meaning)
        path.write_text(text, encoding="utf-8")
    return PoolLayout(path=path, keys=keys, labels=labels)


def _drop_stale(results: Path, meaning: dict[str, tuple[str, str]]) -> None:
    if not results.exists():
        return
    store = ResultsFile(results)
    store.close()
    kept = {k: r for k, r in store.done.items() if meaning.get(k) == (r.get("task_id"), r.get("reference"))}
    if len(kept) != len(store.done):
        log.warning("%d reference result(s) in %s belong to another reference list; they will be re-measured",
                    len(store.done) - len(kept), results)
        tmp = results.with_suffix(".stale.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept.values()), encoding="utf-8")
        tmp.replace(results)


def share_references(done: Path, folder: Path) -> None:
    """Give ``folder`` the reference pool and results of ``done``, an evaluation of the same tasks with the same
    meter and inputs: ``evaluate`` in ``folder`` then finds every reference measured and measures none again
    (its own checks refuse results of another meter, seed or scale)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (REFERENCE_SAMPLES, REFERENCE_RESULTS):
        if (done / name).is_file() and not (folder / name).exists():
            shutil.copyfile(done / name, folder / name)


def measure_references(spec: RunSpec, layout: PoolLayout, progress: Progress) -> dict[str, dict[str, Any]]:
    """Run the pool through the batch run with ``spec``'s meter, seed, scales and executor (local or Ray: the
    references are counted where the samples are); records by result key."""

    def prefixed(phase: str, done: int, total: int) -> None:
        progress(f"references {phase}", done, total)

    if not layout.keys:
        return {}
    ref_spec = replace(spec, samples=layout.path, results_name=REFERENCE_RESULTS)
    records = run(ref_spec, prefixed)
    return {r["key"]: r for r in records}
