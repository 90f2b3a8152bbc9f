"""The fork server: one warmed interpreter per worker that forks a fresh child for every run.

Started by :mod:`effirl.execution.launcher` (which set up its namespaces and then ``exec``ed it, under valgrind
for the callgrind meter). It pre-imports the allowed modules (the hash seed is fixed by its environment),
starts the PID namespace's init, freezes the heap for cheap and reproducible forks, then serves ``run``
requests: seed ``random`` (when the seed changes), fork, wait for the child, sweep every process it left
behind, wipe its private folder, report the exit status and resource usage.

It never outlives its parent: the worker's *lifeline* pipe signals it (``SIGIO``, set up by the parent) when
the parent's end closes, whatever ended the parent; it then kills the child it runs, sweeps, and exits (with a
PID namespace, its init's exit kills whatever else is left there).

Every fork copies this process's page tables, and every page a child or the server writes afterwards is copied
once more: the server imports only ``os``, ``resource``, ``signal``, ``marshal`` and the child's harness, never
``ctypes``, and touches as little as it can between two forks. Its children write their results and output
to pipes the parent created once for the worker (a child's leftovers are drained by the parent after the
server reports the run over, when no process of that run is alive).
"""

from __future__ import annotations

import gc
import marshal
import os
import signal
import sys
from typing import Any, NamedTuple


def _import_random_without_its_fork_hook() -> None:
    """Import ``random`` without the hook by which it reseeds itself from urandom in every forked child.

    The hook costs every child ~40 copied pages (~0.15 ms here) for nothing: the server seeds ``random`` with
    the job's seed (``SandboxConfig.seed``) before it forks, and never draws from it, so every child starts from
    the state that seed gives. Only that one registration is dropped.
    """
    if "random" in sys.modules:
        return
    register = os.register_at_fork

    def without_reseed(**hooks: Any) -> None:
        child = hooks.get("after_in_child")
        if set(hooks) == {"after_in_child"} and getattr(child, "__name__", "") == "seed":
            return
        register(**hooks)

    os.register_at_fork = without_reseed  # type: ignore[assignment]
    try:
        import random  # noqa: F401
    finally:
        os.register_at_fork = register  # type: ignore[assignment]


_import_random_without_its_fork_hook()

import random  # noqa: E402 - imported above without its fork hook

from effirl.execution import channel, confine, harness, wire  # noqa: E402 - after random, on purpose

INPUT_CACHE = 16  # argument lists kept per worker, keyed by the parent (a task's tests are sent once)
_RUNNING: list[int] = [0, 0]  # (this server's pid, the pid of the child it waits for; 0: none)
BLOCKED_MODULES = ("ctypes", "_ctypes", "cffi", "_cffi_backend")
_LAST_FD = 1 << 16  # a child closes every descriptor below this but its own (the server's are compacted low)


def _install_fds(null: int, result_w: int, out_w: int, go_r: int) -> None:
    """Child side: stdin from ``null``, results on fd 3, the go signal on fd 4, stdout/stderr to the output
    pipe, nothing else."""
    spare = max(null, result_w, out_w, go_r, harness.GO_FD) + 1  # above every source and target: none clobbered
    parked = [spare + i for i in range(3)]
    for fd, park in zip((result_w, out_w, go_r), parked):
        if fd >= 0:
            os.dup2(fd, park)
    os.dup2(null, 0)
    os.dup2(parked[1], 1)
    os.dup2(parked[1], 2)
    os.dup2(parked[0], harness.RESULT_FD)
    if go_r >= 0:
        os.dup2(parked[2], harness.GO_FD)
    os.closerange(harness.GO_FD + 1 if go_r >= 0 else harness.RESULT_FD + 1, _LAST_FD)


def _decode_inputs(data: bytes) -> Any:
    """Inputs travel as marshal (``M``) or, for values marshal cannot carry, pickle (``P``)."""
    if data[:1] == b"P":
        import pickle

        return pickle.loads(data[1:])
    return marshal.loads(data[1:])


class Lane(NamedTuple):
    """The server's ends of one lane (see :class:`effirl.execution.worker.Worker`)."""

    rep: int  # replies: ``exited``
    pid: int  # each child's pid, as it is forked
    res: int  # the children's result frames
    out: int  # the children's stdout and stderr


class NamespaceInit:
    """The server's handle on :mod:`effirl.execution.nsinit`, PID 1 of the children's namespace."""

    def __init__(self, hide: list[str], mount_proc: bool) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._ack_r, ack_w = os.pipe()
        os.set_inheritable(cmd_r, True)
        os.set_inheritable(ack_w, True)
        argv = [sys.executable, "-S", "-m", "effirl.execution.nsinit", str(cmd_r), str(ack_w),
                "proc" if mount_proc else "keep", *hide]
        self.pid = os.posix_spawn(sys.executable, argv, os.environ)
        os.close(cmd_r)
        os.close(ack_w)
        problems = channel.recv(self._ack_r)
        if problems is None:
            raise RuntimeError("the namespace init exited during start-up")
        self.problems: list[str] = list(problems)
        self._children = self._open_children()

    def _open_children(self) -> int | None:
        """The init's list of children in /proc, open for reading (``None``: not to be found or not trusted)."""
        try:
            mine = os.readlink("/proc/self") == str(os.getpid())  # the host's /proc, or the namespace's?
        except OSError:
            mine = False
        pid = self.pid if mine else 1  # in the namespace's own /proc the init is 1 and this server invisible
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"effirl.execution.nsinit" not in fh.read():
                    return None
            fd = _compact(os.open(f"/proc/{pid}/task/{pid}/children", os.O_RDONLY))
        except OSError:
            return None
        return fd if os.pread(fd, 64, 0) == b"" else None

    def alone(self) -> bool:
        """Whether the init has no child at all, so no other process is left in the namespace.

        After the server has reaped its child, every process still alive in the namespace hangs below a child
        of the init: an orphan is reparented to the init (never to the server, outside the namespace), and the
        kernel reads the list under the task-list lock. An empty list is therefore proof, a list read wrong
        only costs a sweep.
        """
        if self._children is None:
            return False
        try:
            return os.pread(self._children, 64, 0) == b""
        except OSError:
            return False

    def sweep(self) -> None:
        """Kill every process left in the namespace and wait until it is done."""
        os.write(self._cmd_w, b"k")
        os.read(self._ack_r, 1)


def _orphaned(signum: int, frame: Any) -> None:
    """``SIGIO`` from the lifeline: the parent is gone. Kill the running child (and, without a PID namespace,
    what it left behind), then exit. A child inherits this handler but is never the lifeline's owner."""
    me, child = _RUNNING
    if os.getpid() != me:
        return
    if child:
        for kill in (os.killpg, os.kill):
            try:
                kill(child, 9)
            except OSError:
                pass
    if _SWEEP[0]:
        confine.sweep_orphans(me)
    os._exit(0)


_SWEEP = [False]  # no PID namespace: the handler sweeps the child's orphans itself


class Server:
    def __init__(self, fds: list[int], hello: dict[str, Any]) -> None:
        _RUNNING[0] = os.getpid()
        signal.signal(signal.SIGIO, _orphaned)
        # The lifeline is only kept open (this process is its owner); inherited descriptors get fixed numbers.
        life = [hello["lifeline"]] if hello.get("lifeline") is not None else []
        self.ctl, self.go_r, *ends = _renumber([*fds, *life])[:len(fds)]
        # One lane per run the parent may have in flight: replies, pids, results and output of its children.
        self.lanes = [Lane(*ends[i:i + 4]) for i in range(0, len(ends), 4)]
        self.rep = self.lanes[0].rep  # hello and pong
        for name in hello.get("preimports", ()):
            if name in BLOCKED_MODULES:
                continue
            try:
                __import__(name)
            except ImportError:
                pass
        encoded = os.environ.pop("EFFIRL_ISOLATION", "")
        self.report: dict[str, Any] = dict(marshal.loads(bytes.fromhex(encoded))) if encoded else {}
        self.report.setdefault("problems", [])
        if not encoded:
            self.report["problems"].append("started without the launcher")
        self.init: NamespaceInit | None = None
        if self.report.get("pid_namespace"):
            self.init = NamespaceInit(hide=hello.get("hide", []) if self.report.get("filesystem_view") else [],
                                      mount_proc=hello.get("meter") != "callgrind")
            self.report["problems"].extend(self.init.problems)
        _SWEEP[0] = self.init is None
        self.inputs: dict[str, bytes] = {}
        random.seed(0)
        self.seed = 0
        self.null = _compact(os.open(os.devnull, os.O_RDONLY))  # every child's stdin
        lim = hello["limits"]
        self.limits = dict(
            cpu_s=int(lim["cpu_s"] * hello.get("slowdown", 1.0)),
            memory_mb=None if hello.get("meter") == "callgrind" else lim["memory_mb"],
            file_size_mb=lim["file_size_mb"],
            open_files=lim["open_files"],
            processes=lim["processes"],
            uid=hello["uid"] if self.report.get("uid_drop") else None,
        )
        # With the filesystem view every child gets the same private /tmp: the server enters it once (working
        # folder, TMPDIR, owner), so that a child inherits all three, and resets the folder after every child.
        self.private_root = "/tmp" if self.report.get("filesystem_view") else None
        self.keep = frozenset(os.listdir(self.private_root)) if self.private_root else frozenset()
        self.shared_limits: confine.ChildLimits | None = None
        if self.private_root:
            os.chdir(self.private_root)
            os.environ["TMPDIR"] = self.private_root
            st = os.stat(self.private_root)
            self.root_mode, self.root_times = st.st_mode & 0o7777, (st.st_atime_ns, st.st_mtime_ns)
            if self.limits["uid"] is not None:
                os.chown(self.private_root, self.limits["uid"], self.limits["uid"])
            self.shared_limits = confine.ChildLimits(workdir=None, **self.limits)
        _warm()
        gc.collect()
        gc.freeze()

    def _inputs(self, msg: dict[str, Any]) -> bytes:
        """The encoded inputs of a run (kept as bytes: only the child decodes them)."""
        key = msg.get("inputs_key")
        if "inputs" in msg:
            if key is not None:
                if len(self.inputs) >= INPUT_CACHE:
                    self.inputs.pop(next(iter(self.inputs)))
                self.inputs[key] = msg["inputs"]
            return msg["inputs"]
        return self.inputs[key]

    def run(self, msg: dict[str, Any]) -> None:
        job_bytes, inputs_bytes = msg["job"], self._inputs(msg)
        go_r = self.go_r if msg.get("go") else -1
        lane = self.lanes[msg.get("lane", 0)]
        seed = msg.get("seed", 0)
        if seed != self.seed:  # never drawn from here: every child starts from the state this seed gives
            random.seed(seed)
            self.seed = seed
        workdir = self.private_root or _private_folder()
        limits = self.shared_limits or confine.ChildLimits(workdir=workdir, **self.limits)
        gc.collect()  # no cyclic garbage of this run survives (frozen, it would grow the heap run after run)
        gc.freeze()  # the child starts with empty young generations: its collections happen at the same points
        pid = os.fork()
        if pid == 0:  # the child
            try:
                _install_fds(self.null, lane.res, lane.out, go_r)
                job = marshal.loads(job_bytes)
                job["inputs"] = _decode_inputs(inputs_bytes)
            except BaseException:  # noqa: BLE001
                os._exit(4)
            harness.child_main(job, lambda: confine.prepare_child(limits))
        _RUNNING[1] = pid
        os.write(lane.pid, pid.to_bytes(channel.PID_BYTES, "little"))
        _, status, usage = os.wait4(pid, 0)
        _RUNNING[1] = 0
        if self.init is not None:
            if not self.init.alone():  # the round trip to the init only when something is left to kill
                self.init.sweep()
        else:
            confine.sweep_orphans(os.getpid())
        exited = {"op": "exited", "status": status, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "maxrss_kb": usage.ru_maxrss}
        if workdir == self.private_root:
            # No process of the run is left: report now, and reset the private /tmp while the parent judges the
            # run (the next request is read, and the next child forked, only once that is done).
            channel.send(lane.rep, exited)
            confine.wipe(workdir, self.keep)
            confine.reset_root(workdir, self.root_mode, self.root_times)
        else:  # a host folder: gone before the run is reported
            confine.wipe(workdir)
            os.rmdir(workdir)
            channel.send(lane.rep, exited)

    def serve(self) -> None:
        channel.send(self.rep, {"op": "hello", "pid": os.getpid(), "report": self.report})
        while True:
            msg = channel.recv(self.ctl)
            if msg is None or msg["op"] == "exit":
                return
            if msg["op"] == "run":
                self.run(msg)
            elif msg["op"] == "ping":
                channel.send(self.rep, {"op": "pong"})


def _renumber(fds: list[int]) -> list[int]:
    """Give the inherited descriptors the numbers 3, 4, ... in the order given, not inheritable.

    The parent's numbers depend on what else it has open (a Ray worker holds dozens), and every child of this
    server inherits its table: a count must not depend on who started the server (a child's ``closerange``
    walks the open descriptors, whose numbers it reads).
    """
    first = max([*fds, 2 + len(fds)]) + 1
    parked = []
    for i, fd in enumerate(fds):  # out of the way of every target number first
        os.dup2(fd, first + i, inheritable=False)
        os.close(fd)
        parked.append(first + i)
    out = []
    for i, fd in enumerate(parked):
        os.dup2(fd, 3 + i, inheritable=False)
        os.close(fd)
        out.append(3 + i)
    return out


def _compact(fd: int) -> int:
    """Move an inherited descriptor to the lowest free number, not inheritable (the namespace init, spawned
    later, must not hold it): the parent's numbers can be anything, a child closes below ``_LAST_FD``."""
    if fd < 0:
        return fd
    low = os.dup(fd)
    if low < fd:
        os.close(fd)
        return low
    os.close(low)
    os.set_inheritable(fd, False)
    return fd


def _private_folder() -> str:
    """Without the filesystem view: a fresh folder per child under the host's temporary folder."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _ in range(100):
        path = os.path.join(base, f"effirl-child-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(f"cannot create a private folder under {base}")


def _warm() -> None:
    """Do once here what every child would otherwise do first: the compiler builds its AST types on first use
    (about 3 ms and 180 copied pages per child), and the harness's encoder is specialised by the interpreter."""
    exec(compile("def _warm(x):\n    return [x, (x,), {x: x}]\n", "<warm>", "exec"), {})
    for value in (1, 1.5, "s", [1, (2, "3")], {"a": {1, 2}}, None, True):
        wire.encode(wire.KIND_VALUE, 0, wire.to_plain(value))


def main() -> None:
    fds = [int(x) for x in sys.argv[1:]]
    hello = channel.recv(fds[0])
    if hello is None:
        return
    Server(fds, hello).serve()


if __name__ == "__main__":
    main()
