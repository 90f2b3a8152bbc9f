"""The typed config of ``effirl train sft`` (the trainer is :mod:`effirl.training.sft_trainer`).

Why it exists: TRL's own split, a config beside its trainer; the defaults are the paper's SFT settings (its
Table 8: learning rate 5e-6, cosine schedule, warm-up 0.03, 10 epochs, batch 1024), and every key is checked
(``extra="forbid"``) so that a misspelt one is an error naming it.
"""

from __future__ import annotations

from pydantic import Field

from effirl.training.common import TrainConfig


class SFTConfig(TrainConfig):
    """Supervised fine-tuning on chat rows (``messages``) with TRL's ``SFTTrainer``."""

    data: str = Field(description="An effirl data sft folder, a datasets folder, a JSON Lines file, a hub id")
    epochs: float = Field(10.0, gt=0)
    max_length: int = Field(2048, ge=16, description="Tokens per row at most (longer rows are truncated)")
    completion_only_loss: bool = Field(True, description="Loss on the response only (as LlamaFactory); "
                                       "False: on the whole conversation")
    packing: bool = False
