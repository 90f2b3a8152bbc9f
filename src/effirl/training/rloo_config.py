"""The typed config of ``effirl train rloo`` (the trainer is :mod:`effirl.training.rloo_trainer`).

Why it exists: TRL's own split, a config beside its trainer. RLOO is the paper's stage-2 algorithm: each
completion's advantage is its reward minus the mean reward of the *other* completions of its prompt, so the
group reward (fastest passing 2.0, slowest 1.0, failing 0, no entry point -0.5, unparseable -1.5) needs no
learned baseline. Everything but the advantage is shared with GRPO
(:class:`~effirl.training.rl_config.RLConfig`: the paper's Table 10 by default).
"""

from __future__ import annotations

from pydantic import Field

from effirl.training.rl_config import RLConfig


class RLOOConfig(RLConfig):
    """RLOO with the efficiency reward on a suite's prompts (TRL's ``RLOOTrainer``)."""

    normalize_advantages: bool = Field(False, description="Scale the advantages of a rollout to mean 0 and "
                                       "std 1 (by default RLOO's baseline alone)")
