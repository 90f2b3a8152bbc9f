"""The meter interface the fork server uses, and the record every measurement carries.

A meter may wrap the worker's command (callgrind runs the whole fork server under valgrind), attach to a child
from the parent before it starts (perf), and read the child's count after it exits. Every measurement records
the meter, its version and the environment fingerprint, so counts from different meters are never compared.
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
        return None

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        raise NotImplementedError

    def measurement(self, value: float) -> Measurement:
        return Measurement(value=value, unit=self.unit, meter=self.name, meter_version=self.version(),
                           fingerprint=environment_fingerprint())
