"""The run behind ``effirl check``, ``measure`` and ``evaluate``: verdicts, then counts, written as they come.

Results go to ``DIR/results.jsonl`` one line per sample as soon as it is final, so an interrupted run resumes
where it stopped. Measuring uses a second pool whose workers carry the meter (under valgrind for callgrind).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effirl.execution.checking import ExpectedOutputs, Sample, check_samples, prepare
from effirl.execution.config import SandboxConfig
from effirl.execution.executor import ExecutorConfig, SandboxPool, make_pool
from effirl.execution.measuring import MeasureItem, measure_items
from effirl.execution.verdict import Status, Verdict
from effirl.inputs.calibration import default_scales
from effirl.inputs.perf import PerfInputSet, resolve_perf_inputs
from effirl.meters.base import Meter, environment_fingerprint
from effirl.samples import ResultsFile, read_samples, reference_samples
from effirl.tasks import Task, by_id, load

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class RunSpec:
    suite: str
    out: Path
    source: str | None = None
    samples: Path | None = None  # None: the suite's reference solutions
    meter: Meter | None = None  # None: correctness only
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    inputs_seed: int = 0
    scale: int | None = None
    repeats: int = 1
    scales: dict[str, int] = field(default_factory=dict)  # calibrated scale per task; {}: default_scales()
    results_name: str = "results.jsonl"  # evaluate measures the references into references.jsonl
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # local processes, or actors on Ray

    def __post_init__(self) -> None:
        if not self.scales:  # no calibration given: the suite's shipped one (builtin), if any
            self.scales = default_scales(self.suite, self.source)


def load_run(spec: RunSpec) -> tuple[list[Task], list[Sample]]:
    tasks = load(spec.suite, spec.source)
    index = by_id(tasks)
    samples = read_samples(spec.samples, index) if spec.samples else reference_samples(tasks)
    return tasks, samples


def _noop(phase: str, done: int, total: int) -> None:
    return None


def run(spec: RunSpec, progress: Progress = _noop) -> list[dict[str, Any]]:
    """Check (and, with a meter, measure) every sample; returns all result records, old and new."""
    tasks, samples = load_run(spec)
    index = by_id(tasks)
    spec.out.mkdir(parents=True, exist_ok=True)
    record_run(spec, samples)
    measuring = spec.meter is not None
    with ResultsFile(spec.out / spec.results_name) as results:
        todo = [s for s in samples if not _finished(results.done.get(s.key), measuring)]
        for s in todo:
            prepare(index[s.task_id], s)
        if todo:
            _execute(spec, index, todo, results, progress)
        ordered = [results.done[s.key] for s in samples if s.key in results.done]
    return ordered


def _finished(rec: dict[str, Any] | None, measuring: bool) -> bool:
    if rec is None:
        return False
    if measuring and rec["status"] == Status.PASS.value and rec.get("counts") is None and not rec.get("measure_error"):
        return False
    return True


def _record(sample: Sample, verdict: Verdict) -> dict[str, Any]:
    rec: dict[str, Any] = {"key": sample.key, "task_id": sample.task_id, "index": sample.index,
                           "status": verdict.status.value, "verdict": verdict.model_dump(mode="json"),
                           "sample_digest": sample_digest(sample.record)}
    for extra in ("reference", "complexity"):
        if extra in sample.record:
            rec[extra] = sample.record[extra]
    return rec


def _execute(spec: RunSpec, index: dict[str, Task], todo: list[Sample], results: ResultsFile,
             progress: Progress) -> None:
    passing: list[tuple[Sample, dict[str, Any]]] = []
    measuring = spec.meter is not None
    box = spec.sandbox.with_imports_of(t.checker for t in index.values())
    with make_pool(box, executor=spec.executor) as pool:
        done = 0
        for sample, verdict in check_samples(pool, index, todo, ExpectedOutputs()):
            rec = _record(sample, verdict)
            done += 1
            progress("check", done, len(todo))
            if measuring and verdict.passed:
                passing.append((sample, rec))
            else:
                results.write(rec)
        if not passing:
            return
        inputs = _perf_inputs(pool, spec, [index[tid] for tid in sorted({s.task_id for s, _ in passing})])
    _measure(spec, index, passing, inputs, results, progress)


def _perf_inputs(pool: SandboxPool, spec: RunSpec, tasks: list[Task]) -> dict[str, PerfInputSet | str]:
    """One set of inputs per task for this run (same for every sample of the task), or an error message."""
    out: dict[str, PerfInputSet | str] = {}

    def work(worker: Any, task: Task) -> PerfInputSet | str:
        try:  # an explicit scale wins; else the calibrated one; else (None) the task's default
            return resolve_perf_inputs(worker, task, spec.inputs_seed, spec.scale or spec.scales.get(task.id))
        except Exception as exc:  # noqa: BLE001 - reported per task, the run goes on
            return str(exc)

    for task, got in pool.map(work, tasks):
        out[task.id] = got
    return out


def _measure(spec: RunSpec, index: dict[str, Task], passing: list[tuple[Sample, dict[str, Any]]],
             inputs: dict[str, PerfInputSet | str], results: ResultsFile, progress: Progress) -> None:
    assert spec.meter is not None
    items: list[MeasureItem] = []
    # Identical programs of one task (the exact same text) are measured once on each input: the meter is
    # deterministic, so their counts would be equal (and with a noisy meter, sharing one reading is fairer).
    # Within this run only: another run has other inputs. Each twin's record names the sample measured. Not
    # the same syntax tree: a program can read its own source or line numbers, so two layouts of one tree may
    # behave differently (sampled duplicates are byte-identical anyway).
    twins: dict[tuple[str, str, int, int], list[MeasureItem]] = defaultdict(list)
    for sample, rec in passing:
        got = inputs[sample.task_id]
        if isinstance(got, str) or not got.inputs:
            rec["measure_error"] = got if isinstance(got, str) else "no performance inputs"
            results.write(rec)
            continue
        if not all(p.checked for p in got.inputs):  # never a count on an output nobody verified
            rec["measure_error"] = "a performance input has no trusted expected output: not measured"
            results.write(rec)
            continue
        rec["inputs"] = got.describe()
        code = sample.code or ""
        for i, perf in enumerate(got.inputs):
            for r in range(spec.repeats):
                item = MeasureItem(sample.key, index[sample.task_id], code, i, perf, r, spec.sandbox.seed)
                items.append(item)
                twins[(sample.task_id, code, i, r)].append(item)
    group_of = {(g[0].key, g[0].input_index, g[0].repeat): g for g in twins.values()}
    pending: dict[str, dict[tuple[int, int], float | None]] = defaultdict(dict)
    failures: dict[str, str] = {}
    expected_n = defaultdict(int)
    for it in items:
        expected_n[it.key] += 1
    recs = {s.key: rec for s, rec in passing}
    done = 0
    meter = spec.meter
    with make_pool(spec.sandbox.with_imports_of(t.checker for t in index.values()), meter=meter,
                   executor=spec.executor) as mpool:
        for measured, result in measure_items(mpool, [g[0] for g in twins.values()]):
            for item in group_of[(measured.key, measured.input_index, measured.repeat)]:
                done += 1
                progress("measure", done, len(items))
                pending[item.key][(item.input_index, item.repeat)] = result.value
                if item.key != measured.key:
                    recs[item.key]["measured_as"] = measured.key
                if result.value is None and item.key not in failures:
                    v = result.verdict
                    failures[item.key] = f"{v.status.value}: {v.error_message or ''}".strip()
                if len(pending[item.key]) == expected_n[item.key]:
                    rec = recs[item.key]
                    _finish(rec, pending.pop(item.key), failures.get(item.key), meter, spec.repeats)
                    results.write(rec)


def _finish(rec: dict[str, Any], values: dict[tuple[int, int], float | None], failure: str | None, meter: Meter,
            repeats: int) -> None:
    n_inputs = 1 + max(i for i, _ in values)
    runs = [[values[(i, r)] for r in range(repeats)] for i in range(n_inputs)]
    rec["meter"] = {"name": meter.name, "version": meter.version(), "unit": meter.unit,
                    "fingerprint": environment_fingerprint()}
    if failure is not None:
        # Correct on the tests but wrong, crashing or too slow on a performance input: not a pass.
        rec["status"] = failure.split(":")[0]
        rec["measure_error"] = failure
        rec["counts"] = None
        return
    rec["runs"] = runs
    rec["counts"] = [min(r) for r in runs]  # identical under callgrind; min for noisier meters


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


RUN_FILE = "run.json"
"""Which samples each results file of a folder scored: ``{results name: {suite, source, samples,
samples_sha256, ...}}``. ``effirl data`` joins results with their samples through it, and refuses a samples
file changed since."""


def sample_digest(record: dict[str, Any]) -> str:
    """A short digest of one sample line, kept in its result so that a join can tell a line that changed."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def samples_sha256(path: Path | None, samples: list[Sample]) -> str:
    """The sha256 of the samples file's bytes; without a file (the suite's references), of their lines."""
    h = hashlib.sha256()
    if path is not None:
        with Path(path).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    else:
        for s in samples:
            h.update(json.dumps(s.record, sort_keys=True, default=str).encode() + b"\n")
    return h.hexdigest()


def record_run(spec: RunSpec, samples: list[Sample]) -> None:
    """Note in ``OUT/run.json`` which samples ``spec.results_name`` holds results of (at a run's start)."""
    path = spec.out / RUN_FILE
    try:
        runs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        runs = {}
    if not isinstance(runs, dict):
        runs = {}
    source = spec.source
    runs[spec.results_name] = {
        "suite": spec.suite,
        "source": str(Path(source).resolve()) if source and Path(source).exists() else source,
        "samples": str(Path(spec.samples).resolve()) if spec.samples is not None else None,
        "samples_sha256": samples_sha256(spec.samples, samples), "n_samples": len(samples),
        "meter": spec.meter.name if spec.meter is not None else None,
    }
    write_json(path, runs)
