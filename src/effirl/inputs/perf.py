"""Which inputs a solution is measured on, and what it must return on them.

In order of preference: inputs produced by the task's generator at its calibrated (or default) scale with a
recorded seed — fresh each use, the same for every completion of one group; the dataset's own performance
inputs; else the largest correctness inputs, flagged low-contrast. Generators run in the sandbox (model-written
ones are untrusted) and expected outputs on generated inputs come from a trusted reference, run in the sandbox
too, never in the candidate's process.

Fresh inputs per use (the seed policy):

* Every *use* — one evaluation run, one RL step — draws new inputs: its seed is ``run_seed(base_seed, step)``
  (``step`` = the run's or the RL step's number), so a solution cannot be tuned to, or memorize, the inputs it
  will be measured on, and the fixed public tests are never the performance inputs of a task with a generator.
* Within one use every completion of a group (every sample of a task) is measured on the *same* inputs: the
  batch run resolves exactly one :class:`PerfInputSet` per task per run (``batch._perf_inputs``: one
  :func:`resolve_perf_inputs` call per task, shared by all of the task's samples, and by the re-measured
  references), so the counts of one group are comparable.
* The seed and the scale are recorded with every result (``record["inputs"]``, from
  :meth:`PerfInputSet.describe`), and the same seed and scale reproduce the same inputs, hence (under callgrind)
  the same counts.
* A task without a generator or dataset performance inputs falls back to its largest test input, flagged
  ``low_contrast`` (also in ``record["inputs"]``): such counts say little about efficiency.

Every input this module returns is *checked*: it carries the output a measured run must return, from trusted
data only (the task's own test expectation, or the task's trusted solution run in the sandbox:
:func:`trusted_output`). A program may detect that it is being measured (the harness's frame, valgrind in its
environment, its own call count) and return anything then, at a fraction of the cost; since every measured
output is compared with the expected one (or judged by the task's trusted checker), doing so is a wrong answer
on the performance input, never a smaller count. A task whose inputs cannot get a trusted expected output (no
reference, no canonical solution) raises :class:`UnverifiableInputs`: its measurements could not be verified.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from effirl.execution import judge
from effirl.execution.measuring import PerfInput
from effirl.execution.worker import Worker
from effirl.tasks.model import Task

log = logging.getLogger(__name__)

_GEN_WRAPPER = """

def __effirl_generate(scale, seed):
    import random as _random
    return generate(scale, _random.Random(seed))
"""


@dataclass
class PerfInputSet:
    task_id: str
    source: str  # "generated" | "dataset" | "tests"
    inputs: list[PerfInput]
    scale: int | None = None
    seed: int | None = None
    low_contrast: bool = False
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "source": self.source, "scale": self.scale, "seed": self.seed,
                "low_contrast": self.low_contrast, "n_inputs": len(self.inputs), "notes": list(self.notes)}


def run_seed(base_seed: int, step: int) -> int:
    """The inputs seed of use number ``step`` (an evaluation run, an RL step) under ``base_seed``.

    Distinct steps get unrelated seeds; the same ``(base_seed, step)`` always gives the same one (a 63-bit
    integer), so a run can be reproduced from the seed recorded in its results.
    """
    digest = hashlib.sha256(f"effirl-inputs:{int(base_seed)}:{int(step)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class GeneratorError(RuntimeError):
    """A task's generator failed in the sandbox."""


def generate_input(worker: Worker, task: Task, scale: int, seed: int) -> list[Any]:
    """Run the task's ``generate(scale, rng)`` in the sandbox with ``random.Random(seed)``."""
    code = (task.generator or "") + _GEN_WRAPPER
    got = judge.collect_outputs(worker, code, "__effirl_generate", "function", [[scale, seed]], timeout_s=120.0)
    if got.errors or not isinstance(got.values[0], (list, tuple)):
        err = got.errors.get(0, ("", "did not return an argument list"))
        raise GeneratorError(f"{task.id}: generator failed at scale {scale}: {err[0]} {err[1]}")
    return list(got.values[0])


def trusted_code(task: Task) -> str | None:
    """The trusted solution that defines expected outputs on performance inputs: the fastest reference, else
    the canonical solution (``None``: the task has neither)."""
    return task.references[-1].code if task.references else task.canonical


class UnverifiableInputs(GeneratorError):
    """A task's performance inputs cannot get a trusted expected output: a measured output could not be
    verified."""


def trusted_outputs(worker: Worker, task: Task, inputs: list[list[Any]]) -> list[Any]:
    """The expected outputs on ``inputs``, from the task's trusted solution (:func:`trusted_code`), run in the
    sandbox in one child."""
    code = trusted_code(task)
    if code is None:
        raise UnverifiableInputs(f"{task.id}: no trusted solution (reference or canonical) to compute the "
                                 "expected outputs of its performance inputs: a measured output could not be "
                                 "verified")
    got = judge.collect_outputs(worker, code, task.entry_point, task.entry_kind.value, inputs,
                                checker=task.checker, timeout_s=300.0)
    if got.errors:
        index = min(got.errors)
        raise GeneratorError(f"{task.id}: the trusted solution failed on performance input {index}: "
                             f"{got.errors[index]}")
    return got.values


def trusted_output(worker: Worker, task: Task, args: list[Any]) -> Any:
    """The expected output on ``args``, from the fastest reference (else the canonical solution)."""
    return trusted_outputs(worker, task, [args])[0]


def largest_test_input(worker: Worker, task: Task, why: str) -> PerfInputSet:
    """The task's largest test input as its only performance input (low contrast; ``why`` says why), checked:
    with the test's own expected output where the task's tests carry them, else with the trusted solution's
    (:class:`UnverifiableInputs` without one)."""
    if not task.tests:
        return PerfInputSet(task.id, "tests", [], low_contrast=True, notes=[f"{why}: no inputs at all"])
    largest = max(range(len(task.tests)), key=lambda i: len(repr(task.tests[i].args)))
    args = list(task.tests[largest].args)
    if task.expected_from == "tests":
        expected = task.tests[largest].expected
    else:
        expected = trusted_output(worker, task, args)
    return PerfInputSet(task.id, "tests", [PerfInput(args, expected, True)], low_contrast=True,
                        notes=[f"{why}: largest test input ({largest}) used; low contrast"])


def resolve_perf_inputs(worker: Worker, task: Task, seed: int, scale: int | None = None) -> PerfInputSet:
    """The performance inputs of ``task`` for one use (an evaluation run, one RL step's group), every one of
    them checked (see the module's docstring)."""
    if task.generator:
        s = scale or task.default_scale or 1000
        args = generate_input(worker, task, s, seed)
        expected = trusted_output(worker, task, args)
        return PerfInputSet(task.id, "generated", [PerfInput(args, expected, True)], scale=s, seed=seed)
    if task.perf_inputs:
        inputs = [list(a) for a in task.perf_inputs]
        expected = trusted_outputs(worker, task, inputs)
        checked = [PerfInput(a, e, True) for a, e in zip(inputs, expected, strict=True)]
        return PerfInputSet(task.id, "dataset", checked)
    return largest_test_input(worker, task, "no generator")
