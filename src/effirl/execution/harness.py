"""The code that runs inside a forked child: load the program, call the entry point, stream plain results.

Nothing here decides a verdict. The child never receives expected outputs; it only reports what the program
returned (or raised) for each input, as frames on a private pipe. The parent compares.
Everything this module needs is imported at the top: after the worker pivots into its minimal filesystem
view, the project's own sources are no longer reachable. The fork server imports this module, so it imports
only what the server holds anyway.
"""

from __future__ import annotations

import builtins
import collections
import gc
import os
import sys
import typing
from typing import Any

from effirl.execution import wire

RESULT_FD = 3
GO_FD = 4

# Events an untrusted program may never raise: native code (a way around every other rule and to callgrind's
# client requests), and, while measured, starting other programs (they would run uncounted).
_ALWAYS_DENIED = ("ctypes.", "cffi.")
# Foreign-function modules: the fork server never loads them, and a child may not either.
_NATIVE_MODULES = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend"})
_MEASURE_DENIED = frozenset({
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen",
})
# ``_posixsubprocess.fork_exec`` starts processes without any audit event (a forked process killed by the final
# sweep never writes its callgrind dump: its work would go uncounted). While measuring, the loaded function is
# replaced and loading the module again (``import``, ``_imp.create_dynamic``: both raise "import") is refused.
_MEASURE_DENIED_MODULES = frozenset({"_posixsubprocess"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DONE = wire.encode(wire.KIND_DONE)


def install_guard(measuring: bool, protected: tuple[str, ...]) -> None:
    """An audit hook (it cannot be removed from Python code) that refuses what the sandbox forbids."""
    denied_exact = _MEASURE_DENIED if measuring else frozenset()
    if measuring:
        _take_away_fork_exec()

    def guard(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(_ALWAYS_DENIED) or event in denied_exact:
            raise PermissionError(f"effirl sandbox: {event} is not allowed")
        if event == "import" and args and args[0] in _NATIVE_MODULES:
            raise PermissionError(f"effirl sandbox: importing {args[0]} is not allowed")
        if measuring and event == "import" and args and args[0] in _MEASURE_DENIED_MODULES:
            raise PermissionError(f"effirl sandbox: importing {args[0]} is not allowed while measuring")
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            mode, flags = args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if path.startswith("/proc/") and (path.endswith("/mem") or writing):
                raise PermissionError(f"effirl sandbox: {path} is not allowed")
            if writing and any(path.startswith(p) for p in protected):
                raise PermissionError(f"effirl sandbox: writing {path} is not allowed")
        elif event in ("os.rename", "os.link", "os.symlink", "os.remove", "os.rmdir", "os.truncate"):
            for a in args:
                if isinstance(a, (str, bytes)) and any(os.fsdecode(a).startswith(p) for p in protected):
                    raise PermissionError(f"effirl sandbox: {event} on {os.fsdecode(a)} is not allowed")

    sys.addaudithook(guard)


def _take_away_fork_exec() -> None:
    def fork_exec(*args: Any, **kwargs: Any) -> typing.NoReturn:
        raise PermissionError("effirl sandbox: starting processes is not allowed while measuring")

    mod = sys.modules.get("_posixsubprocess")
    if mod is not None:
        mod.fork_exec = fork_exec  # type: ignore[attr-defined]
    sub = sys.modules.get("subprocess")
    if sub is not None and hasattr(sub, "_fork_exec"):
        sub._fork_exec = fork_exec  # type: ignore[attr-defined]


class ListNode:
    """LeetCode's singly linked list node, available to ``class Solution`` programs."""

    def __init__(self, val: Any = 0, next: ListNode | None = None):  # noqa: A002 - LeetCode's name
        self.val = val
        self.next = next


class TreeNode:
    """LeetCode's binary tree node, available to ``class Solution`` programs."""

    def __init__(self, val: Any = 0, left: TreeNode | None = None, right: TreeNode | None = None):
        self.val = val
        self.left = left
        self.right = right


def namespace(entry_kind: str) -> dict[str, Any]:
    """A fresh global namespace for the program; LeetCode-style programs get the names LeetCode gives them."""
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    if entry_kind == "method":
        for name in ("List", "Optional", "Dict", "Set", "Tuple", "Deque", "DefaultDict", "Counter", "Any"):
            ns[name] = getattr(typing, name)
        ns.update(
            collections=collections, deque=collections.deque, defaultdict=collections.defaultdict,
            ListNode=ListNode, TreeNode=TreeNode,
        )
        for mod in ("math", "heapq", "bisect", "itertools", "functools", "string", "re", "random"):
            ns[mod] = sys.modules.get(mod) or __import__(mod)
        ns["inf"] = float("inf")
    return ns


def _write(frame: bytes) -> None:
    view = memoryview(frame)
    while view:
        n = os.write(RESULT_FD, view)
        view = view[n:]


def _error(index: int, exc: BaseException) -> None:
    message = str(exc)
    if len(message) > 2000:
        message = message[:2000] + "..."
    _write(wire.encode(wire.KIND_ERROR, index, (type(exc).__name__, message)))


def _entry(ns: dict[str, Any], entry_point: str, entry_kind: str) -> Any:
    if entry_kind == "method":
        cls = ns.get("Solution")
        if not isinstance(cls, type) or not callable(getattr(cls, entry_point, None)):
            return None
        return cls
    fn = ns.get(entry_point)
    return fn if callable(fn) else None


def _load_checker(source: str | None) -> dict[str, Any]:
    if not source:
        return {}
    ns: dict[str, Any] = {"__name__": "effirl_checker", "__builtins__": builtins}
    exec(compile(source, "<checker>", "exec"), ns)  # trusted code from the task definition
    return ns


def run_program(job: dict[str, Any]) -> None:
    """Load ``job['code']`` and run its entry point on every input, streaming frames to the parent."""
    mode = job["mode"]
    checker = _load_checker(job.get("checker"))
    if mode == "check":
        _run_checks(checker, job["inputs"])
        return
    ns = namespace(job["entry_kind"])
    try:
        exec(compile(job["code"], "<solution>", "exec"), ns)
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt included: all are failures
        _error(-1, exc)
        return
    target = _entry(ns, job["entry_point"], job["entry_kind"])
    if target is None:
        kind = "method of class Solution" if job["entry_kind"] == "method" else "function"
        _write(wire.encode(wire.KIND_NO_ENTRY, 0, f"no {kind} named {job['entry_point']!r}"))
        return
    convert = checker.get("convert")
    stop_on_error = job.get("stop_on_error", True)
    inputs = job["inputs"]
    # The last value and the end of the stream leave in one write (no program code runs between them; a measured
    # program's threads do, so its end is written apart): one wake-up less of the parent per run.
    last = len(inputs) - 1 if mode != "measure" else -1
    for i, args in enumerate(inputs):
        try:
            call_args = list(args)
            if convert is not None:
                call_args = list(convert(call_args))
            fn = getattr(target(), job["entry_point"]) if job["entry_kind"] == "method" else target
            value = fn(*call_args)
            body = wire.encode(wire.KIND_VALUE, i, wire.to_plain(value))
        except BaseException as exc:  # noqa: BLE001
            _error(i, exc)
            if stop_on_error:
                return
            continue
        if i == last:
            _write(body + _DONE)
            return
        _write(body)
    if mode == "measure":
        _join_threads(job.get("thread_join_s", 10.0))
    _write(_DONE)


def _run_checks(checker: dict[str, Any], items: list[Any]) -> None:
    check = checker["check"]
    for i, (args, output, expected) in enumerate(items):
        try:
            ok = bool(check(list(args), output, expected))
        except BaseException as exc:  # noqa: BLE001
            _error(i, exc)
            continue
        _write(wire.encode(wire.KIND_VALUE, i, ok))
    _write(wire.encode(wire.KIND_DONE))


def _join_threads(timeout_s: float) -> None:
    """Threads the program started are part of its work: wait for the non-daemon ones, as Python's exit does.

    ``threading`` is not imported by the fork server (its fork handler alone costs every child ~120 copied
    pages): a program that never imported it started no thread to wait for.
    """
    threading = sys.modules.get("threading")
    if threading is None:
        return
    me = threading.current_thread()
    for t in threading.enumerate():
        if t is not me and not t.daemon:
            t.join(timeout_s)


def child_main(job: dict[str, Any], prepare: typing.Callable[[], None]) -> typing.NoReturn:
    """Entry of a forked child; ``prepare`` applies isolation and limits. Never returns."""
    code = 0
    try:
        prepare()
        # The collector's allocation counters are inherited from the server and differ from fork to fork: start
        # every child from empty young generations (uncounted), so the program's collections happen at the same
        # points every time (callgrind counts of one program drifted by ~0.5% from child to child without this).
        gc.collect()
        if job["mode"] == "measure" and job.get("wait_go"):
            os.read(GO_FD, 1)  # the parent attached its counter
        install_guard(job["mode"] == "measure", tuple(job.get("protected", ())))
        run_program(job)
    except BaseException as exc:  # noqa: BLE001 - report, never propagate into the server's code
        try:
            os.write(2, f"effirl harness failure: {type(exc).__name__}: {exc}\n".encode())
            _error(-2, exc)
        except BaseException:  # noqa: BLE001
            code = 3
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(code)

