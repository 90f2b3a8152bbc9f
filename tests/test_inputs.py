"""High-contrast performance inputs: fresh generated inputs per use, calibration of the generator scale, contrast.

One native worker and one callgrind worker are shared by the module (a callgrind worker takes tens of seconds
to start); batch runs use the cputime meter, which needs no valgrind.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from effirl.batch import RunSpec, run
from effirl.errors import InputFormatError
from effirl.execution import judge
from effirl.execution.config import SandboxConfig
from effirl.execution.worker import Worker
from effirl.inputs.calibration import (
    CalibrationConfig,
    TaskCalibration,
    builtin_calibration_path,
    calibrate_suite,
    calibrate_task,
    default_scales,
    read_calibration,
    read_scales,
    write_calibration,
)
from effirl.inputs.perf import resolve_perf_inputs, run_seed
from effirl.meters.callgrind import CallgrindMeter, probe
from effirl.meters.cputime import CpuTimeMeter
from effirl.tasks import Reference, Task, by_id, load
from effirl.tasks.builtin_loader import builtin_dir

TASK = "builtin/count_inversions"
needs_callgrind = pytest.mark.skipif(not probe()[0], reason="valgrind/callgrind not available")


@pytest.fixture(scope="module")
def builtin() -> dict[str, Task]:
    return by_id(load("builtin"))


@pytest.fixture(scope="module")
def native() -> Any:
    w = Worker(0, SandboxConfig(workers=1))
    w.start()
    yield w
    w.close()
    w.remove_workdir()


@pytest.fixture(scope="module")
def cg() -> Any:
    if not probe()[0]:
        pytest.skip("valgrind/callgrind not available")
    cfg = SandboxConfig(workers=1, test_timeout_s=120, total_timeout_s=120)
    w = Worker(1, cfg, CallgrindMeter())
    w.meter.prepare_workdir(w._workdir, cfg.base_uid + w.index)  # valgrind opens its output at start-up
    w.start(timeout=300)
    yield w
    w.close()
    w.remove_workdir()


def _one_task_folder(tmp_path: Path, name: str, strip_generator: bool = False) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir(exist_ok=True)
    text = (builtin_dir() / f"{name}.toml").read_text()
    if strip_generator:
        text = re.sub(r"\ngenerator = '''.*?'''\n", "\n", text, flags=re.DOTALL)
        assert "generator" not in text
    (folder / f"{name}.toml").write_text(text)
    return folder


def _samples(tmp_path: Path, task_id: str, codes: list[str]) -> Path:
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"task_id": task_id, "solution": c}) + "\n" for c in codes))
    return path


# (a) memorizing the public tests passes them, and fails on fresh generated inputs ----------------------------


def test_hardcoded_public_answers_fail_on_fresh_inputs(tmp_path: Path, builtin: dict[str, Task], native: Worker):
    task = builtin[TASK]
    answers = {repr(tuple(tc.args)): tc.expected for tc in task.tests}
    cheat = f"_ANSWERS = {answers!r}\n\ndef count_inversions(nums):\n    return _ANSWERS.get(repr((nums,)), 0)\n"
    inputs = [list(tc.args) for tc in task.tests]
    verdict = judge.run_tests(native, cheat, task.entry_point, task.entry_kind.value, inputs,
                              [tc.expected for tc in task.tests])
    assert verdict.passed, verdict

    honest = task.references[-1].code
    spec = RunSpec(suite="builtin", source=str(_one_task_folder(tmp_path, "count_inversions")),
                   samples=_samples(tmp_path, TASK, [cheat, honest]), out=tmp_path / "out", meter=CpuTimeMeter(),
                   sandbox=SandboxConfig(workers=1), inputs_seed=run_seed(7, 3), scale=300)
    cheat_rec, honest_rec = run(spec)
    assert cheat_rec["verdict"]["status"] == "pass"  # correct on the public tests...
    assert cheat_rec["status"] == "wrong_answer"  # ...but not a pass once measured on fresh inputs
    assert "wrong answer" in cheat_rec["measure_error"] and cheat_rec["counts"] is None
    assert honest_rec["status"] == "pass" and honest_rec["counts"]
    for rec in (cheat_rec, honest_rec):  # both measured on the same recorded inputs
        assert rec["inputs"]["source"] == "generated" and rec["inputs"]["seed"] == run_seed(7, 3)
        assert rec["inputs"]["scale"] == 300 and rec["inputs"]["low_contrast"] is False


# (b) fresh inputs per use; the same seed reproduces inputs and counts --------------------------------------------


def test_run_seed_policy():
    assert run_seed(0, 1) == run_seed(0, 1)
    seeds = {run_seed(base, step) for base in range(3) for step in range(50)}
    assert len(seeds) == 150 and all(0 <= s < 2**63 for s in seeds)


def test_seeds_change_inputs(builtin: dict[str, Task], native: Worker):
    task = builtin[TASK]
    a = resolve_perf_inputs(native, task, seed=1, scale=300)
    b = resolve_perf_inputs(native, task, seed=2, scale=300)
    a2 = resolve_perf_inputs(native, task, seed=1, scale=300)
    assert a.source == "generated" and (a.seed, a.scale) == (1, 300) and b.seed == 2
    assert a.inputs[0].args != b.inputs[0].args
    assert a.inputs[0].args == a2.inputs[0].args and a.inputs[0].expected == a2.inputs[0].expected


@pytest.fixture()
def meter_dir_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Create a callgrind worker's output folder before valgrind starts (``Worker.start`` creates it just after
    launching valgrind, which opens its output file at start-up: an occasional failed start)."""
    original = Worker.start

    def start(self: Worker, timeout: float = 120.0) -> None:
        if self.meter is not None:
            self.meter.prepare_workdir(self._workdir, self.config.base_uid + self.index)
        original(self, timeout)

    monkeypatch.setattr(Worker, "start", start)


@needs_callgrind
def test_same_seed_reproduces_counts(tmp_path: Path, builtin: dict[str, Task], meter_dir_first: None):
    """Two evaluations with the same seed measure the same inputs: equal callgrind counts (within 0.01%)."""
    folder = _one_task_folder(tmp_path, "count_inversions")
    samples = _samples(tmp_path, TASK, [builtin[TASK].references[0].code])
    recs = []
    for i in range(2):
        spec = RunSpec(suite="builtin", source=str(folder), samples=samples, out=tmp_path / f"run{i}",
                       meter=CallgrindMeter(), sandbox=SandboxConfig(workers=1), inputs_seed=run_seed(11, 4),
                       scale=500)
        (rec,) = run(spec)
        assert rec["status"] == "pass" and rec["counts"], rec
        recs.append(rec)
    assert recs[0]["inputs"] == recs[1]["inputs"]
    c1, c2 = recs[0]["counts"][0], recs[1]["counts"][0]
    assert c1 > 1e7 and abs(c1 - c2) <= 1e-4 * c1, (c1, c2)


def test_batch_run_records_the_seed_of_each_run(tmp_path: Path, builtin: dict[str, Task]):
    folder = _one_task_folder(tmp_path, "count_inversions")
    samples = _samples(tmp_path, TASK, [builtin[TASK].references[-1].code])
    seen = []
    for step in (0, 1):
        spec = RunSpec(suite="builtin", source=str(folder), samples=samples, out=tmp_path / f"run{step}",
                       meter=CpuTimeMeter(), sandbox=SandboxConfig(workers=1), inputs_seed=run_seed(5, step),
                       scale=100)
        (rec,) = run(spec)
        seen.append(rec["inputs"]["seed"])
    assert seen == [run_seed(5, 0), run_seed(5, 1)] and seen[0] != seen[1]


# (c) calibration finds a high-contrast scale, and the file round-trips -------------------------------------------


@needs_callgrind
def test_calibration_finds_contrasting_scale(tmp_path: Path, builtin: dict[str, Task], native: Worker, cg: Worker):
    config = CalibrationConfig(budget=3e7, min_contrast=4.0, seed=3)
    results = [calibrate_task(native, cg, builtin[tid], config)
               for tid in ("builtin/lcs_length", "builtin/count_primes_below")]
    for r in results:
        assert r.status == "ok" and r.passed, r
        assert r.scale and r.slow_count and r.fast_count and r.contrast
        assert r.slow_count <= 3e7 and r.contrast >= 4.0 and r.contrast_ok
        assert len(r.counts) == len(builtin[r.task_id].references) == len(r.labels)
        assert r.probes and r.probes[-1].count is not None
    path = tmp_path / "cal.json"
    write_calibration(path, results, meter=cg.meter, config=config, suite="builtin")
    data = json.loads(path.read_text())
    assert data["meter"]["name"] == "callgrind" and data["fingerprint"] and data["config"]["budget"] == 3e7
    assert read_scales(path) == {r.task_id: r.scale for r in results}
    assert read_calibration(path) == results


def test_malformed_calibration_names_the_field(tmp_path: Path):
    path = tmp_path / "bad.json"
    good = {"task_id": "builtin/x", "status": "ok", "scale": 10, "contrast_ok": True}
    cases = {
        "tasks[1].scale": {"tasks": [good, {**good, "scale": "big"}]},
        "tasks[0].task_id": {"tasks": [{"scale": 3}]},
        "tasks": {"meter": "callgrind"},
        "tasks[0].status": {"tasks": [{**good, "status": "maybe"}]},
        "tasks[0].contrast": {"tasks": [{**good, "contrast": "high"}]},
    }
    for field, data in cases.items():
        path.write_text(json.dumps(data))
        with pytest.raises(InputFormatError) as info:
            read_scales(path)
        assert info.value.field == field and str(path) in str(info.value)
    path.write_text("{not json")
    with pytest.raises(InputFormatError, match="invalid JSON"):
        read_scales(path)
    with pytest.raises(InputFormatError, match="no such calibration file"):
        read_scales(tmp_path / "missing.json")


# (d) references of equal cost fail the contrast check, and are reported -------------------------------------


EQUAL = """
def total(nums):
    s = 0
    for x in nums:
        s += x
    return s
"""


@needs_callgrind
def test_equal_cost_references_fail_contrast(tmp_path: Path, builtin: dict[str, Task], native: Worker, cg: Worker,
                                              caplog: pytest.LogCaptureFixture):
    task = Task(id="test/equal_cost", suite="test", prompt="", entry_point="total",
                generator="def generate(scale, rng):\n    return [[rng.randint(0, 9) for _ in range(scale)]]\n",
                references=(Reference(label="loop", code=EQUAL), Reference(label="same-loop", code=EQUAL)))
    r = calibrate_task(native, cg, task, CalibrationConfig(budget=8e6))
    assert r.status == "low_contrast" and not r.contrast_ok and not r.passed
    assert r.contrast is not None and r.contrast < 1.2 and r.scale
    assert "contrast" in (r.reason or "") and "< 4" in (r.reason or "")
    path = tmp_path / "cal.json"
    ok = TaskCalibration(task_id="builtin/fib_mod", status="ok", scale=19, contrast=90.0, contrast_ok=True)
    write_calibration(path, [ok, r])
    with caplog.at_level(logging.WARNING, logger="effirl.inputs.calibration"):
        assert read_scales(path) == {"builtin/fib_mod": 19}
    assert "test/equal_cost" in caplog.text and "low_contrast" in caplog.text
    assert read_scales(path, include_failing=True) == {"builtin/fib_mod": 19, "test/equal_cost": r.scale}


def test_calibrate_suite_reports_every_task(builtin: dict[str, Task]):
    """The suite driver (cputime: no valgrind) keeps task order, reports progress and tasks without generator."""
    nogen = builtin[TASK].model_copy(update={"id": "test/no_generator", "generator": None})
    calls: list[tuple[str, int, int]] = []
    results = calibrate_suite([builtin["builtin/lcs_length"], nogen], CalibrationConfig(budget=0.02),
                              CpuTimeMeter(), workers=2, progress=lambda *a: calls.append(a))
    assert [r.task_id for r in results] == ["builtin/lcs_length", "test/no_generator"]
    assert results[0].scale and results[0].status in ("ok", "low_contrast")
    assert results[1].status == "no_generator" and not results[1].passed and "generator" in (results[1].reason or "")
    assert calls[-1] == ("calibrate", 2, 2)


# (e) the shipped calibration covers the builtin suite, every task passing the contrast check -------------------


def test_shipped_calibration_covers_builtin_and_passes(builtin: dict[str, Task]):
    path = builtin_calibration_path()
    assert path.is_file(), "src/effirl/inputs/builtin_calibration.json is missing (effirl inputs calibrate)"
    data = json.loads(path.read_text())
    entries = {e.task_id: e for e in read_calibration(path)}
    assert set(builtin) <= set(entries), f"not calibrated: {sorted(set(builtin) - set(entries))}"
    failing = {tid: e.reason for tid, e in entries.items() if tid in builtin and not e.passed}
    assert not failing, failing
    for tid in builtin:
        e = entries[tid]
        assert e.contrast is not None and e.contrast >= max(4.0, data["config"]["min_contrast"]), (tid, e.contrast)
        assert e.slow_count is not None and e.budget and e.slow_count <= e.budget
    assert data["meter"]["name"] == "callgrind"
    scales = default_scales("builtin")
    assert scales == {tid: entries[tid].scale for tid in entries if entries[tid].passed}
    assert default_scales("builtin", source="elsewhere") == {} and default_scales("mbpp+") == {}


# (f) a task without a generator: largest test input, flagged low-contrast in the records --------------------


def test_no_generator_is_low_contrast(tmp_path: Path, builtin: dict[str, Task], native: Worker):
    nogen = builtin[TASK].model_copy(update={"generator": None})
    got = resolve_perf_inputs(native, nogen, seed=0)
    assert got.source == "tests" and got.low_contrast and got.inputs and got.notes
    spec = RunSpec(suite="builtin", source=str(_one_task_folder(tmp_path, "count_inversions", strip_generator=True)),
                   samples=_samples(tmp_path, TASK, [builtin[TASK].references[-1].code]), out=tmp_path / "out",
                   meter=CpuTimeMeter(), sandbox=SandboxConfig(workers=1))
    (rec,) = run(spec)
    assert rec["status"] == "pass" and rec["inputs"]["low_contrast"] is True and rec["inputs"]["source"] == "tests"


# the CLI ----------------------------------------------------------------------------------------------------------


def test_cli_inputs_show_and_calibrate(tmp_path: Path):
    from effirl.cli import app

    runner = CliRunner()
    got = runner.invoke(app, ["inputs", "show", "count_inversions", "--scale", "20", "--seed", "3"])
    assert got.exit_code == 0, got.output
    assert "scale: 20" in got.output and "seed: 3" in got.output and "expected" in got.output
    out = tmp_path / "cal.json"
    got = runner.invoke(app, ["inputs", "calibrate", "--suite", "builtin", "-t", "lcs_length", "--meter", "cputime",
                              "--budget", "0.02", "--out", str(out)])
    assert got.exit_code == 0, got.output
    assert "total wall time:" in got.output and "lcs_length" in got.output, got.output
    assert [e.task_id for e in read_calibration(out)] == ["builtin/lcs_length"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tasks": [{"task_id": "builtin/lcs_length", "scale": -1}]}))
    got = runner.invoke(app, ["inputs", "show", "lcs_length", "--calibration", str(bad)])
    assert got.exit_code == 2 and "tasks[0].scale" in got.output


def test_evaluations_default_to_the_shipped_calibration(tmp_path: Path, builtin: dict[str, Task], monkeypatch):
    """No --calibration and no --scale: the batch run takes the builtin suite's shipped scales."""
    from effirl import batch

    monkeypatch.setattr(batch, "default_scales", lambda suite, source=None: {TASK: 123})
    spec = RunSpec(suite="builtin", source=str(_one_task_folder(tmp_path, "count_inversions")),
                   samples=_samples(tmp_path, TASK, [builtin[TASK].references[-1].code]), out=tmp_path / "out",
                   meter=CpuTimeMeter(), sandbox=SandboxConfig(workers=1))
    (rec,) = run(spec)
    assert rec["inputs"]["scale"] == 123
    shutil.rmtree(tmp_path / "out")
    spec.scale = 77  # an explicit scale wins
    (rec,) = run(spec)
    assert rec["inputs"]["scale"] == 77
