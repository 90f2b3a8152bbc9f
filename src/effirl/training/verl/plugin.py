"""effirl inside verl: the group step as advantage estimators and a reward manager, as a verl plugin.

Loaded by verl itself: ``import verl`` loads every entry point of the ``verl.plugins`` group (effirl's is
``effirl = "effirl.training.verl.plugin"`` in effirl's ``pyproject.toml``; ``VERL_USE_EXTERNAL_PLUGINS`` can
restrict which), in the driver and in every worker process, so the names below resolve wherever verl looks
them up. This module imports verl and torch; nothing else in effirl imports it.

The choice: **a custom advantage estimator**, not a reward manager, for the group step. In verl 0.9.1 the
reward loop scores each trajectory alone, as soon as it is generated (``RewardManagerBase.run_single`` on one
sample, called from the agent loop while other rollouts still run); the batch-level reward managers of older
verl (``verl.workers.reward_manager``) are gone. The one place that sees a whole step, grouped by prompt, is
the advantage computation: ``compute_advantage`` calls ``get_adv_estimator_fn(algorithm.adv_estimator)`` with
the step's ``token_level_rewards`` and its ``uid`` index (and nothing of the samples' extra info). So:

* ``compute_score`` (:mod:`effirl.training.verl.reward`) checks and measures one completion and returns its
  status and count as extra info and, encoded, as its score (:func:`effirl.training.verl.group.encode_score`);
* ``effirl_rloo`` / ``effirl_grpo`` (registered here with ``core_algos.register_adv_est``) decode each
  sample's status and count from its score, compute F(C, G) and the penalties per ``uid`` with
  :func:`effirl.scoring.reward.group_rewards` (the Round variant with ``algorithm.effirl.round_to``), and hand
  those rewards to verl's own RLOO or GRPO estimator. The other ``algorithm.effirl`` keys are the other
  ``RewardConfig`` fields (``s_min``, ``s_max_cap``, ``fail``, ``no_entry_point``, ``format_error``);
* ``effirl`` (registered with the reward loop's ``register``) is the reward manager to use with them: verl's
  naive one, but it passes the sample's ``uid`` to ``compute_score`` (the group's performance inputs are
  seeded by it) and uses effirl's ``compute_score`` unless another is configured.

``algorithm.use_kl_in_reward`` must stay off with these estimators (they read the scores, not the rewards less
a KL term); the KL term of the paper's runs is a loss term (``actor.use_kl_loss``).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
from verl.trainer.ppo import core_algos

from effirl.errors import EffirlError
from effirl.training.verl.group import reward_config, rewards_from_scores
from effirl.training.verl.reward import compute_score as effirl_compute_score

ESTIMATORS = {"effirl_rloo": "rloo", "effirl_grpo": "grpo"}
REWARD_MANAGER = "effirl"


def _setting(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    getter = getattr(config, "get", None)
    if getter is not None:
        try:
            return getter(key, default)
        except Exception:  # noqa: BLE001 - a dataclass config without this key
            pass
    return getattr(config, key, default)


def _effirl_settings(config: Any) -> dict[str, Any]:
    block = _setting(config, "effirl")
    if block is None:
        return {}
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(block):
            return dict(OmegaConf.to_container(block, resolve=True))  # type: ignore[arg-type]
    except ImportError:
        pass
    return dict(block)


def group_token_rewards(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any,
                        config: Any = None) -> torch.Tensor:
    """Token-level rewards holding each sample's F(C, G) (or penalty) on its last response token."""
    if _setting(config, "use_kl_in_reward", False):
        raise EffirlError("effirl's advantage estimators read the per-sample scores: set algorithm."
                          "use_kl_in_reward=False (use actor_rollout_ref.actor.use_kl_loss for the KL)")
    if index is None:
        raise EffirlError("verl batch: no 'uid' (non_tensor_batch.uid): the group step needs prompt ids")
    scores = token_level_rewards.sum(dim=-1).detach().float().cpu().tolist()
    rewards = rewards_from_scores(list(index), scores, reward_config(_effirl_settings(config)))
    mask = response_mask.to(torch.bool)
    last = mask.long().cumsum(dim=-1) == mask.long().sum(dim=-1, keepdim=True)
    out = torch.zeros_like(token_level_rewards)
    out[last & mask] = torch.tensor(rewards, dtype=out.dtype, device=out.device)[mask.any(dim=-1)]
    return out


@core_algos.register_adv_est("effirl_rloo")
def compute_effirl_rloo_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                                  index: np.ndarray | None = None, epsilon: float = 1e-6, config: Any = None,
                                  **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO (the paper's default) on effirl's group reward."""
    rewards = group_token_rewards(token_level_rewards, response_mask, index, config)
    return core_algos.compute_rloo_outcome_advantage(rewards, response_mask, index, epsilon=epsilon,
                                                     config=config)


@core_algos.register_adv_est("effirl_grpo")
def compute_effirl_grpo_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                                  index: np.ndarray | None = None, epsilon: float = 1e-6, config: Any = None,
                                  **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO on effirl's group reward (GRPO with Round: ``algorithm.effirl.round_to``)."""
    rewards = group_token_rewards(token_level_rewards, response_mask, index, config)
    norm = bool(_setting(config, "norm_adv_by_std_in_grpo", True))
    return core_algos.compute_grpo_outcome_advantage(rewards, response_mask, index, epsilon=epsilon,
                                                     norm_adv_by_std_in_grpo=norm, config=config)


@register(REWARD_MANAGER)
class EffirlRewardManager(RewardManagerBase):
    """verl's naive reward manager, passing the sample's ``uid`` (and ``data_source``) in its extra info, with
    effirl's ``compute_score`` (and ``reward.custom_reward_function.reward_kwargs``) unless another is set."""

    def __init__(self, config: Any, tokenizer: Any, compute_score: Any = None,
                 reward_router_address: Any = None, reward_model_tokenizer: Any = None) -> None:
        super().__init__(config, tokenizer, compute_score)
        custom = _setting(_setting(config, "reward"), "custom_reward_function")
        self.own = not _setting(custom, "path")  # no custom function configured: verl gave its default one
        kwargs = _setting(custom, "reward_kwargs") or {}
        self.kwargs = dict(kwargs) if self.own else {}
        self.compute_score = effirl_compute_score if self.own else compute_score
        self.is_async = inspect.iscoroutinefunction(self.compute_score)
        self.router = {"reward_router_address": reward_router_address,
                       "reward_model_tokenizer": reward_model_tokenizer} if reward_router_address else {}

    async def run_single(self, data: DataProto) -> dict[str, Any]:
        item = data[-1:][0]  # multi-turn outputs: the last sequence carries the reward
        responses = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-responses.shape[-1]:].sum())
        extra = dict(item.non_tensor_batch.get("extra_info") or {})
        extra["uid"] = item.non_tensor_batch.get("uid")
        data_source = item.non_tensor_batch.get("data_source")
        ground_truth = (item.non_tensor_batch.get("reward_model") or {}).get("ground_truth")
        text = await self.loop.run_in_executor(
            None, lambda: self.tokenizer.decode(responses[:valid], skip_special_tokens=True))
        call = dict(data_source=data_source, solution_str=text, ground_truth=ground_truth, extra_info=extra,
                    **self.kwargs, **self.router)
        if self.is_async:
            result = await self.compute_score(**call)
        else:
            result = await self.loop.run_in_executor(None, lambda: self.compute_score(**call))
        if isinstance(result, dict):
            info = {k: v for k, v in result.items() if k != "score"}
            return {"reward_score": result["score"], "reward_extra_info": info}
        return {"reward_score": float(result), "reward_extra_info": {"acc": float(result)}}
