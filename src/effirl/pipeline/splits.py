"""The train / held-out split of the training suite's tasks.

Why it exists: the miniature trains (stage-1 data, RL) on some tasks and evaluates on others too, to see
whether a preference for efficient code transfers to tasks never trained on. The held-out tasks are the
``round(fraction x n)`` tasks with the smallest seeded hash of their id: a split of the asked size that depends
on no task's position in the suite.
"""

from __future__ import annotations

import hashlib

from effirl.errors import EffirlError
from effirl.pipeline.config import SplitConfig
from effirl.tasks import Task


def _unit(seed: int, task_id: str) -> float:
    digest = hashlib.sha256(f"effirl-split:{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def select_tasks(tasks: list[Task], wanted: list[str] | None) -> list[Task]:
    """The tasks named in ``wanted`` (ids, or names without the suite's prefix), in suite order; all for None."""
    if wanted is None:
        return tasks
    ids = {t.id for t in tasks}
    full = {w if w in ids else f"{tasks[0].suite}/{w}" if tasks else w for w in wanted}
    unknown = sorted(full - ids)
    if unknown:
        raise EffirlError(f"tasks: unknown task(s) {', '.join(unknown[:5])} in suite {tasks[0].suite if tasks else '?'}")
    return [t for t in tasks if t.id in full]


def split_tasks(tasks: list[Task], config: SplitConfig) -> dict[str, list[Task]]:
    """``{"train": [...], "heldout": [...], "all": [...]}`` in suite order."""
    if config.heldout is not None:
        known = {t.id for t in tasks}
        unknown = sorted(set(config.heldout) - known)
        if unknown:
            raise EffirlError(f"split.heldout names unknown task(s): {', '.join(unknown[:5])}")
        held = set(config.heldout)
    else:
        k = round(config.heldout_fraction * len(tasks))
        held = {t.id for t in sorted(tasks, key=lambda t: _unit(config.seed, t.id))[:k]}
    train = [t for t in tasks if t.id not in held]
    if not train:
        raise EffirlError("the split leaves no training task; lower split.heldout_fraction")
    return {"train": train, "heldout": [t for t in tasks if t.id in held], "all": list(tasks)}
