"""The typed config of ``effirl train grpo`` (the trainer is :mod:`effirl.training.grpo_trainer`).

Why it exists: TRL's own split, a config beside its trainer. GRPO is the paper's comparison: a completion's
advantage is its reward minus the group mean, divided by the group's standard deviation. That division
amplifies small, noisy differences in efficiency between nearly-equal programs; "GRPO with Round" rounds the
efficiency reward to a grid first (``reward.round_to``, e.g. 0.1; ``--reward-round`` on the command line) so
that such differences vanish. Everything else is shared with RLOO
(:class:`~effirl.training.rl_config.RLConfig`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from effirl.training.rl_config import RLConfig


class GRPOConfig(RLConfig):
    """GRPO (or GRPO with Round) with the efficiency reward on a suite's prompts (TRL's ``GRPOTrainer``)."""

    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide the advantages by the std of the group (GRPO), of the batch, or not")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"] = Field(
        "dapo", description="TRL's policy loss and how it aggregates token losses (dapo: the token mean)")
