"""How repeatable, how costly and how faithful each meter is, on solutions of very different cost.

For a few builtin tasks, the slow (first) and the fast (last) reference run on the task's generated input
(seed 0, ``default_scale // --scale-divisor``), ``--repeats`` times each, every run in a fresh child of a
warmed fork server (the runs of all solutions interleaved, so slow drifts of the machine hit every solution
alike):

* repeatability: the coefficient of variation (stdev / mean) of each meter's values per solution: callgrind's
  instruction counts, perf's hardware instruction counts (where a counter opens here), cputime's CPU seconds,
  next to the CV of the wall time of the same native runs;
* cost: seconds per measurement per meter (parent-side, a whole measurement: fork, load, run, collect), and
  the one-time start-up of a worker (valgrind's is seconds) printed separately;
* faithfulness: per task and meter, whether the slow reference counts more than the fast one (its known
  complexity is worse), with the ratio.

* what a count covers: an almost empty solution, the same with ``import statistics`` (or ``doctest``), and a
  fast reference with and without such an import, counted as a whole child from its fork (set-up and imports
  included: what effirl counted before) and as the program's own work only (what every meter counts now: the
  harness imports the modules a program names before its count starts). The two columns of callgrind come from
  the same runs (the child's first dump is its set-up); cputime shows the program's CPU time.

Usage: ``python benchmarks/meters.py [--repeats 10] [--tasks count_inversions,lis_length,...]``. A few minutes
with callgrind (most of it the slow references under valgrind). ``--imports-only``: only the last section
(a minute).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from effirl.execution import judge
from effirl.execution.config import SandboxConfig
from effirl.execution.worker import Worker
from effirl.inputs.perf import generate_input
from effirl.meters import callgrind, perf
from effirl.meters.callgrind import CallgrindMeter
from effirl.meters.cputime import CpuTimeMeter
from effirl.meters.perf import PerfMeter
from effirl.tasks import Task, by_id, load

# Slow references from ~20M to ~100M instructions at a quarter of the default scale, fast ones from ~0.7M to
# ~10M: costs spread over two orders of magnitude, cubic/quadratic/linear/n log n complexities.
DEFAULT_TASKS = ("three_sum_zero", "lis_length", "count_inversions", "max_subarray_sum")
BASE_INDEX = 20  # worker indices (children run as uid base_uid + index): away from the tests' workers
console = Console()
if not console.is_terminal:  # piped into a file or a log: wide enough for the tables, no progress line
    console = Console(width=200)


@dataclass
class Solution:
    task: Task
    which: int  # 0: slow reference, -1: fast
    args: list[Any]

    @property
    def ref(self) -> Any:
        return self.task.references[self.which]

    @property
    def name(self) -> str:
        return f"{self.task.id.removeprefix('builtin/')} {'slow' if self.which == 0 else 'fast'}"


@dataclass
class Series:
    values: list[float] = field(default_factory=list)  # the meter's values
    wall: list[float] = field(default_factory=list)  # wall seconds of the child (parent's clock)
    cost: list[float] = field(default_factory=list)  # seconds for the whole measurement, parent-side


def cv(xs: list[float]) -> float:
    if len(xs) > 1 and statistics.mean(xs):
        return statistics.pstdev(xs) / statistics.mean(xs)
    return float("nan")


def pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.4f}%"


def start(index: int, meter: Any) -> tuple[Worker, float]:
    w = Worker(index, SandboxConfig(total_timeout_s=600.0), meter)
    t0 = time.perf_counter()
    w.start(timeout=300.0)
    return w, time.perf_counter() - t0


def measure_all(worker: Worker, solutions: list[Solution], repeats: int, label: str) -> dict[str, Series]:
    out = {s.name: Series() for s in solutions}
    total = repeats * len(solutions)
    done = 0
    for _ in range(repeats):
        for s in solutions:
            t0 = time.perf_counter()
            r = judge.measure_once(worker, s.ref.code, s.task.entry_point, s.task.entry_kind.value, s.args,
                                   timeout_s=600.0)
            cost = time.perf_counter() - t0
            if not r.verdict.passed or r.value is None:
                raise SystemExit(f"{label}: {s.name} did not pass: {r.verdict.status.value} "
                                 f"{r.verdict.error_message}")
            series = out[s.name]
            series.values.append(float(r.value))
            series.wall.append(float(r.verdict.wall_s or 0.0))
            series.cost.append(cost)
            done += 1
            if console.is_terminal:
                console.print(f"  {label}: {done}/{total}", end="\r", highlight=False)
    if console.is_terminal:
        console.print(" " * 40, end="\r")
    return out


class SplitCallgrind(CallgrindMeter):
    """Callgrind that also keeps the last run's (set-up, program) instructions."""

    last: tuple[int, int] | None = None

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        self.last = self.read_counts(workdir, exited)
        return None if self.last is None else float(self.last[1])


EMPTY = "def f(x):\n    return x\n"


def import_programs(index: dict[str, Task]) -> list[tuple[str, str, str, list[Any]]]:
    """(label, code, entry point, arguments): solutions that differ only by the modules they import."""
    t = index["builtin/lis_length"]
    fast = t.references[-1].code
    args = [[(i * 7919) % 1000 for i in range(1000)]]
    return [("almost empty", EMPTY, "f", [1]),
            ("almost empty + import statistics", "import statistics\n" + EMPTY, "f", [1]),
            ("almost empty + import doctest", "import doctest\n" + EMPTY, "f", [1]),
            ("lis_length fast reference", fast, t.entry_point, args),
            ("lis_length fast + import statistics", "import statistics\n" + fast, t.entry_point, args)]


def import_costs(index: dict[str, Task], repeats: int) -> bool:
    """The table of what a count covers; True when naming a module changes no meter's count by more than
    10%."""
    programs = import_programs(index)
    table = Table(title="what a count covers: the same solution with and without an import")
    table.add_column("solution")
    ok = True
    cg_ok, cg_why = callgrind.probe()
    rows: dict[str, list[str]] = {label: [label] for label, *_ in programs}
    if cg_ok:
        table.add_column("callgrind: whole child (before)", justify="right")
        table.add_column("callgrind: program only (now)", justify="right")
        meter = SplitCallgrind()
        w, _ = start(BASE_INDEX + 10, meter)
        try:
            base = None
            for label, code, entry, args in programs:
                r = judge.measure_once(w, code, entry, "function", args, timeout_s=600.0)
                if not r.verdict.passed or meter.last is None:
                    raise SystemExit(f"callgrind: {label} did not pass: {r.verdict.error_message}")
                setup, program = meter.last
                rows[label] += [f"{setup + program:,}", f"{program:,}"]
                if label.endswith("import statistics") or label.endswith("import doctest"):
                    ok &= program < 1.1 * base if base else True
                else:
                    base = program
        finally:
            w.close()
    else:
        console.print(f"callgrind: unavailable ({cg_why})", highlight=False)
    table.add_column("cputime: program only, ms (median)", justify="right")
    w, _ = start(BASE_INDEX + 11, CpuTimeMeter())
    try:
        for label, code, entry, args in programs:
            values = []
            for _ in range(repeats):
                r = judge.measure_once(w, code, entry, "function", args, timeout_s=600.0)
                if not r.verdict.passed or r.value is None:
                    raise SystemExit(f"cputime: {label} did not pass: {r.verdict.error_message}")
                values.append(r.value)
            rows[label].append(f"{1000 * statistics.median(values):.3f}")
    finally:
        w.close()
    for row in rows.values():
        table.add_row(*row)
    console.print(table)
    console.print("naming an installed module leaves the count as it was" if ok
                  else "[red]an import still changes the count[/]")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="builtin task names, comma-separated")
    ap.add_argument("--scale-divisor", type=int, default=4, help="inputs at default_scale // this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--values", action="store_true", help="also print every measured value")
    ap.add_argument("--imports-only", action="store_true", help="only the table of what a count covers")
    ns = ap.parse_args(argv)

    index = by_id(load("builtin"))
    if ns.imports_only:
        return 0 if import_costs(index, ns.repeats) else 1
    tasks = [index[f"builtin/{n.strip()}"] for n in ns.tasks.split(",") if n.strip()]
    native, native_start = start(BASE_INDEX, None)
    try:
        solutions = []
        for t in tasks:
            args = generate_input(native, t, max(1, t.default_scale // ns.scale_divisor), ns.seed)
            solutions += [Solution(t, 0, args), Solution(t, -1, args)]
    finally:
        native.close()

    results: dict[str, dict[str, Series]] = {}
    startup: dict[str, float] = {"native (no meter)": native_start}
    meters: list[tuple[str, Any]] = [("cputime", CpuTimeMeter())]
    perf_ok, perf_why = perf.probe()
    if perf_ok:
        meters.append(("perf", PerfMeter()))
    else:
        console.print(f"perf: unavailable ({perf_why})", highlight=False)
    cg_ok, cg_why = callgrind.probe()
    if cg_ok:
        meters.append(("callgrind", CallgrindMeter()))
    else:
        console.print(f"callgrind: unavailable ({cg_why})", highlight=False)
    names = ", ".join(n for n, _ in meters)
    console.print(f"{len(solutions)} solutions x {ns.repeats} repeats, meters: {names}")
    for k, (name, meter) in enumerate(meters, start=1):
        w, startup[name] = start(BASE_INDEX + k, meter)
        try:
            results[name] = measure_all(w, solutions, ns.repeats, name)
        finally:
            w.close()

    if ns.values:
        for name, series in results.items():
            for sol, x in series.items():
                values = " ".join(f"{v:.9g}" for v in x.values)
                console.print(f"{name:9s} {sol:24s} {values}", highlight=False)

    # -- repeatability
    # -------------------------------------------------------------------------------------------
    table = Table(title=f"repeatability: coefficient of variation over {ns.repeats} fresh children")
    table.add_column("solution")
    table.add_column("complexity")
    table.add_column("input scale", justify="right")
    if "callgrind" in results:
        table.add_column("callgrind instr", justify="right")
        table.add_column("callgrind range", justify="right")
        table.add_column("callgrind CV", justify="right")
    if "perf" in results:
        table.add_column("perf instr", justify="right")
        table.add_column("perf CV", justify="right")
    else:
        table.add_column("perf CV", justify="right")
    table.add_column("cputime ms", justify="right")
    table.add_column("cputime CV", justify="right")
    table.add_column("wall ms", justify="right")
    table.add_column("wall CV", justify="right")
    for s in solutions:
        row = [s.name, s.ref.complexity or "-", str(max(1, s.task.default_scale // ns.scale_divisor))]
        if "callgrind" in results:
            c = results["callgrind"][s.name].values
            row += [f"{statistics.mean(c):,.0f}", f"{max(c) - min(c):,.0f}", pct(cv(c))]
        if "perf" in results:
            p = results["perf"][s.name].values
            row += [f"{statistics.mean(p):,.0f}", pct(cv(p))]
        else:
            row += ["unavailable"]
        ct = results["cputime"][s.name]
        row += [f"{1000 * statistics.mean(ct.values):.1f}", pct(cv(ct.values)),
                f"{1000 * statistics.mean(ct.wall):.1f}", pct(cv(ct.wall))]
        table.add_row(*row)
    console.print(table)
    if not perf_ok:
        console.print(f"perf: unavailable ({perf_why})", highlight=False)
    summary = Table(title="CV over all solutions (median / max)")
    summary.add_column("meter")
    summary.add_column("median CV", justify="right")
    summary.add_column("max CV", justify="right")
    for name, series in results.items():
        cvs = [cv(x.values) for x in series.values()]
        summary.add_row(name, pct(statistics.median(cvs)), pct(max(cvs)))
    walls = [cv(x.wall) for x in results["cputime"].values()]
    summary.add_row("wall time (native)", pct(statistics.median(walls)), pct(max(walls)))
    console.print(summary)

    # -- cost
    # ----------------------------------------------------------------------------------------------------
    cost = Table(title="cost per measurement (parent-side seconds: fork, load, run, collect)")
    cost.add_column("meter")
    cost.add_column("worker start-up s (once)", justify="right")
    cost.add_column("mean s/measurement", justify="right")
    cost.add_column("cheapest solution s", justify="right")
    cost.add_column("dearest solution s", justify="right")
    cost.add_column("slowdown vs cputime", justify="right")
    base = statistics.mean([c for x in results["cputime"].values() for c in x.cost])
    for name, series in results.items():
        per = {k: statistics.mean(x.cost) for k, x in series.items()}
        mean = statistics.mean([c for x in series.values() for c in x.cost])
        cost.add_row(name, f"{startup[name]:.2f}", f"{mean:.3f}", f"{min(per.values()):.3f}",
                     f"{max(per.values()):.3f}", f"{mean / base:.1f}x")
    console.print(cost)
    console.print(f"native worker start-up (generators): {startup['native (no meter)']:.2f} s",
                  highlight=False)

    # -- faithfulness
    # --------------------------------------------------------------------------------------------
    order = Table(title="slow reference > fast reference? (median value ratio slow/fast)")
    order.add_column("task")
    order.add_column("slow / fast complexity")
    for name in results:
        order.add_column(name, justify="right")
    order.add_column("wall time", justify="right")
    all_ok = True
    for t in tasks:
        short = t.id.removeprefix("builtin/")
        slow_name, fast_name = f"{short} slow", f"{short} fast"
        row = [t.id.removeprefix("builtin/"), f"{t.references[0].complexity} / {t.references[-1].complexity}"]
        for name, series in list(results.items()) + [("wall", results["cputime"])]:
            pick = (lambda x: x.wall) if name == "wall" else (lambda x: x.values)
            a, b = statistics.median(pick(series[slow_name])), statistics.median(pick(series[fast_name]))
            ok = a > b
            all_ok &= ok or name == "wall"
            row.append(f"{'[green]yes' if ok else '[red]NO'}[/] x{a / b:.1f}")
        order.add_row(*row)
    console.print(order)
    console.print("order matches the known complexity for every meter" if all_ok
                  else "[red]order does NOT match the known complexity somewhere[/]")
    imports_ok = import_costs(index, ns.repeats)
    return 0 if all_ok and imports_ok else 1


if __name__ == "__main__":
    sys.exit(main())
