"""The typed config of ``effirl train dpo`` (the trainer is :mod:`effirl.training.dpo_trainer`).

Why it exists: TRL's own split, a config beside its trainer; the defaults are the paper's DPO settings (its
Table 9: learning rate 5e-6, cosine schedule, warm-up 0.03, 1 epoch, batch 1024, beta 0.1).
"""

from __future__ import annotations

from pydantic import Field

from effirl.training.common import TrainConfig


class DPOConfig(TrainConfig):
    """Direct preference optimization on (prompt, chosen, rejected) rows with TRL's ``DPOTrainer``."""

    data: str = Field(description="An effirl data dpo folder, a datasets folder, a JSON Lines file, a hub id")
    epochs: float = Field(1.0, gt=0)
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference model")
    loss_type: str = Field("sigmoid", description="TRL's DPO loss (sigmoid is the DPO paper's)")
    max_length: int = Field(2048, ge=16, description="Tokens of prompt + response at most")
    precompute_ref_log_probs: bool = Field(False, description="Score the reference once before training and "
                                           "free its memory")
