"""Every measured output is checked: a program that answers garbage only while it is measured gains nothing.

A program can tell that it is being measured (here: ``measuring`` is a local of the harness's frame that calls
it; valgrind's LD_PRELOAD or its own call count would do as well) and return anything then, at almost no cost.
If the measured run's output were not compared with a trusted expected output, that garbage would earn the
smallest count of its group. It must score no better than a failure, whatever the kind of performance input:
fixed inputs of the dataset, the largest test input of a task whose expected outputs come from its canonical
solution, and a task whose outputs are judged by its own checker; in the reward (RL) and in the batch run
(``effirl measure`` / ``evaluate``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import reward_cases as rc

from effirl import batch
from effirl.batch import RunSpec, run
from effirl.execution.config import SandboxConfig
from effirl.execution.worker import Worker
from effirl.inputs.perf import UnverifiableInputs, resolve_perf_inputs
from effirl.meters import callgrind
from effirl.meters.cputime import CpuTimeMeter
from effirl.training import EfficiencyReward

CALLGRIND_OK, CALLGRIND_WHY = callgrind.probe()
BOX = SandboxConfig(workers=2, test_timeout_s=4.0, total_timeout_s=30.0, cpu_s=30)
TASKS = rc.small_tasks()
METERS = ["cputime", pytest.param("callgrind", marks=pytest.mark.skipif(
    not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}"))]


@pytest.fixture(scope="module")
def native() -> Iterator[Worker]:
    w = Worker(40, SandboxConfig())
    w.start()
    yield w
    w.close()
    w.remove_workdir()


def test_every_resolved_performance_input_carries_a_trusted_expected_output(native: Worker) -> None:
    """Dataset inputs and the largest test input of a canonical-expected task get their expected output from
    the trusted solution; a task with no trusted solution cannot have its inputs verified, and says so."""
    for kind, t in TASKS.items():
        got = resolve_perf_inputs(native, t, seed=1)
        assert got.inputs and all(p.checked for p in got.inputs), (kind, got)
        assert got.source == {"dataset": "dataset", "canonical": "tests", "checker": "generated"}[kind]
    (p,) = resolve_perf_inputs(native, TASKS["dataset"], seed=0).inputs
    assert p.expected == sum(x * x for x in p.args[0])
    (p,) = resolve_perf_inputs(native, TASKS["canonical"], seed=0).inputs
    assert p.expected == sum(x * x for x in p.args[0]) and len(p.args[0]) == 2000
    orphan = TASKS["dataset"].model_copy(update={"references": ()})
    with pytest.raises(UnverifiableInputs, match="no trusted solution .* could not be verified"):
        resolve_perf_inputs(native, orphan, seed=0)


@pytest.mark.parametrize("meter", METERS)
@pytest.mark.parametrize("kind", sorted(TASKS))
def test_garbage_only_while_measured_scores_as_a_failure_in_the_reward(kind: str, meter: str) -> None:
    if meter == "callgrind" and kind != "checker":
        pytest.skip("one callgrind case: the checker's own child on a callgrind worker")
    t = TASKS[kind]
    honest = rc.fenced(t.references[0].code if t.references else rc.SUMSQ_SLOW)
    texts = [honest, rc.fenced(rc.detector(t)), rc.fenced(f"def {t.entry_point}(nums):\n    return 7\n")]
    batch_ = {"prompts": [t.prompt] * 3, "completions": texts, "task_id": [t.id] * 3}
    with EfficiencyReward(suite="small", tasks=[t], meter=meter, workers=2, sandbox=BOX) as r:
        rewards = rc.call(r, batch_, trainer_state=rc.Step(1))
        d = r.last_details
    print(f"\n{kind} ({meter}): {[(x.status, x.reward, x.error) for x in d]}")
    assert d[0].status == "pass" and d[0].count and not d[0].unmeasured
    assert d[1].status == "wrong_answer" and d[1].on_perf_input and d[1].count is None, d[1]
    assert "measuring on the step's performance input" in (d[1].error or "")
    assert rewards[1] <= rewards[2] == 0.0  # no better than a plain wrong answer


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_garbage_only_while_measured_is_not_a_pass_in_the_batch_run(kind: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    t = TASKS[kind]
    honest = t.references[-1].code if t.references else rc.SUMSQ_FAST
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": t.id, "solution": code}) + "\n"
                               for code in (honest, rc.detector(t))))
    monkeypatch.setattr(batch, "load", lambda suite, source=None: [t])
    spec = RunSpec(suite="small", samples=samples, out=tmp_path / "out", meter=CpuTimeMeter(),
                   sandbox=SandboxConfig(workers=2))
    good, bad = sorted(run(spec), key=lambda r: r["index"])
    assert good["status"] == "pass" and good["counts"], good
    assert bad["status"] == "wrong_answer" and bad["counts"] is None, bad
    assert bad["verdict"]["status"] == "pass"  # honest on the tests: only its measured answer is wrong
    assert "wrong answer" in bad["measure_error"]


def test_a_task_with_no_trusted_solution_is_a_measure_error_not_a_silent_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    orphan = TASKS["dataset"].model_copy(update={"references": ()})
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": orphan.id, "solution": rc.detector(TASKS["dataset"])}) + "\n")
    monkeypatch.setattr(batch, "load", lambda suite, source=None: [orphan])
    spec = RunSpec(suite="small", samples=samples, out=tmp_path / "out", meter=CpuTimeMeter(),
                   sandbox=SandboxConfig(workers=1))
    (rec,) = run(spec)
    assert rec.get("counts") is None and "could not be verified" in rec["measure_error"], rec


def test_the_reward_measures_an_orphan_tasks_fixed_inputs_only_on_verifiable_ones() -> None:
    """Without a trusted solution the dataset's inputs cannot be verified: the reward falls back to the
    largest test input, whose expected output the task's own test gives, so the garbage is caught there
    too."""
    orphan = TASKS["dataset"].model_copy(update={"references": ()})
    texts = [rc.fenced(rc.SUMSQ_FAST), rc.fenced(rc.detector(TASKS["dataset"]))]
    with EfficiencyReward(suite="small", tasks=[orphan], meter="cputime", workers=2, sandbox=BOX) as r:
        batch_ = {"prompts": [orphan.prompt] * 2, "completions": texts, "task_id": [orphan.id] * 2}
        rewards = rc.call(r, batch_, trainer_state=rc.Step(1))
        d = r.last_details
    assert d[0].status == "pass" and d[0].inputs_source == "tests" and d[0].count
    assert d[1].status == "wrong_answer" and rewards[1] == 0.0, d[1]
