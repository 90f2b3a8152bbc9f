"""The meter interface the fork server uses, and the record every measurement carries.

A meter may wrap the worker's command (callgrind runs the whole fork server under valgrind), attach to a child
from the parent before it starts and start counting when the child says its program starts (perf, cputime),
and read the child's count after it exits.

What every meter counts is the program's own work: its module body (a table it builds at import time included)
and its entry-point call, not the harness's set-up in the child (limits, the task's checker, compiling the
program, converting the arguments) and not loading the installed modules the program's ``import`` statements
name, which the harness imports before the count starts (see :func:`effirl.execution.harness.preimport`). Each
meter starts its count at that point in its own way (see each meter's module).

Why this mechanism. Pausing the count around import statements would leave a window that a program can fill
with its own work (an import hook, a ``sys.meta_path`` finder, an ``__import__`` override); here no program
code runs before the count starts, and once it has started it never pauses, so whatever the program does,
hooks included, is counted. Preloading more of the standard library in every fork server would make every fork
dearer and still miss the rarer modules; counting only the call (as EvalPerf does) would make a table built at
import time free. What the program gains by naming a module is its import only, the same for every program
that names it; a module imported under a computed name (``__import__("stat" + "istics")``) is imported in the
count.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from typing import Any

from pydantic import BaseModel


class MeterMismatchError(ValueError):
    """Measurements taken with different meters (or environments) were put in one comparison."""


class Measurement(BaseModel):
    """One measured run: a program, one performance input, a fresh child."""

    value: float  # instructions (perf, callgrind) or CPU seconds (cputime)
    unit: str
    meter: str
    meter_version: str
    fingerprint: str

    def key(self) -> tuple[str, str, str]:
        return (self.meter, self.meter_version, self.fingerprint)


COUNTS = "program"  # what a count covers (module docstring): part of every instruction meter's version, so
# counts taken when a child was counted from its fork (imports and set-up included) never compare with these


def environment_fingerprint() -> str:
    """A short hash of what changes instruction counts: interpreter build, machine, OS."""
    parts = [sys.version, platform.machine(), platform.system(), platform.release(), sys.executable,
             os.environ.get("PYTHONHASHSEED", "")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def check_same_meter(measurements: list[Measurement]) -> None:
    """Raise :class:`MeterMismatchError` unless every measurement came from the same meter and environment."""
    keys = {m.key() for m in measurements}
    if len(keys) > 1:
        desc = ", ".join(f"{k[0]} {k[1]} @{k[2]}" for k in sorted(keys))
        raise MeterMismatchError(f"cannot compare measurements from different meters/environments: {desc}")


class Meter:
    """Base class; the defaults describe a meter that needs nothing from the worker."""

    name = "base"
    unit = "instructions"
    needs_go = False  # the child waits for the parent to attach before it starts
    slowdown = 1.0  # how much slower programs run under this meter; time limits are scaled by it

    def version(self) -> str:
        return "0"

    def wrap_command(self, cmd: list[str], workdir: str) -> list[str]:
        return cmd

    def writable_dirs(self, workdir: str) -> dict[str, str]:
        return {}

    def prepare_workdir(self, workdir: str, uid: int) -> None:
        return None

    def attach(self, pid: int) -> Any:
        """Called by the parent once the measured child exists, before it runs anything of the program."""
        return None

    def start(self, handle: Any) -> None:
        """Called by the parent when the measured child says READY (meters with ``needs_go``): what the child
        runs from now on is the program's, and is what :meth:`collect` must report."""
        return None

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        raise NotImplementedError

    def measurement(self, value: float) -> Measurement:
        return Measurement(value=value, unit=self.unit, meter=self.name, meter_version=self.version(),
                           fingerprint=environment_fingerprint())
