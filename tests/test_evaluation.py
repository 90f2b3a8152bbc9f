"""``effirl evaluate``: per-task scoring on hand-made counts, the no-mixing checks, and one real run.

The real run evaluates the slow (first) and fast (last) reference of a few builtin tasks as samples under
callgrind and checks that the scores rank them as they should, that the report, figures and summary are
written, that a second run resumes without executing anything, and that a lost line is redone alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from effirl import batch
from effirl.cli import app
from effirl.evaluation import SampleOutcome, score_task
from effirl.evaluation.consistency import InputsMismatchError, check_inputs, check_meters, check_resume
from effirl.evaluation.scoring import reference_clusters, tie_allowance
from effirl.meters import available_meters
from effirl.meters.base import MeterMismatchError, environment_fingerprint
from effirl.meters.cputime import CpuTimeMeter
from effirl.samples import reference_samples
from effirl.scoring.reward import RewardConfig
from effirl.tasks import by_id, load

# ----------------------------------------------------------------------------------- scoring, no execution

SLOW, FAST = 1_000_000_000.0, 10_000_000.0  # two well-separated references (two clusters)


def test_failed_sample_gets_zero_reward_zero_beyond_and_no_dps() -> None:
    got = score_task("t", [SampleOutcome("wrong_answer"), SampleOutcome("pass", FAST)], [SLOW, FAST])
    failed, good = got.samples
    assert failed.reward == 0.0
    assert failed.beyond == 0.0
    assert failed.dps is None and failed.dps_norm is None and failed.cluster is None
    assert failed.net_ratio is None
    # DPS is the mean over correct samples only: the failure is excluded, not averaged in as 0.
    assert good.dps_norm == 100.0
    assert got.dps == 100.0 and got.dps_norm == 100.0
    assert got.pass_at_1 == 0.5
    assert got.n_passed == 1


def test_penalties_of_unparseable_samples() -> None:
    got = score_task("t", [SampleOutcome("format_error"), SampleOutcome("no_entry_point")], [SLOW, FAST],
                     reward_config=RewardConfig())
    assert [s.reward for s in got.samples] == [-1.5, -0.5]
    assert got.dps is None  # no correct sample: the task does not count
    assert got.beyond == 0.0


def test_slower_than_every_reference_scores_zero() -> None:
    got = score_task("t", [SampleOutcome("pass", SLOW * 3), SampleOutcome("pass", FAST)], [SLOW, FAST])
    slow, fast = got.samples
    assert (slow.dps, slow.dps_norm, slow.cluster) == (0.0, 0.0, None)
    assert slow.beyond == 0.0
    assert slow.net_ratio == pytest.approx(300.0)
    assert slow.reward == 1.0  # still a pass: s_min
    assert fast.reward == 2.0  # ln(300) > 1: the full bonus
    assert got.dps_norm == pytest.approx(50.0)


def test_tie_with_a_reference_counts_as_a_match() -> None:
    exact = score_task("t", [SampleOutcome("pass", SLOW), SampleOutcome("pass", FAST)], [SLOW, FAST], tie=0.0)
    assert [s.dps_norm for s in exact.samples] == [50.0, 100.0]
    assert [s.cluster for s in exact.samples] == [0, 1]
    assert [s.beyond for s in exact.samples] == [0.0, 1.0]
    # A re-measurement of the same program differs by up to ~2 %: still a tie
    noisy = FAST * 1.015
    assert noisy <= tie_allowance(FAST, "evalperf")
    assert tie_allowance(1e4, "evalperf") == pytest.approx(2e4)  # EvalPerf's noise term dominates small counts
    got = score_task("t", [SampleOutcome("pass", noisy)], [SLOW, FAST])
    assert got.samples[0].dps_norm == 100.0 and got.samples[0].cluster == 1
    # ... but not when exact ties are demanded, nor when really slower
    assert score_task("t", [SampleOutcome("pass", noisy)], [SLOW, FAST], tie=0.0).samples[0].dps_norm == 50.0
    assert score_task("t", [SampleOutcome("pass", FAST * 1.5)], [SLOW, FAST]).samples[0].dps_norm == 50.0


def test_between_references_beyond_is_linear_and_net_is_a_ratio() -> None:
    mid = (SLOW + FAST) / 2
    got = score_task("t", [SampleOutcome("pass", mid)], [SLOW, FAST], tie=0.0)
    s = got.samples[0]
    assert s.beyond == pytest.approx(0.5)
    assert s.net_ratio == pytest.approx(mid / FAST)
    assert s.dps_norm == 50.0  # matches the slow cluster only
    assert s.reward == 1.0  # alone in its group
    assert got.canonical_count == FAST


def test_profiling_failure_after_the_gate_scores_dps_zero() -> None:
    # Passed the tests, timed out on the performance input: EvalPerf counts it as correct with DPS 0.
    got = score_task("t", [SampleOutcome("timeout", None, gate_passed=True), SampleOutcome("pass", FAST)],
                     [SLOW, FAST])
    assert got.samples[0].dps == 0.0 and got.samples[0].reward == 0.0 and got.samples[0].beyond == 0.0
    assert got.dps_norm == pytest.approx(50.0)
    assert got.n_gated == 2 and got.n_passed == 1


def test_passing_but_unmeasured_sample_is_left_out_of_the_reward() -> None:
    got = score_task("t", [SampleOutcome("pass", None), SampleOutcome("pass", FAST), SampleOutcome("pass", SLOW)],
                     [SLOW, FAST])
    assert got.samples[0].reward is None and got.samples[0].beyond is None
    assert [s.reward for s in got.samples[1:]] == [2.0, 1.0]


def test_dataset_clusters_keep_their_scores_and_drop_failed_references() -> None:
    # EvalPerf: one reference per cluster with the dataset's cumulative scores; counts are re-measured.
    counts, scores = reference_clusters([SLOW, None, FAST], [30.0, 60.0, 100.0])
    assert counts == [SLOW, FAST] and scores == [30.0, 100.0]
    got = score_task("t", [SampleOutcome("pass", SLOW / 2)], [SLOW, None, FAST], dataset_scores=[30.0, 60.0, 100.0])
    assert got.samples[0].dps == 30.0 and got.samples[0].dps_norm == 50.0
    assert got.n_refs == 2 and got.n_refs_failed == 1 and "1 reference(s) failed" in got.flags


def test_cpu_seconds_cluster_on_relative_gaps() -> None:
    # EvalPerf's noise term is for instruction counts; seconds split on a relative gap above 0.10 + tie.
    assert reference_clusters([0.5, 0.48, 0.01], tie=0.05) == ([0.5, 0.01], [pytest.approx(200 / 3), 100.0])
    got = score_task("t", [SampleOutcome("pass", 0.0102), SampleOutcome("pass", 0.6)], [0.5, 0.01], tie=0.05)
    assert [s.dps_norm for s in got.samples] == [100.0, 0.0]
    assert [s.reward for s in got.samples] == [2.0, 1.0]


def test_built_clusters_and_indistinguishable_references() -> None:
    got = score_task("t", [SampleOutcome("pass", FAST)], [FAST * 1.01, FAST])
    assert len(got.ref_counts) == 1 and got.ref_scores == [100.0]
    assert "references indistinguishable (one cluster)" in got.flags
    tiny = score_task("t", [SampleOutcome("pass", 50_000.0)], [400_000.0, 50_000.0])
    assert any(f.startswith("tiny counts") for f in tiny.flags)
    assert not any(f.startswith("tiny counts") for f in got.flags)
    empty = score_task("t", [SampleOutcome("pass", FAST)], [None])
    assert empty.dps is None and empty.beyond is None and "no measured reference" in empty.flags


def test_min_correct_and_max_profile() -> None:
    samples = [SampleOutcome("pass", FAST)] * 3 + [SampleOutcome("pass", SLOW * 2)] * 3
    assert score_task("t", samples, [SLOW, FAST], min_correct=10).dps is None
    assert score_task("t", samples, [SLOW, FAST], max_profile=3).dps_norm == 100.0
    assert score_task("t", samples, [SLOW, FAST]).dps_norm == 50.0


def _meter(name: str, fingerprint: str = "abc") -> dict[str, Any]:
    return {"meter": {"name": name, "version": "1", "unit": "instructions", "fingerprint": fingerprint}}


def test_mixing_meters_or_environments_raises() -> None:
    assert check_meters([_meter("callgrind"), _meter("callgrind"), {"status": "wrong_answer"}])["name"] == "callgrind"
    with pytest.raises(MeterMismatchError):
        check_meters([_meter("callgrind"), _meter("perf")])
    with pytest.raises(MeterMismatchError):
        check_meters([_meter("callgrind", "abc"), _meter("callgrind", "def")])


def test_resume_checks_meter_and_seed_before_running() -> None:
    meter = CpuTimeMeter()
    mine = {"meter": {"name": meter.name, "version": meter.version(), "unit": meter.unit,
                      "fingerprint": environment_fingerprint()}, "inputs": {"seed": 0}}
    check_resume([mine, {"status": "wrong_answer"}], meter, 0)
    with pytest.raises(InputsMismatchError, match="seed"):
        check_resume([mine], meter, 1)
    with pytest.raises(MeterMismatchError):
        check_resume([_meter("callgrind")], meter, 0)
    generated = {**mine, "task_id": "t", "inputs": {"seed": 0, "scale": 400, "source": "generated"}}
    check_resume([generated], meter, 0, {"t": 400, "other": 9})
    with pytest.raises(InputsMismatchError, match="scale"):
        check_resume([generated], meter, 0, {"t": 800})


def test_mixing_inputs_raises() -> None:
    a = {"inputs": {"source": "generated", "scale": 100, "seed": 0, "n_inputs": 1}}
    b = {"inputs": {"source": "generated", "scale": 100, "seed": 1, "n_inputs": 1}}
    assert check_inputs("t", [a, a, {}]) == a["inputs"]
    with pytest.raises(InputsMismatchError, match="different performance inputs"):
        check_inputs("t", [a, b])


# ------------------------------------------------------------------------------------------- a real run

# Four tasks whose generator's scale is the input length n and whose slow reference is quadratic: at n = 400
# (instead of the calibrated ~2000) the slow one costs ~1e7-1e8 instructions, cheap under callgrind, and the
# fast one is still 10-100x cheaper. The explicit --scale overrides every task's calibrated scale.
TASKS = ("builtin/pair_sum_count", "builtin/majority_value", "builtin/max_subarray_sum", "builtin/lis_length")
SCALE = "400"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAS_CALLGRIND, CALLGRIND_WHY = available_meters()["callgrind"]
METER = "callgrind" if HAS_CALLGRIND else "cputime"
needs_callgrind = pytest.mark.skipif(not HAS_CALLGRIND, reason=f"callgrind unavailable ({CALLGRIND_WHY}): "
                                     "cputime is too noisy to rank references reliably")


def _samples_file(path: Path) -> Path:
    """Each chosen task's slowest and fastest reference, as samples labelled with the reference."""
    tasks = [t for t in load("builtin") if t.id in TASKS]
    assert len(tasks) == len(TASKS), "a chosen builtin task is missing"
    lines = []
    for s in reference_samples(tasks):
        task = by_id(tasks)[s.task_id]
        if s.record["reference"] in (task.references[0].label, task.references[-1].label):
            lines.append(json.dumps({"task_id": s.task_id, "solution": s.record["solution"],
                                     "reference": s.record["reference"]}))
    path.write_text("\n".join(lines) + "\n")
    return path


class Executions:
    """Records the samples the batch run actually executes (checks and measures)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list[list[str]] = []
        original = batch._execute

        def spy(spec: Any, index: Any, todo: list[Any], results: Any, progress: Any) -> None:
            self.runs.append(sorted(s.key for s in todo))
            original(spec, index, todo, results, progress)

        monkeypatch.setattr(batch, "_execute", spy)


def _evaluate(samples: Path, out: Path, meter: str = METER) -> Any:
    return CliRunner().invoke(app, ["evaluate", "--suite", "builtin", "--samples", str(samples), "--out", str(out),
                                    "--meter", meter, "--workers", "2", "--scale", SCALE])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("evaluate")
    samples = _samples_file(base / "samples.jsonl")
    result = _evaluate(samples, base / "out")
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and "pass@1" in result.output
    return base


def _results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


@needs_callgrind
def test_fast_references_outscore_slow_ones(run_dir: Path) -> None:
    tasks = by_id(load("builtin"))
    by_role: dict[str, list[dict[str, Any]]] = {"slow": [], "fast": []}
    for rec in _results(run_dir / "out"):
        assert rec["status"] == "pass", rec
        role = "slow" if rec["reference"] == tasks[rec["task_id"]].references[0].label else "fast"
        by_role[role].append(rec)
    assert len(by_role["slow"]) == len(by_role["fast"]) == len(TASKS)

    def mean(role: str, key: str) -> float:
        return sum(r[key] for r in by_role[role]) / len(by_role[role])

    for key in ("reward", "dps_norm", "beyond"):
        assert mean("fast", key) > mean("slow", key), key
    # Each fast reference is its task's fastest reference: full marks (a re-measurement ties with the pool).
    assert all(r["dps_norm"] == 100.0 and r["beyond"] == pytest.approx(1.0, abs=1e-3) for r in by_role["fast"])
    assert all(r["reward"] > 1.0 for r in by_role["fast"]) and all(r["reward"] == 1.0 for r in by_role["slow"])
    assert all(r["net_ratio"] > 2.0 for r in by_role["slow"])
    summary = json.loads((run_dir / "out" / "summary.json").read_text())
    roles = summary["by_reference_role"]
    assert roles["fastest reference"]["mean_reward"] > roles["slowest reference"]["mean_reward"]
    assert roles["fastest reference"]["dps_norm"] > roles["slowest reference"]["dps_norm"]


def test_outputs_are_written(run_dir: Path) -> None:
    out = run_dir / "out"
    summary = json.loads((out / "summary.json").read_text())
    for key in ("overall", "by_difficulty", "by_reference_role", "statuses", "meter", "inputs", "isolation",
                "low_contrast_tasks", "config", "tasks", "files"):
        assert key in summary, key
    for key in ("pass_at_1", "mean_reward", "dps", "dps_norm", "beyond", "net"):
        assert key in summary["overall"], key
    assert summary["overall"]["pass_at_1"] == 1.0
    assert summary["overall"]["n_tasks"] == len(TASKS) and summary["overall"]["n_samples"] == 2 * len(TASKS)
    assert summary["meter"]["name"] == METER
    assert summary["inputs"]["seed"] == 0
    assert summary["statuses"] == {"pass": 2 * len(TASKS)}
    assert {t["task_id"] for t in summary["tasks"]} == set(TASKS)

    for rec in _results(out):
        for key in ("reward", "dps", "dps_norm", "beyond", "net_ratio"):
            assert key in rec, key
    refs = [json.loads(line) for line in (out / "references.jsonl").read_text().splitlines()]
    assert {r["task_id"] for r in refs} == set(TASKS)  # only the involved tasks' pools were measured
    assert all(r["meter"]["name"] == METER for r in refs)

    report = (out / "report.md").read_text()
    assert "| task | difficulty |" in report and "|---|" in report
    for task in TASKS:
        assert task in report
    pngs = summary["files"]["plots"]
    assert len(pngs) == 2
    for png in pngs:
        data = Path(png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        assert f"]({Path(png).name})" in report


def _drop_cheapest(path: Path) -> str:
    """Remove the line of the cheapest measured record (the quickest to redo); returns its key."""
    lines = path.read_text().splitlines()
    cheapest = min((json.loads(line) for line in lines), key=lambda r: sum(r.get("counts") or [math.inf]))["key"]
    path.write_text("".join(line + "\n" for line in lines if json.loads(line)["key"] != cheapest))
    return cheapest


def test_resume_executes_nothing_then_only_what_was_lost(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_dir / "out"
    spy = Executions(monkeypatch)
    before = (out / "summary.json").read_text()
    result = _evaluate(run_dir / "samples.jsonl", out)
    assert result.exit_code == 0, result.output
    assert spy.runs == []  # neither samples nor references were executed again
    assert json.loads((out / "summary.json").read_text())["overall"] == json.loads(before)["overall"]

    # Lose one sample's line and one reference's line (as an interrupted run would): only those are redone.
    lost_sample = _drop_cheapest(out / "results.jsonl")
    lost_ref = _drop_cheapest(out / "references.jsonl")
    result = _evaluate(run_dir / "samples.jsonl", out)
    assert result.exit_code == 0, result.output
    assert spy.runs == [[lost_sample], [lost_ref]]
    assert len(_results(out)) == 2 * len(TASKS)
    after = json.loads((out / "summary.json").read_text())
    assert after["overall"]["pass_at_1"] == 1.0
    assert all(not math.isnan(v) for v in after["overall"].values() if isinstance(v, float))


def test_resuming_with_another_seed_is_refused(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Executions(monkeypatch)
    result = CliRunner().invoke(app, ["evaluate", "--suite", "builtin", "--samples", str(run_dir / "samples.jsonl"),
                                      "--out", str(run_dir / "out"), "--meter", METER, "--scale", SCALE,
                                      "--seed", "7"])
    assert result.exit_code == 2, result.output
    assert "seed" in result.output
    assert spy.runs == []


def test_resuming_with_another_meter_is_refused(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = "cputime" if METER == "callgrind" else "callgrind"
    if other == "callgrind":
        pytest.skip(f"callgrind unavailable ({CALLGRIND_WHY})")
    spy = Executions(monkeypatch)
    result = _evaluate(run_dir / "samples.jsonl", run_dir / "out", meter=other)
    assert result.exit_code == 2
    assert "different meters" in result.output
    assert spy.runs == []
