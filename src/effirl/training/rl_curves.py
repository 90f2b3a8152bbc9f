"""The curves of an RL run from its ``metrics.jsonl``: training reward, and the periodic evaluation's pass@1,
DPS_norm and mean reward against the step (the paper's Figures 2, 5 and 7 for one run).

Why it exists: an RL run is judged by these curves, not by its loss; the CLI prints their table and this
module draws them into ``OUT/rl_curves.png``. The pipeline overlays several runs from the same records.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from effirl.training.metrics import read_metrics
from effirl.training.rl_eval import PREFIX

CURVES_PLOT = "rl_curves.png"
TRAIN_REWARD = "reward"  # TRL's mean reward of the step's completions
PANELS = (("reward", TRAIN_REWARD, "training reward (mean)"),
          ("pass@1", PREFIX + "pass@1", "eval pass@1"),
          ("dps_norm", PREFIX + "dps_norm", "eval DPS_norm"),
          ("eval reward", PREFIX + "reward", "eval reward"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def eval_rows(metrics: str | Path) -> list[dict[str, Any]]:
    """One row per evaluation: ``{"step", "pass@1", "dps_norm", "reward", ...}`` (None where undefined)."""
    rows = []
    for rec in read_metrics(metrics):
        if PREFIX + "pass@1" in rec:
            rows.append({"step": rec.get("step"), **{k[len(PREFIX):]: v for k, v in rec.items()
                                                     if k.startswith(PREFIX)}})
    return rows


def plot_rl_curves(metrics: str | Path, out: str | Path, title: str = "RL") -> Path | None:
    """A PNG of the training reward and the evaluation metrics by step; None when there is nothing to draw."""
    records = read_metrics(metrics)
    series = {}
    for name, key, label in PANELS:
        pts = [(int(r["step"]), v) for r in records if (v := _number(r.get(key))) is not None and "step" in r]
        if pts:
            series[name] = (label, pts)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4), squeeze=False)
    for ax, (label, pts) in zip(axes[0], series.values(), strict=True):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    target = Path(out)
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return target
