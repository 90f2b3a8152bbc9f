"""Meters: exact, repeatable counts that nothing a program does can carry over, reset or hide.

Callgrind tests run programs under valgrind (a metered worker takes ~20 s to start; the module shares two) and
are skipped, with the reason, where valgrind or the client-request sequence is missing. The perf meter's
decision logic (probe, selection, the counter's attributes, errors) runs everywhere with a fake syscall; the
real hardware-counter test is skipped where no counter opens here (most VMs and containers).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import statistics
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from effirl.errors import EffirlError
from effirl.execution import judge
from effirl.execution.config import SandboxConfig
from effirl.execution.pool import Pool
from effirl.execution.verdict import Status
from effirl.execution.worker import Worker
from effirl.inputs.perf import generate_input
from effirl.meters import callgrind, perf
from effirl.meters.base import Measurement, MeterMismatchError, check_same_meter, environment_fingerprint
from effirl.meters.callgrind import CallgrindMeter
from effirl.meters.cputime import CpuTimeMeter
from effirl.meters.perf import PerfMeter
from effirl.meters.select import CPUTIME_WARNING, select_meter
from effirl.tasks import Task, load

CALLGRIND_OK, CALLGRIND_WHY = callgrind.probe()
PERF_OK, PERF_WHY = perf.probe()
needs_callgrind = pytest.mark.skipif(not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}")

TASKS = load("builtin")
SEED = 0
# The slow references run ~1e9 instructions at the default scales: ~25 s each under callgrind. A quarter of
# the default scale keeps every task's slow reference 5-140x above its fast one at ~1-3 s (the whole suite in
# ~1.5 minutes on two workers).
TASK_SCALE_DIVISOR = 4
MEASURE_TIMEOUT_S = 300.0
NATIVE_INDEX = 7  # children of worker k run as uid base_uid + k: keep clear of the pools' 0 and 1


def cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.mean(values)


def measure(worker: Worker, code: str, args: list[Any], entry: str = "f") -> judge.MeasureResult:
    return judge.measure_once(worker, code, entry, "function", args, timeout_s=MEASURE_TIMEOUT_S)


def count(worker: Worker, code: str, args: list[Any], entry: str = "f") -> float:
    r = measure(worker, code, args, entry)
    assert r.verdict.passed, r.verdict
    assert r.value is not None and r.value > 0
    return r.value


def _server_env(meter: Any) -> dict[str, str]:
    """The environment a worker with ``meter`` gives its fork server (and valgrind, where it wraps the
    server)."""
    w = Worker(0, SandboxConfig(), meter)
    try:
        return w._env()
    finally:
        w.remove_workdir()


# -- fixtures
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def native() -> Iterator[Worker]:
    """An unmetered worker: generators run here."""
    w = Worker(NATIVE_INDEX, SandboxConfig(total_timeout_s=120.0))
    w.start()
    yield w
    w.close()
    w.remove_workdir()


@pytest.fixture(scope="module")
def cg_pool() -> Iterator[Pool]:
    if not CALLGRIND_OK:
        pytest.skip(f"callgrind unavailable: {CALLGRIND_WHY}")
    with Pool(SandboxConfig(workers=2), meter=CallgrindMeter()) as p:
        yield p


@pytest.fixture(scope="module")
def cg(cg_pool: Pool) -> Worker:
    """The first worker of the callgrind pool, started: sequential measurements in fresh children of one
    server."""
    w = cg_pool.workers[0]
    if not w.alive:
        w.start()
    return w


def task(name: str) -> Task:
    return next(t for t in TASKS if t.id == f"builtin/{name}")


# -- callgrind: exact repeats
# ------------------------------------------------------------------------------------


def _churn(native: Worker) -> tuple[str, list[Any], str]:
    return WORK + "def f(n):\n    return work(n)\n", [60_000], "f"


def _count_inversions(native: Worker) -> tuple[str, list[Any], str]:
    t = task("count_inversions")
    return t.references[0].code, generate_input(native, t, 300, SEED), t.entry_point


@needs_callgrind
@pytest.mark.parametrize("sample", [
    pytest.param(_count_inversions, id="count_inversions-slow"),
    pytest.param(_churn, id="int-churn-loop"),
])
def test_callgrind_repeats_within_a_hundredth_of_a_percent(cg: Worker, native: Worker,
                                                           sample: Callable[[Worker], Any]) -> None:
    """As in a real run, other programs are measured in between (the server's state moves on between
    repeats)."""
    code, args, entry = sample(native)
    t = task("lis_length")
    others = [(t.references[-1].code, generate_input(native, t, 200, SEED), t.entry_point),
              ("def f(*args):\n    return len(args)\n", [1, 2, 3], "f")]
    values = []
    for _ in range(10):
        values.append(count(cg, code, args, entry))
        for other in others:
            count(cg, *other)
    c = cv(values)
    print(f"\ncallgrind, 10 fresh children of one server: mean {statistics.mean(values):,.0f} instructions, "
          f"range {max(values) - min(values):,.0f}, CV {c:.2e} ({100 * c:.5f}%)")
    assert c <= 1e-4, values


# -- callgrind: slow references count more than fast ones, on every builtin task
# ---------------------------------


@needs_callgrind
def test_slow_reference_counts_more_than_fast_on_every_builtin_task(cg_pool: Pool, native: Worker) -> None:
    assert len(TASKS) >= 40
    inputs = {t.id: generate_input(native, t, max(1, t.default_scale // TASK_SCALE_DIVISOR), SEED)
              for t in TASKS}
    items = [(t, which) for t in TASKS for which in (0, -1)]

    def work(worker: Worker, item: tuple[Task, int]) -> judge.MeasureResult:
        t, which = item
        return measure(worker, t.references[which].code, inputs[t.id], t.entry_point)

    got: dict[tuple[str, int], judge.MeasureResult] = {}
    for (t, which), r in cg_pool.map(work, items):
        got[(t.id, which)] = r
    failed = [(k, r.verdict.status.value, r.verdict.error_message) for k, r in got.items()
              if not r.verdict.passed]
    assert not failed
    wrong_order = []
    print()
    for t in TASKS:
        slow, fast = got[(t.id, 0)].value, got[(t.id, -1)].value
        assert slow is not None and fast is not None
        print(f"{t.id:40s} slow {slow:>14,.0f}  fast {fast:>12,.0f}  x{slow / fast:6.1f}")
        if not slow > fast:
            wrong_order.append((t.id, slow, fast))
    assert not wrong_order


# -- callgrind: nothing carries over from one measured child to the next
# -----------------------------------------

WORK = """
def work(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s
"""

CACHES = {
    "lru_cache": WORK + """
import functools

@functools.lru_cache(maxsize=None)
def cached(n):
    return work(n)

def f(n, calls=1):
    return [cached(n) for _ in range(calls)][-1]
""",
    "module_dict": WORK + """
CACHE = {}

def f(n, calls=1):
    for _ in range(calls):
        if n not in CACHE:
            CACHE[n] = work(n)
    return CACHE[n]
""",
    "tmp_file": WORK + """
import json, os

def f(n, calls=1):
    path = f"/tmp/effirl-meter-cache-{n}.json"
    for _ in range(calls):
        if os.path.exists(path):
            with open(path) as fh:
                value = json.load(fh)
        else:
            value = work(n)
            with open(path, "w") as fh:
                json.dump(value, fh)
    return value
""",
}


@needs_callgrind
@pytest.mark.parametrize("kind", sorted(CACHES))
def test_a_cache_does_not_carry_over_to_the_next_measurement(cg: Worker, kind: str) -> None:
    code, n = CACHES[kind], 60_000
    first = count(cg, code, [n, 1])
    second = count(cg, code, [n, 1])
    twice_in_one_child = count(cg, code, [n, 2])
    nothing = count(cg, "def f(n, calls=1):\n    return 0\n", [n, 1])
    print(f"\n{kind}: first {first:,.0f}, second {second:,.0f}, "
          f"two calls in one child {twice_in_one_child:,.0f}, "
          f"empty program {nothing:,.0f}")
    # The cache works inside one child (the second call is nearly free) ...
    assert twice_in_one_child < 1.2 * first
    assert first > 10 * nothing
    # ... but the next measured child starts without it.
    assert abs(second - first) / first <= 1e-4


@needs_callgrind
def test_work_in_a_thread_is_counted(cg: Worker) -> None:
    n = 100_000
    inline = count(cg, WORK + "def f(n):\n    return work(n)\n", [n])
    threaded = count(cg, WORK + """
import threading

def f(n):
    out = []
    t = threading.Thread(target=lambda: out.append(work(n)))
    t.start()
    t.join()
    return out[0]
""", [n])
    unjoined = count(cg, WORK + """
import threading

def f(n):
    threading.Thread(target=work, args=(n,)).start()  # the harness waits for it, as Python's exit does
    return 0
""", [n])
    nothing = count(cg, "def f(n):\n    return 0\n", [n])
    print(f"\ninline {inline:,.0f}, in a thread {threaded:,.0f}, unjoined thread {unjoined:,.0f}, "
          f"nothing {nothing:,.0f}")
    assert abs(threaded - inline) / inline < 0.05
    assert abs(unjoined - inline) / inline < 0.05
    assert threaded > 50 * nothing


@needs_callgrind
def test_module_top_level_work_is_counted(cg: Worker) -> None:
    n = 200_000
    at_import = count(cg, f"TABLE = [i * i % 7 for i in range({n})]\n\ndef f(i):\n    return TABLE[i]\n", [5])
    in_call = count(cg, f"def f(i):\n    table = [j * j % 7 for j in range({n})]\n    return table[i]\n", [5])
    nothing = count(cg, "def f(i):\n    return i * i % 7\n", [5])
    print(f"\nprecomputed at import {at_import:,.0f}, computed in the call {in_call:,.0f}, "
          f"nothing {nothing:,.0f}")
    assert at_import > 20 * nothing
    assert abs(at_import - in_call) / in_call < 0.1


# -- callgrind: the program cannot reset, pause or escape the count
# ----------------------------------------------

# x86-64 valgrind client request (valgrind.h): rax = &args, rdx = default, preamble, xchg rbx,rbx.
CLIENT_REQUEST = "4889f84889f248c1c70348c1c70d48c1c73d48c1c7334887db4889d0c3"
ZERO_STATS = 0x43540001


@needs_callgrind
def test_own_client_request_through_ctypes_is_refused(cg: Worker) -> None:
    r = measure(cg, f"""
import ctypes, mmap

def f(n):
    s = sum(range(n))
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes.fromhex("{CLIENT_REQUEST}"))
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    request = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64)(addr)
    args = (ctypes.c_uint64 * 6)({ZERO_STATS}, 0, 0, 0, 0, 0)
    request(ctypes.addressof(args), 0)
    return s
""", [100_000])
    assert not r.verdict.passed and r.value is None
    assert (r.verdict.status, r.verdict.error_type) == (Status.RUNTIME_ERROR, "PermissionError"), r.verdict
    message = r.verdict.error_message or ""
    assert message.startswith("effirl sandbox:") and "ctypes" in message


def test_callgrind_command_counts_from_the_fork_and_dumps_where_the_program_starts(tmp_path: Path) -> None:
    cmd = CallgrindMeter().wrap_command(["python", "-m", "effirl.execution.server", "4"], str(tmp_path))
    assert "--zero-before=PyOS_AfterFork_Child" in cmd  # the only zero point (no forking while measuring)
    assert "--dump-before=lockf*" in cmd  # the harness's mark: the child's set-up goes to its first dump
    assert not [a for a in cmd if a.startswith(("--toggle-collect", "--collect-atstart"))]
    assert [a for a in cmd if a.startswith("--zero-before")] == ["--zero-before=PyOS_AfterFork_Child"]
    assert cmd[-4:] == ["python", "-m", "effirl.execution.server", "4"]
    assert _server_env(CallgrindMeter())["LD_BIND_NOW"] == "1"  # valgrind's guest binds every symbol early
    assert (tmp_path / "meter").is_dir()  # made before valgrind starts: it checks its output folder then


def _dump(folder: Path, name: str, summary: int, *, part: int | None = None, pid: int | None = None,
          trigger: str | None = None) -> None:
    """A callgrind dump as valgrind 3.19 writes it (header fields only where they matter)."""
    stem = name.split(".")
    pid = pid if pid is not None else int(stem[1])
    part = part if part is not None else (int(stem[2]) if len(stem) > 2 else 1)
    trigger = trigger or ("--dump-before=lockf" if len(stem) > 2 else "Program termination")
    (folder / name).write_text(f"# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: {pid}\n"
                               f"cmd:  python -S -m effirl.execution.server\npart: {part}\n\n"
                               f"desc: I1 cache: \ndesc: Timerange: Basic block 0 - 99\n"
                               f"desc: Trigger: {trigger}\n\n"
                               f"positions: line\nevents: Ir\nsummary: {summary}\n\n"
                               f"fn=(1) main\n0 {summary}\n\ntotals: {summary + 5}\n")


def _child(folder: Path, pid: int, setup: int, *program: int) -> None:
    """The dumps one measured child leaves: its set-up (part 1), then the program's parts, the last at
    exit."""
    _dump(folder, f"cg.{pid}.1", setup)
    for n, value in enumerate(program[:-1], start=2):
        _dump(folder, f"cg.{pid}.{n}", value)
    _dump(folder, f"cg.{pid}", program[-1], part=len(program) + 1)


def test_callgrind_collect_drops_the_set_up_and_sums_the_program_dumps(tmp_path: Path) -> None:
    meter = CallgrindMeter()
    folder = tmp_path / "meter"
    folder.mkdir()
    exited = {"status": 0, "cpu_s": 0.2, "server_pid": 77}
    _dump(folder, "cg.77", 10**9)  # the server's own dumps: never a run's
    _dump(folder, "cg.77.1", 10**9)
    _child(folder, 3, 400_000, 5_000_000)
    assert meter.collect(None, str(tmp_path), exited) == 5_000_000.0  # the set-up (part 1) is not counted
    assert sorted(p.name for p in folder.iterdir()) == ["cg.77", "cg.77.1"]  # read once, then removed
    _child(folder, 4, 400_000, 1_000, 2_000, 3_000)  # a program that reached the mark again: all summed
    assert meter.collect(None, str(tmp_path), exited) == 6_000.0
    assert meter.read_counts(str(tmp_path), exited) is None  # no dump: no count
    _child(folder, 5, 400_000, 5_000_000)
    assert meter.collect(None, str(tmp_path), {**exited, "status": 9}) is None  # killed by a signal


@pytest.mark.parametrize("case", [
    "only the set-up dump", "only the final dump", "two processes", "final part number wrong",
    "a part missing", "a part cut at another point", "final not cut at the end", "a fifo", "a folder",
    "an empty file", "a symlink", "a hard link", "another name", "a header without summary",
    "negative summary",
])
def test_callgrind_collect_refuses_dumps_that_are_not_one_childs_sequence(tmp_path: Path, case: str) -> None:
    """Whatever a program manages to leave in the dump folder (os.mkfifo and os.mknod raise no audit event),
    the run is uncountable: nothing placed there can pass for part of the program's sequence or hide its
    work."""
    meter = CallgrindMeter()
    folder = tmp_path / "meter"
    folder.mkdir()
    exited = {"status": 0, "cpu_s": 0.2, "server_pid": 77}
    _dump(folder, "cg.77", 10**9)
    if case == "only the set-up dump":
        _dump(folder, "cg.3.1", 400_000)
    elif case == "only the final dump":
        _dump(folder, "cg.3", 5_000_000, part=1)
    elif case == "two processes":
        _child(folder, 3, 400_000, 5_000_000)
        _child(folder, 4, 400_000, 5_000_000)
    elif case == "final part number wrong":
        _dump(folder, "cg.3.1", 400_000)
        _dump(folder, "cg.3", 5_000_000, part=3)
    elif case == "a part missing":
        _dump(folder, "cg.3.1", 400_000)
        _dump(folder, "cg.3", 5_000_000, part=3)
        _dump(folder, "cg.3.7", 1, part=2)
    elif case == "a part cut at another point":
        _dump(folder, "cg.3.1", 400_000, trigger="Client Request: ZERO")
        _dump(folder, "cg.3", 5_000_000, part=2)
    elif case == "final not cut at the end":
        _dump(folder, "cg.3.1", 400_000)
        _dump(folder, "cg.3", 5_000_000, part=2, trigger="--dump-before=lockf")
    else:
        _child(folder, 3, 400_000, 5_000_000)
        odd = folder / "cg.3.2"
        if case == "a fifo":
            os.mkfifo(odd)
        elif case == "a folder":
            odd.mkdir()
        elif case == "an empty file":
            odd.write_text("")
        elif case == "a symlink":
            (folder / "cg.3").unlink()
            (folder / "cg.3").symlink_to(tmp_path / "elsewhere")
            _dump(tmp_path, "elsewhere", 10, pid=3, part=2)
        elif case == "a hard link":
            os.link(folder / "cg.3", tmp_path / "kept")
        elif case == "another name":
            (folder / "notes").write_text("summary: 1\n")
        elif case == "a header without summary":
            (folder / "cg.3").write_text("pid: 3\npart: 2\ndesc: Trigger: Program termination\n")
        elif case == "negative summary":
            _dump(folder, "cg.3", -5_000_000, part=2)
    assert meter.collect(None, str(tmp_path), exited) is None, case
    assert sorted(p.name for p in folder.iterdir()) == ["cg.77"], case  # removed: the next run starts clean


def test_split_counts_reads_parts_in_order() -> None:
    d = callgrind.Dump
    dumps = {"cg.9": d(9, 3, "Program termination", 30), "cg.9.2": d(9, 2, "--dump-before=lockf64", 20),
             "cg.9.1": d(9, 1, "--dump-before=lockf", 10)}
    assert callgrind.split_counts(dumps) == (10, 50)
    assert callgrind.split_counts({"cg.9": d(9, 1, "Program termination", 30)}) is None
    many = {f"cg.9.{n}": d(9, n, "--dump-before=lockf", 1) for n in range(1, callgrind.MAX_DUMPS + 1)}
    many["cg.9"] = d(9, callgrind.MAX_DUMPS + 1, "Program termination", 1)
    assert callgrind.split_counts(many) is None  # more dumps than the meter reads


def test_callgrind_refuses_a_count_implausibly_small_for_the_cpu_used(tmp_path: Path) -> None:
    """A counter zeroed or paused from native code leaves a tiny count after seconds of CPU: refused. The CPU
    of the set-up (imports) is judged with the set-up's instructions."""
    folder = tmp_path / "meter"
    folder.mkdir()
    meter = CallgrindMeter()
    for setup, count_, cpu_s, ok in ((0, 50_000, 0.3, True), (0, 50_000, 1.2, False),
                                     (0, 50_000_000, 3.0, True), (0, 3_000_000, 3.0, False),
                                     (0, 400_000, 0.6, True), (50_000_000, 50_000, 3.0, True),
                                     (1_000_000, 50_000, 3.0, False)):
        _child(folder, 5, setup, count_)
        got = meter.collect(None, str(tmp_path), {"status": 0, "cpu_s": cpu_s, "server_pid": 1})
        assert (got == count_) if ok else (got is None), (setup, count_, cpu_s)
        assert callgrind.plausible(setup + count_, cpu_s) is ok


@needs_callgrind
def test_fork_is_refused_while_measuring(cg: Worker) -> None:
    r = measure(cg, WORK + """
import os

def f(n):
    pid = os.fork()
    if pid == 0:
        work(n)
        os._exit(0)
    os.waitpid(pid, 0)
    return 0
""", [300_000])
    assert r.value is None
    assert (r.verdict.status, r.verdict.error_type) == (Status.RUNTIME_ERROR, "PermissionError")
    assert r.verdict.error_message == "effirl sandbox: os.fork is not allowed"


@needs_callgrind
def test_fork_exec_without_audit_event_is_refused_while_measuring(cg: Worker) -> None:
    """_posixsubprocess.fork_exec starts a process without an audit event: a child that does the work in
    ``preexec_fn``, reports it and sleeps is killed by the final sweep before it can write its dump."""
    r = measure(cg, WORK + """
import _posixsubprocess, os, time

def f(n):
    r, w = os.pipe()
    er, ew = os.pipe()

    def heavy():
        os.write(w, str(work(n)).encode())
        time.sleep(1000)

    _posixsubprocess.fork_exec(["/bin/true"], [b"/bin/true"], False, (w, ew), None, None, -1, -1, -1, -1,
                               -1, -1, er, ew, True, False, -1, None, None, None, -1, heavy, False)
    return int(os.read(r, 100))
""", [300_000])
    assert r.value is None
    assert (r.verdict.status, r.verdict.error_type) == (Status.RUNTIME_ERROR, "PermissionError")
    # Refused either at the import (the server no longer holds the module) or at the call (a server that
    # does).
    assert r.verdict.error_message in ("effirl sandbox: starting processes is not allowed while measuring",
                                       "effirl sandbox: importing _posixsubprocess is not allowed while "
                                       "measuring")
    reimport = measure(cg, "import sys\n\ndef f(n):\n    sys.modules.pop('_posixsubprocess', None)\n"
                           "    import _posixsubprocess\n    return 0\n", [0])
    assert reimport.verdict.error_type == "PermissionError"
    assert reimport.verdict.error_message == (
        "effirl sandbox: importing _posixsubprocess is not allowed while measuring")


@needs_callgrind
def test_a_fifo_in_the_dump_folder_neither_hangs_nor_counts(cg: Worker) -> None:
    """os.mkfifo raises no audit event: the meter must not block reading what a program left in its folder."""
    code = """
import os, sys

def f(n):
    frame = sys._getframe()
    while frame is not None and "protected" not in (frame.f_locals.get("job") or {}):
        frame = frame.f_back
    folder = frame.f_locals["job"]["protected"][0] + "/meter"
    os.mkfifo(folder + "/cg.fifo")  # neither raises an audit event
    os.mknod(folder + "/cg.node")
    return n
"""
    done: dict[str, judge.MeasureResult] = {}
    t = threading.Thread(target=lambda: done.setdefault("r", measure(cg, code, [1])), daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the parent hangs reading a FIFO in the dump folder"
    r = done["r"]
    assert r.value is None
    assert (r.verdict.status, r.verdict.error_type) == (Status.RUNTIME_ERROR, "MeterError")
    left = set(os.listdir(os.path.join(cg._workdir, "meter"))) - {f"cg.{cg.server_pid}"}  # the server's own
    assert not left  # what the program made was removed: the next run is clean
    assert count(cg, "def f(n):\n    return n\n", [1]) > 0


# -- the measurement record
# --------------------------------------------------------------------------------------


def test_measurement_record_names_meter_version_and_environment() -> None:
    for meter, unit in ((CallgrindMeter(), "instructions"), (PerfMeter(), "instructions"),
                        (CpuTimeMeter(), "seconds")):
        m = meter.measurement(123.0)
        assert (m.value, m.unit, m.meter) == (123.0, unit, meter.name)
        assert m.meter_version == meter.version() and m.meter_version
        assert m.fingerprint == environment_fingerprint() and len(m.fingerprint) == 16
    if CALLGRIND_OK:
        assert CallgrindMeter().version().startswith("valgrind-")


def test_check_same_meter_refuses_mixed_meters_and_environments() -> None:
    a = CallgrindMeter().measurement(10.0)
    check_same_meter([a, CallgrindMeter().measurement(20.0)])
    check_same_meter([])
    with pytest.raises(MeterMismatchError, match="different meters"):
        check_same_meter([a, CpuTimeMeter().measurement(0.5)])
    with pytest.raises(MeterMismatchError):
        check_same_meter([a, PerfMeter().measurement(10.0)])
    elsewhere = Measurement(**{**a.model_dump(), "fingerprint": "0" * 16})
    with pytest.raises(MeterMismatchError):
        check_same_meter([a, elsewhere])
    other_version = Measurement(**{**a.model_dump(), "meter_version": "valgrind-0.0"})
    with pytest.raises(MeterMismatchError):
        check_same_meter([a, other_version])


# -- perf: the decisions, with a fake perf_event_open
# ------------------------------------------------------------


def fake_syscall(result: int, calls: list[tuple[bytes, int, int, int, int]] | None = None) -> perf.Syscall:
    def call(attr: bytes, pid: int, cpu: int, group: int, flags: int) -> int:
        if calls is not None:
            calls.append((attr, pid, cpu, group, flags))
        return result

    return call


@pytest.mark.parametrize("err, words", [
    (errno.ENOENT, "no PMU"),
    (errno.EOPNOTSUPP, "not supported"),
    (errno.ENODEV, "no PMU device"),
    (errno.EACCES, "perf_event_paranoid"),
    (errno.EPERM, "seccomp"),
    (errno.ENOSYS, "not available"),
    (errno.EINVAL, "rejected the counter configuration"),
    (errno.EBUSY, os.strerror(errno.EBUSY)),
])
def test_perf_probe_explains_each_errno(err: int, words: str) -> None:
    calls: list[tuple[bytes, int, int, int, int]] = []
    ok, why = perf.probe(syscall=fake_syscall(-err, calls))
    assert not ok
    assert why == perf.explain(err) and words in why
    attr, pid, cpu, group, flags = calls[0]
    assert (pid, cpu, group, flags) == (0, -1, -1, perf.PERF_FLAG_FD_CLOEXEC)  # this process, any CPU
    assert attr == perf.attr_bytes(inherit=False)


def test_perf_probe_succeeds_and_closes_the_counter() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    assert perf.probe(syscall=fake_syscall(fd)) == (True, "")
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by the probe


def _flags(attr: bytes) -> dict[str, Any]:
    typ, size, config, _period, _sample_type, _read_format, flags = struct.unpack_from("<IIQQQQQ", attr, 0)
    return {"type": typ, "size": size, "config": config, "len": len(attr),
            "disabled": bool(flags >> perf.BIT_DISABLED & 1), "inherit": bool(flags >> perf.BIT_INHERIT & 1),
            "exclude_kernel": bool(flags >> 5 & 1), "exclude_hv": bool(flags >> 6 & 1),
            "exclude_user": bool(flags >> 4 & 1), "pinned": bool(flags >> 2 & 1), "flags": flags}


def test_perf_attr_encodes_a_disabled_user_space_instructions_counter() -> None:
    a = _flags(perf.attr_bytes())
    assert (a["type"], a["config"]) == (0, 1)  # PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS
    assert a["size"] == a["len"] == perf.ATTR_SIZE == 112
    assert a["disabled"] and a["inherit"] and a["exclude_kernel"] and a["exclude_hv"]
    assert not a["exclude_user"] and not a["pinned"]
    assert a["flags"] == 0b1100011
    b = _flags(perf.attr_bytes(inherit=False))
    assert not b["inherit"] and b["disabled"] and b["exclude_kernel"] and b["exclude_hv"]
    assert perf.attr_bytes()[48:] == bytes(perf.ATTR_SIZE - 48)  # nothing else set


def test_perf_attach_reports_the_reason() -> None:
    calls: list[tuple[bytes, int, int, int, int]] = []
    meter = PerfMeter(syscall=fake_syscall(-errno.ENOENT, calls))
    with pytest.raises(OSError) as exc:
        meter.attach(4242)
    assert exc.value.errno == errno.ENOENT
    assert exc.value.strerror == perf.explain(errno.ENOENT)
    attr, pid, cpu, group, _ = calls[0]
    assert (pid, cpu, group) == (4242, -1, -1)  # the child, on any CPU, its threads and children inherited
    assert _flags(attr)["inherit"]


def test_perf_collect_reads_the_counter_once_and_closes_it() -> None:
    meter = PerfMeter(syscall=fake_syscall(-errno.ENOENT))
    for status, want in ((0, 123456789.0), (9, None)):  # exited normally / killed by SIGKILL
        r, w = os.pipe()
        os.write(w, struct.pack("<Q", 123456789))
        os.close(w)
        assert meter.collect(r, "/nonexistent", {"status": status}) == want
        with pytest.raises(OSError):
            os.fstat(r)
    assert meter.collect(None, "/nonexistent", {"status": 0}) is None


def test_perf_meter_needs_the_go_signal_and_binds_symbols_early() -> None:
    meter = PerfMeter()
    assert meter.needs_go and meter.unit == "instructions" and meter.name == "perf"
    assert _server_env(meter)["LD_BIND_NOW"] == "1"  # no lazy symbol binding inside a count


def _ok(why: str = "") -> Callable[[], tuple[bool, str]]:
    return lambda: (True, why)


def _no(why: str) -> Callable[[], tuple[bool, str]]:
    return lambda: (False, why)


def test_select_auto_prefers_perf(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="effirl.meters.select"):
        m = select_meter("auto", perf_probe=_ok(), callgrind_probe=_ok("valgrind-3.19.0"))
    assert isinstance(m, PerfMeter)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_select_auto_falls_back_to_callgrind(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="effirl.meters.select"):
        m = select_meter("auto", perf_probe=_no("no PMU here"), callgrind_probe=_ok("valgrind-3.19.0"))
    assert isinstance(m, CallgrindMeter)
    assert any("no PMU here" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_select_auto_falls_back_to_cputime_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="effirl.meters.select"):
        m = select_meter("auto", perf_probe=_no("no PMU here"),
                         callgrind_probe=_no("valgrind is not installed"))
    assert isinstance(m, CpuTimeMeter)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert CPUTIME_WARNING in warnings
    assert any("valgrind is not installed" in w for w in warnings)


@pytest.mark.parametrize("perf_ok", [True, False])
def test_select_auto_takes_perf_whatever_callgrind_says(perf_ok: bool) -> None:
    m = select_meter("auto", perf_probe=_ok() if perf_ok else _no("x"), callgrind_probe=_no("y"))
    assert isinstance(m, PerfMeter if perf_ok else CpuTimeMeter)


def test_select_explicit_meters(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(EffirlError, match="meter 'perf' is not available here: .*no PMU here"):
        select_meter("perf", perf_probe=_no("no PMU here"), callgrind_probe=_ok())
    with pytest.raises(EffirlError,
                       match="meter 'callgrind' is not available here: valgrind is not installed"):
        select_meter("callgrind", perf_probe=_ok(), callgrind_probe=_no("valgrind is not installed"))
    with pytest.raises(EffirlError, match="unknown meter 'pmu'"):
        select_meter("pmu")
    assert isinstance(select_meter("perf", perf_probe=_ok(), callgrind_probe=_no("y")), PerfMeter)
    assert isinstance(select_meter("callgrind", perf_probe=_ok(), callgrind_probe=_ok()), CallgrindMeter)
    with caplog.at_level(logging.WARNING, logger="effirl.meters.select"):
        assert isinstance(select_meter("cputime", perf_probe=_ok(), callgrind_probe=_ok()), CpuTimeMeter)
    assert CPUTIME_WARNING in [r.getMessage() for r in caplog.records]


def test_select_perf_here_names_the_probes_reason() -> None:
    if PERF_OK:
        assert isinstance(select_meter("perf"), PerfMeter)
    else:
        with pytest.raises(EffirlError) as exc:
            select_meter("perf")
        assert PERF_WHY in str(exc.value)


@pytest.mark.skipif(not PERF_OK, reason=f"no hardware instructions counter here: {PERF_WHY}")
def test_perf_counts_real_instructions(native: Worker) -> None:
    t = task("count_inversions")
    args = generate_input(native, t, 1000, SEED)
    w = Worker(2, SandboxConfig(), PerfMeter())
    w.start()
    try:
        slow = [count(w, t.references[0].code, args, t.entry_point) for _ in range(5)]
        fast = [count(w, t.references[-1].code, args, t.entry_point) for _ in range(5)]
        nothing = count(w, "def f(n):\n    return 0\n", [0])
    finally:
        w.close()
        w.remove_workdir()
    print(f"\nperf: slow {statistics.mean(slow):,.0f} (CV {cv(slow):.1e}), fast {statistics.mean(fast):,.0f} "
          f"(CV {cv(fast):.1e}), empty program {nothing:,.0f}")
    assert min(slow) > 3 * max(fast) > 3 * nothing
    assert cv(slow) < 0.01


# -- cputime
# ---------------------------------------------------------------------------------------------------


def test_cputime_meter_measures_seconds() -> None:
    w = Worker(3, SandboxConfig(), CpuTimeMeter())
    w.start()
    try:
        r = measure(w, WORK + "def f(n):\n    return work(n)\n", [300_000])
    finally:
        w.close()
        w.remove_workdir()
    assert r.verdict.passed, r.verdict
    assert isinstance(r.value, float) and 0 < r.value < 60
    m = CpuTimeMeter().measurement(r.value)
    assert (m.unit, m.meter) == ("seconds", "cputime")
    assert CpuTimeMeter.unit == "seconds"


# -- the CLI
# ---------------------------------------------------------------------------------------------------

CLI_TASKS = ("lis_length", "pair_sum_count")
CLI_SCALE = 500


@needs_callgrind
def test_cli_measure_with_callgrind_writes_counts_and_meter(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from effirl.cli import app

    samples = tmp_path / "samples.jsonl"
    lines = []
    for name in CLI_TASKS:
        t = task(name)
        for which in (0, -1):
            lines.append(json.dumps({"task_id": t.id, "solution": t.references[which].code}))
    samples.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["measure", "--suite", "builtin", "--samples", str(samples),
                                      "--out", str(out),
                                      "--meter", "callgrind", "--scale", str(CLI_SCALE), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "meter: callgrind" in result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_index = {r["index"]: r for r in records}
    assert sorted(by_index) == [1, 2, 3, 4]
    for r in records:
        assert r["status"] == "pass", r
        assert r["meter"]["name"] == "callgrind" and r["meter"]["unit"] == "instructions"
        assert r["meter"]["version"] == CallgrindMeter().version()
        assert r["meter"]["fingerprint"] == environment_fingerprint()
        assert len(r["counts"]) == r["inputs"]["n_inputs"] == 1  # one per performance input
        assert r["inputs"]["scale"] == CLI_SCALE and r["inputs"]["source"] == "generated"
        assert r["counts"][0] > 0
    for k, name in enumerate(CLI_TASKS):
        slow, fast = by_index[2 * k + 1], by_index[2 * k + 2]
        assert slow["task_id"] == fast["task_id"] == f"builtin/{name}"
        print(f"\n{name}: slow {slow['counts'][0]:,.0f}, fast {fast['counts'][0]:,.0f}")
        assert slow["counts"][0] > fast["counts"][0]
