"""Measuring passing samples: one fresh child per (sample, performance input, repeat), on a metered pool.

No state survives from one measured run to the next: every run is a new fork of the warmed server, with a
fresh private /tmp, so an ``lru_cache`` or a file written by the previous run cannot make the next one cheap.

Every measured output is checked against the input's trusted expected output (or judged by the task's trusted
checker in a separate child): a program that detects it is being measured and answers anything then gets a
wrong answer, not a small count (:func:`effirl.execution.judge.measure_once`). The inputs effirl resolves are
all checked (:mod:`effirl.inputs.perf`); an unchecked :class:`PerfInput` is for trusted programs only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from effirl.execution import judge
from effirl.execution.pool import Pool
from effirl.execution.worker import Worker
from effirl.tasks.model import Task


@dataclass
class PerfInput:
    """One performance input: the arguments of the call, and what it must return when ``checked``."""

    args: list[Any]
    expected: Any = None
    checked: bool = False  # whether a measured run's output is judged against ``expected`` (trusted runs: no)


@dataclass
class MeasureItem:
    key: str  # the sample's key
    task: Task
    code: str
    input_index: int
    perf: PerfInput
    repeat: int = 0
    seed: int = 0


def measure_one(worker: Worker, item: MeasureItem) -> judge.MeasureResult:
    t = item.task
    return judge.measure_once(worker, item.code, t.entry_point, t.entry_kind.value, item.perf.args,
                              expected=item.perf.expected, check_output=item.perf.checked,
                              atol=t.atol, checker=t.checker, seed=item.seed,
                              timeout_s=worker.config.total_timeout_s)


def measure_items(pool: Pool, items: Iterable[MeasureItem]) -> Iterator[tuple[MeasureItem, judge.MeasureResult]]:
    """Measure every item on ``pool`` (whose workers carry the meter); results stream as they finish."""
    yield from pool.map(measure_one, items)
