"""The group step of effirl's reward in verl: per-sample statuses and counts, grouped by ``uid``, to F(C, G).

Why it exists: verl scores each completion alone, but the paper's reward compares a completion with the other
completions of its prompt in the same step (the fastest passing one 2.0, the slowest 1.0, failures 0 / -0.5 /
-1.5). This module is that step, free of verl and torch, on what verl holds: a step's ``uid`` per sample (one
uid per prompt, shared by its ``n`` completions) and, per sample, the status and count that effirl's
``compute_score`` found. It calls :func:`effirl.scoring.reward.group_rewards` once per uid, so the result is
that function's, with its Round variant (``RewardConfig.round_to``).

The bridge to verl's advantage step (see :mod:`effirl.training.verl.plugin`) is the per-sample score: verl
keeps one float per completion (``rm_scores``, float32) and hands the advantage estimator only those scores
and the uids. ``compute_score`` therefore puts its status and count in the score itself
(:func:`encode_score`), in a form that is also a sensible reward to log on its own:

* a passing completion scores ``1 + u`` with ``u`` in [0, 1): its ``-ln N``, mapped linearly from
  ``[-LN_HI, -LN_LO]`` (faster is higher), exact to ~1e-5 in ``ln N`` in float32;
* a failing one scores the paper's constant for its status: 0 (wrong, crashed, too slow), -0.5 (no entry
  point), -1.5 (no code).

:func:`decode_score` reads a score back; the estimator then applies the run's own ``RewardConfig``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from effirl.errors import EffirlError
from effirl.execution.verdict import Status
from effirl.scoring.reward import Count, RewardConfig, group_rewards

LN_LO, LN_HI = -30.0, 60.0  # the ln N a score can carry: N from 1e-13 (seconds) to 1e26 (instructions)
PASS_BASE = 1.0
FAIL_SCORE = {Status.NO_ENTRY_POINT: -0.5, Status.FORMAT_ERROR: -1.5}  # every other failure: 0.0
TOLERANCE = 1e-4  # how far from a code a float32 score may be and still be read as it


class ScoreDecodeError(EffirlError):
    """A score that effirl's ``compute_score`` did not produce (or that was changed on the way)."""


def encode_score(status: Status | str, count: float | None) -> float:
    """The per-sample score of a completion with ``status`` and (passing) total ``count``."""
    status = Status(status)
    if not status.passed:
        return FAIL_SCORE.get(status, 0.0)
    if count is None or not count > 0:
        raise ValueError(f"a passing completion needs a positive count, not {count!r}")
    ln = math.log(count)
    if not LN_LO <= ln < LN_HI:
        raise ValueError(f"count {count!r} is outside what a score can carry (e^{LN_LO:g} to e^{LN_HI:g})")
    return PASS_BASE + (LN_HI - ln) / (LN_HI - LN_LO) * (1.0 - 1e-6)


def decode_score(score: float) -> tuple[Status, float | None]:
    """The status and count a score carries (wrong_answer stands for every failure scored 0)."""
    if score >= PASS_BASE - TOLERANCE:
        u = min(max(score - PASS_BASE, 0.0), 1.0) / (1.0 - 1e-6)
        return Status.PASS, math.exp(LN_HI - u * (LN_HI - LN_LO))
    for status, value in ((Status.WRONG_ANSWER, 0.0), *FAIL_SCORE.items()):
        if abs(score - value) <= TOLERANCE:
            return status, None
    raise ScoreDecodeError(f"reward score {score!r} is not one effirl's compute_score gives (1 to 2 for a "
                           "pass, 0 / -0.5 / -1.5 for a failure): use effirl's compute_score and keep "
                           "algorithm.use_kl_in_reward off with effirl's advantage estimators")


def group_step(uids: Iterable[Any], statuses: Sequence[Status | str], counts: Sequence[Count],
               config: RewardConfig | None = None) -> list[float]:
    """F(C, G) and the penalties of every sample, grouped by ``uid`` (verl's prompt id), in the batch's order.

    Samples of one uid may be spread anywhere in the batch (verl balances batches); each group is scored by
    :func:`group_rewards` as a whole.
    """
    keys = [str(u) for u in uids]
    if not len(keys) == len(statuses) == len(counts):
        raise EffirlError(f"verl batch: {len(keys)} uids, {len(statuses)} statuses and {len(counts)} counts")
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    rewards = [0.0] * len(keys)
    for key, idx in members.items():
        try:
            got = group_rewards([statuses[i] for i in idx], [counts[i] for i in idx], config)
        except ValueError as exc:
            raise EffirlError(f"verl batch, uid {key}: {exc}") from None
        for i, r in zip(idx, got, strict=True):
            rewards[i] = r
    return rewards


def rewards_from_infos(uids: Iterable[Any], infos: Sequence[Mapping[str, Any]],
                       config: RewardConfig | None = None) -> list[float]:
    """The group step on verl's per-sample reward extra info (``{"status", "count", ...}`` per sample, as
    ``compute_score`` returns it)."""
    statuses, counts = [], []
    for i, info in enumerate(infos):
        if "status" not in info:
            raise EffirlError(f"verl batch, sample {i}: reward extra info has no 'status' (field "
                              "reward_extra_info.status): was it scored by effirl's compute_score?")
        statuses.append(info["status"])
        counts.append(info.get("count"))
    return group_step(uids, statuses, counts, config)


def rewards_from_scores(uids: Iterable[Any], scores: Iterable[float],
                        config: RewardConfig | None = None) -> list[float]:
    """The group step on the per-sample scores alone (what verl's advantage estimator is given)."""
    decoded = [decode_score(float(s)) for s in scores]
    return group_step(uids, [s for s, _ in decoded], [c for _, c in decoded], config)


def reward_config(settings: Mapping[str, Any] | None) -> RewardConfig:
    """The ``RewardConfig`` of verl's ``algorithm.effirl`` block (``s_min``, ``s_max_cap``, ``fail``,
    ``no_entry_point``, ``format_error``, ``round_to``); one line naming the key when it is wrong."""
    from pydantic import ValidationError

    data = dict(settings or {})
    try:
        return RewardConfig(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise EffirlError(f"algorithm.effirl{'.' + where if where else ''}: {err['msg']}") from None
    except TypeError as exc:
        raise EffirlError(f"algorithm.effirl: {exc}") from None
