"""Exact instruction counts without a PMU: the fork server runs under valgrind's callgrind.

valgrind's start-up (seconds for CPython) is paid once per worker and amortized over every measurement: each
measured child is forked from the warmed server and its final dump at exit holds everything it ran, every thread
included. Counting starts in the child at the fork: callgrind zeroes the counters on entering CPython's
after-fork hook (``--zero-before=PyOS_AfterFork_Child``), so no client request, and no ``ctypes``, is needed in
the fork server, and a program cannot reset its own count (forking is refused while measuring; a process it
managed to fork would only zero its own counters). The count thus covers the child's set-up (limits, seeds; a
near-constant ~0.1-0.2 M instructions), the program's load, its module top level, the call and the reporting
of its result.

The parent sums the ``summary:`` of every dump in the worker's private folder (a program that forks is counted
whole, and a dump it forces early cannot hide work), reading only regular files, and refuses a count implausibly
small for the CPU time the child used.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from functools import lru_cache
from typing import Any

from effirl.meters.base import Meter

DUMP_PREFIX = "cg."
ZERO_AT_FORK = "PyOS_AfterFork_Child"
MAX_DUMP_BYTES = 256 * 1024 * 1024  # a dump (no per-line or per-instruction costs) is far smaller


@lru_cache(maxsize=1)
def valgrind_version() -> str | None:
    exe = shutil.which("valgrind")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def probe() -> tuple[bool, str]:
    """Whether callgrind can be used here, and why not."""
    if valgrind_version() is None:
        return False, "valgrind is not installed"
    return True, valgrind_version() or ""


def parse_totals(text: str) -> int | None:
    """The ``summary:`` of one callgrind dump: events since the counters were last zeroed.

    (``totals:`` is not used: it also carries the inclusive cost of calls that were already in progress when
    the counters were zeroed, i.e. the fork server's own stack.)
    """
    for line in text.splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    return None


class CallgrindMeter(Meter):
    name = "callgrind"
    unit = "instructions"
    slowdown = 50.0  # CPython under callgrind runs roughly 30-80x slower

    def version(self) -> str:
        return valgrind_version() or "valgrind-unknown"

    def dump_dir(self, workdir: str) -> str:
        return os.path.join(workdir, "meter")

    def wrap_command(self, cmd: list[str], workdir: str) -> list[str]:
        # The folder must exist before valgrind starts: callgrind opens its output file once at start-up to
        # check it can write there, and fails ("can not open cache simulation output file") otherwise. The
        # worker calls ``prepare_workdir`` only after it has started the process, which raced with that check.
        self._make_dump_dir(workdir, clean=True)
        out = os.path.join(self.dump_dir(workdir), DUMP_PREFIX + "%p")
        # Counters are zeroed in every forked child (module docstring): no client request, so no ctypes, in
        # the server.
        return ["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}", "--dump-line=no",
                f"--zero-before={ZERO_AT_FORK}", "--dump-instr=no", "--compress-strings=yes", "--compress-pos=yes",
                "--trace-children=no", "--log-fd=2", *cmd]

    def writable_dirs(self, workdir: str) -> dict[str, str]:
        d = self.dump_dir(workdir)
        return {d: d}

    def _make_dump_dir(self, workdir: str, clean: bool = False) -> None:
        d = self.dump_dir(workdir)
        os.makedirs(d, exist_ok=True)
        if clean:  # before a server starts: dumps of this worker's previous server (a restart) are not its runs'
            for name in os.listdir(d):
                _remove(os.path.join(d, name))
        os.chmod(workdir, 0o711)
        os.chmod(d, 0o733)  # children may create their dump; only the parent can list or read the folder

    def prepare_workdir(self, workdir: str, uid: int) -> None:
        self._make_dump_dir(workdir)

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        """The sum of every dump the run left, or ``None`` when the run cannot be counted.

        Only regular files named ``cg.*`` (not the server's own) are read, without following links and without
        blocking: a measured program can create entries in this folder with calls that raise no audit event
        (``os.mkfifo``, ``os.mknod``); a FIFO read here would hang the parent forever. Anything that is not a
        readable dump is removed and makes the run uncountable, as does a count implausibly small for the CPU
        time the child used (its counter was reset or paused by native code: see :func:`plausible`).
        """
        total = 0
        found = False
        bad = False
        server = f"{DUMP_PREFIX}{exited.get('server_pid', -1)}"
        try:
            with os.scandir(self.dump_dir(workdir)) as it:
                entries = [e for e in it if e.name != server]
        except OSError:
            return None
        for entry in entries:
            value = _read_dump(entry.path) if entry.name.startswith(DUMP_PREFIX) else None
            _remove(entry.path)
            if value is None:
                bad = True
            else:
                total += value
                found = True
        if bad or not found or os.WIFSIGNALED(exited["status"]):
            return None
        if not plausible(total, exited.get("cpu_s")):
            return None
        return float(total)


# Under callgrind a child runs 20-130 million instructions per CPU second (measured: syscall-heavy loops ~21M,
# page-faulting 2 GB ~55M, pure bytecode ~120M), after ~0.1 s of fork and exit. A count far below that for the
# CPU the child burned means the counter was zeroed or paused (a client request from native code, should a way
# to run native code remain): such a run is refused. Gross hiding only: a 10x margin below the slowest honest
# rate seen, and the first CPU_ALLOWANCE_S seconds are never judged.
MIN_RATE = 2_000_000
CPU_ALLOWANCE_S = 0.5


def plausible(count: float, cpu_s: float | None) -> bool:
    """Whether ``count`` instructions can account for ``cpu_s`` seconds of the child's CPU under callgrind."""
    return cpu_s is None or count >= MIN_RATE * (cpu_s - CPU_ALLOWANCE_S)


def _read_dump(path: str) -> int | None:
    """The ``summary:`` of the regular file at ``path`` (not following links, never blocking), else ``None``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            text = fh.read(MAX_DUMP_BYTES + 1)
        if len(text) > MAX_DUMP_BYTES:
            return None
        return parse_totals(text.decode(errors="replace"))
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass
