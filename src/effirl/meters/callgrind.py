"""Exact instruction counts without a PMU: the fork server runs under valgrind's callgrind.

valgrind's start-up (seconds for CPython) is paid once per worker and amortized over every measurement: each
measured child is forked from the warmed server, and its dumps hold everything it ran, every thread included.

What is counted is the program's own work: its module body (a table built at import time included) and its
entry-point call, not the harness's set-up nor loading the installed modules the program names (``import
statistics`` alone costs ~12 M instructions, ``doctest`` ~68 M, against 0.35-2.7 M for whole programs). The
mechanism:

* callgrind zeroes the counters when a forked child enters CPython's after-fork hook
  (``--zero-before=PyOS_AfterFork_Child``): nothing of the server is in a child's dumps;
* the child does its set-up, imports the installed modules its import statements name, then calls ``lockf``
  (``os.lockf`` on its /dev/null stdin, a no-op) right before the program's module body; callgrind dumps and
  zeroes there (``--dump-before=lockf*``);
* at the child's exit callgrind writes its final dump. The parent drops the child's FIRST dump (its set-up)
  and sums every later one.

Why a dump point and "drop only the first" rather than another zero point: a zero point the program could
reach again would let it erase its own earlier work. This one cannot be abused: the harness reaches it before
any program code has run, so the first dump never holds the program's work; once it is reached the harness
installs an audit hook that refuses ``os.lockf``, and a call that reached ``lockf`` some other way would only
split the count into more dumps, all summed (more than ``MAX_DUMPS`` make the run uncountable: each one is a
file). ``lockf`` was chosen because Python reaches it only through ``os.lockf`` (an audited call, so the
harness can close it once used), it is exported by libc, costs one system call whatever the program, and
neither the server nor the harness's set-up calls it. Rejected: ``getppid`` or ``_Py_GetAllocatedBlocks``
(``os.getppid``, ``sys.getallocatedblocks``: any program could call them at will, unaudited, a dump file each;
the latter also costs more the bigger the heap), ``PyOS_AfterFork_Parent`` (the server calls it at every
fork). The parent checks that the dumps form one sequence (one process, parts 1..K in
files ``cg.PID.1`` .. ``cg.PID.K-1``, each cut by that dump point, and the final ``cg.PID`` cut by the
program's end), so nothing placed in the folder can pass for part of it.

The parent reads only regular files named ``cg.*`` (not the server's own), without following links and without
blocking, and refuses a count implausibly small for the CPU time the child used (judged on all its dumps, the
set-up included: the imports take CPU too).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from functools import lru_cache
from typing import Any, NamedTuple

from effirl.meters.base import COUNTS, Meter

DUMP_PREFIX = "cg."
ZERO_AT_FORK = "PyOS_AfterFork_Child"
COUNT_STARTS = "lockf*"  # the harness's mark (``os.lockf``): glibc names it ``lockf`` or ``lockf64``
TRIGGER_START = "--dump-before=lockf"  # how a dump cut at that mark names its trigger
TRIGGER_END = "Program termination"  # the final dump's trigger
MAX_DUMPS = 64  # a run with more dumps than this is refused (each one is a file the parent reads)
HEADER_BYTES = 16 * 1024  # a dump's header (pid, part, trigger, summary) is in its first lines
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


class Dump(NamedTuple):
    """The header of one callgrind dump."""

    pid: int
    part: int
    trigger: str
    summary: int


def parse_header(text: str) -> Dump | None:
    """``pid:``, ``part:``, the trigger and ``summary:`` of a dump (``None``: a field is missing or
    malformed)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith(("fn=", "fl=", "ob=", "totals:")):
            break
        for key in ("pid:", "part:", "summary:", "desc: Trigger:"):
            if line.startswith(key) and key not in found:
                found[key] = line[len(key):].strip()
    try:
        dump = Dump(int(found["pid:"]), int(found["part:"]), found["desc: Trigger:"], int(found["summary:"]))
    except (KeyError, ValueError):
        return None
    return dump if dump.pid > 0 and dump.part > 0 and dump.summary >= 0 else None


def split_counts(dumps: dict[str, Dump]) -> tuple[int, int] | None:
    """``(set-up, program)`` instructions of one measured child from its dumps by file name, or ``None`` when
    they are not exactly the sequence one child leaves (module docstring): one process, parts 1..K, the files
    named after them, the first K-1 cut at the harness's mark, the last at the program's end."""
    if not 2 <= len(dumps) <= MAX_DUMPS:
        return None
    pids = {d.pid for d in dumps.values()}
    if len(pids) != 1:
        return None
    pid = pids.pop()
    k = len(dumps)
    final = dumps.get(f"{DUMP_PREFIX}{pid}")
    if final is None or final.part != k or final.trigger != TRIGGER_END:
        return None
    parts = {final.part: final.summary}
    for n in range(1, k):
        d = dumps.get(f"{DUMP_PREFIX}{pid}.{n}")
        if d is None or d.part != n or not d.trigger.startswith(TRIGGER_START):
            return None
        parts[n] = d.summary
    return parts[1], sum(parts[n] for n in range(2, k + 1))


class CallgrindMeter(Meter):
    name = "callgrind"
    unit = "instructions"
    slowdown = 50.0  # CPython under callgrind runs roughly 30-80x slower

    def version(self) -> str:
        return f"{valgrind_version() or 'valgrind-unknown'}+{COUNTS}"

    def dump_dir(self, workdir: str) -> str:
        return os.path.join(workdir, "meter")

    def wrap_command(self, cmd: list[str], workdir: str) -> list[str]:
        # The folder must exist before valgrind starts: callgrind opens its output file once at start-up to
        # check it can write there, and fails ("can not open cache simulation output file") otherwise. The
        # worker calls ``prepare_workdir`` only after it has started the process, which raced with that check.
        self._make_dump_dir(workdir, clean=True)
        out = os.path.join(self.dump_dir(workdir), DUMP_PREFIX + "%p")
        # Counters are zeroed in every forked child, and dumped where the harness marks the program's start
        # (module docstring): no client request, so no ctypes, in the server.
        return ["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}", "--dump-line=no",
                f"--zero-before={ZERO_AT_FORK}", f"--dump-before={COUNT_STARTS}", "--dump-instr=no",
                "--compress-strings=yes", "--compress-pos=yes", "--trace-children=no", "--log-fd=2", *cmd]

    def writable_dirs(self, workdir: str) -> dict[str, str]:
        d = self.dump_dir(workdir)
        return {d: d}

    def _make_dump_dir(self, workdir: str, clean: bool = False) -> None:
        d = self.dump_dir(workdir)
        os.makedirs(d, exist_ok=True)
        if clean:  # before a server starts: the dumps of this worker's previous server are not its runs'
            for name in os.listdir(d):
                _remove(os.path.join(d, name))
        os.chmod(workdir, 0o711)
        os.chmod(d, 0o733)  # children may create their dump; only the parent can list or read the folder

    def prepare_workdir(self, workdir: str, uid: int) -> None:
        self._make_dump_dir(workdir)

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        """The program's instructions (every dump of the run but its first, summed), or ``None`` when the run
        cannot be counted.

        Only regular files named ``cg.*`` (not the server's own) are read, without following links and without
        blocking: a measured program can create entries in this folder with calls that raise no audit event
        (``os.mkfifo``, ``os.mknod``); a FIFO read here would hang the parent forever. Anything that is not a
        readable dump, dumps that are not exactly one child's sequence (:func:`split_counts`), and a count
        implausibly small for the CPU time the child used (its counter was reset or paused by native code: see
        :func:`plausible`) make the run uncountable. Every entry is removed.
        """
        split = self.read_counts(workdir, exited)
        return None if split is None else float(split[1])

    def read_counts(self, workdir: str, exited: dict[str, Any]) -> tuple[int, int] | None:
        """``(set-up, program)`` instructions of the run that just ended (see :meth:`collect`)."""
        server = f"{DUMP_PREFIX}{exited.get('server_pid', -1)}"
        try:
            with os.scandir(self.dump_dir(workdir)) as it:
                entries = [e for e in it if e.name != server and not e.name.startswith(server + ".")]
        except OSError:
            return None
        dumps: dict[str, Dump] = {}
        bad = False
        for entry in entries:
            dump = _read_dump(entry.path) if entry.name.startswith(DUMP_PREFIX) else None
            _remove(entry.path)
            if dump is None:
                bad = True
            else:
                dumps[entry.name] = dump
        if bad or not dumps or os.WIFSIGNALED(exited["status"]):
            return None
        split = split_counts(dumps)
        if split is None or not plausible(split[0] + split[1], exited.get("cpu_s")):
            return None
        return split


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


def _read_dump(path: str) -> Dump | None:
    """The header of the regular file at ``path`` (not following links, never blocking, not a hard link to
    another name), else ``None``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > MAX_DUMP_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            text = fh.read(HEADER_BYTES)
        return parse_header(text.decode(errors="replace"))
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
