"""``effirl train rloo``: TRL's ``RLOOTrainer`` with the efficiency reward on a suite's prompts.

Why it exists: the paper's stage 2 (RLOO from the DPO checkpoint) as one call, :func:`train_rloo`, that the
CLI and the two-stage pipeline share. The reward, the batch geometry, the periodic evaluation, checkpoints and
resume are :mod:`effirl.training.rl_common`'s; this module adds RLOO's own keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from effirl.extras import require
from effirl.training.common import Progress
from effirl.training.rloo_config import RLOOConfig

if TYPE_CHECKING:
    from effirl.training.reward import EfficiencyReward
    from effirl.training.rl_common import RLRun

ALGO = "rloo"


def build_rloo_trainer(config: RLOOConfig, progress: Progress | None = None, dataset: Any = None,
                       reward: EfficiencyReward | None = None) -> RLRun:
    """The ``trl.RLOOTrainer`` of ``config`` (with its tokenizer, reward and evaluation), ready to train.
    ``dataset``: rows with ``prompt`` and ``task_id`` instead of the suite's prompts; ``reward``: an
    :class:`~effirl.training.reward.EfficiencyReward` instead of the one ``config.reward`` describes. Close
    ``run.reward`` (``train_rloo`` does)."""
    trl = require("trl", "train", "effirl train rloo")
    from effirl.training.rl_common import build_rl_trainer

    return build_rl_trainer(ALGO, trl.RLOOTrainer, trl.RLOOConfig, config,
                            {"normalize_advantages": config.normalize_advantages}, progress, dataset,
                            reward)


def train_rloo(config: RLOOConfig, progress: Progress | None = None, dataset: Any = None,
               reward: EfficiencyReward | None = None) -> Path:
    """Train, save and return the final model's folder (``OUT/final``)."""
    from effirl.training.rl_common import train_rl

    return train_rl(build_rloo_trainer(config, progress, dataset, reward), ALGO)
