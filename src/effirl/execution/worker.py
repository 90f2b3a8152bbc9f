"""Parent-side handle of one fork server: start it, send it runs, supervise each child, restart on failure.

The parent owns every clock and every limit: it reads the child's result frames while the child runs (every
``POLL_S``, or as they arrive once the child writes a lot) and all of them once it is gone, stops the child at
the first answer its caller rejects, enforces the per-result and total wall clock and the output cap, and kills
the child's whole process group. A server that dies (or is killed by its child) is restarted; the
runs in flight are reported as a failure of the sandbox, and the pool goes on.

A worker takes two runs at a time (two *lanes*, each with its own pipes): its server still runs one child at
a time, in order, but forks the next as soon as one is over, while the parent judges the last.

The server never outlives the process that owns its worker: it holds the read end of a *lifeline* pipe whose
only write end the parent keeps, set to signal the server (``SIGIO``) when that end closes. A parent that dies
in any way (``SIGKILL`` included: a killed Ray actor, an ``effirl measure`` stopped with ``SIGTERM``) thereby
stops its server at once, mid-run or idle; the server kills the child it runs, and its namespace's init takes
every other process of the namespace with it.

What the parent observes is kept apart from what it concludes: a child killed by ``SIGKILL`` that the parent
did not stop is marked with what caused it when that can be known (the CPU-time hard limit, or memory: the
kernel's OOM killer acted during the run, or the child's peak memory reached its address-space limit), and a
child that died after its wall-clock deadline had passed is marked as such; :mod:`effirl.execution.judge`
turns these facts into a status.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import marshal
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from effirl.execution import channel, wire
from effirl.execution.config import SandboxConfig
from effirl.execution.report import IsolationReport

log = logging.getLogger(__name__)

# Frame callback: (kind, index, payload) -> True to go on, False to stop the child now.
FrameHandler = Callable[[bytes, int, Any], bool]
POLL_S = 0.01  # how often the parent reads a running child's pipes when nothing wakes it
LANES = 2  # runs an unmetered worker takes at a time: its server forks the next child as soon as one is over
EAGER_BYTES = 16 * 1024  # a read this large: the child writes a lot, so every write wakes the parent
# A child killed by SIGKILL whose peak resident memory reached this share of its address-space limit ran out
# of memory (the limit bounds virtual memory: the interpreter's mappings keep resident memory below it).
MEMORY_KILL_SHARE = 0.75
OOM_REFRESH_S = 1.0  # how stale the OOM-kill count a run compares with may be (reading it costs ~25 us)


def _effirl_root() -> str:
    """The folder effirl is imported from (its parent): bound read-only so the server can import effirl."""
    import effirl

    return os.path.dirname(os.path.dirname(os.path.abspath(effirl.__file__)))


def _importable_without(path: str) -> bool:
    """Whether ``path`` is inside the interpreter's own folders (an installed effirl: nothing to hide)."""
    import sysconfig

    roots = {sys.base_prefix, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def worker_base_dir() -> str:
    """Where workers keep their private folders: outside /tmp, which each child replaces with its own."""
    base = os.environ.get("EFFIRL_WORKDIR")
    if base:
        os.makedirs(base, exist_ok=True)
        return base
    return "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()


@functools.lru_cache(maxsize=1)
def server_path() -> tuple[str, ...]:
    """The module search path of the fork servers (their ``PYTHONPATH``): the interpreter's own default path.

    Not this process's ``sys.path``, which depends on who runs effirl (a console script's folder, the folders
    a Ray worker prepends): the path decides where a program's ``import`` looks, so it changes instruction
    counts, and a count taken in a Ray actor must equal the one taken by ``effirl measure`` on the same
    machine. Asked once per process from the interpreter itself (with this process's ``PYTHONPATH``, from
    ``/``); effirl's own root is added when the interpreter cannot import effirl by itself.
    """
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    try:
        out = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"], cwd="/",
                             env=env, capture_output=True, text=True, timeout=120, check=True)
        paths = [p for p in json.loads(out.stdout) if isinstance(p, str) and p]
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("cannot ask the interpreter for its module path (%s); using this process's", exc)
        paths = [p for p in sys.path if p]
    root = _effirl_root()
    if root not in paths:
        paths.append(root)
    return tuple(paths)


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed since boot (``/proc/vmstat``), if it says."""
    try:
        with open("/proc/vmstat", "rb") as fh:
            for line in fh:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class WorkerError(RuntimeError):
    """The fork server itself failed (not the program it ran)."""


@dataclass
class RunOutcome:
    """Everything the parent observed about one child."""

    stop_reason: str | None = None  # "timeout" | "output_limit" | "value_limit" | "protocol" | "stopped" | "worker_died"
    exit_status: int | None = None  # raw wait status
    cpu_s: float | None = None
    maxrss_kb: int | None = None
    output: bytes = b""
    output_truncated: bool = False
    wall_s: float = 0.0
    protocol_error: str | None = None
    done: bool = False  # the harness reported that every input ran
    meter_value: Any = None
    deadline_passed: bool = False  # the child was still running when its wall-clock deadline passed
    kill_cause: str | None = None  # a SIGKILL the parent did not send: "memory" | "cpu" | None (unknown)

    @property
    def signal(self) -> int | None:
        if self.exit_status is not None and os.WIFSIGNALED(self.exit_status):
            return os.WTERMSIG(self.exit_status)
        return None


class Worker:
    """One fork server process and its control socket."""

    def __init__(self, index: int, config: SandboxConfig, meter: Any = None) -> None:
        self.index = index
        self.config = config
        self.meter = meter
        self.proc: subprocess.Popen[bytes] | None = None
        self._fds: _Pipes | None = None
        self.report: IsolationReport | None = None
        self.server_pid: int | None = None
        self._inputs: OrderedDict[str, None] = OrderedDict()
        self._workdir = tempfile.mkdtemp(prefix=f"effirl-w{index}-", dir=worker_base_dir())
        self.restarts = 0
        self._log_path = os.path.join(self._workdir, "server.log")
        # Up to ``lanes`` threads may call :meth:`run` at once. The server still runs one child at a time, in the
        # order the runs were sent, but it never waits for the parent to judge a run before it forks the next.
        # Measured workers keep one lane: a meter sees its runs one by one, as it always did.
        self.lanes = LANES if meter is None else 1
        self._cond = threading.Condition()
        self._free = list(range(self.lanes))  # lanes no run holds
        self._dying = False  # the server died under a run: restarted once no other run uses its pipes
        self._lifeline: int | None = None  # the write end of the server's lifeline (see the module docstring)
        self._oom_seen = oom_kills()  # the kernel's OOM-kill count when this worker last looked ...
        self._oom_at = time.monotonic()  # ... and when (read again before a run, at most every OOM_REFRESH_S)

    # -- lifecycle -------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        """A minimal environment: nothing of the parent's (tokens, keys, paths) reaches untrusted code."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/tmp",
            "PYTHONHASHSEED": str(self.config.hash_seed),
            "PYTHONDONTWRITEBYTECODE": "1",
            # Bind every symbol of the interpreter's libraries when the server (or valgrind's guest) starts. With
            # lazy binding each child binds the functions it calls first: it writes, and so copies, the library's
            # pages of addresses run after run, and under a meter that resolution (~4,000 instructions, ~1,500
            # more in a server's first children) is counted, differently from child to child.
            "LD_BIND_NOW": "1",
            "PYTHONPATH": os.pathsep.join(server_path()),
        }
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMEXPR_NUM_THREADS="1")
        return env

    def start(self, timeout: float = 120.0) -> None:
        os.makedirs(self._workdir, exist_ok=True)
        # The worker's pipes, made once: control (parent -> server), the go signal, and per lane the replies, each
        # child's pid (read only when needed), and the children's results and output. A run's leftovers are
        # drained once the server says every process of it is gone; a child holds only its own lane's pipes.
        ctl_r, ctl_w = os.pipe()
        go_r, go_w = os.pipe()
        life_r, life_w = os.pipe()  # the lifeline: never written to; its write end closes with this process
        theirs = [ctl_r, go_r]
        lanes = []
        for _ in range(self.lanes):  # replies, pids, results and output of the runs of one lane
            (rep_r, rep_w), (pid_r, pid_w), (res_r, res_w), (out_r, out_w) = (os.pipe() for _ in range(4))
            for fd in (res_r, out_r, pid_r):  # the parent's own read ends: it reads only what is there
                os.set_blocking(fd, False)
            theirs += [rep_w, pid_w, res_w, out_w]
            lanes.append(_Lane(rep=rep_r, pid=pid_r, res=res_r, out=out_r))
        self._fds = _Pipes(ctl=ctl_w, go=go_w, go_drain=go_r, lanes=tuple(lanes))
        rep_r = lanes[0].rep
        python = os.path.realpath(sys.executable)  # the base interpreter: visible inside the sandbox
        # Descriptor numbers of a fixed width: the argument strings sit on the server's stack, which every
        # child inherits, and their length shifted each child's count (~300 instructions) with the parent's.
        argv = [python, "-S", "-m", "effirl.execution.server", *(f"{fd:06d}" for fd in theirs)]
        writable: dict[str, str] = {}
        uid = self.config.base_uid + self.index
        if self.meter is not None:
            self.meter.prepare_workdir(self._workdir, uid)  # before valgrind starts: it opens its output there
            argv = self.meter.wrap_command(argv, self._workdir)
            writable = self.meter.writable_dirs(self._workdir)
        argv[0] = shutil.which(argv[0]) or argv[0]
        launch = {"isolation": self.config.isolation, "writable": writable, "workdir": self._workdir,
                  "readonly": [_effirl_root()], "tmp_mb": self.config.tmp_mb, "argv": argv,
                  "host_proc": self.meter is not None and self.meter.name == "callgrind"}
        cmd = [python, "-S", "-m", "effirl.execution.launcher", json.dumps(launch)]
        try:
            with open(self._log_path, "ab") as log_file:  # valgrind and the server write here, never blocking
                # cwd "/": the server's module path starts with its working folder; the same one everywhere.
                self.proc = subprocess.Popen(
                    cmd, pass_fds=[*theirs, life_r], env=self._env(), stdin=subprocess.DEVNULL,
                    stdout=log_file, stderr=log_file, start_new_session=True, cwd="/",
                )
            # The lifeline's read end (one open file, shared with the server's copy) signals the server, by
            # pid, once every write end is closed: when this process ends, however it ends.
            fcntl.fcntl(life_r, fcntl.F_SETOWN, self.proc.pid)
            fcntl.fcntl(life_r, fcntl.F_SETFL, fcntl.fcntl(life_r, fcntl.F_GETFL) | os.O_ASYNC)
            self._lifeline = life_w
        except BaseException:
            os.close(life_w)
            raise
        finally:
            os.close(life_r)
            for fd in theirs:
                if fd != go_r:  # kept: the parent drains a go byte a child never read
                    os.close(fd)
        hello = {
            "isolation": self.config.isolation,
            "preimports": list(self.config.preimports),
            "workdir": self._workdir,
            "writable": writable,
            "uid": uid,
            "hide": [_effirl_root()] if not _importable_without(_effirl_root()) else [],
            "lifeline": life_r,
            "meter": None if self.meter is None else self.meter.name,
            "slowdown": 1.0 if self.meter is None else self.meter.slowdown,
            "limits": self.config.model_dump(include={"cpu_s", "memory_mb", "file_size_mb", "open_files",
                                                       "processes", "tmp_mb"}),
        }
        try:
            channel.send(ctl_w, hello)
        except OSError:
            self._fail_start("exited at start")
        if not wait_readable([rep_r], timeout):
            self.close()
            raise WorkerError(f"worker {self.index} did not start within {timeout:.0f} s")
        got = self._recv(rep_r)
        if got is None or got.get("op") != "hello":
            self._fail_start("failed to start")
        assert got is not None
        self.server_pid = got["pid"]
        self.report = IsolationReport(**got["report"])
        self._inputs.clear()

    def _fail_start(self, what: str) -> None:
        self.close()
        try:
            with open(self._log_path, "rb") as fh:
                err = fh.read()[-2000:].decode(errors="replace")
        except OSError:
            err = ""
        raise WorkerError(f"worker {self.index} {what}: {err.strip() or 'no message'}")

    def close(self) -> None:
        if self._fds is not None:
            try:
                channel.send(self._fds.ctl, {"op": "exit"})
            except OSError:
                pass
            for fd in (self._fds.ctl, self._fds.go, self._fds.go_drain):
                os.close(fd)
            for lane in self._fds.lanes:
                for fd in lane:
                    os.close(fd)
            self._fds = None
        if self._lifeline is not None:  # the server exits now if it has not read "exit" yet
            os.close(self._lifeline)
            self._lifeline = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait()
            self.proc = None

    def remove_workdir(self) -> None:
        """Delete the worker's private folder (after :meth:`close`)."""
        shutil.rmtree(self._workdir, ignore_errors=True)

    def restart(self) -> None:
        self.restarts += 1
        self.close()
        self.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self._fds is not None

    @property
    def _busy(self) -> int:
        """Runs in flight (each holds a lane)."""
        return self.lanes - len(self._free)

    def ensure_started(self) -> bool:
        """Start the server unless it runs (or another thread is replacing it); True if it was started now."""
        with self._cond:
            if self.proc is None and not self._busy:
                self.start()
                return True
            return False

    def _enter(self) -> int:
        """Take a free lane for a run, (re)starting the server first when no run uses the old one."""
        with self._cond:
            while True:
                if not self._busy and (self._dying or self._fds is None or self.proc is None):
                    if self.proc is not None or self._fds is not None:
                        self.restart()
                    else:
                        self.start()
                    self._dying = False
                if self._free and not self._dying:
                    # A free lane's reply pipe reads only once the server has gone (end of file): a cheaper test
                    # than waiting on the server's process (the kernel's task list is busy with its forks).
                    assert self._fds is not None
                    if not wait_readable([self._fds.lanes[self._free[-1]].rep], 0):
                        break
                    self._dying = True
                    continue
                self._cond.wait()  # a lane to be free, or the run on a dead server's pipes to end
            return self._free.pop()

    def _leave(self, lane: int, died: bool) -> None:
        """Give a lane back; the last run out of a dead server's pipes restarts it."""
        with self._cond:
            self._free.append(lane)
            self._dying = self._dying or died
            try:
                if self._dying and not self._busy:
                    self.restart()
                    self._dying = False
            finally:
                self._cond.notify_all()

    # -- one run ---------------------------------------------------------------------------------
    def run(
        self,
        job: dict[str, Any],
        inputs: list[Any],
        inputs_key: str | None,
        on_frame: FrameHandler,
        test_timeout_s: float | None = None,
        total_timeout_s: float | None = None,
    ) -> RunOutcome:
        """Run ``job`` in a fresh child; ``on_frame`` sees each decoded frame and may stop the child.

        Safe to call from up to :attr:`lanes` threads at once."""
        lane = self._enter()
        outcome = RunOutcome()
        broken = True  # a run left half-way (an exception here or in ``on_frame``) may leave a child or frames
        try:
            oom_base = self._oom_count()
            self._run(lane, job, inputs, inputs_key, on_frame, outcome, test_timeout_s, total_timeout_s)
            if outcome.stop_reason is None and outcome.signal == signal.SIGKILL:
                outcome.kill_cause = self._kill_cause(outcome, oom_base)
            broken = outcome.stop_reason == "worker_died"
        finally:
            self._leave(lane, broken)  # a broken lane is never used again: the server is restarted
        return outcome

    def _run(self, lane_index: int, job: dict[str, Any], inputs: list[Any], inputs_key: str | None,
             on_frame: FrameHandler, outcome: RunOutcome, test_timeout_s: float | None,
             total_timeout_s: float | None) -> None:
        fds = self._fds
        assert fds is not None
        lane = fds.lanes[lane_index]
        cfg = self.config
        slowdown = self.meter.slowdown if self.meter is not None else 1.0
        test_timeout = (test_timeout_s or cfg.test_timeout_s) * slowdown
        total_timeout = (total_timeout_s or cfg.total_timeout_s) * slowdown
        wait_go = self.meter is not None and self.meter.needs_go
        job = {**job, "wait_go": wait_go, "protected": (self._workdir,)}
        seed = job.pop("seed", 0)  # applied by the server before it forks
        # Job and inputs travel encoded and are decoded only by the child: the server's heap is the same before
        # every fork whatever the job (a varying heap made the child's allocator, and so its instruction count,
        # vary by up to ~2%).
        msg: dict[str, Any] = {"op": "run", "job": marshal.dumps(job), "inputs_key": inputs_key, "go": wait_go,
                               "seed": seed, "lane": lane_index}
        with self._cond:  # the input cache and the order of the runs: the server takes them as they are sent
            if inputs_key is None or inputs_key not in self._inputs:
                msg["inputs"] = encode_inputs(inputs)
                if inputs_key is not None:
                    if len(self._inputs) >= 16:
                        self._inputs.popitem(last=False)
                    self._inputs[inputs_key] = None
            ahead = self._busy > 1  # the other lane's run is sent and not over: this child starts after it
            try:
                channel.send(fds.ctl, msg)
            except OSError:
                outcome.stop_reason = "worker_died"
                return
        handle, pid = None, None
        if ahead:  # the clocks start with the child: the server forks it once the run ahead is over
            pid = self._started(lane.pid)
        elif wait_go:
            pid = _read_pid(lane.pid, timeout=30.0)
        if (ahead or wait_go) and pid is None:
            outcome.stop_reason = "worker_died"
            return
        t0 = time.monotonic()
        on_ready: Callable[[], None] | None = None
        if wait_go:
            handle = self.meter.attach(pid)
            on_ready = functools.partial(self._count_starts, handle, fds.go)
        exited = self._supervise(lane, pid, on_frame, outcome, t0, test_timeout, total_timeout, on_ready)
        outcome.wall_s = time.monotonic() - t0
        if wait_go:
            _drain(fds.go_drain)
        if exited is None:
            outcome.stop_reason = outcome.stop_reason or "worker_died"
            return
        outcome.exit_status = exited["status"]
        outcome.cpu_s = exited["cpu_s"]
        outcome.maxrss_kb = exited["maxrss_kb"]
        if self.meter is not None:
            outcome.meter_value = self.meter.collect(handle, self._workdir, {**exited, "server_pid": self.server_pid})

    def _oom_count(self) -> int | None:
        """The kernel's OOM-kill count, read again when the last reading is older than ``OOM_REFRESH_S``."""
        now = time.monotonic()
        if now - self._oom_at > OOM_REFRESH_S:
            self._oom_seen, self._oom_at = oom_kills(), now
        return self._oom_seen

    def _kill_cause(self, outcome: RunOutcome, oom_base: int | None) -> str | None:
        """Why a child the parent did not stop died of SIGKILL: its CPU-time hard limit (``cpu``), memory
        (``memory``: the kernel's OOM killer acted during the run, or the child's peak resident memory reached
        ``MEMORY_KILL_SHARE`` of its address-space limit), or ``None``: not known (a program that killed
        itself or its process group, say)."""
        slowdown = self.meter.slowdown if self.meter is not None else 1.0
        if outcome.cpu_s is not None and outcome.cpu_s >= int(self.config.cpu_s * slowdown):
            return "cpu"  # the kernel's SIGKILL at the hard limit, one second after SIGXCPU was ignored
        now = oom_kills()
        if now is not None and oom_base is not None and now > oom_base:
            return "memory"
        # Under callgrind the server sets no address-space limit (valgrind's own mappings would exceed it).
        callgrind = self.meter is not None and self.meter.name == "callgrind"
        limit_mb = None if callgrind else self.config.memory_mb
        if limit_mb and outcome.maxrss_kb and outcome.maxrss_kb >= MEMORY_KILL_SHARE * limit_mb * 1024:
            return "memory"
        return None

    def _count_starts(self, handle: Any, go: int) -> None:
        """A measured child's READY: its meter starts counting, then the child goes on (the go byte)."""
        self.meter.start(handle)
        os.write(go, b"g")

    def _supervise(self, fds: _Lane, pid: int | None, on_frame: FrameHandler, outcome: RunOutcome, t0: float,
                   test_timeout: float, total_timeout: float,
                   on_ready: Callable[[], None] | None = None) -> dict[str, Any] | None:
        """Read the child's frames and output until the server reports it gone; stop it at the first frame
        ``on_frame`` rejects, at a limit or at a deadline. Returns the server's ``exited`` message (``None``:
        the server died). Everything the run wrote is read before this returns, so nothing reaches the next.

        The parent is woken up once per run when it can be: frames and output are read every ``POLL_S`` (and
        once the server reports the child gone), not as each is written, unless the child writes a lot; a
        program is stopped within ``POLL_S`` of its first rejected frame. The child's pid is read from its
        pipe only to kill the child, or once the run is over.

        A measured child of a meter that waits (``on_ready``) first says READY, once, where its count starts:
        the parent answers it at once (it watches the results until then), and another READY is a protocol
        error."""
        reader = wire.FrameReader()
        cfg = self.config
        last = time.monotonic()
        value_bytes = 0
        out = bytearray()
        stop: str | None = None
        exited: dict[str, Any] | None = None
        watched = [fds.res, fds.out, fds.rep]
        eager = on_ready is not None

        def take(fd: int, data: bytes) -> str | None:
            nonlocal value_bytes, last, on_ready, eager
            if fd == fds.out:
                room = cfg.output_limit_bytes - len(out)
                out.extend(data[:room])
                if len(data) > room:
                    outcome.output_truncated = True
                    return "output_limit"
                return None
            value_bytes += len(data)
            if value_bytes > cfg.value_limit_bytes:
                return "value_limit"
            try:
                frames = reader.feed(data)
            except ValueError as exc:
                outcome.protocol_error = str(exc)
                return "protocol"
            for kind, index, body in frames:
                try:
                    payload = wire.decode_payload(body)
                except ValueError as exc:
                    outcome.protocol_error = str(exc)
                    return "protocol"
                last = time.monotonic()
                if kind == wire.KIND_READY:
                    if on_ready is None:
                        outcome.protocol_error = "a second or unexpected READY frame"
                        return "protocol"
                    on_ready()
                    on_ready, eager = None, False
                    continue
                if kind == wire.KIND_DONE:
                    outcome.done = True
                if not on_frame(kind, index, payload):
                    return "stopped"
            return None

        while True:
            now = time.monotonic()
            deadline = min(last + test_timeout, t0 + total_timeout)
            # Woken by the server's report, at a deadline, or every POLL_S to look at what the child wrote; by
            # the child's own writes only once it writes a lot (a child blocked on a full pipe makes no progress).
            # What arrived is read before any deadline is judged: a result just in time counts.
            ready = wait_readable(watched if eager else [fds.rep], min(deadline, now + POLL_S) - now)
            if fds.rep in ready:  # the child is gone: everything it wrote is read below
                # Gone after its deadline: whatever killed it then, the run had already outlasted its clock.
                outcome.deadline_passed = time.monotonic() >= min(last + test_timeout, t0 + total_timeout)
                exited = self._recv_op(fds.rep, "exited")
                break
            for fd in (fds.res, fds.out):
                data = _read_now(fd)
                if data:
                    eager = eager or len(data) >= EAGER_BYTES
                    stop = take(fd, data)
                    if stop is not None:
                        break
            if stop is not None:
                break
            if time.monotonic() >= min(last + test_timeout, t0 + total_timeout):
                stop = "timeout"
                break
        if stop is not None:
            outcome.stop_reason = stop
            if pid is None:
                pid = _read_pid(fds.pid, timeout=30.0)
            if pid is not None:
                self._kill(pid)
            exited = self._expect(fds.rep, "exited", timeout=30.0)
        if exited is not None:
            if pid is None:
                _read_pid(fds.pid, timeout=0)  # written before the server reaped the child: already there
            # Every process of the run is gone (the server swept them): what is left in the pipes is all it wrote.
            for fd in (fds.res, fds.out):
                for data in _read_all(fd):
                    if stop is None:
                        stop = take(fd, data)
                        if stop is not None:
                            outcome.stop_reason = stop
        outcome.output = bytes(out)
        return exited

    def _started(self, fd: int) -> int | None:
        """The pid of a lane's next child, however long the run ahead of it takes (``None``: the server died)."""
        while not wait_readable([fd], 1.0):
            if not self.alive:
                return None
        return _read_pid(fd, timeout=0)

    @staticmethod
    def _kill(pid: int) -> None:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass

    @staticmethod
    def _recv(fd: int) -> dict[str, Any] | None:
        try:
            got = channel.recv(fd)
        except (OSError, ValueError, EOFError, TypeError):
            return None
        return got if isinstance(got, dict) else None

    def _recv_op(self, fd: int, op: str) -> dict[str, Any] | None:
        got = self._recv(fd)
        return got if got is not None and got.get("op") == op else None

    def _expect(self, fd: int, op: str, timeout: float = 30.0) -> dict[str, Any] | None:
        if not wait_readable([fd], timeout):
            return None
        return self._recv_op(fd, op)


class _Lane(NamedTuple):
    """The parent's ends of one lane's pipes: a run in flight has its own (the server's order is ``Lane``'s)."""

    rep: int  # server -> parent messages: hello and pong (lane 0), ``exited`` of the lane's runs
    pid: int  # server -> parent: the pid of each child of the lane, as it is forked
    res: int  # the lane's children's result frames
    out: int  # the lane's children's stdout and stderr


class _Pipes(NamedTuple):
    """The parent's ends of a worker's pipes."""

    ctl: int  # parent -> server messages
    go: int  # the go byte of a measured child (perf: written once the counter is attached)
    go_drain: int  # the read end of the go pipe, to drain a byte a child never read
    lanes: tuple[_Lane, ...]


def encode_inputs(inputs: Any) -> bytes:
    """Inputs as marshal (exact built-in data), or pickle where marshal cannot carry a value."""
    try:
        return b"M" + marshal.dumps(inputs)
    except ValueError:
        return b"P" + pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL)


def _read_pid(fd: int, timeout: float) -> int | None:
    """The pid of the run's child from the server's (non-blocking) pid pipe (``None``: the server is gone)."""
    data = _read_now(fd, channel.PID_BYTES)  # one write per run: pipe writes this small are atomic
    if not data and timeout > 0 and wait_readable([fd], timeout):
        data = _read_now(fd, channel.PID_BYTES)
    return int.from_bytes(data, "little") if len(data) == channel.PID_BYTES else None


def _read_now(fd: int, size: int = 1 << 16) -> bytes:
    """What a non-blocking pipe holds now, up to ``size`` bytes (``b""``: nothing)."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return b""


def _read_all(fd: int) -> list[bytes]:
    """Everything a non-blocking pipe whose writers are all gone or idle holds (a short read empties it)."""
    chunks = []
    while data := _read_now(fd):
        chunks.append(data)
        if len(data) < 1 << 16:
            break
    return chunks


def _drain(fd: int) -> list[bytes]:
    """Everything a pipe holds now (its writers are gone or idle), without blocking."""
    chunks = []
    while wait_readable([fd], 0) and (data := _read_now(fd)):
        chunks.append(data)
    return chunks


def wait_readable(fds: list[int], timeout: float) -> list[int]:
    """``select`` that retries on EINTR."""
    while True:
        try:
            r, _, _ = select.select(fds, [], [], max(0.0, timeout))
            return r
        except InterruptedError:
            continue
