"""The typed config the RL trainers share (``effirl train rloo|grpo``): rollouts, the reward, the evaluation.

Why it exists: RLOO and GRPO differ only in how they turn a group's rewards into advantages; what they sample
from, how big a step is, which reward scores it and how the policy is evaluated along the way are the same
decisions, made once here and checked strictly (``extra="forbid"``: a misspelt key is an error naming it).

Batch terms are the paper's (its Table 10, the defaults here): a *step* samples ``num_generations``
completions for each of ``batch_size`` prompts (one rollout, 64 x 64), and the policy is updated once per
``mini_batch_size`` prompts of it (32: two optimizer steps per rollout); ``per_device_batch_size`` completions
go through one forward/backward pass. Learning rate 1e-6, temperature 1.0, completions up to 12k tokens, 30
epochs ("episodes") over the training prompts. The paper gives no KL term; ``beta`` is 0 by default (no
reference model) and any value is allowed.

The ``reward`` section is :class:`~effirl.training.reward_config.EfficiencyRewardConfig` (meter, sandbox
workers, fresh inputs, calibration and scales, time budgets), and also takes the constants of
:class:`~effirl.scoring.reward.RewardConfig` at its own level (``reward: {meter: callgrind, round_to: 0.1}``:
GRPO with Round). Its suite, source and ``num_generations`` are the trainer's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from effirl.execution.executor import ExecutorConfig
from effirl.scoring.reward import RewardConfig
from effirl.training.common import TrainConfig
from effirl.training.reward_config import EfficiencyRewardConfig

# Keys effirl sets on TRL's config itself (from its own keys): ``trl_args`` may not set them again.
MANAGED_TRL_KEYS = frozenset({
    "output_dir", "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "num_train_epochs",
    "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "weight_decay",
    "max_grad_norm", "seed", "save_strategy", "save_steps", "save_total_limit", "logging_steps", "report_to",
    "bf16", "fp16", "use_cpu", "gradient_checkpointing", "activation_checkpointing", "num_generations",
    "generation_batch_size", "steps_per_generation", "max_completion_length", "temperature", "top_p", "beta",
    "num_iterations", "epsilon", "mask_truncated_completions", "log_completions", "remove_unused_columns",
    "scale_rewards", "loss_type", "normalize_advantages", "auto_find_batch_size",
})


class EvalSettings(BaseModel):
    """The periodic evaluation: pass@1, DPS_norm and mean reward of the policy in training, every K steps.

    Samples come from the in-memory model (greedy with ``temperature: 0``, or a low temperature such as 0.2
    and ``n`` samples per task), are checked and measured with the reward's meter, sandbox and scales, on
    performance inputs of their own seed (``inputs_seed``; by default one no training step uses), against the
    task's references measured once per run (``OUT/eval/references``). Each evaluation leaves its samples,
    results and report in ``OUT/eval/step-N/`` and its metrics (``eval/pass@1``, ``eval/dps_norm``,
    ``eval/reward``, ...) in ``OUT/metrics.jsonl`` at step N.
    """

    model_config = ConfigDict(extra="forbid")

    every: int = Field(10, ge=0, description="Evaluate every K optimizer steps (0: never, nor at start/end)")
    at_start: bool = Field(True, description="Also before the first step (the starting point of the curves)")
    at_end: bool = Field(True, description="Also after the last step, when it is not a multiple of every")
    tasks: list[str] | None = Field(None, description="Evaluation tasks (ids or names in the suite); None: "
                                    "the held-out tasks if holdout > 0, else the training tasks")
    holdout: float = Field(0.0, ge=0.0, lt=1.0, description="Share of the training tasks held out of "
                           "training and evaluated instead (chosen by a seeded hash of the task id)")
    separate: bool = Field(False, description="Leave the evaluation tasks out of the training prompts")
    n: int = Field(4, ge=1, description="Samples per task")
    temperature: float = Field(0.2, ge=0.0, description="0: greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int | None = Field(None, ge=1, description="None: the training max_completion_length")
    batch_size: int = Field(16, ge=1, description="Rows generated together")
    inputs_seed: int | None = Field(None, description="Seed of the evaluation's performance inputs; None: "
                                    "run_seed(reward.inputs_seed, -1), which no training step draws")
    min_correct: int = Field(1, ge=1, description="EvalPerf's rule: correct samples a task needs for DPS")
    seed: int | None = Field(None, description="Sampling seed of the evaluation; None: derived from the run's "
                             "seed, apart from any seed training samples are drawn with")

    @model_validator(mode="after")
    def _one_split(self) -> EvalSettings:
        if self.tasks is not None and self.holdout > 0:
            raise ValueError("give evaluation.tasks or evaluation.holdout, not both")
        return self


_REWARD_CONSTANTS = tuple(RewardConfig.model_fields)


class RLConfig(TrainConfig):
    """What ``effirl train rloo`` and ``effirl train grpo`` share (see the module doc for the batch terms)."""

    suite: str = Field("builtin", description="The task suite whose prompts are the training set")
    source: str | None = Field(None, description="Local file or folder of the suite")
    tasks: list[str] | None = Field(None, description="Training tasks (ids or names in the suite); None: all")
    strategy: Literal["direct", "efficient", "cot"] = Field("direct", description="Prompt strategy (the "
                                                              "templates of effirl generate)")
    prompt_file: Path | None = Field(None, description="YAML whose keys replace the default prompt templates")

    learning_rate: float = Field(1e-6, gt=0)
    lr_scheduler: str = "constant"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    epochs: float = Field(30.0, gt=0, description="Passes over the training prompts (the paper's episodes)")
    batch_size: int = Field(64, ge=1, description="Prompts per step (one rollout)")
    mini_batch_size: int = Field(32, ge=1, description="Prompts per optimizer update (batch_size / "
                                 "mini_batch_size updates per rollout)")
    per_device_batch_size: int = Field(4, ge=1, description="Completions per forward/backward pass, device")
    num_generations: int = Field(64, ge=2, description="Completions per prompt (the group)")
    max_completion_length: int = Field(12288, ge=1, description="Tokens per completion at most (cut to what "
                                       "the model's context leaves after the longest prompt)")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.0, ge=0, description="KL coefficient (0: no reference model)")
    num_iterations: int = Field(1, ge=1, description="Updates per rollout batch (mu)")
    epsilon: float = Field(0.2, gt=0, description="Clipping of the policy ratio")
    mask_truncated_completions: bool = Field(False, description="Leave truncated completions out of the loss")
    log_completions: bool = Field(False, description="TRL's table of sampled completions in the logs")
    save_steps: int = Field(10, ge=1)

    reward: EfficiencyRewardConfig = Field(default_factory=EfficiencyRewardConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where the reward's sandbox "
                                     "workers run: local processes, or actors on a Ray cluster")
    evaluation: EvalSettings = Field(default_factory=EvalSettings)
    trl_args: dict[str, Any] = Field(default_factory=dict, description="Other keys of TRL's RLOOConfig / "
                                     "GRPOConfig (e.g. use_vllm), checked against it")

    @model_validator(mode="before")
    @classmethod
    def _flat_reward_constants(cls, data: Any) -> Any:
        """``reward: {round_to: 0.1}`` is ``reward: {reward: {round_to: 0.1}}`` (the constants' own block)."""
        if not isinstance(data, dict) or not isinstance(data.get("reward"), dict):
            return data
        block = dict(data["reward"])
        flat = {k: block.pop(k) for k in _REWARD_CONSTANTS if k in block}
        if flat:
            inner = block.get("reward") or {}
            if isinstance(inner, RewardConfig):
                inner = inner.model_dump(exclude_unset=True)
            if isinstance(inner, dict):
                block["reward"] = {**inner, **flat}
        return {**data, "reward": block}

    @model_validator(mode="after")
    def _consistent(self) -> RLConfig:
        if self.batch_size % self.mini_batch_size:
            raise ValueError(f"batch_size ({self.batch_size} prompts) must be a multiple of mini_batch_size "
                             f"({self.mini_batch_size})")
        given = self.reward.model_fields_set
        for key in ("suite", "source"):
            if key in given and getattr(self.reward, key) != getattr(self, key):
                raise ValueError(f"reward.{key} ({getattr(self.reward, key)!r}) differs from {key} "
                                 f"({getattr(self, key)!r}); the reward scores the training suite: leave it "
                                 "out")
        if "num_generations" in given and self.reward.num_generations != self.num_generations:
            raise ValueError(f"reward.num_generations ({self.reward.num_generations}) differs from "
                             f"num_generations ({self.num_generations}); leave it out")
        clash = sorted(set(self.trl_args) & MANAGED_TRL_KEYS)
        if clash:
            raise ValueError(f"trl_args may not set {', '.join(clash)}: effirl sets them from its own keys")
        # The reward scores the training suite, and knows the group size (duplicated prompts vs split groups).
        self.reward = self.reward.model_copy(update={"suite": self.suite, "source": self.source,
                                                     "num_generations": self.num_generations})
        return self
