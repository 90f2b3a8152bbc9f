"""``effirl train grpo``: TRL's ``GRPOTrainer`` with the efficiency reward on a suite's prompts (GRPO with
Round when ``reward.round_to`` is set).

Why it exists: the paper's comparison arm as one call, :func:`train_grpo`, that the CLI and the two-stage
pipeline share. The reward, the batch geometry, the periodic evaluation, checkpoints and resume are
:mod:`effirl.training.rl_common`'s; this module adds GRPO's own keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from effirl.extras import require
from effirl.training.common import Progress
from effirl.training.grpo_config import GRPOConfig

if TYPE_CHECKING:
    from effirl.training.reward import EfficiencyReward
    from effirl.training.rl_common import RLRun

ALGO = "grpo"


def build_grpo_trainer(config: GRPOConfig, progress: Progress | None = None, dataset: Any = None,
                       reward: EfficiencyReward | None = None) -> RLRun:
    """The ``trl.GRPOTrainer`` of ``config`` (with its tokenizer, reward and evaluation), ready to train.
    ``dataset``: rows with ``prompt`` and ``task_id`` instead of the suite's prompts; ``reward``: an
    :class:`~effirl.training.reward.EfficiencyReward` instead of the one ``config.reward`` describes. Close
    ``run.reward`` (``train_grpo`` does)."""
    trl = require("trl", "train", "effirl train grpo")
    from effirl.training.rl_common import build_rl_trainer

    return build_rl_trainer(ALGO, trl.GRPOTrainer, trl.GRPOConfig, config,
                            {"scale_rewards": config.scale_rewards, "loss_type": config.loss_type},
                            progress, dataset, reward)


def train_grpo(config: GRPOConfig, progress: Progress | None = None, dataset: Any = None,
               reward: EfficiencyReward | None = None) -> Path:
    """Train, save and return the final model's folder (``OUT/final``)."""
    from effirl.training.rl_common import train_rl

    return train_rl(build_grpo_trainer(config, progress, dataset, reward), ALGO)
