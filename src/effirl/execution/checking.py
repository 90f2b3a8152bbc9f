"""Correctness of many samples over a pool: expected outputs resolved once per task, verdicts streamed.

Expected outputs come from the task's tests, or (evalplus style) from running its trusted canonical solution
in the sandbox once; those are cached on disk, keyed by the program and inputs, so a second run is free.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effirl.execution import judge
from effirl.execution.parse import program_from_sample
from effirl.execution.pool import Pool
from effirl.execution.verdict import Status, Verdict
from effirl.execution.worker import Worker
from effirl.tasks.model import Task

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("EFFIRL_CACHE", Path.home() / ".cache" / "effirl"))


@dataclass
class Sample:
    """One program to judge: a task id, the raw sample record, and its position in the input file."""

    task_id: str
    record: dict[str, Any]
    index: int = 0
    code: str | None = None  # filled by :func:`prepare`

    @property
    def key(self) -> str:
        return f"{self.task_id}#{self.index}"


@dataclass
class TaskTests:
    """A task's inputs with their expected outputs, as the parent holds them."""

    inputs: list[list[Any]]
    expected: list[Any]
    key: str
    dropped: list[int] = field(default_factory=list)  # inputs the canonical solution could not answer


def prepare(task: Task, sample: Sample) -> Sample:
    sample.code = program_from_sample(task, sample.record)
    return sample


def _inputs_digest(task: Task, code: str, inputs: list[list[Any]]) -> str:
    h = hashlib.sha256()
    h.update(task.id.encode())
    h.update(code.encode())
    try:
        h.update(marshal.dumps(inputs))
    except ValueError:
        h.update(repr(inputs).encode())
    return h.hexdigest()


class ExpectedOutputs:
    """Resolves (and caches) the expected outputs of each task, computing canonical ones in the sandbox."""

    def __init__(self, use_disk_cache: bool = True) -> None:
        self._memo: dict[str, TaskTests] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.use_disk_cache = use_disk_cache

    def get(self, worker: Worker, task: Task) -> TaskTests:
        with self._guard:
            lock = self._locks.setdefault(task.id, threading.Lock())
        with lock:
            if task.id not in self._memo:
                self._memo[task.id] = self._resolve(worker, task)
            return self._memo[task.id]

    def _resolve(self, worker: Worker, task: Task) -> TaskTests:
        inputs = [list(tc.args) for tc in task.tests]
        key = f"{task.suite}:{task.id}:tests"
        if task.expected_from == "tests":
            return TaskTests(inputs, [tc.expected for tc in task.tests], key)
        code = task.canonical or ""
        digest = _inputs_digest(task, code, inputs)
        path = cache_dir() / "expected" / f"{digest}.marshal"
        if self.use_disk_cache and path.exists():
            try:
                values, errors = marshal.loads(path.read_bytes())
                return self._tests(inputs, values, errors, key, task)
            except (ValueError, EOFError, TypeError):
                log.warning("ignoring unreadable cache file %s", path)
        got = judge.collect_outputs(worker, code, task.entry_point, task.entry_kind.value, inputs,
                                    inputs_key=key, checker=task.checker, timeout_s=60.0)
        errors = sorted(got.errors)
        if self.use_disk_cache and got.outcome.stop_reason is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A name of its own: other processes (Ray actors on this node) may write the same entry at once.
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(marshal.dumps((got.values, errors)))
            tmp.replace(path)
        return self._tests(inputs, got.values, errors, key, task)

    @staticmethod
    def _tests(inputs: list[list[Any]], values: list[Any], errors: list[int], key: str, task: Task) -> TaskTests:
        if not errors:
            return TaskTests(inputs, values, key)
        log.warning("%s: the canonical solution fails on %d of %d inputs; those are dropped",
                    task.id, len(errors), len(inputs))
        bad = set(errors)
        keep = [i for i in range(len(inputs)) if i not in bad]
        return TaskTests([inputs[i] for i in keep], [values[i] for i in keep], key + ":kept", dropped=sorted(bad))


def check_one(worker: Worker, task: Task, sample: Sample, expected: ExpectedOutputs, seed: int = 0) -> Verdict:
    """The verdict of one sample (format errors are decided here without running anything)."""
    if sample.code is None:
        prepare(task, sample)
    if sample.code is None:
        return Verdict(status=Status.FORMAT_ERROR, error_message="no parseable Python code in the response",
                       tests_total=len(task.tests))
    tests = expected.get(worker, task)
    return judge.run_tests(worker, sample.code, task.entry_point, task.entry_kind.value, tests.inputs,
                           tests.expected, atol=task.atol, inputs_key=tests.key, checker=task.checker, seed=seed)


def check_samples(pool: Pool, tasks: dict[str, Task], samples: Iterable[Sample],
                  expected: ExpectedOutputs | None = None) -> Iterator[tuple[Sample, Verdict]]:
    """Judge every sample on the pool; yields ``(sample, verdict)`` as each finishes."""
    resolver = expected or ExpectedOutputs()

    def work(worker: Worker, sample: Sample) -> Verdict:
        return check_one(worker, tasks[sample.task_id], sample, resolver, pool.config.seed)

    yield from pool.map(work, samples)
