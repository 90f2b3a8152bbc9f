"""The pipeline's figures: pass@1 against DPS_norm per model (arrows base -> DPO -> RL), and RL curves.

Why it exists: the paper's claims are about movements in that plane (DPO raises correctness, RL then raises
efficiency while keeping it) and about how they unfold over RL steps (its Figures 2, 5 and 7).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from effirl.pipeline.config import PipelineConfig  # noqa: E402


def _path_of(name: str, config: PipelineConfig) -> list[str]:
    """The chain of models ``name`` was trained through (for the arrows)."""
    start = ["base", "sft"] if config.dpo.start == "sft" else ["base"]
    if name.startswith("dpo-"):
        return [*start, name]
    if name in ("base", "sft"):
        return start[: start.index(name) + 1]
    return [*start, f"dpo-p{config.rl.proportion:g}", name]


def tradeoff(rows: list[dict[str, Any]], config: PipelineConfig, path: Path) -> Path:
    """pass@1 (x) against DPS_norm (y), one panel per (suite, split), an arrow along each model's training."""
    panels: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        panels[(r["suite"], r["split"])][r["name"]] = r
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, ((suite, split), models) in zip(axes[0], panels.items(), strict=True):
        # A model without a DPS_norm (nothing passed) has no point: drawing it at 0 would look like a collapse.
        placed = {name: ((r["pass_at_1"] or 0.0) * 100, r["dps_norm"]) for name, r in models.items()
                  if r.get("pass_at_1") is not None and r.get("dps_norm") is not None}
        for name, (x, y) in placed.items():
            ax.scatter([x], [y], s=30, zorder=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for name in placed:
            chain = [m for m in _path_of(name, config) if m in placed]
            for a, b in zip(chain, chain[1:], strict=False):
                ax.annotate("", xy=placed[b], xytext=placed[a],
                            arrowprops={"arrowstyle": "->", "color": "0.5", "lw": 0.8})
        ax.set_title(f"{suite}, {split}")
        ax.set_xlabel("pass@1 (%)")
        ax.set_ylabel("DPS_norm")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def curves(runs: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """pass@1 and DPS_norm of each RL run's periodic evaluations against the step."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, evals in runs.items():
        for ax, key, scale in ((axes[0], "pass@1", 100.0), (axes[1], "dps_norm", 1.0)):
            points = [(e["step"], e[key] * scale) for e in evals if e.get(key) is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    for ax, label in zip(axes, ("pass@1 (%)", "DPS_norm"), strict=True):
        ax.set_xlabel("RL step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
