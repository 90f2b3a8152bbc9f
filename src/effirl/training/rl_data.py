"""The RL training set: a suite's prompts rendered with a generation strategy, with ``task_id`` as a column;
and the evaluation split beside it.

Why it exists: the RL trainers, the periodic evaluation and ``effirl generate`` must ask a task the same way
(the same templates, :func:`effirl.generation.prompts.render`), and the reward finds each completion's task
through the ``task_id`` column. Task names are checked before any model is loaded: an unknown one, or a
dataset without ``task_id``, is one line.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from effirl.errors import EffirlError
from effirl.extras import require
from effirl.generation.prompts import Templates, render
from effirl.tasks import Task

log = logging.getLogger(__name__)
PROMPT, TASK_ID = "prompt", "task_id"


@dataclass(frozen=True)
class TaskSplit:
    """The tasks whose prompts train the policy, and those it is evaluated on (they may overlap)."""

    train: list[Task]
    eval: list[Task]


def resolve_tasks(known: Mapping[str, Task], names: Sequence[str], suite: str, key: str) -> list[Task]:
    """The tasks ``names`` (full ids, or names within the suite: ``lis_length`` for ``builtin/lis_length``),
    in the order given; an unknown or repeated one is an error naming the config key."""
    out: list[Task] = []
    for name in names:
        task = known.get(name) or known.get(f"{suite}/{name}")
        if task is None:
            some = ", ".join(list(known)[:3])
            raise EffirlError(f"{key}: unknown task {name!r} in suite {suite!r} ({len(known)} tasks, e.g. "
                              f"{some})")
        if task in out:
            raise EffirlError(f"{key}: task {task.id!r} is listed twice")
        out.append(task)
    if not out:
        raise EffirlError(f"{key}: the list of tasks is empty")
    return out


def _rank(seed: int, task_id: str) -> bytes:
    return hashlib.sha256(f"effirl-rl-holdout:{seed}:{task_id}".encode()).digest()


def held_out(tasks: Sequence[Task], share: float, seed: int) -> list[Task]:
    """``round(share x len(tasks))`` tasks (at least one), chosen by a seeded hash of their ids: a task's fate
    does not depend on the order of the suite."""
    k = max(1, round(share * len(tasks)))
    chosen = {t.id for t in sorted(tasks, key=lambda t: _rank(seed, t.id))[:k]}
    return [t for t in tasks if t.id in chosen]


def split_tasks(suite_tasks: Sequence[Task], suite: str, tasks: Sequence[str] | None,
                eval_tasks: Sequence[str] | None, holdout: float, separate: bool, seed: int) -> TaskSplit:
    """Training and evaluation tasks (each in suite order) from the config's ``tasks`` and ``evaluation``
    (tasks, holdout, separate)."""
    known = {t.id: t for t in suite_tasks}
    train = resolve_tasks(known, tasks, suite, "tasks") if tasks is not None else list(suite_tasks)
    if eval_tasks is not None:
        evaluated = resolve_tasks(known, eval_tasks, suite, "evaluation.tasks")
    elif holdout > 0:
        if len(train) < 2:
            raise EffirlError(f"evaluation.holdout needs at least 2 training tasks; there is {len(train)}")
        evaluated = held_out(train, holdout, seed)
        separate = True
    else:
        evaluated = list(train)
    if separate:
        out = {t.id for t in evaluated}
        train = [t for t in train if t.id not in out]
        if not train:
            raise EffirlError("no training task is left once the evaluation tasks are set apart (evaluation."
                              "separate / holdout); evaluate on other tasks or on fewer")
    order = {t.id: i for i, t in enumerate(suite_tasks)}  # suite order: evaluate lists references in it

    def ordered(chosen: list[Task]) -> list[Task]:
        return sorted(chosen, key=lambda t: order[t.id])

    return TaskSplit(train=ordered(train), eval=ordered(evaluated))


def prompt_rows(tasks: Sequence[Task], strategy: str = "direct", templates: Templates | None = None
                ) -> list[dict[str, Any]]:
    """One row per task: the chat messages of ``strategy`` as ``prompt`` (TRL's conversational form) and the
    task's id."""
    return [{PROMPT: render(t, strategy, templates), TASK_ID: t.id} for t in tasks]


def rl_dataset(tasks: Sequence[Task], strategy: str = "direct", templates: Templates | None = None) -> Any:
    """The ``datasets.Dataset`` of :func:`prompt_rows`."""
    datasets = require("datasets", "train", "RL training")
    return datasets.Dataset.from_list(prompt_rows(tasks, strategy, templates))


def check_dataset(dataset: Any, known: Mapping[str, Task], suite: str) -> None:
    """A user's training set must have ``prompt`` and ``task_id`` columns, and only tasks of the suite."""
    names = list(getattr(dataset, "column_names", None) or [])
    missing = [c for c in (PROMPT, TASK_ID) if c not in names]
    if missing:
        wanted = " or ".join(repr(m) for m in missing)
        have = ", ".join(names) or "none"
        raise EffirlError(f"the RL training set has no {wanted} column (it has {have}); the efficiency "
                          f"reward finds each prompt's task in suite {suite!r} through 'task_id'")
    if len(dataset) == 0:
        raise EffirlError("the RL training set has no rows")
    for i, task_id in enumerate(dataset[TASK_ID]):
        if task_id not in known:
            some = ", ".join(list(known)[:3])
            raise EffirlError(f"the RL training set's row {i} names task {task_id!r}, which is not in suite "
                              f"{suite!r} ({len(known)} tasks, e.g. {some})")
