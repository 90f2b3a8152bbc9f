"""Base models that ship with effirl as package data, made by effirl's own commands (recorded in their card).

Why it exists: the CPU miniature's base model takes minutes of training from scratch (the warm-up), half of the
miniature's time budget. It is trained once by a recorded, reproducible command (``effirl model init`` then
``effirl train warmup`` with the seed and corpus in ``effirl_model.json``) and shipped, so that the demo spends
its minutes on the paper's two stages. ``base: {init: ..., warmup: ...}`` in a pipeline config still trains one
from scratch.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError
from effirl.models.scratch import CARD


def _folder() -> Path:
    return Path(str(resources.files("effirl.models") / "shipped"))


def shipped_models() -> dict[str, Path]:
    """The shipped base models by name."""
    root = _folder()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()}


def shipped_card(name: str) -> dict[str, Any]:
    """How a shipped model was made (its ``effirl_model.json``)."""
    models = shipped_models()
    if name not in models:
        raise EffirlError(f"no shipped model {name!r}; shipped: {', '.join(models) or 'none'}")
    card = models[name] / CARD
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}


def copy_shipped_model(name: str, target: Path) -> dict[str, Any]:
    """Copy the shipped model ``name`` into ``target`` (a run keeps its own copy); returns its card."""
    card = shipped_card(name)
    if not (target / "config.json").is_file():
        tmp = target.with_name(target.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(shipped_models()[name], tmp)
        tmp.replace(target)
    return card
