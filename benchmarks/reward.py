"""Seconds per RL batch of the efficiency reward: 64 prompts x 8 completions of the builtin suite, under
callgrind.

The batch is what GRPO/RLOO hand the reward each step (the paper's batch of 64 prompts; 8 samples each here):
64 prompts drawn from the builtin suite's 43 tasks (a task drawn twice gets a second wording of its prompt, so
it is a second group), and for each prompt 8 completions drawn, with a fixed seed, from what a model writes:

* the task's references (its slow one 22%, its fast one 30%, any middle one 8%), with the same reference drawn
  more than once in a group as samples at temperature 1 do (the "realistic duplication"), some of them laid
  out differently (same syntax tree, other comments and blank lines: 5%);
* broken variants: a wrong answer (10%), a program right on the visible tests but wrong on large inputs (6%),
  one without the entry point (4%), prose (4%), code cut off mid-line (an unparseable response, 3%), and
  rarely an infinite loop (1 in ~200 on average: at least one per batch).

The batch is scored three times by one :class:`~effirl.training.EfficiencyReward` (fresh inputs each time, as
consecutive steps): a first call that also starts the sandbox pools and measures each task's slowest reference
once (the base of its time budget), then the timed batch, then the same batch with in-call dedup defeated (a
unique no-op statement appended to every program, so no two programs share a syntax tree). For each it prints
seconds per batch and the split between input generation (fresh generator inputs and their expected outputs),
checking (tests and the fresh inputs, natively) and measuring (under the meter), and the number of distinct
programs checked and measurements taken. Goal: <= 60 s per batch on a 2-core machine.

Usage: ``python benchmarks/reward.py [--prompts 64] [--per-prompt 8] [--meter callgrind] [--workers 2]
[--seed 0]``. Each call is several tens of seconds at full size; ``--prompts 8`` checks that it runs.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from effirl.tasks import Task, load
from effirl.training import EfficiencyReward

console = Console()
if not console.is_terminal:
    console = Console(width=160)

KINDS = {  # kind -> share of the completions
    "slow": 0.22, "fast": 0.30, "middle": 0.08, "relaid": 0.05, "wrong": 0.10, "wrong_on_large": 0.06,
    "no_entry": 0.04, "prose": 0.04, "cut_off": 0.03, "loop": 0.005,
}
GOAL_S = 60.0


def fenced(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code.strip()}\n```\n"


def variant(t: Task, kind: str, rng: random.Random) -> str:
    """One completion of ``kind`` for ``t``."""
    refs = t.references
    fast = refs[-1].code
    impl = fast.replace(f"def {t.entry_point}(", "def _impl(", 1)
    if kind == "slow":
        return fenced(refs[0].code)
    if kind == "fast":
        return fenced(fast)
    if kind == "middle":
        return fenced(refs[rng.randrange(1, len(refs) - 1)].code if len(refs) > 2 else fast)
    if kind == "relaid":
        code = refs[rng.choice([0, -1])].code
        return fenced("# solution\n" + code.replace("\n\n", "\n\n\n", 1) + "\n# end\n")
    if kind == "wrong":
        return fenced(impl + f"\n\ndef {t.entry_point}(*args):\n    out = _impl(*args)\n"
                      "    if isinstance(out, bool) or not isinstance(out, int):\n        return None\n"
                      "    return out + 1\n")
    if kind == "wrong_on_large":
        return fenced(impl + f"\n\ndef {t.entry_point}(*args):\n    if len(repr(args)) > 2000:\n"
                      "        return None\n    return _impl(*args)\n")
    if kind == "no_entry":
        return fenced(impl)
    if kind == "prose":
        return "First sort the values, then sweep once while keeping a running answer; that is O(n log n)."
    if kind == "cut_off":
        lines = fast.strip().splitlines()
        return fenced("\n".join(lines[: max(1, len(lines) // 2)]) + "\n    return (")
    if kind == "loop":
        return fenced(f"def {t.entry_point}(*args):\n    while True:\n        pass\n")
    raise ValueError(kind)


def batch(tasks: list[Task], prompts: int, per_prompt: int, seed: int) -> dict[str, list[Any]]:
    """The RL batch: ``prompts`` groups (tasks drawn without replacement, then again), interleaved as TRL
    gives
    them group by group, with at least one looping completion."""
    rng = random.Random(seed)
    order: list[tuple[Task, int]] = []
    rounds = 0
    while len(order) < prompts:
        drawn = tasks[:]
        rng.shuffle(drawn)
        order += [(t, rounds) for t in drawn]
        rounds += 1
    order = order[:prompts]
    kinds, weights = list(KINDS), list(KINDS.values())
    out: dict[str, list[Any]] = {"prompts": [], "completions": [], "task_id": [], "kinds": []}
    loop_at = rng.randrange(prompts * per_prompt)
    for g, (t, wording) in enumerate(order):
        prompt = t.prompt if wording == 0 else f"Write a fast solution.\n\n{t.prompt}"
        for k in range(per_prompt):
            kind = "loop" if g * per_prompt + k == loop_at else rng.choices(kinds, weights)[0]
            out["prompts"].append(prompt)
            out["completions"].append(variant(t, kind, rng))
            out["task_id"].append(t.id)
            out["kinds"].append(kind)
    return out


def undeduplicated(b: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The same batch with every program made distinct (a unique no-op statement after the code)."""
    texts = []
    for i, text in enumerate(b["completions"]):
        texts.append(text.replace("\n```\n", f"\n_benchmark_completion = {i}\n```\n") if "```python" in text
                     else text)
    return {**b, "completions": texts}


class Step:
    def __init__(self, step: int) -> None:
        self.global_step = step


def score(reward: EfficiencyReward, b: dict[str, list[Any]], step: int) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    rewards = reward(prompts=b["prompts"], completions=b["completions"], task_id=b["task_id"],
                     trainer_state=Step(step), log_metric=metrics.__setitem__)
    wall = time.perf_counter() - t0
    times = reward.last_times
    assert times is not None and len(rewards) == len(b["completions"])
    return {"wall": wall, "inputs": times.inputs_s, "check": times.check_s, "measure": times.measure_s,
            "checks": times.checks, "measurements": times.measurements,
            "pass_rate": metrics["efficiency/pass_rate"], "failures": metrics["efficiency/worker_failures"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--per-prompt", type=int, default=8)
    ap.add_argument("--meter", default="callgrind")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args(argv)

    tasks = load("builtin")
    b = batch(tasks, ns.prompts, ns.per_prompt, ns.seed)
    mix = {k: b["kinds"].count(k) for k in KINDS}
    console.print(f"batch: {ns.prompts} prompts x {ns.per_prompt} completions = {len(b['completions'])}; "
                  + ", ".join(f"{k} {n}" for k, n in mix.items()), highlight=False)
    rows = []
    with EfficiencyReward(suite="builtin", meter=ns.meter, workers=ns.workers) as reward:
        console.print(f"meter: {reward.meter.name}, workers: {ns.workers} per pool", highlight=False)
        rows.append(("first call (starts the pools, measures each task's slowest reference once)",
                     score(reward, b, 1)))
        rows.append(("batch, with in-call dedup", score(reward, b, 2)))
        rows.append(("batch, dedup defeated (every program distinct)", score(reward, undeduplicated(b), 3)))
    n = len(b["completions"])
    table = Table(title=f"efficiency reward: one RL batch ({n} completions, {reward.meter.name})")
    for col in ("call", "s / batch", "inputs s", "check s", "measure s", "programs checked", "measurements",
                "pass rate", "worker failures"):
        table.add_column(col, justify="left" if col == "call" else "right")
    for name, r in rows:
        table.add_row(name, f"{r['wall']:.1f}", f"{r['inputs']:.1f}", f"{r['check']:.1f}",
                      f"{r['measure']:.1f}", str(r["checks"]), str(r["measurements"]),
                      f"{r['pass_rate']:.2f}", f"{r['failures']:.0f}")
    console.print(table)
    with_dedup, without = rows[1][1], rows[2][1]
    console.print(f"in-call dedup: {without['wall'] / with_dedup['wall']:.2f}x faster "
                  f"({without['checks']} -> {with_dedup['checks']} programs checked, "
                  f"{without['measurements']} -> {with_dedup['measurements']} measurements)", highlight=False)
    ok = with_dedup["wall"] <= GOAL_S * (len(b["completions"]) / 512)
    console.print(f"goal: <= {GOAL_S:.0f} s per 512-completion batch: "
                  + ("[green]met[/]" if ok else "[red]not met[/]") + f" ({with_dedup['wall']:.1f} s for "
                  f"{len(b['completions'])} completions)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
