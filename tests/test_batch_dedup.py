"""The batch run measures identical programs of a task (the exact same text) once per input, and gives every
twin that count; two layouts of one syntax tree are two programs (a program can read its own line numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from effirl import batch
from effirl.batch import RunSpec, run
from effirl.execution.config import SandboxConfig
from effirl.meters.cputime import CpuTimeMeter
from effirl.tasks import by_id, load

TASK = "builtin/pair_sum_count"


def test_twins_are_measured_once_and_share_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    task = by_id(load("builtin"))[TASK]
    slow, fast = task.references[0].code, task.references[-1].code
    reformatted = "# the same program, laid out otherwise\n" + slow.replace("count = 0",
                                                                            "count  =  0  # start")
    samples = tmp_path / "s.jsonl"
    rows = [slow, reformatted, fast, slow]
    samples.write_text("".join(json.dumps({"task_id": TASK, "solution": code}) + "\n" for code in rows))
    measured: list[str] = []
    original = batch.measure_items

    def spy(pool, items):  # noqa: ANN001, ANN202
        items = list(items)
        measured.extend(it.key for it in items)
        yield from original(pool, items)

    monkeypatch.setattr(batch, "measure_items", spy)
    spec = RunSpec(suite="builtin", samples=samples, out=tmp_path / "out", meter=CpuTimeMeter(),
                   sandbox=SandboxConfig(workers=2), scale=200)
    records = {r["index"]: r for r in run(spec)}
    slow_keys = {f"{TASK}#{i}" for i in (1, 4)}  # one program, two byte-identical copies
    assert len(measured) == 3 and {f"{TASK}#2", f"{TASK}#3"} <= set(measured)  # a new layout is measured
    assert len(slow_keys & set(measured)) == 1
    (first,) = slow_keys & set(measured)
    assert all(r["status"] == "pass" for r in records.values())
    assert records[1]["counts"] == records[4]["counts"] != records[3]["counts"]
    assert {records[i].get("measured_as") for i in (1, 4)} == {first, None}
    assert "measured_as" not in records[2] and "measured_as" not in records[3]


LINE_READER = """
import sys

def pair_sum_count(nums, target):
    if sys._getframe().f_lineno > 5 and sys._getframe(1).f_locals.get("measuring"):
        return -1  # garbage, only when measured and only in the second layout
    return _count(nums, target)
"""


def test_a_layout_that_reads_its_line_numbers_is_measured_on_its_own(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    """Two programs with one syntax tree (the second has two more blank lines): the second answers garbage
    when measured. Keyed on the tree it would be the first one's twin, never measured, and pass with its
    count; keyed on the text it is measured, and its measured answer is wrong."""
    from effirl.execution.parse import normalized

    task = by_id(load("builtin"))[TASK]
    helper = task.references[-1].code.replace("def pair_sum_count(", "def _count(")
    plain = LINE_READER + helper
    shifted = "\n\n" + LINE_READER + helper
    assert normalized(plain) == normalized(shifted) and plain != shifted
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"task_id": TASK, "solution": c}) + "\n" for c in (plain, shifted)))
    measured: list[str] = []
    original = batch.measure_items

    def spy(pool, items):  # noqa: ANN001, ANN202
        items = list(items)
        measured.extend(it.key for it in items)
        yield from original(pool, items)

    monkeypatch.setattr(batch, "measure_items", spy)
    spec = RunSpec(suite="builtin", samples=samples, out=tmp_path / "out", meter=CpuTimeMeter(),
                   sandbox=SandboxConfig(workers=2), scale=200)
    records = {r["index"]: r for r in run(spec)}
    assert sorted(measured) == [f"{TASK}#1", f"{TASK}#2"]
    assert records[1]["status"] == "pass" and records[1]["counts"]
    assert records[2]["status"] == "wrong_answer" and records[2]["counts"] is None, records[2]
    assert "measured_as" not in records[2]
