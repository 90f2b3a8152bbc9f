"""The sandbox work of one reward call: fresh inputs, checks and measurements, each distinct program once.

Why it exists: :class:`effirl.training.reward.EfficiencyReward` turns completions into rewards; this module
does what needs the sandbox, in three phases over two warm pools kept for the whole run (one native, one
carrying the meter), every pool made by :func:`make_reward_pool`:

1. **inputs** (native): per task of the call, new performance inputs from the task's generator with the call's
   seed, and their expected outputs from the trusted fastest reference (``resolve_perf_inputs``; a task
   without a generator keeps fixed inputs: the dataset's, or its largest test input); the task's own tests
   (canonical expected outputs where the task has them); until it is known, the wall time of its slowest
   reference on those inputs (its clock).
2. **check** (native): every distinct program on the task's tests *and* the fresh performance inputs (checked
   against the reference: a wrong answer there is a test error). The per-result clock is
   ``max(min_budget_s, budget_factor x`` the slowest reference's native time``)``: a looping program is
   stopped there and holds nothing up beyond it.
3. **measure** (meter): every passing program on every performance input, once. Every measured output is
   checked again, as on a test: equal to the trusted expected output, or (a task whose checker defines
   ``check``) accepted by that checker in a separate child. A program that detects it is being measured (the
   harness's frame, the meter in its environment, its own call count) and answers anything then gets a wrong
   answer on the performance input (0), never a smaller count: detecting the measurement gains nothing. The
   budget of a measurement is ``max(min_budget_s, budget_factor x`` the slowest reference's time under the
   same meter``)``, measured per task on the first call that needs it (a failed try is repeated on a later
   call, up to ``CLOCK_TRIES`` times), plus an allowance for the child's set-up, which the measured run's
   clock includes: ``(start_allowance_s + import_allowance_s x m) x slowdown``, ``m`` being the number of
   installed modules the program's import statements name that the sandbox's servers do not hold already
   (the harness imports them before the count starts, but within the clock), at most ``ALLOWED_IMPORTS``: a
   program naming many cheap modules gains at most ``ALLOWED_IMPORTS x import_allowance_s`` of wall time, and
   a program that names none has exactly the budget of its reference. Over budget is a timeout on the
   performance input (0). Tasks without a reference keep the sandbox's flat limits (``test_timeout_s``,
   ``total_timeout_s``).

A task left with no performance input in a call (no generator, no dataset inputs, no tests; or inputs whose
expected outputs no trusted solution could give) measures nothing: its passing programs are flagged
``unmeasured`` and rewarded as an all-equal group (``s_min``), a pass with no efficiency signal, never a
failure for a correct program.

A run whose sandbox worker died is run once more; if it fails again (or the pool itself fails), the program is
a failure flagged ``worker_failure``, and every other program still gets its outcome. Nothing here is cached
from one call to the next except what does not depend on the completions: the task's test expectations and
its reference clocks.
"""

from __future__ import annotations

import ast
import functools
import importlib.machinery
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from effirl.execution import judge
from effirl.execution.checking import ExpectedOutputs, TaskTests
from effirl.execution.config import SandboxConfig
from effirl.execution.harness import MAX_PREIMPORTS, imported_names
from effirl.execution.measuring import PerfInput
from effirl.execution.verdict import Status, Verdict
from effirl.execution.worker import Worker, server_path
from effirl.inputs.perf import PerfInputSet, largest_test_input, resolve_perf_inputs
from effirl.meters.base import Meter
from effirl.tasks.model import Task

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
WORKER_DIED = "WorkerDied"
CLOCK_TRIES = 3  # tries at a task's reference clock (native, and under the meter) before flat limits stay
ALLOWED_IMPORTS = 16  # named modules a measurement's set-up allowance grows with, at most


def make_reward_pool(config: SandboxConfig, meter: Meter | None, executor: Any = None) -> Any:
    """Every pool of the reward is made here (local fork servers, or Ray actors with an executor config)."""
    from effirl.execution.executor import make_pool

    return make_pool(config, meter, executor)


@dataclass
class Budget:
    """How long a task's programs may run: the slowest reference's wall seconds, natively and under the meter
    (``None``: not known, the flat limits apply). A clock whose measurement failed is tried again on a later
    call, ``CLOCK_TRIES`` times in all."""

    native_s: float | None = None
    meter_s: float | None = None
    native_tries: int = 0
    meter_tries: int = 0

    @property
    def meter_known(self) -> bool:
        return self.meter_s is not None


@dataclass
class Outcome:
    """What the sandbox concluded about one distinct program."""

    status: Status
    counts: list[float] | None = None  # one per performance input (passing programs)
    error: str | None = None
    on_perf_input: bool = False  # failed on the step's fresh performance input (not on the task's tests)
    reran: bool = False  # a worker died under one of its runs, and the run was repeated
    worker_failure: bool = False  # a worker failed twice under it: counted as a failure
    budget_s: float | None = None  # the measurement budget, in the meter's seconds
    unmeasured: bool = False  # a pass on a task with no performance input this call: no count, s_min


@dataclass
class CallTimes:
    inputs_s: float = 0.0
    check_s: float = 0.0
    measure_s: float = 0.0
    checks: int = 0
    measurements: int = 0


@dataclass
class _TaskJob:
    task: Task
    seed: int
    scale: int | None
    need_tests: bool
    need_clock: bool
    timeout_s: float


@dataclass
class _TaskReady:
    inputs: PerfInputSet
    tests: TaskTests | None = None
    native_s: float | None = None
    note: str | None = None


@dataclass
class _CheckJob:
    key: Any
    task: Task
    code: str
    tests: TaskTests
    perf: list[PerfInput]
    inputs_key: str
    clock_s: float
    seed: int


@dataclass
class _MeasureJob:
    key: Any
    task: Task
    code: str
    index: int
    perf: PerfInput
    inputs_key: str
    timeout_s: float
    seed: int
    trusted: bool = False  # a reference measured for its clock: its output is not judged


@dataclass
class _Crashed:
    """``fn`` raised, or the pool failed under the item."""

    message: str


@dataclass
class _Step:
    """One call's state: its inputs per task, and what each program got so far."""

    seed: int
    ready: dict[str, _TaskReady] = field(default_factory=dict)
    outcomes: dict[Any, Outcome] = field(default_factory=dict)


def tests_fallback(worker: Worker, task: Task, why: str) -> PerfInputSet:
    """The performance inputs of a task whose own could not be made: its largest test input (low contrast),
    checked; none at all (every pass unmeasured) when even that one gets no trusted expected output."""
    try:
        return largest_test_input(worker, task, why)
    except Exception as exc:  # noqa: BLE001 - no input this call, and the notes say why
        return PerfInputSet(task.id, "tests", [], low_contrast=True,
                            notes=[f"{why}; the largest test input has no trusted expected output ({exc})"])


def _prepare_task(worker: Worker, job: _TaskJob) -> _TaskReady:
    task = job.task
    try:
        inputs = resolve_perf_inputs(worker, task, job.seed, job.scale)
        note = None
    except Exception as exc:  # noqa: BLE001 - the task is measured on its tests instead, and says why
        note = f"performance inputs could not be made ({exc}); measured on the largest test input"
        inputs = tests_fallback(worker, task, note)
        note = "; ".join(inputs.notes)
    ready = _TaskReady(inputs=inputs, note=note)
    if job.need_tests:
        ready.tests = ExpectedOutputs().get(worker, task)
    if job.need_clock and task.references and inputs.inputs:
        slow = task.references[0]
        got = judge.collect_outputs(worker, slow.code, task.entry_point, task.entry_kind.value,
                                    [inputs.inputs[0].args], checker=task.checker, timeout_s=job.timeout_s)
        if got.complete:
            ready.native_s = got.outcome.wall_s
    return ready


def _check(worker: Worker, job: _CheckJob) -> Verdict:
    t = job.task
    checked = [p for p in job.perf if p.checked]
    inputs = job.tests.inputs + [p.args for p in checked]
    expected = job.tests.expected + [p.expected for p in checked]
    return judge.run_tests(worker, job.code, t.entry_point, t.entry_kind.value, inputs, expected, atol=t.atol,
                           inputs_key=job.inputs_key, checker=t.checker, seed=job.seed, timeout_s=job.clock_s)


def _measure(worker: Worker, job: _MeasureJob) -> judge.MeasureResult:
    """One measured run; a candidate's output is judged (equality, or the task's checker in another child)."""
    t = job.task
    return judge.measure_once(worker, job.code, t.entry_point, t.entry_kind.value, job.perf.args,
                              expected=job.perf.expected, check_output=job.perf.checked and not job.trusted,
                              atol=t.atol, checker=t.checker, seed=job.seed, timeout_s=job.timeout_s,
                              inputs_key=job.inputs_key)


def _died(result: Any) -> bool:
    """Whether a result is the sandbox's failure (its worker died, or the pool failed), not the program's."""
    if isinstance(result, _Crashed):
        return True
    verdict = result.verdict if isinstance(result, judge.MeasureResult) else result
    return isinstance(verdict, Verdict) and verdict.error_type == WORKER_DIED


def run_all(pool: Any, fn: Callable[[Worker, T], R], items: list[T],
            retry: Callable[[Any], bool] = _died) -> tuple[list[R | _Crashed], list[bool]]:
    """``fn(worker, item)`` for every item; results in the items' order, and whether each was run twice.

    An item whose result says its worker died (``retry``), whose ``fn`` raised, or that the pool failed to
    run, is run once more; what fails again is returned as it is (or as :class:`_Crashed`). Never raises for
    one item's failure: every item gets a result.
    """
    results: list[Any] = [None] * len(items)
    reran = [False] * len(items)

    def safe(worker: Worker, pair: tuple[int, T]) -> Any:
        try:
            return fn(worker, pair[1])
        except Exception as exc:  # noqa: BLE001 - one item's failure, reported as its result
            return _Crashed(f"{type(exc).__name__}: {exc}")

    todo = list(range(len(items)))
    for attempt in range(2):
        got: dict[int, Any] = {}
        try:
            for (i, _), result in pool.map(safe, [(i, items[i]) for i in todo]):
                got[i] = result
        except Exception as exc:  # noqa: BLE001 - the pool itself failed (a worker that cannot start, ...)
            log.warning("the sandbox pool failed during a reward call (%s); %d run(s) left to retry", exc,
                        len(todo) - len(got))
            for i in todo:
                got.setdefault(i, _Crashed(f"the sandbox pool failed: {exc}"))
        again = []
        for i in todo:
            results[i] = got[i]
            if attempt == 0 and retry(got[i]):
                again.append(i)
                reran[i] = True
        if not again:
            break
        todo = again
    return results, reran


def _worker_failure(result: Any) -> tuple[bool, str | None]:
    if isinstance(result, _Crashed):
        return True, result.message
    verdict = result.verdict if isinstance(result, judge.MeasureResult) else result
    if verdict.error_type == WORKER_DIED:
        return True, verdict.error_message
    return False, None


@functools.lru_cache(maxsize=4096)
def _installed(top: str) -> bool:
    """Whether a top-level module is found on the fork servers' module path (looked up, never imported)."""
    if top in sys.builtin_module_names:
        return True
    try:
        return importlib.machinery.PathFinder.find_spec(top, list(server_path())) is not None
    except (ImportError, ValueError, OSError):
        return False


def named_imports(code: str, held: frozenset[str]) -> int:
    """How many modules the harness imports for ``code`` before its count starts that the servers do not hold
    already (``held``: their preimports): the distinct modules its absolute import statements name (at most
    the harness's ``MAX_PREIMPORTS``), whose top-level package is installed and not held."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return 0
    names = dict.fromkeys(module for module, _ in imported_names(tree)[:MAX_PREIMPORTS])
    return sum(1 for m in names if m.split(".")[0] not in held and _installed(m.split(".")[0]))


class RewardRunner:
    """The pools and per-task clocks of one reward object; :meth:`run` does one call's sandbox work."""

    def __init__(self, tasks: dict[str, Task], meter: Meter, sandbox: SandboxConfig, *,
                 scales: dict[str, int], budget_factor: float, min_budget_s: float, start_allowance_s: float,
                 import_allowance_s: float = 0.02, executor: Any = None) -> None:
        self.tasks = tasks
        self.meter = meter
        self.sandbox = sandbox.with_imports_of(t.checker for t in tasks.values())
        self.scales = scales
        self.budget_factor = budget_factor
        self.min_budget_s = min_budget_s
        self.start_allowance_s = start_allowance_s
        self.import_allowance_s = import_allowance_s
        self.executor = executor
        self.budgets: dict[str, Budget] = {}
        self._held = frozenset(self.sandbox.preimports)
        self._tests: dict[str, TaskTests] = {}
        self._native: Any = None
        self._metered: Any = None

    # -- pools -----------------------------------------------------------------------------------------------
    @property
    def native(self) -> Any:
        if self._native is None:
            self._native = make_reward_pool(self.sandbox, None, self.executor)
        return self._native

    @property
    def metered(self) -> Any:
        if self._metered is None:
            self._metered = make_reward_pool(self.sandbox, self.meter, self.executor)
        return self._metered

    def close(self) -> None:
        for name in ("_native", "_metered"):
            pool = getattr(self, name)
            if pool is not None:
                setattr(self, name, None)
                pool.close()

    # -- budgets ---------------------------------------------------------------------------------------------
    def budget(self, task_id: str) -> Budget:
        return self.budgets.setdefault(task_id, Budget())

    def clock_s(self, task_id: str) -> float:
        """The per-result clock of a check, in native seconds (the sandbox's flat one without a reference)."""
        native = self.budgets.get(task_id, Budget()).native_s
        if native is None:
            return self.sandbox.test_timeout_s
        return max(self.min_budget_s, self.budget_factor * native)

    def budget_s(self, task_id: str, imports: int = 0) -> float:
        """A measurement's wall budget in the meter's seconds (the sandbox's flat limit without a reference),
        for a program whose import statements name ``imports`` modules the servers do not hold (see the
        module's docstring)."""
        slowdown = self.meter.slowdown
        meter_s = self.budgets.get(task_id, Budget()).meter_s
        if meter_s is None:
            return self.sandbox.total_timeout_s * slowdown
        allowance = self.start_allowance_s + self.import_allowance_s * min(imports, ALLOWED_IMPORTS)
        return max(self.min_budget_s, self.budget_factor * meter_s) + allowance * slowdown

    # -- one call --------------------------------------------------------------------------------------------
    def run(self, programs: dict[Any, tuple[str, str]],
            seed: int) -> tuple[dict[Any, Outcome], dict[str, PerfInputSet], CallTimes]:
        """Check and measure each distinct program (``key -> (task_id, code)``) on this call's fresh
        inputs."""
        times = CallTimes()
        step = _Step(seed)
        if not programs:
            return {}, {}, times
        task_ids = sorted({tid for tid, _ in programs.values()})
        t0 = time.monotonic()
        self._prepare(step, task_ids)
        times.inputs_s = time.monotonic() - t0
        t0 = time.monotonic()
        passing = self._check(step, programs)
        times.check_s = time.monotonic() - t0
        times.checks = len(programs)
        t0 = time.monotonic()
        times.measurements = self._measure(step, programs, passing)
        times.measure_s = time.monotonic() - t0
        return step.outcomes, {tid: r.inputs for tid, r in step.ready.items()}, times

    def _needs_clock(self, task: Task) -> bool:
        b = self.budget(task.id)
        return bool(task.references) and b.native_s is None and b.native_tries < CLOCK_TRIES

    def _prepare(self, step: _Step, task_ids: list[str]) -> None:
        jobs = [_TaskJob(self.tasks[tid], step.seed, self.scales.get(tid), tid not in self._tests,
                         self._needs_clock(self.tasks[tid]), self.sandbox.total_timeout_s)
                for tid in task_ids]
        results, _ = run_all(self.native, _prepare_task, jobs)
        for job, result in zip(jobs, results, strict=True):
            tid = job.task.id
            if isinstance(result, _Crashed):  # twice: no inputs for this task in this call
                log.warning("%s: preparing the task failed twice (%s)", tid, result.message)
                continue
            assert isinstance(result, _TaskReady)
            if result.note:
                log.warning("%s: %s", tid, result.note)
            if result.tests is not None:
                self._tests[tid] = result.tests
            if job.need_clock:
                budget = self.budget(tid)
                budget.native_tries += 1
                if result.native_s is not None:
                    budget.native_s = result.native_s
                else:
                    log.warning("%s: the slowest reference's native clock could not be taken (try %d of "
                                "%d)%s", tid, budget.native_tries, CLOCK_TRIES,
                                "; the flat test clock stays" if budget.native_tries >= CLOCK_TRIES
                                else "; tried again on the next call")
            step.ready[tid] = result

    def _check(self, step: _Step, programs: dict[Any, tuple[str, str]]) -> list[Any]:
        jobs: list[_CheckJob] = []
        for key, (tid, code) in sorted(programs.items(), key=lambda kv: kv[1][0]):  # a task's runs together
            ready = step.ready.get(tid)
            tests = self._tests.get(tid)
            if ready is None or tests is None:
                step.outcomes[key] = Outcome(Status.RUNTIME_ERROR, worker_failure=True,
                                             error="the sandbox could not prepare the task")
                continue
            jobs.append(_CheckJob(key, self.tasks[tid], code, tests, ready.inputs.inputs,
                                  f"reward:{tid}:{step.seed}:check", self.clock_s(tid), self.sandbox.seed))
        results, reran = run_all(self.native, _check, jobs)
        passing = []
        for job, result, again in zip(jobs, results, reran, strict=True):
            failed, why = _worker_failure(result)
            if failed:
                step.outcomes[job.key] = Outcome(Status.RUNTIME_ERROR, error=why, reran=again,
                                                 worker_failure=True)
                continue
            assert isinstance(result, Verdict)
            if result.passed:
                passing.append(job.key)
                step.outcomes[job.key] = Outcome(Status.PASS, reran=again)
                continue
            n_tests = len(job.tests.inputs)
            on_perf = result.failed_test is not None and result.failed_test >= n_tests
            error = result.error_message or result.status.value
            if on_perf:
                error = f"on the step's performance input: {error}"
            step.outcomes[job.key] = Outcome(result.status, error=error, on_perf_input=on_perf, reran=again)
        return passing

    def _measure(self, step: _Step, programs: dict[Any, tuple[str, str]], passing: list[Any]) -> int:
        tids = sorted({programs[k][0] for k in passing})
        self._meter_clocks(step, [t for t in tids if self.tasks[t].references and step.ready[t].inputs.inputs
                                  and self.budget(t).meter_s is None
                                  and self.budget(t).meter_tries < CLOCK_TRIES])
        slowdown = self.meter.slowdown
        jobs: list[_MeasureJob] = []
        unmeasured: set[str] = set()
        for key in sorted(passing, key=lambda k: programs[k][0]):
            tid, code = programs[key]
            perf = step.ready[tid].inputs.inputs
            if not perf:  # nothing to measure on: a pass without an efficiency signal (s_min)
                outcome = step.outcomes[key]
                outcome.unmeasured = True
                outcome.error = ("the task has no performance input in this call: not measured, rewarded as "
                                 "an all-equal group")
                unmeasured.add(tid)
                continue
            if not all(p.checked for p in perf):  # never a count on an output nobody verified
                step.outcomes[key] = Outcome(Status.RUNTIME_ERROR, error="a performance input has no trusted "
                                             "expected output: its measured output cannot be verified")
                continue
            budget = self.budget_s(tid, named_imports(code, self._held))
            step.outcomes[key].budget_s = round(budget, 3)
            for i, p in enumerate(perf):
                jobs.append(_MeasureJob(key, self.tasks[tid], code, i, p, f"reward:{tid}:{step.seed}:perf{i}",
                                        budget / slowdown, self.sandbox.seed))
        for tid in sorted(unmeasured):
            log.warning("%s: no performance input in this call (%s); its passing programs are not measured "
                        "and all get s_min", tid, "; ".join(step.ready[tid].inputs.notes) or "none")
        results, reran = run_all(self.metered, _measure, jobs)
        counts: dict[Any, dict[int, float]] = {}
        for job, result, again in zip(jobs, results, reran, strict=True):
            outcome = step.outcomes[job.key]
            outcome.reran = outcome.reran or again
            if outcome.status is not Status.PASS:
                continue  # already failed on another performance input
            failed, why = _worker_failure(result)
            if failed:
                outcome.status, outcome.error, outcome.worker_failure = Status.RUNTIME_ERROR, why, True
                continue
            assert isinstance(result, judge.MeasureResult)
            v = result.verdict
            if not v.passed or result.value is None or result.value <= 0:
                outcome.status, outcome.on_perf_input = v.status, True
                what = "over its measurement budget" if v.status is Status.TIMEOUT else v.error_message or ""
                outcome.error = f"measuring on the step's performance input: {what}".rstrip(": ")
                continue
            counts.setdefault(job.key, {})[job.index] = float(result.value)
        for key in passing:
            outcome = step.outcomes[key]
            if outcome.status is Status.PASS and not outcome.unmeasured:
                got = counts.get(key, {})
                n_perf = len(step.ready[programs[key][0]].inputs.inputs)
                if sorted(got) != list(range(n_perf)):  # never a pass without a count on every input
                    outcome.status = Status.RUNTIME_ERROR
                    outcome.error = "not measured on every performance input"
                    continue
                outcome.counts = [got[i] for i in range(n_perf)]
        return len(jobs)

    def _meter_clocks(self, step: _Step, task_ids: Iterable[str]) -> None:
        """Measure each task's slowest reference under the meter: the budget's base. Known once it succeeds;
        a failed try is repeated on a later call (``CLOCK_TRIES`` in all), the flat limits applying
        meanwhile."""
        jobs = []
        for tid in task_ids:
            task = self.tasks[tid]
            perf = step.ready[tid].inputs.inputs
            jobs.append(_MeasureJob(tid, task, task.references[0].code, 0, perf[0],
                                    f"reward:{tid}:{step.seed}:perf0", self.sandbox.total_timeout_s,
                                    self.sandbox.seed, trusted=True))
        if not jobs:
            return
        results, _ = run_all(self.metered, _measure, jobs)
        for job, result in zip(jobs, results, strict=True):
            budget = self.budget(job.key)
            budget.meter_tries += 1
            if isinstance(result, judge.MeasureResult) and result.verdict.passed and result.verdict.wall_s:
                budget.meter_s = result.verdict.wall_s
                continue
            why = result.message if isinstance(result, _Crashed) else result.verdict.error_message
            last = budget.meter_tries >= CLOCK_TRIES
            log.warning("%s: the slowest reference could not be measured (%s; try %d of %d); %s", job.key,
                        why, budget.meter_tries, CLOCK_TRIES,
                        "flat limits apply for the rest of the run" if last
                        else "flat limits apply until a later call measures it")
