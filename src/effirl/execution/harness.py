"""The code that runs inside a forked child: load the program, call the entry point, stream plain results.

Nothing here decides a verdict. The child never receives expected outputs; it only reports what the program
returned (or raised) for each input, as frames on a private pipe. The parent compares.
A measured program is counted from its module body on: the child's set-up, and importing the installed modules
the program's import statements name, happen before the point where every meter starts its count
(:func:`_start_count`), so a count is the program's own work (see :mod:`effirl.meters.base`). Those imports
run uncounted only where no sandboxed program can have changed what they load: when the whole module search
path is read-only (:func:`read_only_search_path`: the worker's read-only filesystem view).
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

# Audit events an untrusted program may never raise. Native code is a way around every other rule (and to
# callgrind's client requests); a tracer or profiler runs inside the audit hooks and can rewrite their local
# variables; hand-made code objects are unchecked bytecode that can corrupt the interpreter; a sub-interpreter
# has none of this interpreter's hooks; symbolic links, hard links and a changing working folder would let a
# path mean one thing to the guard and another to the kernel.
_ALWAYS_DENIED_PREFIXES = ("ctypes.", "cffi.")
_ALWAYS_DENIED = frozenset({
    "sys.settrace", "sys.setprofile", "code.__new__", "cpython.PyInterpreterState_New",
    "os.symlink", "os.link", "os.chdir",
})
# Foreign-function and test modules (native calls, or memory corruption on demand): the fork server never
# loads them, and a child may not either.
_NATIVE_MODULES = frozenset({
    "ctypes", "_ctypes", "cffi", "_cffi_backend", "_ctypes_test", "_testcapi", "_testinternalcapi",
    "_testbuffer", "_testclinic", "_testimportmultiple", "_testmultiphase", "_testsinglephase",
    "_xxsubinterpreters", "_xxinterpchannels", "_xxtestfuzz",
})
_MEASURE_DENIED = frozenset({
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen",
})
# ``_posixsubprocess.fork_exec`` starts processes without any audit event (a forked process killed by the
# final sweep never writes its callgrind dump: its work would go uncounted). While measuring, the loaded
# function is replaced and loading the module again (``import``, ``_imp.create_dynamic``: both raise "import")
# is refused.
_MEASURE_DENIED_MODULES = frozenset({"_posixsubprocess"})
# Events that change the filesystem, with the positions of their path arguments and of their ``dir_fd``
# arguments (-1 in the event when not given).
_PATH_EVENTS = {
    "os.rename": ((0, 1), (2, 3)), "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)),
    "os.mkdir": ((0,), (2,)), "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)),
    "os.truncate": ((0,), ()), "os.chflags": ((0,), ()), "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
}
# Attributes that change what a function does; set on one of this module's hooks, they would switch it off.
_CODE_ATTRIBUTES = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DONE = wire.encode(wire.KIND_DONE)
_READY = wire.encode(wire.KIND_READY)
_ONLY_AST = 0x400  # ast.PyCF_ONLY_AST, without importing ``ast`` into every child
MAX_PREIMPORTS = 64  # modules a measured program's import statements name that are loaded before its count


def _make_resolver() -> typing.Callable[[Any], str | None]:
    """A function giving the absolute path the kernel reaches for a path (symbolic links followed, ``..``
    applied; relative paths from the working folder, which a program cannot change); ``None`` when unknowable.

    It runs inside the audit hook, so it uses only what it was given as default values: no global or built-in
    name a program could rebind, no closure cell a program could rewrite, only exact built-in types.
    """

    def resolve(path: Any, _type: Any = type, _bytes: Any = bytes, _lstat: Any = os.lstat,
                _readlink: Any = os.readlink, _getcwd: Any = os.getcwd,
                _errors: Any = (OSError, ValueError)) -> str | None:
        if _type(path) is _bytes:
            path = path.decode("utf-8", "surrogateescape")
        if not path.startswith("/"):
            path = _getcwd() + "/" + path
        todo = path.split("/")
        todo.reverse()
        parts: list[str] = []
        hops = 0
        while todo:
            name = todo.pop()
            if name == "" or name == ".":
                continue
            if name == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(name)
            here = "/" + "/".join(parts)
            try:
                mode = _lstat(here).st_mode
            except _errors:
                continue  # not there (yet): the rest is taken as written
            if mode & 0o170000 == 0o120000:  # a symbolic link (the /proc "magic" links included)
                hops += 1
                if hops > 40:
                    return None
                try:
                    target = _readlink(here)
                except _errors:
                    return None
                parts.pop()
                if target.startswith("/"):
                    del parts[:]
                more = target.split("/")
                more.reverse()
                todo.extend(more)
        return "/" + "/".join(parts)

    return resolve


def _make_guard(measuring: bool, protected: tuple[str, ...]) -> typing.Callable[[str, tuple[Any, ...]], None]:
    """The audit hook that refuses what the sandbox forbids (see :func:`install_guard`)."""
    resolve = _make_resolver()
    roots = []
    for p in protected:
        real = resolve(p) or p
        roots.append(real.rstrip("/") + "/")
    watched = frozenset(_ALWAYS_DENIED | _PATH_EVENTS.keys() | {"import", "open", "object.__setattr__"}
                        | (_MEASURE_DENIED if measuring else frozenset()))

    def guard(event: str, args: tuple[Any, ...], _type: Any = type, _str: Any = str, _bytes: Any = bytes,
              _int: Any = int, _deny: Any = PermissionError, _watched: Any = watched,
              _prefixes: Any = _ALWAYS_DENIED_PREFIXES, _always: Any = _ALWAYS_DENIED,
              _native: Any = _NATIVE_MODULES, _measure: Any = _MEASURE_DENIED if measuring else frozenset(),
              _measure_modules: Any = _MEASURE_DENIED_MODULES if measuring else frozenset(),
              _path_events: Any = tuple(_PATH_EVENTS.items()), _roots: Any = tuple(roots),
              _resolve: Any = resolve, _write_flags: Any = _WRITE_FLAGS, _code_attrs: Any = _CODE_ATTRIBUTES,
              _function: Any = type(resolve), _here: Any = resolve.__code__.co_filename,
              _len: Any = len) -> None:
        if event.startswith(_prefixes) or event in _always or event in _measure:
            raise _deny(f"effirl sandbox: {event} is not allowed")
        if event not in _watched:
            return
        if event == "import":
            name = args[0] if args else None
            if _type(name) is not _str:
                raise _deny("effirl sandbox: importing by a name that is not a plain string is not allowed")
            if name in _native:
                raise _deny(f"effirl sandbox: importing {name} is not allowed")
            if name in _measure_modules:
                raise _deny(f"effirl sandbox: importing {name} is not allowed while measuring")
            return
        if event == "object.__setattr__":
            target, attr = args[0], args[1]
            if _type(attr) is _str and attr in _code_attrs and _type(target) is _function \
                    and target.__code__.co_filename == _here:
                raise _deny(f"effirl sandbox: changing {attr} of the sandbox's own functions is not allowed")
            return
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            low_level = mode is None  # os.open: may open folders, and its dir_fd never reaches the event
            writing = (_type(mode) is _str and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)) \
                or (_type(flags) is _int and flags & _write_flags)
            if _type(path) is _int:
                return
            if _type(path) is not _str and _type(path) is not _bytes:
                if writing or low_level:
                    raise _deny("effirl sandbox: opening a path that is not a str or bytes is not allowed")
                return
            shown = path if _type(path) is _str else path.decode("utf-8", "surrogateescape")
            if low_level and not shown.startswith("/") and ".." in shown.split("/"):
                raise _deny(f"effirl sandbox: os.open of {shown} is not allowed")
            real = _resolve(path)
            if real is None:
                raise _deny(f"effirl sandbox: {shown} is not allowed")
            if real.startswith("/proc/") and (real.endswith("/mem") or writing):
                raise _deny(f"effirl sandbox: {shown} is not allowed")
            inside = real + "/"
            for root in _roots:
                above = low_level and root.startswith(real if real == "/" else inside)  # a folder over it
                if inside.startswith(root) or above:
                    what = "writing" if writing else "opening"
                    raise _deny(f"effirl sandbox: {what} {shown} is not allowed")
            return
        for name, (paths, dir_fds) in _path_events:
            if name != event:
                continue
            for i in dir_fds:
                if i < _len(args) and args[i] != -1:
                    raise _deny(f"effirl sandbox: {event} relative to a folder descriptor is not allowed")
            for i in paths:
                if i >= _len(args) or _type(args[i]) is _int:
                    continue
                if _type(args[i]) is not _str and _type(args[i]) is not _bytes:
                    raise _deny(f"effirl sandbox: {event} on a path not a str or bytes is not allowed")
                real = _resolve(args[i])
                shown = args[i] if _type(args[i]) is _str else args[i].decode("utf-8", "surrogateescape")
                if real is None:
                    raise _deny(f"effirl sandbox: {event} on {shown} is not allowed")
                inside = real + "/"
                for root in _roots:
                    if inside.startswith(root):
                        raise _deny(f"effirl sandbox: {event} on {shown} is not allowed")
            return

    return guard


def install_guard(measuring: bool, protected: tuple[str, ...]) -> None:
    """An audit hook (it cannot be removed from Python code) that refuses what the sandbox forbids.

    ``protected`` folders (the worker's own, holding callgrind's dumps) can be neither opened nor changed, nor
    can a folder above them be opened as a descriptor (``os.open(..., dir_fd=...)`` reaches what its event
    does not show). The hook is built so that the program it guards cannot switch it off: it reads no global
    or built-in name (everything it uses is a default value, in a tuple), holds no closure cell and no mutable
    value, looks only at exact built-in types, and refuses changes to its own code or defaults.
    """
    if measuring:
        _take_away_fork_exec()
    sys.addaudithook(_make_guard(measuring, protected))


def _take_away_fork_exec() -> None:
    def fork_exec(*args: Any, **kwargs: Any) -> typing.NoReturn:
        raise PermissionError("effirl sandbox: starting processes is not allowed while measuring")

    mod = sys.modules.get("_posixsubprocess")
    if mod is not None:
        mod.fork_exec = fork_exec  # type: ignore[attr-defined]
    sub = sys.modules.get("subprocess")
    if sub is not None and hasattr(sub, "_fork_exec"):
        sub._fork_exec = fork_exec  # type: ignore[attr-defined]


def _deny_count_trigger(event: str, args: tuple[Any, ...], _deny: Any = PermissionError) -> None:
    """Installed right after the harness has marked where a measured program's count starts: nothing the
    program runs may reach that mark again (under callgrind it would only split the count into more dumps, all
    summed, but each dump is a file the meter reads)."""
    if event == "os.lockf":
        raise _deny("effirl sandbox: os.lockf is not allowed while measuring")


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
    """Load ``job['code']`` and run its entry point on every input, streaming frames to the parent.

    A measured program (``mode == "measure"``) is counted from its module body on (see :func:`_start_count`):
    everything the harness does first — loading the checker, compiling the program, importing the installed
    modules its import statements name, converting the arguments — is done before the count starts.
    """
    mode = job["mode"]
    checker = _load_checker(job.get("checker"))
    if mode == "check":
        _run_checks(checker, job["inputs"])
        return
    measuring = mode == "measure"
    ns = namespace(job["entry_kind"])
    convert = checker.get("convert")
    inputs = job["inputs"]
    try:
        if measuring:
            tree = compile(job["code"], "<solution>", "exec", _ONLY_AST)
            program = compile(tree, "<solution>", "exec")
        else:
            program = compile(job["code"], "<solution>", "exec")
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt included: all are failures
        _error(-1, exc)
        return
    prepared: list[Any] = []
    if measuring:
        if read_only_search_path(sys.path, sys.pycache_prefix):
            preimport(imported_names(tree))
        for args in inputs:  # the task's own conversion of the arguments (trusted) is not the program's work
            try:
                prepared.append(list(convert(list(args))) if convert is not None else list(args))
            except BaseException as exc:  # noqa: BLE001
                prepared.append(_Failed(exc))
        _start_count(bool(job.get("wait_go")))
    try:
        exec(program, ns)
    except BaseException as exc:  # noqa: BLE001
        _error(-1, exc)
        return
    target = _entry(ns, job["entry_point"], job["entry_kind"])
    if target is None:
        kind = "method of class Solution" if job["entry_kind"] == "method" else "function"
        _write(wire.encode(wire.KIND_NO_ENTRY, 0, f"no {kind} named {job['entry_point']!r}"))
        return
    stop_on_error = job.get("stop_on_error", True)
    # The last value and the end of the stream leave in one write (no program code runs between them; a
    # measured program's threads do, so its end is written apart): one wake-up less of the parent per run.
    last = len(inputs) - 1 if not measuring else -1
    for i, args in enumerate(inputs):
        try:
            if measuring:
                call_args = prepared[i]
                if type(call_args) is _Failed:
                    raise call_args.exc
            else:
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
    if measuring:
        _join_threads(job.get("thread_join_s", 10.0))
    _write(_DONE)


class _Failed:
    """An argument list the task's conversion could not build (reported when its call comes)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def imported_names(tree: Any) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` of every absolute import statement in a program's syntax tree, in source order:
    ``import a.b`` gives ``("a.b", ())``, ``from a import b, c`` gives ``("a", ("b", "c"))``; relative imports
    are left out. Walks the tree with the compiler's own node types (no ``ast`` module in the child)."""
    found: dict[tuple[str, tuple[str, ...]], int] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        kind = type(node).__name__
        if kind == "Import":
            for alias in node.names:
                found.setdefault((alias.name, ()), node.lineno)
        elif kind == "ImportFrom" and not node.level and node.module:
            names = tuple(a.name for a in node.names if a.name != "*")
            found.setdefault((node.module, names), node.lineno)
        for field in node._fields:
            value = getattr(node, field, None)
            if type(value) is list:
                stack.extend(v for v in reversed(value) if hasattr(v, "_fields"))
            elif hasattr(value, "_fields"):
                stack.append(value)
    return sorted(found, key=found.__getitem__)


def read_only_search_path(paths: list[str], pycache_prefix: str | None = None) -> bool:
    """Whether nothing a sandboxed program did can have changed what an import loads: every folder of the
    module search path, every folder above it, and the bytecode cache prefix if any, lie on read-only mounts
    (a path that does not exist is judged by the nearest folder above it that does).

    With the worker's read-only filesystem view this holds; without it (isolation off or incomplete: no mount
    namespace) an earlier child may have written a module into a folder of the path, say ``site-packages``, or
    one that shadows a standard module, and :func:`preimport` would run its code before the count starts. Then
    nothing is pre-imported: the program's imports happen in its count, as its own work.
    """
    seen: set[str] = set()
    for entry in [*paths, *([pycache_prefix] if pycache_prefix else [])]:
        if type(entry) is not str:
            return False
        path = os.path.realpath(entry or os.getcwd())
        while path not in seen:
            seen.add(path)
            try:
                if not os.statvfs(path).f_flag & os.ST_RDONLY:
                    return False
            except FileNotFoundError:
                pass  # judged by the folder above it: nothing can be created where that one is read-only
            except OSError:
                return False
            if path == "/":
                break
            path = os.path.dirname(path)
    return True


def preimport(names: list[tuple[str, tuple[str, ...]]]) -> None:
    """Import, before a measured program's count starts, the installed modules its import statements name.

    Each is imported exactly as its statement would (``__import__(module, fromlist=names)``, which also loads
    the submodules a ``from`` statement names), under the sandbox's audit hook; one that cannot be imported
    (not installed, refused, failing) is skipped, and the program's own statement meets the same error,
    counted. The program then finds them in ``sys.modules``: its ``import statistics`` costs a dictionary
    look-up, not the ~12 M instructions of loading the module. No program code has run yet, and the module
    search path is read-only (the caller checks :func:`read_only_search_path`), so what these imports do is
    the installed modules' own work, the same for every program that names them.
    """
    for module, fromlist in names[:MAX_PREIMPORTS]:
        try:
            __import__(module, None, None, fromlist, 0)
        except BaseException:  # noqa: BLE001 - the program's own import reports it
            pass


def _start_count(wait_go: bool) -> None:
    """Where a measured program's count starts: right before its module body runs.

    * callgrind: the harness calls ``lockf`` (``os.lockf`` on the child's /dev/null stdin, a no-op), on which
      the meter dumps and zeroes its counters (``--dump-before=lockf*``); the meter drops that first dump (the
      child's set-up) and sums every later one. A second audit hook then refuses ``os.lockf``: no program
      code has run before the mark, and none can reach it again.
    * perf and cputime (``wait_go``): the child says READY and waits for the parent, which starts its counter
      (perf) or reads the child's CPU clock so far (cputime) before it lets the child go on.

    The collector is emptied and frozen first, so the program's collections happen at the same points and
    never walk the harness's or the imported modules' objects.
    """
    gc.collect()
    gc.freeze()
    try:
        os.lockf(0, os.F_TEST, 0)
    except OSError:
        pass
    sys.addaudithook(_deny_count_trigger)
    if wait_go:
        _write(_READY)
        os.read(GO_FD, 1)


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
        # The collector's allocation counters are inherited from the server and differ from fork to fork:
        # start every child from empty young generations (uncounted), so the program's collections happen at
        # the same points every time (callgrind counts of one program drifted by ~0.5% from child to child
        # without this).
        gc.collect()
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

