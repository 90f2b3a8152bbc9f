"""The trusted parent's decisions: turn what a child reported into a :class:`Verdict`.

Expected outputs stay here. Each returned value is compared as soon as it arrives (with the task's float
tolerance), and the child is stopped at the first mismatch. Exit codes and printed text never mean "pass":
only a full set of matching values followed by the harness's "done" frame does.

A child that died of a signal: ``timeout`` when the parent stopped it at its clock, when its CPU limit
killed it (SIGXCPU, or the hard limit's SIGKILL), or when a signal from outside (SIGTERM, SIGKILL, ...) ended
it after its wall clock had run out; ``memory_limit`` for a SIGKILL only when memory caused it (the kernel's
OOM killer, or its address-space limit reached: :meth:`effirl.execution.worker.Worker._kill_cause`); any
other signal, a program killing itself or its process group included, is a ``runtime_error``.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass, field
from typing import Any

from effirl.execution import wire
from effirl.execution.verdict import Status, Verdict
from effirl.execution.worker import RunOutcome, Worker

MAX_REPR = 300


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "..."


def outputs_match(expected: Any, got: Any, atol: float = 0.0) -> bool:
    """Equality of plain data; with a tolerance, floats within ``atol`` + 1e-7 relative (as numpy's allclose in
    evalplus), NaN equal to NaN."""
    if atol > 0:
        if isinstance(expected, float) or isinstance(got, float):
            if isinstance(expected, (int, float)) and isinstance(got, (int, float)) and \
                    not isinstance(expected, bool) and not isinstance(got, bool):
                if expected == got or (math.isnan(expected) and math.isnan(got)):
                    return True  # equal infinities too
                if math.isinf(expected) or math.isinf(got) or math.isnan(expected) or math.isnan(got):
                    return False
                return abs(expected - got) <= atol + 1e-7 * abs(expected)
            return False
        if type(expected) in (list, tuple) and type(got) is type(expected):
            return len(expected) == len(got) and all(outputs_match(e, g, atol) for e, g in zip(expected, got))
        if type(expected) is dict and type(got) is dict:
            return expected.keys() == got.keys() and all(outputs_match(expected[k], got[k], atol) for k in expected)
    return bool(expected == got)


def job(mode: str, code: str, task_entry: str, entry_kind: str, *, checker: str | None = None,
        seed: int = 0, stop_on_error: bool = True) -> dict[str, Any]:
    return {"mode": mode, "code": code, "entry_point": task_entry, "entry_kind": entry_kind,
            "checker": checker, "seed": seed, "stop_on_error": stop_on_error}


@dataclass
class _Collector:
    """Gathers frames; optionally compares each value with its expected output as it arrives."""

    expected: list[Any] | None = None
    atol: float = 0.0
    values: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, tuple[str, str]] = field(default_factory=dict)
    no_entry: str | None = None
    mismatch: int | None = None
    stop_on_error: bool = True

    def __call__(self, kind: bytes, index: int, payload: Any) -> bool:
        if kind == wire.KIND_NO_ENTRY:
            self.no_entry = str(payload)
            return False
        elif kind == wire.KIND_ERROR:
            if not (isinstance(payload, tuple) and len(payload) == 2):
                payload = ("ProtocolError", "malformed error frame")
            self.errors[index] = (str(payload[0]), str(payload[1]))
            return not self.stop_on_error
        elif kind == wire.KIND_VALUE:
            if index in self.values:
                self.errors[index] = ("ProtocolError", f"two results for input {index}")
                return False
            self.values[index] = payload
            if self.expected is not None:
                if not 0 <= index < len(self.expected):
                    self.errors[index] = ("ProtocolError", f"result for unknown input {index}")
                    return False
                if not outputs_match(self.expected[index], payload, self.atol):
                    self.mismatch = index
                    return False
        return True


# Signals that end a process from outside; one that arrives after the wall clock has run out ends a slow run.
_TERMINATING = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})

_STOP_STATUS = {
    "timeout": Status.TIMEOUT,
    "output_limit": Status.OUTPUT_LIMIT,
    "value_limit": Status.OUTPUT_LIMIT,
}


def _failure_from_outcome(outcome: RunOutcome, col: _Collector, n: int) -> tuple[Status, str | None, str]:
    """The status of a run that did not produce every matching value, with error type and message."""
    if col.no_entry is not None:
        return Status.NO_ENTRY_POINT, None, col.no_entry
    if col.errors:
        index = min(col.errors)
        etype, msg = col.errors[index]
        if index == -2:
            return Status.RUNTIME_ERROR, "EffirlSandboxError", msg
        if etype == "MemoryError":
            return Status.MEMORY_LIMIT, etype, msg
        return Status.RUNTIME_ERROR, etype, msg
    if outcome.stop_reason in _STOP_STATUS:
        return _STOP_STATUS[outcome.stop_reason], None, outcome.stop_reason.replace("_", " ")
    if outcome.stop_reason == "protocol":
        return Status.RUNTIME_ERROR, "ProtocolError", outcome.protocol_error or "malformed result stream"
    if outcome.stop_reason == "worker_died":
        return Status.RUNTIME_ERROR, "WorkerDied", "the sandbox worker died during the run"
    sig = outcome.signal
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and outcome.kill_cause == "cpu"):
        return Status.TIMEOUT, None, "CPU time limit exceeded"
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig in _TERMINATING and outcome.deadline_passed:
            # Ended from outside after its wall clock had run out: a run too slow, not a crash.
            return Status.TIMEOUT, None, f"timeout (killed by {name} after its wall-clock limit)"
        if sig == signal.SIGKILL and outcome.kill_cause == "memory":
            return Status.MEMORY_LIMIT, "Killed", "killed by SIGKILL: out of memory"
        return Status.RUNTIME_ERROR, name, f"killed by signal {name}"
    return Status.RUNTIME_ERROR, "EarlyExit", f"the program exited after {len(col.values)} of {n} results"


def verdict_of(outcome: RunOutcome, col: _Collector, n: int, expected: list[Any] | None) -> Verdict:
    output = outcome.output.decode("utf-8", errors="replace")
    if outcome.output_truncated:
        output += "\n[output truncated]"
    base = dict(tests_total=n, wall_s=round(outcome.wall_s, 6), output=output or None)
    if col.mismatch is not None:
        i = col.mismatch
        return Verdict(status=Status.WRONG_ANSWER, tests_run=i + 1, failed_test=i,
                       expected=short(expected[i]) if expected else None, got=short(col.values[i]),
                       error_message=f"wrong answer on test {i}", **base)
    complete = outcome.done and not col.errors and len(col.values) == n and col.no_entry is None
    if complete and outcome.stop_reason is None:
        return Verdict(status=Status.PASS, tests_run=n, **base)
    status, etype, msg = _failure_from_outcome(outcome, col, n)
    failed = min(col.errors) if col.errors else (len(col.values) if status is not Status.NO_ENTRY_POINT else None)
    if failed is not None and failed < 0:
        failed = None
    return Verdict(status=status, tests_run=len(col.values), failed_test=failed, error_type=etype,
                   error_message=msg, **base)


def run_tests(worker: Worker, code: str, entry_point: str, entry_kind: str, inputs: list[Any],
              expected: list[Any], *, atol: float = 0.0, inputs_key: str | None = None,
              checker: str | None = None, seed: int = 0, timeout_s: float | None = None) -> Verdict:
    """Correctness: run every input in one fresh child and compare in the parent."""
    judged = has_check(checker)
    col = _Collector(expected=None if judged else expected, atol=atol)
    outcome = worker.run(job("tests", code, entry_point, entry_kind, checker=checker, seed=seed),
                         inputs, inputs_key, col, test_timeout_s=timeout_s)
    verdict = verdict_of(outcome, col, len(inputs), expected)
    if judged and verdict.passed:
        return _checked(worker, verdict, checker or "", inputs, [col.values[i] for i in range(len(inputs))],
                        expected)
    return verdict


def _checked(worker: Worker, verdict: Verdict, checker: str, inputs: list[Any], outputs: list[Any],
             expected: list[Any]) -> Verdict:
    """Outputs that need the task's trusted checker: judged in a separate child that never ran the candidate."""
    items = list(zip(inputs, outputs, expected))
    col = _Collector(stop_on_error=False)
    outcome = worker.run(job("check", "", "check", "function", checker=checker), items, None, col)
    for i in range(len(items)):
        if col.values.get(i) is not True:
            reason = col.errors.get(i, ("", "checker rejected the output"))[1]
            return verdict.model_copy(update=dict(
                status=Status.WRONG_ANSWER, failed_test=i, tests_run=i + 1, got=short(outputs[i]),
                expected=short(expected[i]), error_message=f"wrong answer on test {i}: {reason}"))
    if not outcome.done:
        return verdict.model_copy(update=dict(status=Status.RUNTIME_ERROR, error_type="CheckerError",
                                              error_message="the task's checker did not finish"))
    return verdict


@dataclass
class Collected:
    """Outputs of a trusted program on every input (``None`` value + error where it raised)."""

    values: list[Any]
    errors: dict[int, tuple[str, str]]
    outcome: RunOutcome

    @property
    def complete(self) -> bool:
        return self.outcome.done and not self.errors


def collect_outputs(worker: Worker, code: str, entry_point: str, entry_kind: str, inputs: list[Any], *,
                    inputs_key: str | None = None, checker: str | None = None, seed: int = 0,
                    timeout_s: float | None = None) -> Collected:
    """Run a trusted program (a canonical solution, a reference) to learn the expected outputs."""
    col = _Collector(stop_on_error=False)
    outcome = worker.run(job("collect", code, entry_point, entry_kind, checker=checker, seed=seed,
                             stop_on_error=False), inputs, inputs_key, col, test_timeout_s=timeout_s)
    values = [col.values.get(i) for i in range(len(inputs))]
    errors = dict(col.errors)
    for i in range(len(inputs)):
        if i not in col.values and i not in errors:
            errors[i] = ("NoResult", outcome.stop_reason or "no result")
    return Collected(values=values, errors=errors, outcome=outcome)


@dataclass
class MeasureResult:
    """One measured run: its verdict on the output (when an expected one is given) and the meter's value."""

    verdict: Verdict
    value: float | None
    output: Any = None


def has_check(checker: str | None) -> bool:
    """Whether a task's checker judges outputs itself (defines ``check``) instead of plain equality."""
    return bool(checker and "def check" in checker)


_JUDGE_ENTRY = "__effirl_judge"
_JUDGE_WRAPPER = f"""

def {_JUDGE_ENTRY}(args, output, expected):
    return bool(check(list(args), output, expected))
"""


def judge_measured_output(worker: Worker, verdict: Verdict, checker: str, args: Any, output: Any,
                          expected: Any) -> Verdict:
    """A measured run's output judged by the task's trusted checker, in a separate child that never ran the
    candidate (as :func:`_checked` does for tests); ``verdict`` (a pass) becomes a wrong answer when the
    checker rejects the output or fails.

    On a worker whose meter waits for a READY (perf, cputime) the checker runs as a *measured trusted program*
    (the only kind of child such a meter attaches to, and what it counts is thrown away); elsewhere in the
    checker's own mode.
    """
    if worker.meter is None or not worker.meter.needs_go:
        return _checked(worker, verdict, checker, [args], [output], [expected])
    col = _Collector(stop_on_error=False)
    outcome = worker.run(job("measure", checker + _JUDGE_WRAPPER, _JUDGE_ENTRY, "function"),
                         [[args, output, expected]], None, col)
    if col.values.get(0) is not True:
        reason = col.errors.get(0, ("", "checker rejected the output"))[1]
        return verdict.model_copy(update=dict(
            status=Status.WRONG_ANSWER, failed_test=0, tests_run=1, got=short(output),
            expected=short(expected), error_message=f"wrong answer on test 0: {reason}"))
    if not outcome.done:
        return verdict.model_copy(update=dict(status=Status.RUNTIME_ERROR, error_type="CheckerError",
                                              error_message="the task's checker did not finish"))
    return verdict


def measure_once(worker: Worker, code: str, entry_point: str, entry_kind: str, args: Any, *,
                 expected: Any = None, check_output: bool = False, atol: float = 0.0,
                 checker: str | None = None, seed: int = 0, timeout_s: float | None = None,
                 inputs_key: str | None = None) -> MeasureResult:
    """One call of the entry point on one performance input in a fresh child, counted by the worker's meter.

    With ``check_output`` the output must be right, as on a test: equal to ``expected`` (within ``atol``), or,
    for a task whose checker defines ``check``, accepted by that trusted checker in a separate child
    (:func:`judge_measured_output`); a wrong output is a wrong answer with no count. A program that can tell
    it is being measured (the harness's frame, the meter in its environment, its own call count) gains
    nothing by answering differently then: every measured run of a candidate is checked (the batch run and the
    reward only measure checked inputs). Without ``check_output`` (trusted programs only: references, the
    calibration) the output is not looked at.
    """
    judged = check_output and has_check(checker)
    col = _Collector(expected=[expected] if check_output and not judged else None, atol=atol)
    outcome = worker.run(job("measure", code, entry_point, entry_kind, checker=checker, seed=seed),
                         [args], inputs_key, col, test_timeout_s=timeout_s, total_timeout_s=timeout_s)
    verdict = verdict_of(outcome, col, 1, [expected] if check_output and not judged else None)
    value = outcome.meter_value if verdict.passed else None
    if verdict.passed and value is None and worker.meter is not None:
        # The program finished, but its meter could not count the run (callgrind: no dump, a tampered dump
        # folder, or a count implausibly small for the CPU used): never a pass without a count.
        verdict = verdict.model_copy(update={
            "status": Status.RUNTIME_ERROR, "error_type": "MeterError",
            "error_message": f"the {worker.meter.name} meter could not count this run"})
    if judged and verdict.passed:
        verdict = judge_measured_output(worker, verdict, checker or "", args, col.values.get(0), expected)
        if not verdict.passed:
            value = None
    return MeasureResult(verdict=verdict, value=value, output=col.values.get(0))
