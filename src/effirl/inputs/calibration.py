"""Calibrating each task's generator scale to a work budget, and checking that the inputs separate fast from slow.

A task's references are ordered slowest first, fastest last. For one task, :func:`calibrate_task` searches the
generator's ``scale``: it doubles the scale from a small start until the **slowest** reference's metered count
reaches the budget (or a limit is hit: the size of the generated arguments, the memory of the generator or the
trusted reference, a timeout, ``max_scale``), then refines between the last two scales with a few bisection
steps (each step's point interpolated on a log-log line, clamped inside the bracket). The chosen scale is the
largest probed scale whose slowest count stays within the budget. At that scale every reference is measured and
the **contrast** ``slowest count / fastest count`` is compared with ``min_contrast``: inputs on which an
O(n log n) solution is barely cheaper than an O(n^2) one cannot reward efficiency, so such tasks are reported
(``status = "low_contrast"`` with the reason), never silently kept — :func:`read_scales` drops them by default
and names them in a warning.

Every probe runs in the sandbox: the generator and the trusted (fastest) reference on a native worker, the
slowest reference on a worker carrying the meter, its output checked against the trusted one. Budgets are in
the meter's unit: instructions for callgrind/perf (default ``2e8``: a few seconds per run under callgrind), CPU
seconds for cputime (default ``0.5``).

The file written by :func:`write_calibration` (``effirl inputs calibrate``) records the meter, its version and
the environment fingerprint, the configuration, and per task the chosen scale, every reference's count, the
contrast, the status and the reason. The builtin suite's calibration ships as ``builtin_calibration.json`` next
to this module; :func:`default_scales` returns its passing scales, and evaluations of the builtin suite use them
unless another calibration file (or an explicit scale) is given.
"""

from __future__ import annotations

import json
import logging
import marshal
import math
import pickle
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from effirl.errors import EffirlError, InputFormatError
from effirl.execution import judge
from effirl.execution.config import SandboxConfig
from effirl.execution.pool import Pool
from effirl.execution.verdict import Status
from effirl.execution.worker import Worker
from effirl.inputs.perf import GeneratorError, generate_input
from effirl.meters.base import Meter, environment_fingerprint
from effirl.tasks.model import Task

log = logging.getLogger(__name__)

FORMAT = "effirl-calibration"
FORMAT_VERSION = 1
BUILTIN_CALIBRATION = "builtin_calibration.json"
DEFAULT_BUDGETS = {"instructions": 2e8, "seconds": 0.5}

Progress = Callable[[str, int, int], None]  # (phase, done, total), as in the batch run
CalibrationStatus = Literal["ok", "low_contrast", "error", "no_generator"]


class CalibrationConfig(BaseModel):
    """How hard to push each task's inputs, and what contrast they must show."""

    budget: float | None = Field(None, gt=0)  # slowest reference's count; None: by the meter's unit
    start_scale: int = Field(16, ge=1)  # the doubling starts here (or at default_scale/64 when larger)
    max_scale: int = Field(10**8, ge=1)
    max_input_bytes: int = Field(8_000_000, ge=1)  # len(marshal.dumps(args)) of the generated arguments
    memory_mb: int = Field(1024, ge=64)  # peak RSS of the generator and the trusted reference (native runs)
    timeout_s: float = Field(120.0, gt=0)  # one metered run of a reference
    min_contrast: float = Field(4.0, ge=1.0)
    seed: int = 0  # seed of the generated inputs during calibration
    refine_steps: int = Field(3, ge=0)  # bisection steps between the last two scales
    close_enough: float = Field(0.7, gt=0, le=1)  # stop refining once slowest >= close_enough * budget

    def budget_for(self, meter: Meter | None) -> float:
        if self.budget is not None:
            return self.budget
        unit = getattr(meter, "unit", "instructions")
        return DEFAULT_BUDGETS.get(unit, DEFAULT_BUDGETS["instructions"])


class Probe(BaseModel):
    """One scale tried during the search: the slowest reference's count there, or why it could not be used."""

    scale: int
    count: float | None = None
    input_bytes: int | None = None
    limit: str | None = None  # "input_size" | "memory" | "timeout" | "generator" | ...
    detail: str | None = None


class TaskCalibration(BaseModel):
    """The outcome of calibrating one task."""

    task_id: str
    status: CalibrationStatus
    scale: int | None = None
    seed: int = 0
    budget: float | None = None
    labels: list[str] = Field(default_factory=list)  # the references, slowest first
    counts: list[float | None] = Field(default_factory=list)  # each reference's count at ``scale``
    slow_count: float | None = None
    fast_count: float | None = None
    contrast: float | None = None  # slow_count / fast_count
    contrast_ok: bool = False
    min_contrast: float = 4.0
    limited_by: str | None = None  # what stopped the search before the budget was reached
    reason: str | None = None  # why the task failed, or what limited it
    input_bytes: int | None = None
    probes: list[Probe] = Field(default_factory=list)
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "ok" and self.contrast_ok and self.scale is not None


# -- one task ---------------------------------------------------------------------------------------------


def args_size(args: list[Any]) -> int:
    """Bytes of the generated argument list (marshal where it can, else pickle)."""
    try:
        return len(marshal.dumps(args))
    except ValueError:
        return len(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL))


class _Failed(Exception):
    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(detail)
        self.limit = limit
        self.detail = detail


class _Fatal(Exception):
    """The task cannot be calibrated at all (a reference disagrees with the trusted one, ...)."""


_LIMIT_OF_STATUS = {Status.TIMEOUT: "timeout", Status.MEMORY_LIMIT: "memory", Status.OUTPUT_LIMIT: "output"}


class _Search:
    def __init__(self, native: Worker, metered: Worker, task: Task, config: CalibrationConfig) -> None:
        self.native = native
        self.metered = metered
        self.task = task
        self.config = config
        self.budget = config.budget_for(metered.meter)
        self.probes: list[Probe] = []
        self._inputs: dict[int, tuple[list[Any], Any, int]] = {}

    def inputs(self, scale: int) -> tuple[list[Any], Any, int]:
        """Generated arguments, trusted output and size at ``scale`` (native worker), checking the limits."""
        if scale in self._inputs:
            return self._inputs[scale]
        t = self.task
        try:
            args = generate_input(self.native, t, scale, self.config.seed)
        except GeneratorError as exc:
            if "MemoryError" in str(exc):
                raise _Failed("memory", f"the generator ran out of memory at scale {scale}") from None
            raise _Failed("generator", str(exc)) from None
        size = args_size(args)
        if size > self.config.max_input_bytes:
            raise _Failed("input_size", f"generated arguments of {size} bytes at scale {scale} exceed "
                                        f"max_input_bytes={self.config.max_input_bytes}")
        ref = t.references[-1].code if t.references else t.canonical
        got = judge.collect_outputs(self.native, ref or "", t.entry_point, t.entry_kind.value, [args],
                                    checker=t.checker, timeout_s=self.config.timeout_s)
        rss_mb = (got.outcome.maxrss_kb or 0) / 1024
        if got.errors:
            etype, msg = got.errors[0]
            if etype == "MemoryError" or got.outcome.signal == 9:
                raise _Failed("memory", f"the trusted reference ran out of memory at scale {scale}")
            if got.outcome.stop_reason == "timeout" or etype == "NoResult":
                raise _Failed("timeout", f"the trusted reference did not finish at scale {scale} ({msg})")
            raise _Fatal(f"the trusted reference failed at scale {scale}: {etype}: {msg}")
        if rss_mb > self.config.memory_mb:
            raise _Failed("memory", f"the trusted reference used {rss_mb:.0f} MB at scale {scale} "
                                    f"(memory_mb={self.config.memory_mb})")
        self._inputs = {scale: (args, got.values[0], size)}  # keep only the latest (inputs can be large)
        return self._inputs[scale]

    def count(self, ref_index: int, scale: int) -> float:
        """The metered count of reference ``ref_index`` on the input at ``scale``; its output must be right."""
        t = self.task
        args, expected, _ = self.inputs(scale)
        ref = t.references[ref_index]
        needs_checker = bool(t.checker and "def check" in t.checker)
        res = judge.measure_once(self.metered, ref.code, t.entry_point, t.entry_kind.value, args,
                                 expected=expected, check_output=not needs_checker, atol=t.atol,
                                 checker=t.checker, seed=self.config.seed, timeout_s=self.config.timeout_s)
        v = res.verdict
        if v.status is Status.WRONG_ANSWER:
            raise _Fatal(f"reference {ref.label!r} disagrees with the trusted reference at scale {scale} "
                         f"(expected {v.expected}, got {v.got})")
        if v.status in _LIMIT_OF_STATUS:
            raise _Failed(_LIMIT_OF_STATUS[v.status], f"reference {ref.label!r}: {v.status.value} at scale {scale}")
        if not v.passed or res.value is None:
            raise _Fatal(f"reference {ref.label!r} failed at scale {scale}: {v.status.value}: "
                         f"{v.error_type or ''} {v.error_message or ''}".strip())
        return float(res.value)

    def probe(self, scale: int) -> Probe:
        try:
            c = self.count(0, scale)
            p = Probe(scale=scale, count=c, input_bytes=self._inputs[scale][2])
        except _Failed as exc:
            p = Probe(scale=scale, limit=exc.limit, detail=exc.detail)
        self.probes.append(p)
        log.debug("%s: scale %d -> %s", self.task.id, scale, p.count if p.count is not None else p.limit)
        return p

    def over(self, p: Probe) -> bool:
        return p.count is None or p.count > self.budget

    def next_scale(self, lo: Probe, prev: Probe | None) -> int:
        """Double; but where the growth seen so far says the doubled scale would overshoot the budget, step to
        the scale that the growth predicts lands just under it (saves the most expensive probe)."""
        s = lo.scale * 2
        if prev is not None and prev.count and lo.count and lo.count > prev.count and lo.scale > prev.scale:
            k = math.log(lo.count / prev.count) / math.log(lo.scale / prev.scale)
            if k > 0 and lo.count * 2 ** k > self.budget:
                target = (1 + self.config.close_enough) / 2 * self.budget
                guess = int(lo.scale * (target / lo.count) ** (1 / k))
                s = max(lo.scale + 1, min(s, guess))
        return min(s, self.config.max_scale)

    def refine(self, lo: Probe, hi: Probe) -> Probe:
        """A few bisection steps between ``lo`` (within budget) and ``hi`` (over it, or failed)."""
        cfg = self.config
        for _ in range(cfg.refine_steps):
            assert lo.count is not None
            if lo.count >= cfg.close_enough * self.budget or hi.scale - lo.scale <= 1:
                break
            mid = round(math.sqrt(lo.scale * hi.scale))
            if hi.count is not None and hi.count > lo.count > 0:
                k = math.log(hi.count / lo.count) / math.log(hi.scale / lo.scale)
                if k > 0:
                    target = (1 + cfg.close_enough) / 2 * self.budget
                    mid = int(lo.scale * (target / lo.count) ** (1 / k))
            span = hi.scale - lo.scale
            mid = max(lo.scale + max(1, span // 10), min(hi.scale - max(1, span // 10), mid))
            if not lo.scale < mid < hi.scale:
                break
            p = self.probe(mid)
            if self.over(p):
                hi = p
            else:
                lo = p
        return lo


def calibrate_task(native_worker: Worker, metered_worker: Worker, task: Task,
                   config: CalibrationConfig | None = None) -> TaskCalibration:
    """The scale at which ``task``'s slowest reference costs about the budget, and the contrast there."""
    cfg = config or CalibrationConfig()
    t0 = time.monotonic()
    search = _Search(native_worker, metered_worker, task, cfg)
    labels = [r.label for r in task.references]
    base = {"task_id": task.id, "seed": cfg.seed, "budget": search.budget, "labels": labels,
            "min_contrast": cfg.min_contrast}

    def done(**kw: Any) -> TaskCalibration:
        return TaskCalibration(**base, probes=search.probes, wall_s=round(time.monotonic() - t0, 2), **kw)

    if not task.generator:
        return done(status="no_generator", reason="no generator: measured on its largest test input (low contrast)")
    if len(task.references) < 2:
        return done(status="error", reason=f"needs a slow and a fast reference, has {len(task.references)}")
    try:
        return _calibrate(search, task, cfg, done)
    except _Fatal as exc:
        return done(status="error", reason=str(exc))


def _calibrate(search: _Search, task: Task, cfg: CalibrationConfig,
               done: Callable[..., TaskCalibration]) -> TaskCalibration:
    budget = search.budget
    scale = min(cfg.max_scale, max(cfg.start_scale, (task.default_scale or 0) // 64))
    lo: Probe | None = None
    prev: Probe | None = None
    p = search.probe(scale)
    if search.over(p):  # too much already at the start: halve until within the budget
        hi = p
        while search.over(p) and p.scale > 1:
            hi = p
            p = search.probe(max(1, p.scale // 2))
        if not search.over(p):
            lo, p = p, hi
    else:
        while not search.over(p):
            prev, lo = lo, p
            if p.scale >= cfg.max_scale or (p.count or 0) >= cfg.close_enough * budget:
                break  # max_scale, or close enough to the budget: no need to overshoot it
            p = search.probe(search.next_scale(p, prev))
    if lo is None:
        why = p.detail if p.count is None else (f"the slowest reference already costs {p.count:.3g} "
                                                f"(> budget {budget:.3g}) at the smallest scale {p.scale}")
        return done(status="error", reason=f"no usable scale: {why}")
    limited_by: str | None = None
    reason: str | None = None
    if lo is p:  # stopped by max_scale, or close enough to the budget
        chosen = lo
    else:
        chosen = search.refine(lo, p)
    assert chosen.count is not None
    if chosen.count < cfg.close_enough * budget:
        failed = [q for q in search.probes if q.limit is not None]
        if chosen.scale >= cfg.max_scale:
            limited_by, reason = "max_scale", f"max_scale={cfg.max_scale} reached"
        elif failed:
            limited_by, reason = failed[-1].limit, failed[-1].detail
        if reason is not None:
            reason = f"budget not reached ({chosen.count / budget:.0%} of it): {reason}"
    counts: list[float | None] = [chosen.count]
    for i in range(1, len(task.references)):
        try:
            counts.append(search.count(i, chosen.scale))
        except _Failed as exc:
            return done(status="error", scale=chosen.scale, counts=counts, reason=exc.detail)
    slow, fast = counts[0], counts[-1]
    assert slow is not None and fast is not None
    contrast = slow / fast if fast > 0 else math.inf
    ok = contrast >= cfg.min_contrast
    if not ok:
        why = (f"contrast {contrast:.2f} < {cfg.min_contrast:g} at scale {chosen.scale} "
               f"({task.references[0].label} {slow:.3g} vs {task.references[-1].label} {fast:.3g})")
        reason = why + (f"; {reason}" if reason else "")
    return done(status="ok" if ok else "low_contrast", scale=chosen.scale, counts=counts, slow_count=slow,
                fast_count=fast, contrast=round(contrast, 4), contrast_ok=ok, limited_by=limited_by,
                reason=reason, input_bytes=chosen.input_bytes)


# -- a suite ----------------------------------------------------------------------------------------------


def _prepare_meter_dir(pool: Pool) -> None:
    # The meter's folder must exist before valgrind starts (it opens its output file at start-up).
    if pool.meter is None:
        return
    for w in pool.workers:
        pool.meter.prepare_workdir(w._workdir, pool.config.base_uid + w.index)


def calibrate_suite(tasks: Iterable[Task], config: CalibrationConfig | None, meter: Meter, workers: int = 2,
                    progress: Progress | None = None, sandbox: SandboxConfig | None = None) -> list[TaskCalibration]:
    """Calibrate every task, ``workers`` at a time (each with a native and a metered worker), in task order."""
    cfg = config or CalibrationConfig()
    todo = list(tasks)
    base = (sandbox or SandboxConfig()).with_imports_of(t.checker for t in todo)
    box = base.model_copy(update={"workers": workers, "memory_mb": max(base.memory_mb, cfg.memory_mb * 2),
                                  "cpu_s": max(base.cpu_s, int(cfg.timeout_s * 2)),
                                  "total_timeout_s": max(base.total_timeout_s, cfg.timeout_s),
                                  "test_timeout_s": max(base.test_timeout_s, cfg.timeout_s)})
    results: dict[str, TaskCalibration] = {}
    with Pool(box, workers=workers) as native, Pool(box, meter=meter, workers=workers) as metered:
        _prepare_meter_dir(metered)

        def work(worker: Worker, task: Task) -> TaskCalibration:
            nw = native.workers[worker.index]
            if not nw.alive:
                nw.start()
            try:
                return calibrate_task(nw, worker, task, cfg)
            except Exception as exc:  # reported per task, the suite goes on
                log.exception("calibrating %s failed", task.id)
                return TaskCalibration(task_id=task.id, status="error", seed=cfg.seed, reason=f"{exc}")

        if progress:
            progress("calibrate", 0, len(todo))
        for n, (task, got) in enumerate(metered.map(work, todo), start=1):
            results[task.id] = got
            if progress:
                progress("calibrate", n, len(todo))
    return [results[t.id] for t in todo]


# -- the file ---------------------------------------------------------------------------------------------


def write_calibration(path: str | Path, results: list[TaskCalibration], *, meter: Meter | None = None,
                      config: CalibrationConfig | None = None, suite: str | None = None,
                      wall_s: float | None = None) -> None:
    """Write the calibration (meter, version, fingerprint, config, one entry per task) as JSON."""
    p = Path(path)
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "suite": suite,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "meter": None if meter is None else {"name": meter.name, "version": meter.version(), "unit": meter.unit},
        "fingerprint": environment_fingerprint(),
        "config": (config or CalibrationConfig()).model_dump(mode="json"),
        "wall_s": None if wall_s is None else round(wall_s, 1),
        "summary": {"tasks": len(results), "passed": sum(r.passed for r in results),
                    "failed": sorted(r.task_id for r in results if not r.passed)},
        "tasks": [r.model_dump(mode="json") for r in results],
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(p)


def read_calibration(path: str | Path) -> list[TaskCalibration]:
    """Every task entry of a calibration file; a malformed file is an :class:`InputFormatError` naming the field."""
    p = Path(path)
    src = str(p)
    if not p.is_file():
        raise InputFormatError(src, "no such calibration file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFormatError(src, f"invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputFormatError(src, "a calibration file is a JSON object")
    if data.get("format", FORMAT) != FORMAT:
        raise InputFormatError(src, f"not an effirl calibration file (format {data.get('format')!r})", field="format")
    if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise InputFormatError(src, f"unsupported version {data.get('version')!r}", field="version")
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        raise InputFormatError(src, "missing or not a list", field="tasks")
    out = []
    for i, entry in enumerate(tasks):
        where = f"tasks[{i}]"
        if not isinstance(entry, dict):
            raise InputFormatError(src, "a task entry is a JSON object", field=where)
        if not isinstance(entry.get("task_id"), str) or not entry["task_id"]:
            raise InputFormatError(src, "missing or not a string", field=f"{where}.task_id")
        scale = entry.get("scale")
        if scale is not None and (not isinstance(scale, int) or isinstance(scale, bool) or scale < 1):
            raise InputFormatError(src, f"must be a positive integer (got {scale!r})", field=f"{where}.scale")
        status = entry.get("status", "ok")
        if status not in ("ok", "low_contrast", "error", "no_generator"):
            raise InputFormatError(src, f"unknown status {status!r}", field=f"{where}.status")
        if status == "ok" and scale is None:
            raise InputFormatError(src, "a passing entry needs a scale", field=f"{where}.scale")
        contrast_ok = entry.get("contrast_ok", status == "ok")
        if not isinstance(contrast_ok, bool):
            raise InputFormatError(src, "must be true or false", field=f"{where}.contrast_ok")
        try:
            out.append(TaskCalibration.model_validate({**entry, "status": status, "contrast_ok": contrast_ok}))
        except ValueError as exc:
            loc = ""
            errs = getattr(exc, "errors", None)
            if callable(errs):
                first = errs()[0]
                loc = "." + ".".join(str(x) for x in first["loc"]) if first.get("loc") else ""
                msg = first["msg"]
            else:
                msg = str(exc)
            raise InputFormatError(src, msg, field=f"{where}{loc}") from None
    return out


def read_scales(path: str | Path, include_failing: bool = False) -> dict[str, int]:
    """Task id -> calibrated scale. Tasks that failed the contrast check (or could not be calibrated) are left
    out unless ``include_failing`` (where they have a scale), and are named in a warning either way."""
    entries = read_calibration(path)
    failing = [e for e in entries if not e.passed]
    if failing:
        names = ", ".join(f"{e.task_id} ({e.status})" for e in failing)
        action = "kept anyway" if include_failing else "they use their default scale"
        log.warning("%s: %d task(s) failed calibration: %s; %s", path, len(failing), names, action)
    return {e.task_id: e.scale for e in entries
            if e.scale is not None and (e.passed or include_failing)}


def builtin_calibration_path() -> Path:
    """The shipped calibration of the builtin suite (may not exist in a partial checkout)."""
    return Path(str(resources.files("effirl.inputs"))) / BUILTIN_CALIBRATION


def shipped_calibration(name: str) -> Path:
    """A calibration shipped with effirl by name (``builtin`` is the default one, ``builtin-small`` has a budget
    of 1e7 instructions, for the CPU miniature); an unknown name lists the shipped ones."""
    folder = Path(str(resources.files("effirl.inputs")))
    path = folder / f"{name.replace('-', '_')}_calibration.json"
    if not path.is_file():
        known = sorted(p.name.removesuffix("_calibration.json").replace("_", "-")
                       for p in folder.glob("*_calibration.json"))
        raise EffirlError(f"no shipped calibration {name!r}; shipped: {', '.join(known) or 'none'}")
    return path


def resolve_scales(calibration: str | Path | None, suite: str, source: str | Path | None = None,
                   include_failing: bool = False) -> dict[str, int]:
    """The generator scale per task of a run: a calibration file, ``shipped:NAME`` (a shipped calibration), or
    for None the suite's default (:func:`default_scales`)."""
    if calibration is None:
        return default_scales(suite, source)
    text = str(calibration)
    path = shipped_calibration(text.split(":", 1)[1]) if text.startswith("shipped:") else Path(text)
    return read_scales(path, include_failing=include_failing)


def default_scales(suite: str, source: str | Path | None = None) -> dict[str, int]:
    """The scales evaluations use when no calibration file is given: the shipped one, for the bundled builtin
    suite (a ``source`` folder may hold other tasks under the same ids, so it gets none); else ``{}``."""
    if suite.lower() != "builtin" or source is not None:
        return {}
    path = builtin_calibration_path()
    if not path.is_file():
        log.debug("no shipped calibration at %s; tasks use their default scale", path)
        return {}
    return read_scales(path)
