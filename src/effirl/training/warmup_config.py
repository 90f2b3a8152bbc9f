"""The typed config of ``effirl train warmup`` (the trainer is :mod:`effirl.training.warmup_trainer`).

Why it exists: a model made from nothing (``effirl model init``) must first learn to write Python for a suite's
tasks before the paper's method can improve it. The defaults are those measured to give the CPU miniature a
realistic base model (a 1.2 M-parameter Qwen2: learning rate 4e-3, batch 16, 700 steps, the slowest reference
three times per task): about a third of its samples at temperature 1.0 pass.
"""

from __future__ import annotations

from pydantic import Field

from effirl.data.warmup import WarmupMix
from effirl.training.common import TrainConfig


class WarmupConfig(TrainConfig):
    """SFT of a from-scratch model on the warm-up corpus of a suite (every task: it stands in for pretraining)."""

    suite: str = "builtin"
    source: str | None = None
    tasks: list[str] | None = Field(None, description="Only these tasks of the suite (ids); None: every task")
    mix: WarmupMix = Field(default_factory=WarmupMix)
    learning_rate: float = Field(4e-3, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_steps: int | None = Field(700, ge=1)
    batch_size: int = Field(16, ge=1)
    per_device_batch_size: int = Field(16, ge=1)
    max_length: int = Field(1024, ge=16, description="Tokens per row at most")
    save_steps: int = Field(100, ge=1)
