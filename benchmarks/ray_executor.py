"""The Ray executor against the local pool: throughput, the per-run cost of the actor hop, and equal verdicts.

What it measures, on one machine (Ray's overhead in one node) or on a cluster (``--address``):

* **throughput**: the same HumanEval+ samples checked by the local :class:`~effirl.execution.pool.Pool` and by
  :class:`~effirl.execution.ray_pool.RayPool`, each with ``--parallel`` fork servers (workers / actors), pools
  started and warmed first, in interleaved rounds; the ratio ray/local is printed per round;
* **the actor hop**: trivial programs (one call, one test) through both pools; a slot's time per run (wall x
  parallel / runs) of the Ray pool less the local pool's is what the hop (driver -> actor -> back) adds per
  run, with the pool's chunking and with one run per actor call (``MAX_CHUNK = 1``);
* **verdicts**: every sample's status, failing test and error type must be the same from both pools (a
  mismatch is listed and the script exits 1).

Samples: ``--samples FILE`` (evalplus JSONL), else ``--n`` samples built from the EvalPerf leaderboard's
HumanEval solutions beside this clone (``../shared/data/evalperf-leaderboard``), a share of them changed to
fail in every way the sandbox reports (wrong answer, exception, no entry point, no code, syntax error,
time-out, memory, self-kill), so that the verdicts compared are mixed. ``--write-samples FILE`` writes them
(for ``effirl check``).

Usage: ``python benchmarks/ray_executor.py [--n 1000] [--parallel 2] [--rounds 3] [--hop-runs 2000]
[--address auto|HOST:PORT] [--isolation auto|none] [--samples S.jsonl] [--write-samples OUT.jsonl]``
(``--isolation none`` on machines without user namespaces: the Ray pool refuses weakly isolated actors
otherwise).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HUMANEVAL = SHARED / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
LEADERBOARD = SHARED / "evalperf-leaderboard" / "leaderboard_brief_results"

# How a share of the samples is changed so that every status the sandbox reports appears (weights, per 1000).
VARIANTS: dict[str, int] = {"as is": 640, "wrong": 90, "raise": 60, "rename": 50, "prose": 40, "syntax": 50,
                            "exit": 30, "kill": 20, "memory": 10, "slow": 10}


def _variant(kind: str, code: str, entry: str) -> str:
    """``code`` changed to fail as ``kind`` says (``as is``: unchanged)."""
    if kind == "wrong":
        return code + f"\n\n_effirl_orig = {entry}\ndef {entry}(*a, **k):\n    r = _effirl_orig(*a, **k)\n" \
                      "    return (r, 'off') if r is not None else 'off'\n"
    if kind == "raise":
        return code + f"\n\ndef {entry}(*a, **k):\n    raise ValueError('boom')\n"
    if kind == "rename":
        return code.replace(f"def {entry}(", f"def {entry}_renamed(")
    if kind == "prose":
        return "I would iterate over the input and keep the best value seen so far."
    if kind == "syntax":
        return code[: max(1, len(code) // 2)] + "\n    ) ]\n"
    if kind == "exit":
        return code + f"\n\ndef {entry}(*a, **k):\n    import sys\n    sys.exit(0)\n"
    if kind == "kill":
        return code + f"\n\ndef {entry}(*a, **k):\n    import os\n    os.kill(os.getpid(), 9)\n"
    if kind == "memory":
        return code + f"\n\ndef {entry}(*a, **k):\n    return len(bytearray(1 << 40))\n"
    if kind == "slow":
        return code + f"\n\ndef {entry}(*a, **k):\n    while True:\n        pass\n"
    return code


def _rank(*parts: Any) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


def leaderboard_samples(n: int, leaderboard: Path = LEADERBOARD,
                        humaneval: Path = HUMANEVAL) -> list[dict[str, Any]]:
    """``n`` evalplus-style samples: distinct leaderboard solutions of HumanEval tasks, a deterministic share
    changed (``VARIANTS``), in a deterministic order that mixes tasks and kinds."""
    from effirl.tasks import load

    entries = {t.id: t.entry_point for t in load("humaneval+", str(humaneval))}
    solutions: dict[str, set[str]] = {}
    for path in sorted(leaderboard.glob("*.brief.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        for task_id, result in data.get("eval", {}).items():
            if task_id in entries:
                for prof in result.get("profiled", []):
                    if isinstance(prof.get("solution"), str):
                        solutions.setdefault(task_id, set()).add(prof["solution"])
    pairs = [(tid, code) for tid, codes in solutions.items() for code in codes]
    pool = sorted(pairs, key=lambda x: _rank(*x))
    if not pool:
        raise SystemExit(f"no HumanEval solutions found in {leaderboard}")
    kinds = [k for k, w in VARIANTS.items() for _ in range(w)]
    out = []
    for i in range(n):
        task_id, code = pool[i % len(pool)]
        kind = kinds[int(_rank("kind", i), 16) % len(kinds)]
        out.append({"task_id": task_id, "solution": _variant(kind, code, entries[task_id]), "variant": kind})
    return out


# -- timing --------------------------------------------------------------------------------------------------


def _check(pool: Any, tasks: dict[str, Any], records: list[dict[str, Any]]) -> tuple[float, dict[int, Any]]:
    from effirl.execution.checking import ExpectedOutputs, Sample, check_samples, prepare

    samples = [prepare(tasks[r["task_id"]], Sample(r["task_id"], r, i)) for i, r in enumerate(records)]
    t0 = time.perf_counter()
    got = {s.index: v for s, v in check_samples(pool, tasks, samples, ExpectedOutputs())}
    return time.perf_counter() - t0, got


def _trivial(worker: Any, i: int) -> bool:
    """One isolated run of a one-line program with one test: what the hop is measured on."""
    from effirl.execution import judge

    return judge.run_tests(worker, "def f(x):\n    return x + 1\n", "f", "function", [[i]], [i + 1]).passed


def _hop(pool: Any, runs: int) -> float:
    t0 = time.perf_counter()
    ok = sum(1 for _, passed in pool.map(_trivial, range(runs)) if passed)
    if ok != runs:
        raise SystemExit(f"{runs - ok} trivial runs failed")
    return time.perf_counter() - t0


def _key(v: Any) -> tuple[Any, ...]:
    return (v.status.value, v.failed_test, v.error_type, v.tests_run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="samples built from the leaderboard")
    parser.add_argument("--samples", default=None, help="evalplus JSONL of HumanEval+ samples instead")
    parser.add_argument("--write-samples", default=None, help="write the built samples here and stop")
    parser.add_argument("--parallel", type=int, default=2, help="workers of the local pool = sandbox actors")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both pools")
    parser.add_argument("--hop-runs", type=int, default=2000, help="trivial runs per pool and round (hop)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per test (the 'slow' samples)")
    parser.add_argument("--address", default=None, help="a Ray cluster (default: local, --parallel CPUs)")
    parser.add_argument("--isolation", choices=("auto", "namespaces", "none"), default="auto",
                        help="the sandbox's isolation, both pools (the Ray pool refuses actors without full "
                             "isolation unless this is none)")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 120))

    from effirl.execution.config import SandboxConfig
    from effirl.execution.executor import ExecutorConfig
    from effirl.execution.pool import Pool
    from effirl.execution.ray_pool import RayPool
    from effirl.tasks import by_id, load

    if args.samples:
        records = [json.loads(line) for line in Path(args.samples).read_text().splitlines() if line.strip()]
    else:
        records = leaderboard_samples(args.n)
    if args.write_samples:
        Path(args.write_samples).write_text("".join(json.dumps(r) + "\n" for r in records))
        console.print(f"{len(records)} samples written to {args.write_samples}")
        return
    tasks = by_id(load("humaneval+", str(HUMANEVAL)))
    os.environ.setdefault("EFFIRL_CACHE", tempfile.mkdtemp(prefix="effirl-bench-cache-"))

    import ray

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.parallel, include_dashboard=False, log_to_driver=False)
    config = SandboxConfig(workers=args.parallel, test_timeout_s=args.timeout, isolation=args.isolation)
    t0 = time.perf_counter()
    local = Pool(config)
    list(local.map(_trivial, range(4 * args.parallel)))  # started and warm
    local_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    remote = RayPool(config, executor=ExecutorConfig(kind="ray", actors=args.parallel))
    list(remote.map(_trivial, range(4 * args.parallel)))
    ray_start = time.perf_counter() - t0
    console.print(f"{len(records)} samples of {len({r['task_id'] for r in records})} HumanEval+ tasks; "
                  f"{args.parallel} workers / actors; start-up: local {local_start:.2f} s, ray "
                  f"{ray_start:.2f} s (actors and their fork servers); load average {os.getloadavg()[0]:.1f}")

    import effirl.execution.ray_pool as ray_pool

    check: dict[str, list[float]] = {"local": [], "ray": []}
    hop: dict[str, list[float]] = {"local": [], "ray": [], "ray, one run per call": []}
    mismatches: list[str] = []
    statuses: dict[str, int] = {}
    for _ in range(args.rounds):
        seconds, mine = _check(local, tasks, records)
        check["local"].append(seconds)
        seconds, theirs = _check(remote, tasks, records)
        check["ray"].append(seconds)
        for i, v in mine.items():
            if _key(v) != _key(theirs[i]):
                what = f"{records[i]['task_id']} #{i} ({records[i].get('variant')})"
                mismatches.append(f"{what}: local {_key(v)}, ray {_key(theirs[i])}")
        statuses = {}
        for v in mine.values():
            statuses[v.status.value] = statuses.get(v.status.value, 0) + 1
        hop["local"].append(_hop(local, args.hop_runs))
        hop["ray"].append(_hop(remote, args.hop_runs))
        saved, ray_pool.MAX_CHUNK = ray_pool.MAX_CHUNK, 1
        try:
            hop["ray, one run per call"].append(_hop(remote, args.hop_runs))
        finally:
            ray_pool.MAX_CHUNK = saved
    local.close()
    remote.close()

    table = Table(title=f"HumanEval+ check, {len(records)} samples x {args.rounds} rounds")
    for col in ("executor", "runs/s", "ms/run", "slot ms/run", "ray/local (per round)"):
        table.add_column(col, justify="left" if col == "executor" else "right")
    for name, times in check.items():
        total = sum(times)
        rate = len(records) * len(times) / total
        ratios = ", ".join(f"{lo / r:.2f}" for lo, r in zip(check["local"], times, strict=True))
        table.add_row(name, f"{rate:.1f}", f"{1000 / rate:.2f}", f"{1000 / rate * args.parallel:.2f}",
                      "-" if name == "local" else ratios)
    console.print(table)
    hops = Table(title=f"the actor hop: trivial runs, {args.hop_runs} x {args.rounds} rounds")
    for col in ("executor", "runs/s", "slot ms/run", "hop ms/run"):
        hops.add_column(col, justify="left" if col == "executor" else "right")
    base = sum(hop["local"]) / (args.hop_runs * args.rounds) * 1000 * args.parallel
    for name, times in hop.items():
        slot = sum(times) / (args.hop_runs * len(times)) * 1000 * args.parallel
        hops.add_row(name, f"{args.hop_runs * len(times) / sum(times):.1f}", f"{slot:.3f}",
                     "-" if name == "local" else f"{slot - base:.3f}")
    console.print(hops)
    ratio = sum(check["local"]) / sum(check["ray"])
    console.print(f"ray / local throughput: {ratio:.2f}x (rounds: "
                  f"{', '.join(f'{a / b:.2f}x' for a, b in zip(check['local'], check['ray'], strict=True))})")
    console.print(f"verdicts: {dict(sorted(statuses.items()))}")
    if mismatches:
        console.print(f"[red]{len(mismatches)} verdict(s) differ between the executors:[/]")
        for line in mismatches[:20]:
            console.print(f"  {line}")
        sys.exit(1)
    console.print(f"[green]the same verdict from both executors for all {len(records)} samples, "
                  "every round[/]")


if __name__ == "__main__":
    main()
