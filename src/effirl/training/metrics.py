"""Training metrics as they come: ``OUT/metrics.jsonl`` (one line per logging step) and a loss plot.

Why it exists: a training run must leave a record that survives it and can be compared with another, without a
tensorboard or wandb account. :class:`MetricsCallback` appends every log line of the Trainer (loss, learning
rate, DPO rewards and margins, ...) with its step; after a resume the lines past the checkpoint's step are
dropped first, so the file never holds two histories. :func:`plot_metrics` draws the loss curve from it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from effirl.samples import read_records

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
LOSS_PLOT = "loss.png"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics file (a line cut by an interruption is skipped)."""
    return read_records(path)


class MetricsCallback(TrainerCallback):
    """Appends each of the Trainer's logs to a JSON Lines file, with the step and epoch it belongs to."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        # On a resume the state is the checkpoint's: drop what the interrupted run logged after it.
        kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= state.global_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        tmp.replace(self.path)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        rec = {"step": state.global_step, "epoch": state.epoch, **logs}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")


def plot_metrics(path: str | Path, out: str | Path, title: str = "training loss") -> Path | None:
    """A PNG of the loss (and, for DPO, the reward margin and accuracy) by step; None without a loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_metrics(path) if isinstance(r.get("loss"), (int, float))]
    if not records:
        return None
    extra = [k for k in ("rewards/margins", "rewards/accuracies") if any(k in r for r in records)]
    fig, axes = plt.subplots(1, 1 + len(extra), figsize=(5 * (1 + len(extra)), 3.6), squeeze=False)
    for ax, key in zip(axes[0], ["loss", *extra], strict=True):
        pts = [(r["step"], float(r[key])) for r in records if key in r and math.isfinite(float(r[key]))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].set_title(title)
    fig.tight_layout()
    target = Path(out)
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return target
