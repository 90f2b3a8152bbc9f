"""CPU time of the child's program: for machines with neither counters nor valgrind.

The child does its set-up (limits, checker, compiling the program, importing the installed modules its import
statements name), then writes READY and blocks on a pipe; the parent reads the child's CPU clock at that point
(``CLOCK_PROCESS_CPUTIME_ID`` of its pid, nanoseconds; the child is blocked, so the clock is still), then lets
it go on. The value is the child's total CPU time from the trusted server's ``wait4`` less that reading: the
program's module body and call, not the imports it names nor the harness's set-up. Both readings come from the
trusted side (the program can fake neither), and the parent acts on the first READY only, which the harness
writes before any program code runs. Where the clock cannot be read, ``/proc/PID/stat`` (clock ticks) is used.

Noisy (scheduler, caches, frequency), so every selection of this meter is announced with a warning.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from effirl.meters.base import Meter

log = logging.getLogger(__name__)
RESOLUTION_S = 1e-6  # wait4's resolution: the least a program is said to take (a count is never 0)
_CPUCLOCK_SCHED = 2  # a process's CPU clock id is (~pid << 3) | CPUCLOCK_SCHED (as clock_getcpuclockid gives)


def process_cpu_s(pid: int) -> float | None:
    """Seconds of CPU the process ``pid`` (every thread) has used so far, or ``None`` when it cannot be
    read."""
    try:
        return time.clock_gettime((~pid << 3) | _CPUCLOCK_SCHED)
    except (OSError, OverflowError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


class _Start:
    """The child's pid and its CPU seconds when its program started."""

    __slots__ = ("pid", "cpu_s", "started")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu_s: float | None = None
        self.started = False


class CpuTimeMeter(Meter):
    name = "cputime"
    unit = "seconds"
    needs_go = True

    def version(self) -> str:
        return "rusage-2"  # 2: the program's CPU time only (1 counted the child from its fork)

    def attach(self, pid: int) -> Any:
        return _Start(pid)

    def start(self, handle: Any) -> None:
        handle.started = True
        handle.cpu_s = process_cpu_s(handle.pid)

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        total = float(exited["cpu_s"])
        if handle is None or not handle.started:
            return None  # the program never started
        if handle.cpu_s is None:
            _warn_once()
            return total
        return max(total - handle.cpu_s, RESOLUTION_S)


_warned: list[bool] = []


def _warn_once() -> None:
    if not _warned:
        _warned.append(True)
        log.warning("cputime: cannot read a child's CPU clock here; its time includes the harness's set-up "
                    "and the imports it names")
