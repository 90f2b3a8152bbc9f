"""effirl inside verl 0.9.1: found through the ``verl.plugins`` entry point, the group step in verl's
advantage computation, the reward manager, and the recipes (they compose, and verl's own validation accepts
them).

Runs where verl imports (it pins transformers < 5.11: an environment of its own, see recipes/verl/README.md);
skipped elsewhere, saying why. The group step itself is tested without verl in tests/test_verl_group.py.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

verl = pytest.importorskip("verl", reason="verl is not installed here (it needs an environment of its own: "
                                          "pip install torch==2.13.0 && pip install 'effirl[verl]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

from effirl.errors import EffirlError  # noqa: E402
from effirl.scoring.reward import RewardConfig, group_rewards  # noqa: E402
from effirl.training.verl.group import encode_score  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "verl" / "config"
# uid, status, count: three prompts of one step, interleaved.
SAMPLES = [("a", "pass", 1e6), ("b", "pass", 3e6), ("a", "wrong_answer", None), ("a", "pass", 5e6),
           ("b", "format_error", None), ("c", "pass", 2e6), ("b", "pass", 2e6), ("a", "no_entry_point", None),
           ("c", "pass", 2e6), ("c", "timeout", None)]


def test_the_plugin_is_found_through_verls_entry_point() -> None:
    """``import verl`` loaded effirl's entry point: its estimators and reward manager are in verl's
    registries."""
    found = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert found.get("effirl") == "effirl.training.verl.plugin"
    import effirl.training.verl.plugin as plugin

    assert core_algos.get_adv_estimator_fn("effirl_rloo") is plugin.compute_effirl_rloo_advantage
    assert core_algos.get_adv_estimator_fn("effirl_grpo") is plugin.compute_effirl_grpo_advantage
    assert get_reward_manager_cls("effirl") is plugin.EffirlRewardManager


def _batch(length: int = 6) -> DataProto:
    """A verl step as the advantage step gets it: each sample's score on its last response token, its uid."""
    n = len(SAMPLES)
    lengths = [1 + (i * 3) % length for i in range(n)]
    mask = torch.zeros(n, length)
    scores = torch.zeros(n, length)
    for i, (_, status, count) in enumerate(SAMPLES):
        mask[i, :lengths[i]] = 1
        scores[i, lengths[i] - 1] = encode_score(status, count)
    return DataProto.from_dict(tensors={"token_level_rewards": scores, "response_mask": mask},
                               non_tensors={"uid": np.array([u for u, _, _ in SAMPLES], dtype=object)})


def _group_rewards(config: RewardConfig) -> torch.Tensor:
    out = torch.zeros(len(SAMPLES))
    for uid in dict.fromkeys(u for u, _, _ in SAMPLES):
        idx = [i for i, (u, _, _) in enumerate(SAMPLES) if u == uid]
        got = group_rewards([SAMPLES[i][1] for i in idx], [SAMPLES[i][2] for i in idx], config)
        for i, r in zip(idx, got, strict=True):
            out[i] = r
    return out


@pytest.mark.parametrize("estimator, base, effirl", [
    ("effirl_rloo", "rloo", {}),
    ("effirl_grpo", "grpo", {}),
    ("effirl_grpo", "grpo", {"round_to": 0.1}),
], ids=["rloo", "grpo", "grpo-round"])
def test_verls_advantage_step_runs_the_group_step(estimator: str, base: str, effirl: dict[str, Any]) -> None:
    """Through verl's own compute_advantage: the advantages are verl's RLOO / GRPO applied to group_rewards
    per uid (with the Round variant from algorithm.effirl.round_to)."""
    config = OmegaConf.create({"adv_estimator": estimator, "norm_adv_by_std_in_grpo": True,
                               "use_kl_in_reward": False, "effirl": effirl})
    data = compute_advantage(_batch(), adv_estimator=estimator, config=config)
    batch = _batch()
    rewards = torch.zeros_like(batch.batch["token_level_rewards"])
    mask = batch.batch["response_mask"]
    last = mask.sum(-1).long() - 1
    rewards[torch.arange(len(SAMPLES)), last] = _group_rewards(RewardConfig(**effirl))
    uids = batch.non_tensor_batch["uid"]
    if base == "rloo":
        want, _ = core_algos.compute_rloo_outcome_advantage(rewards, mask, uids)
    else:
        want, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, uids, norm_adv_by_std_in_grpo=True)
    assert torch.allclose(data.batch["advantages"], want, atol=1e-4)
    assert data.batch["advantages"].abs().sum() > 0


def test_the_estimators_refuse_a_kl_term_in_the_reward() -> None:
    config = OmegaConf.create({"use_kl_in_reward": True})
    with pytest.raises(EffirlError, match="use_kl_in_reward"):
        compute_advantage(_batch(), adv_estimator="effirl_rloo", config=config)


class _Tokenizer:
    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return "".join(chr(int(i)) for i in ids)


def test_the_reward_manager_passes_the_uid_to_compute_score() -> None:
    """verl's naive manager, plus the sample's uid in extra_info (the group's inputs are seeded by it)."""
    seen: list[dict[str, Any]] = []

    def scorer(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any],
               **kwargs: Any) -> dict[str, Any]:
        seen.append({"data_source": data_source, "text": solution_str, "truth": ground_truth, **extra_info})
        return {"score": 1.25, "status": "pass", "count": 42.0}

    config = OmegaConf.create({"reward": {"custom_reward_function": {"path": "somewhere.py", "name": "x"}}})
    manager = get_reward_manager_cls("effirl")(config=config, tokenizer=_Tokenizer(), compute_score=scorer)
    text = "def f(): return 1"
    responses = torch.tensor([[ord(c) for c in text] + [0, 0]])
    data = DataProto.from_dict(
        tensors={"responses": responses, "prompts": torch.ones(1, 3, dtype=torch.long),
                 "attention_mask": torch.tensor([[1, 1, 1] + [1] * len(text) + [0, 0]])},
        non_tensors={"uid": np.array(["uid-9"], dtype=object), "data_source": np.array(["effirl/builtin"]),
                     "reward_model": np.array([{"ground_truth": "builtin/x"}], dtype=object),
                     "extra_info": np.array([{"task_id": "builtin/x", "suite": "builtin"}], dtype=object)})
    loop = asyncio.new_event_loop()
    try:
        manager.loop = loop
        got = loop.run_until_complete(manager.run_single(data))
    finally:
        loop.close()
    assert got == {"reward_score": 1.25, "reward_extra_info": {"status": "pass", "count": 42.0}}
    assert seen == [{"data_source": "effirl/builtin", "text": text, "truth": "builtin/x",
                     "task_id": "builtin/x", "suite": "builtin", "uid": "uid-9"}]


@pytest.mark.parametrize("recipe, estimator, round_to", [
    ("effirl_rloo", "effirl_rloo", None), ("effirl_grpo", "effirl_grpo", None),
    ("effirl_grpo_round", "effirl_grpo", 0.1)])
def test_the_recipes_compose_and_verl_accepts_them(recipe: str, estimator: str, round_to: float | None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper's run (Table 10) on verl's own config machinery: Hydra composes each recipe over verl's
    ppo_trainer config and verl's validate_config passes (no GPU needed for either)."""
    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    monkeypatch.setenv("EFFIRL_VERL_MODEL", "/models/qwen2.5-coder-7b-instruct-dpo")
    with initialize_config_dir(config_dir=str(RECIPES), version_base=None):
        cfg = compose(config_name=recipe)
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    table10 = (cfg.trainer.total_epochs, cfg.actor_rollout_ref.actor.optim.lr,
               cfg.actor_rollout_ref.rollout.temperature, cfg.data.train_batch_size,
               cfg.actor_rollout_ref.actor.ppo_mini_batch_size, cfg.actor_rollout_ref.rollout.n,
               cfg.data.max_response_length)
    assert table10 == (30, 1e-6, 1.0, 64, 32, 64, 12288)
    assert (cfg.algorithm.adv_estimator, cfg.algorithm.effirl.round_to) == (estimator, round_to)
    assert cfg.algorithm.use_kl_in_reward is False
    assert cfg.reward.reward_manager.name == "effirl"
    assert cfg.reward.custom_reward_function.path == "pkg://effirl.training.verl.reward"
    assert cfg.reward.custom_reward_function.reward_kwargs.executor == "ray"
