"""Hand-made completions of builtin tasks for the efficiency reward's tests: references, broken variants,
tricks.

Two tasks with a quadratic slow reference and a fast one: ``lis_length`` (one list) and ``pair_sum_count`` (a
list and a target). Their inputs run at a quarter of the shipped calibration's scale: the slow reference still
costs ~25x the fast one under callgrind, in ~0.15 s instead of ~0.7 s.

Then three small hand-made tasks, one per source of performance inputs (the dataset's, a canonical solution's
expected outputs on the largest test, a generator with a checker), and a program that answers garbage only
while it is measured (:func:`detector`).
"""

from __future__ import annotations

from typing import Any

from effirl.tasks import Task, by_id, load

TASK_NAMES = ("lis_length", "pair_sum_count")
SCALES = {"builtin/lis_length": 250, "builtin/pair_sum_count": 185}
KINDS = ("slow", "fast", "wrong", "no_entry", "prose")
PENALTY = {"wrong": 0.0, "no_entry": -0.5, "prose": -1.5}  # the paper's constants (RewardConfig's defaults)

_TASKS = by_id(load("builtin"))


def task(name: str) -> Task:
    return _TASKS[f"builtin/{name}"]


def fenced(code: str, words: str = "Here is an efficient solution.") -> str:
    return f"{words}\n\n```python\n{code.strip()}\n```\n"


def completion(t: Task, kind: str) -> str:
    """One response of ``kind`` for task ``t``, as a model would write it."""
    if kind == "slow":
        return fenced(t.references[0].code, "A straightforward solution:")
    if kind == "fast":
        return fenced(t.references[-1].code)
    if kind == "wrong":
        return fenced(f"def {t.entry_point}(*args):\n    return -12345\n")
    if kind == "no_entry":
        return fenced("def helper(values):\n    return sorted(values)\n")
    if kind == "prose":
        return "I would sort the input first and then scan it once, keeping a running count of the answer."
    raise ValueError(kind)


def interleaved(kinds: tuple[str, ...] = KINDS, names: tuple[str, ...] = TASK_NAMES,
                extra: dict[str, dict[str, str]] | None = None) -> dict[str, list[Any]]:
    """A batch as TRL passes it: the groups of ``names`` interleaved (a0, b0, a1, b1, ...), each with one
    completion of every kind (``extra[name][kind]`` adds hand-written ones)."""
    rows = []
    for k in kinds:
        for name in names:
            t = task(name)
            text = (extra or {}).get(name, {}).get(k) or completion(t, k)
            rows.append((t, k, text))
    return {"prompts": [t.prompt for t, _, _ in rows], "completions": [c for _, _, c in rows],
            "task_id": [t.id for t, _, _ in rows], "kinds": [k for _, k, _ in rows]}


def as_chat(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The same batch in TRL's conversational form: prompts and completions are lists of chat messages."""
    return {**batch,
            "prompts": [[{"role": "system", "content": "You write fast Python."},
                         {"role": "user", "content": p}] for p in batch["prompts"]],
            "completions": [[{"role": "assistant", "content": c}] for c in batch["completions"]]}


def call(reward: Any, batch: dict[str, list[Any]], **kwargs: Any) -> list[float]:
    """Call the reward as TRL does (the dataset's columns as keyword arguments)."""
    return reward(prompts=batch["prompts"], completions=batch["completions"],
                  completion_ids=[[0] for _ in batch["completions"]], task_id=batch["task_id"], **kwargs)


class Step:
    """The part of TRL's TrainerState the reward reads."""

    def __init__(self, global_step: int) -> None:
        self.global_step = global_step


# -- small hand-made tasks: one per kind of performance input ------------------------------------------------

SUMSQ_SLOW = """
def sumsq(nums):
    total = 0
    for x in nums:
        for _ in range(4):
            total += x * x
    return total // 4
"""
SUMSQ_FAST = "def sumsq(nums):\n    return sum(x * x for x in nums)\n"
DISTINCT_SLOW = """
def distinct(nums):
    out = []
    for x in nums:
        if x not in out:
            out.append(x)
    return out
"""
DISTINCT_FAST = "def distinct(nums):\n    return list(set(nums))\n"
ORDER_FREE = """
def check(args, output, expected):
    return isinstance(output, list) and sorted(output) == sorted(expected)
"""
DISTINCT_GENERATOR = """
def generate(scale, rng):
    return [[rng.randrange(scale) for _ in range(scale)]]
"""


def small_tasks() -> dict[str, Task]:
    """Three tasks whose performance inputs come from each source a task can have: ``dataset`` (fixed inputs
    of the dataset, with references), ``canonical`` (no generator, no dataset inputs: the largest test input,
    its expected outputs defined by a canonical solution; no reference) and ``checker`` (generated inputs,
    outputs in any order, judged by the task's ``check``)."""
    from effirl.tasks import Reference, TestCase

    big = list(range(-600, 1400))
    dataset = Task(id="small/sumsq_dataset", suite="small", prompt="def sumsq(nums):\n", entry_point="sumsq",
                   tests=(TestCase(args=([1, 2, 3],), expected=14), TestCase(args=([],), expected=0),
                          TestCase(args=([-4, 5],), expected=41)),
                   perf_inputs=((big,),),
                   references=(Reference(label="slow", code=SUMSQ_SLOW),
                               Reference(label="fast", code=SUMSQ_FAST)))
    canonical = Task(id="small/sumsq_canonical", suite="small", prompt="def sumsq(nums):\n",
                     entry_point="sumsq",
                     tests=(TestCase(args=([1, 2, 3],)), TestCase(args=([-4, 5],)), TestCase(args=(big,))),
                     expected_from="canonical", canonical_solution=SUMSQ_FAST)
    checker = Task(id="small/distinct_checker", suite="small", prompt="def distinct(nums):\n",
                   entry_point="distinct",
                   tests=(TestCase(args=([3, 1, 3, 2],), expected=[1, 2, 3]),
                          TestCase(args=([],), expected=[])),
                   generator=DISTINCT_GENERATOR, default_scale=600, checker=ORDER_FREE,
                   references=(Reference(label="slow", code=DISTINCT_SLOW),
                               Reference(label="fast", code=DISTINCT_FAST)))
    return {"dataset": dataset, "canonical": canonical, "checker": checker}


# A program that is honest (and slow) on the tests and the check, but answers garbage at no cost when it is
# measured: it finds out from the harness's frame (``measuring`` is a local of the function that calls it).
DETECTOR = """
import sys

def {entry}(nums):
    if sys._getframe(1).f_locals.get("measuring"):
        return {garbage}
{honest}
"""


def detector(t: Task) -> str:
    slow = t.references[0].code if t.references else SUMSQ_SLOW
    body = slow.split(f"def {t.entry_point}(nums):\n", 1)[1]
    garbage = "[]" if t.entry_point == "distinct" else "0"
    return DETECTOR.format(entry=t.entry_point, garbage=garbage, honest=body.rstrip())
