"""What a measured program's count covers: its module body and its call, not the imports it names nor the
harness.

``import statistics`` alone costs ~12 M instructions and ``doctest`` ~68 M, against 0.35-2.7 M for whole
solutions: a reward that charged them would teach a model to avoid the standard library. The harness imports
the installed modules a program's import statements name before the count starts (callgrind: a dump point the
parent drops; cputime and perf: the child's READY), and the count must still hold everything the program does
itself. Then the audit hook that keeps that boundary: a program cannot rebind, redefine or trace its way past
it.
"""

from __future__ import annotations

import dis
import statistics
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from effirl.execution import harness, judge
from effirl.execution.config import SandboxConfig
from effirl.execution.verdict import Status
from effirl.execution.worker import Worker
from effirl.meters import callgrind, perf
from effirl.meters.callgrind import CallgrindMeter
from effirl.meters.cputime import CpuTimeMeter

CALLGRIND_OK, CALLGRIND_WHY = callgrind.probe()
needs_callgrind = pytest.mark.skipif(not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}")
EMPTY = "def f(n):\n    return n\n"
WORK = "def work(n):\n    s = 0\n    for i in range(n):\n        s += i * i % 7\n    return s\n"


class SplitMeter(CallgrindMeter):
    """Callgrind, also keeping each run's (set-up, program) split for the test to read."""

    last: tuple[int, int] | None = None

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        self.last = self.read_counts(workdir, exited)
        return None if self.last is None else float(self.last[1])


@pytest.fixture(scope="module")
def cg() -> Iterator[Worker]:
    if not CALLGRIND_OK:
        pytest.skip(f"callgrind unavailable: {CALLGRIND_WHY}")
    w = Worker(15, SandboxConfig(total_timeout_s=120.0), SplitMeter())
    w.start(timeout=300.0)
    yield w
    w.close()
    w.remove_workdir()


@pytest.fixture(scope="module")
def cpu() -> Iterator[Worker]:
    w = Worker(16, SandboxConfig(), CpuTimeMeter())
    w.start()
    yield w
    w.close()
    w.remove_workdir()


def measure(worker: Worker, code: str, args: list[Any] | None = None) -> judge.MeasureResult:
    return judge.measure_once(worker, textwrap.dedent(code), "f", "function", args or [3], timeout_s=120.0)


def count(worker: Worker, code: str, args: list[Any] | None = None) -> float:
    r = measure(worker, code, args)
    assert r.verdict.passed, r.verdict
    assert r.value is not None
    return r.value


# -- callgrind
# -----------------------------------------------------------------------------------------------------


NAMED = {
    "import statistics": "import statistics\n" + EMPTY,
    "from statistics import median": "from statistics import median\n" + EMPTY,
    "import doctest, unittest": "import doctest, unittest\n" + EMPTY,
    "import xml.etree.ElementTree as ET": "import xml.etree.ElementTree as ET\n" + EMPTY,
    "import inside the function": "def f(n):\n    import fractions\n    return n\n",
    "from __future__ import annotations": "from __future__ import annotations\n" + EMPTY,
}


@needs_callgrind
def test_installed_modules_a_program_names_are_not_counted(cg: Worker) -> None:
    empty = count(cg, EMPTY)
    meter = cg.meter
    assert isinstance(meter, SplitMeter) and meter.last is not None
    setup_empty = meter.last[0]
    print(f"\nalmost empty program: {empty:,.0f} instructions (its set-up, not counted: {setup_empty:,.0f})")
    assert empty < 150_000  # the call, its frame and the result: the harness's set-up is not in it
    for name, code in NAMED.items():
        got = count(cg, code)
        assert meter.last is not None
        setup = meter.last[0]
        print(f"{name:38s} {got:>12,.0f}  (set-up, not counted: {setup:,.0f})")
        assert got < 1.25 * empty, name
        if name != "from __future__ import annotations":
            assert setup > setup_empty + 1_000_000, name  # the import happened, before the count
    dynamic = count(cg, "def f(n):\n    return len(__import__('stat' + 'istics').__name__)\n")
    print(f"{'__import__ by a computed name':38s} {dynamic:>12,.0f}  (not named: imported in the count)")
    assert dynamic > 100 * (count(cg, NAMED["import statistics"]) - empty) and dynamic > 2_000_000


@needs_callgrind
def test_the_programs_own_work_is_all_counted(cg: Worker) -> None:
    n = 100_000
    in_call = count(cg, WORK + "def f(n):\n    return work(n)\n", [n])
    at_import = count(cg, WORK + f"TABLE = work({n})\n\ndef f(n):\n    return TABLE\n", [n])
    with_imports = count(cg, "import statistics, fractions\n" + WORK + "def f(n):\n    return work(n)\n", [n])
    hook = count(cg, WORK + """
import builtins
_real = builtins.__import__

def _hooked(name, *args, **kwargs):
    _hooked.done = work(100000)
    return _real(name, *args, **kwargs)

builtins.__import__ = _hooked

def f(n):
    import heapq
    return _hooked.done
""", [n])
    print(f"\nwork in the call {in_call:,.0f}, at import {at_import:,.0f}, with named imports "
          f"{with_imports:,.0f}, inside an __import__ hook {hook:,.0f}")
    for other in (at_import, with_imports, hook):
        assert abs(other - in_call) / in_call < 0.05


@needs_callgrind
def test_a_lock_call_that_is_not_the_mark_splits_nothing(cg: Worker) -> None:
    """``fcntl.lockf`` (fcntl, not libc's lockf) is allowed and counted as any call; ``os.lockf``, the only
    way
    to libc's lockf, is refused once the count has started."""
    n = 100_000
    plain = count(cg, WORK + "def f(n):\n    return work(n)\n", [n])
    locked = count(cg, "import fcntl\n" + WORK + """
def f(n):
    with open("/tmp/lock", "w") as fh:
        fcntl.lockf(fh, fcntl.LOCK_EX)
        out = work(n)
        fcntl.lockf(fh, fcntl.LOCK_UN)
    return out
""", [n])
    assert abs(locked - plain) / plain < 0.05
    r = measure(cg, "import os\n" + WORK + "def f(n):\n    os.lockf(0, os.F_TEST, 0)\n    return work(n)\n",
                [n])
    assert (r.verdict.status, r.verdict.error_type) == (Status.RUNTIME_ERROR, "PermissionError")
    assert r.verdict.error_message == "effirl sandbox: os.lockf is not allowed while measuring"


# -- cputime
# -------------------------------------------------------------------------------------------------------


def _cpu(worker: Worker, code: str) -> float:
    return statistics.median(count(worker, code) for _ in range(5))


def test_cputime_counts_the_program_not_its_imports(cpu: Worker) -> None:
    empty = _cpu(cpu, EMPTY)
    named = _cpu(cpu, "import statistics, doctest\n" + EMPTY)
    dynamic = _cpu(cpu, "def f(n):\n    return len(__import__('doc' + 'test').__name__)\n")
    print(f"\ncputime: empty {1e3 * empty:.2f} ms, naming statistics and doctest {1e3 * named:.2f} ms, "
          f"importing doctest by a computed name {1e3 * dynamic:.2f} ms")
    assert named < empty + 0.002
    assert dynamic > named + 0.003


PLANTED = "TOTAL = 0\nfor _i in range(3_000_000):\n    TOTAL += _i\n"


def test_without_a_read_only_view_named_modules_are_imported_in_the_count(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the worker's read-only filesystem view (isolation off), a folder of the module search path may
    be writable: a program checked earlier could have planted a module there for a later measured one to
    name. Then nothing is pre-imported; a named module's import (the planted module's work) is in the count.
    With the view, the same installed modules are pre-imported as before (the tests above)."""
    from effirl.execution import worker as worker_module

    assert harness.read_only_search_path([str(tmp_path)]) is False
    assert harness.read_only_search_path([]) is True
    (tmp_path / "effirl_planted_work.py").write_text(PLANTED)
    base = worker_module.server_path()
    monkeypatch.setattr(worker_module, "server_path", lambda: (*base, str(tmp_path)))
    w = Worker(18, SandboxConfig(isolation="none"), CpuTimeMeter())
    try:
        w.start()
        assert w.report is not None and not w.report.filesystem_view
        empty = _cpu(w, EMPTY)
        planted = _cpu(w, "import effirl_planted_work\n" + EMPTY)
        named = _cpu(w, "import statistics, doctest\n" + EMPTY)
    finally:
        w.close()
        w.remove_workdir()
    print(f"\nno view: empty {1e3 * empty:.2f} ms, naming the planted module {1e3 * planted:.2f} ms, "
          f"naming statistics and doctest {1e3 * named:.2f} ms")
    assert planted > empty + 0.03  # its 3 M additions ran in the count
    assert named > empty + 0.003  # nothing is pre-imported without the view


def test_a_program_cannot_say_ready_again(cpu: Worker) -> None:
    r = measure(cpu, "import os, struct\n\ndef f(n):\n    os.write(3, struct.pack('<Ici', 0, b'R', 0))\n"
                     "    return n\n")
    assert not r.verdict.passed and r.value is None
    assert (r.verdict.status, r.verdict.error_type) == (Status.RUNTIME_ERROR, "ProtocolError"), r.verdict
    assert "READY" in (r.verdict.error_message or "")


# -- perf (no counter here: its decisions, with a fake perf_event_open)
# --------------------------------------------


def test_perf_opens_its_counter_disabled_and_starts_it_at_ready(tmp_path: Any) -> None:
    import os

    calls: list[Any] = []
    fd = os.open(os.devnull, os.O_RDONLY)

    def fake(attr: bytes, pid: int, cpu: int, group: int, flags: int) -> int:
        calls.append(pid)
        return fd

    meter = perf.PerfMeter(syscall=fake)
    handle = meter.attach(4242)  # no ioctl yet: /dev/null would refuse one
    assert handle == fd and calls == [4242]
    with pytest.raises(OSError):  # the reset and enable ioctls happen at start (a real counter takes them)
        meter.start(handle)
    os.close(fd)
    assert meter.needs_go and CpuTimeMeter.needs_go and not CallgrindMeter.needs_go


# -- the import list
# -------------------------------------------------------------------------------------------------


def test_the_harness_lists_the_absolute_imports_in_source_order() -> None:
    code = """
import os, xml.etree.ElementTree as ET
from collections import deque, Counter
from . import sibling
from .pkg import thing
from math import *

def f():
    import heapq
    if False:
        from itertools import chain
    return 1

class C:
    import bisect
"""
    tree = compile(code, "<t>", "exec", harness._ONLY_AST)
    assert harness.imported_names(tree) == [
        ("os", ()), ("xml.etree.ElementTree", ()), ("collections", ("deque", "Counter")), ("math", ()),
        ("heapq", ()), ("itertools", ("chain",)), ("bisect", ())]


# -- the audit hook cannot be switched off
# -------------------------------------------------------------------------


def test_the_hooks_read_no_global_name_and_hold_no_cell() -> None:
    """Everything the hooks use is a default value in a tuple: nothing a program could rebind (a module
    global,
    a built-in, a closure cell, a keyword-default dict) reaches them."""
    guard = harness._make_guard(True, ("/var/tmp/effirl-w0-x",))
    for fn in (guard, guard.__defaults__[guard.__code__.co_varnames.index("_resolve") - 2],
               harness._deny_count_trigger):
        assert fn.__closure__ is None and fn.__kwdefaults__ is None, fn
        ops = {i.opname for i in dis.get_instructions(fn)}
        names = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF", "STORE_GLOBAL"}
        assert not ops & names, (fn, ops)
        for value in fn.__defaults__ or ():
            assert isinstance(value, (str, int, bool, tuple, frozenset, type, type(len), type(fn))), value


TAMPERING = {
    "rebinding the harness's globals and the built-ins": """
        import sys, builtins
        def f(x):
            h = sys.modules["effirl.execution.harness"]
            h._ALWAYS_DENIED, h._ALWAYS_DENIED_PREFIXES, h._NATIVE_MODULES = frozenset(), ("zz",), frozenset()
            builtins.type, builtins.PermissionError = (lambda o: str), KeyError
            import ctypes
            return 1
    """,
    "the guard's defaults": """
        import gc
        def f(x):
            for o in gc.get_objects():
                if type(o).__name__ == "function" and o.__name__ == "guard":
                    o.__defaults__ = tuple(None for _ in o.__defaults__)
            import ctypes
            return 1
    """,
    "the guard's code": """
        import gc
        def f(x):
            for o in gc.get_objects():
                if type(o).__name__ == "function" and o.__name__ == "guard":
                    o.__code__ = (lambda event, args, *rest: None).__code__
            import ctypes
            return 1
    """,
    "a tracer": "import sys\ndef f(x):\n    sys.settrace(lambda *a: None)\n    return 1\n",
    "a profiler": "import sys\ndef f(x):\n    sys.setprofile(lambda *a: None)\n    return 1\n",
    "importing by a str subclass": """
        class S(str):
            def __eq__(self, other): return False
            def __hash__(self): return 0
        def f(x):
            __import__(S("ctypes"))
            return 1
    """,
    "hand-made bytecode": "def f(x):\n    f.__code__.replace(co_code=f.__code__.co_code)\n    return 1\n",
    "a sub-interpreter": "def f(x):\n    import _xxsubinterpreters\n    return 1\n",
    "the test C API": "def f(x):\n    import _testcapi\n    return 1\n",
    "a symbolic link": "import os\ndef f(x):\n    os.symlink('/', '/tmp/root')\n    return 1\n",
    "a hard link": "import os\ndef f(x):\n    open('/tmp/a', 'w').close()\n    os.link('/tmp/a', '/tmp/b')\n"
                   "    return 1\n",
    "changing folder": "import os\ndef f(x):\n    os.chdir('/')\n    return 1\n",
    "a folder descriptor above the worker's": "import os\ndef f(x):\n    os.open('/', os.O_RDONLY)\n"
                                              "    return 1\n",
    "climbing from a descriptor": """
        import os
        def f(x):
            fd = os.open("/usr", os.O_RDONLY)
            os.open("../tmp/x", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
            return 1
    """,
    "removing through a descriptor": """
        import os
        def f(x):
            open("/tmp/a", "w").close()
            fd = os.open("/tmp", os.O_RDONLY)
            os.remove("a", dir_fd=fd)
            return 1
    """,
}


@pytest.mark.parametrize("name", sorted(TAMPERING))
def test_the_guard_cannot_be_switched_off(worker: Worker, name: str) -> None:
    v = judge.run_tests(worker, textwrap.dedent(TAMPERING[name]), "f", "function", [[1]], [1])
    assert v.status is not Status.PASS, (name, v)
    blocked = f"{v.error_message} {v.got}"
    assert "effirl sandbox:" in blocked, (name, v)
    assert judge.run_tests(worker, "def f(x):\n    return x\n", "f", "function", [[1]], [1]).passed


def test_the_workers_folder_cannot_be_opened_or_changed(worker: Worker) -> None:
    folder = worker._workdir
    climbing = "/tmp/../" + folder.lstrip("/") + "/x"
    for stmt in (f"open({folder + '/meter/cg.1'!r}, 'w')", f"os.open({folder!r}, os.O_RDONLY)",
                 f"open({climbing!r}, 'w')", f"os.mkdir({folder + '/meter/d'!r})",
                 f"os.rename('/tmp/a', {folder + '/meter/cg.2'!r})",
                 f"os.remove({folder + '/server.log'!r})"):
        code = f"import os\ndef f(x):\n    open('/tmp/a', 'w').close()\n    {stmt}\n    return 1\n"
        v = judge.run_tests(worker, code, "f", "function", [[1]], [1])
        assert v.error_type == "PermissionError" and "effirl sandbox:" in (v.error_message or ""), (stmt, v)


def test_ordinary_file_work_in_tmp_still_works(worker: Worker) -> None:
    code = """
        import os, tempfile, pathlib
        def f(x):
            fd, p = tempfile.mkstemp()
            os.write(fd, b"1")
            os.close(fd)
            os.rename(p, p + ".2")
            pathlib.Path("/tmp/q").write_text("hi")
            os.mkdir("/tmp/d")
            os.rmdir("/tmp/d")
            os.chmod("/tmp/q", 0o600)
            os.remove(p + ".2")
            return len(pathlib.Path("/tmp/q").read_text()) + x
    """
    v = judge.run_tests(worker, textwrap.dedent(code), "f", "function", [[1]], [3])
    assert v.passed, v
