"""Hand-made completions of builtin tasks for the efficiency reward's tests: references, broken variants,
tricks.

Two tasks with a quadratic slow reference and a fast one: ``lis_length`` (one list) and ``pair_sum_count`` (a
list and a target). Their inputs run at a quarter of the shipped calibration's scale: the slow reference still
costs ~25x the fast one under callgrind, in ~0.15 s instead of ~0.7 s.
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
