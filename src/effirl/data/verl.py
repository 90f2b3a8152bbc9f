"""The parquet files verl's RL trainer reads, one row per task of a suite.

Why it exists: verl's ``RLHFDataset`` reads prompts from parquet files, and its reward loop hands each row's
``data_source``, ``reward_model.ground_truth`` and ``extra_info`` to the reward function. effirl's reward
(:func:`effirl.training.verl.reward.compute_score`) needs the task of each completion: ``extra_info.task_id``
(with the suite it belongs to). Expected outputs are never written here: the reward loads the task on the
cluster and judges in its sandbox actors.

Columns (one row per task):

* ``prompt``: the chat messages of effirl's prompt template (``effirl.generation.prompts``; ``direct`` by
  default, the paper's prompt to the policy);
* ``data_source``: ``effirl/<suite>`` (verl groups its validation metrics by it);
* ``ability``: ``code``;
* ``reward_model``: ``{"style": "rule", "ground_truth": <task id>}`` (verl's reward managers read the key);
* ``extra_info``: ``{"task_id", "suite", "source", "index", "split", "entry_point"}``.

``train.parquet`` holds every task, or the tasks outside the ``val_fraction`` drawn for ``val.parquet`` (a
deterministic draw from ``seed``: the same tasks every time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError
from effirl.extras import require
from effirl.tasks.model import Task

FILES = {"train": "train.parquet", "val": "val.parquet"}


def data_source(suite: str) -> str:
    return f"effirl/{suite}"


def _in_val(task_id: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"effirl-verl-split:{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def rows(tasks: Sequence[Task], suite: str, source: str | None = None, *, val_fraction: float = 0.0,
         seed: int = 0, strategy: str = "direct",
         prompt_file: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """The rows of each split (``train``, and ``val`` when ``val_fraction`` > 0), in the suite's order."""
    from effirl.generation.prompts import check_strategy, load_templates, render

    if not 0.0 <= val_fraction < 1.0:
        raise EffirlError(f"--val-fraction must be in [0, 1), not {val_fraction}")
    check_strategy(strategy)
    templates = load_templates(prompt_file)
    out: dict[str, list[dict[str, Any]]] = {"train": [], "val": []} if val_fraction > 0 else {"train": []}
    for index, task in enumerate(tasks):
        split = "val" if val_fraction > 0 and _in_val(task.id, val_fraction, seed) else "train"
        out[split].append({
            "data_source": data_source(suite),
            "prompt": [dict(m) for m in render(task, strategy, templates)],
            "ability": "code",
            "reward_model": {"style": "rule", "ground_truth": task.id},
            "extra_info": {"task_id": task.id, "suite": suite, "source": source, "index": index,
                           "split": split, "entry_point": task.entry_point},
        })
    if not out["train"] or (val_fraction > 0 and not out["val"]):
        empty = "train" if not out["train"] else "val"
        raise EffirlError(f"the {empty} split of {len(tasks)} task(s) is empty: change --val-fraction or "
                          "--seed")
    return out


def write(split_rows: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, Path]:
    """Each split as ``OUT/<split>.parquet`` (written to a temporary name, then moved into place)."""
    pa = require("pyarrow", "verl", "writing verl's parquet files")
    parquet = require("pyarrow.parquet", "verl", "writing verl's parquet files")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, data in split_rows.items():
        path = out / FILES[split]
        tmp = path.with_suffix(".parquet.tmp")
        parquet.write_table(pa.Table.from_pylist(data), tmp)
        tmp.replace(path)
        written[split] = path
    return written


def write_verl(tasks: Sequence[Task], suite: str, out: Path, source: str | None = None, *,
               val_fraction: float = 0.0, seed: int = 0, strategy: str = "direct",
               prompt_file: str | Path | None = None) -> dict[str, tuple[Path, int]]:
    """Write verl's files for ``tasks``; each split's path and row count."""
    got = rows(tasks, suite, source, val_fraction=val_fraction, seed=seed, strategy=strategy,
               prompt_file=prompt_file)
    paths = write(got, out)
    return {split: (paths[split], len(got[split])) for split in got}
