"""Training on TRL: a typed config beside each trainer (SFT, DPO, RLOO, GRPO), and the efficiency reward.

Importing this package loads no torch: each trainer module imports its libraries when used.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from effirl.training.reward import EfficiencyReward
    from effirl.training.reward_config import EfficiencyRewardConfig

_LAZY = {"EfficiencyReward": "effirl.training.reward",
         "EfficiencyRewardConfig": "effirl.training.reward_config"}
__all__ = ["EfficiencyReward", "EfficiencyRewardConfig"]


def __getattr__(name: str) -> Any:
    """``effirl.training.EfficiencyReward`` and its config, imported on first use (torch-free either way)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
