"""effirl's reward for verl, without verl: the group step on verl-shaped batches, compute_score, the data.

verl itself is not imported here (tests/test_verl_plugin.py runs where it is installed): the batches are
shaped as verl hands them over (a ``uid`` per sample, numpy object arrays, per-sample scores as float32,
reward extra info as dicts), and the group step must give exactly what
:func:`effirl.scoring.reward.group_rewards` gives per uid.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from effirl.errors import EffirlError
from effirl.execution.verdict import Status
from effirl.meters.callgrind import probe as callgrind_probe
from effirl.scoring.reward import RewardConfig, group_rewards
from effirl.tasks import Task
from effirl.training.verl.group import (
    ScoreDecodeError,
    decode_score,
    encode_score,
    group_step,
    reward_config,
    rewards_from_infos,
    rewards_from_scores,
)
from effirl.training.verl.reward import compute_score, group_seed

CALLGRIND_OK, _ = callgrind_probe()

# A step of three prompts (uids), their completions interleaved as verl's batch balancing leaves them.
SAMPLES: list[tuple[str, str, float | None]] = [
    ("u-a", "pass", 1_000_000), ("u-b", "wrong_answer", None), ("u-a", "pass", 4_000_000),
    ("u-c", "format_error", None), ("u-b", "pass", 2_500_000), ("u-a", "no_entry_point", None),
    ("u-c", "pass", 7_000_000), ("u-a", "pass", 1_000_000), ("u-b", "pass", 2_400_000),
    ("u-c", "timeout", None),
    ("u-a", "runtime_error", None), ("u-b", "memory_limit", None), ("u-a", "pass", 1_900_000),
]


def _expected(config: RewardConfig | None = None) -> list[float]:
    """group_rewards on each uid's samples, put back in the batch's order."""
    out = [0.0] * len(SAMPLES)
    for uid in dict.fromkeys(u for u, _, _ in SAMPLES):
        idx = [i for i, (u, _, _) in enumerate(SAMPLES) if u == uid]
        got = group_rewards([SAMPLES[i][1] for i in idx], [SAMPLES[i][2] for i in idx], config)
        for i, r in zip(idx, got, strict=True):
            out[i] = r
    return out


def _uids() -> np.ndarray:
    return np.array([u for u, _, _ in SAMPLES], dtype=object)  # verl's non_tensor_batch["uid"]


@pytest.mark.parametrize("config", [None, RewardConfig(round_to=0.1), RewardConfig(round_to=0.5, fail=-0.2)],
                         ids=["paper", "round-0.1", "round-0.5"])
def test_the_group_step_on_extra_info_is_group_rewards_per_uid(config: RewardConfig | None) -> None:
    infos = [{"status": s, "count": c, "acc": float(s == "pass"), "task_id": "t"} for _, s, c in SAMPLES]
    got = rewards_from_infos(_uids(), infos, config)
    assert got == _expected(config)
    passing = [r for r, (_, s, _) in zip(got, SAMPLES, strict=True) if s == "pass"]
    assert max(passing) > min(passing)  # the groups do spread their passers


def test_the_round_variant_changes_the_rewards() -> None:
    infos = [{"status": s, "count": c} for _, s, c in SAMPLES]
    plain = rewards_from_infos(_uids(), infos)
    rounded = rewards_from_infos(_uids(), infos, RewardConfig(round_to=0.5))
    assert plain != rounded
    assert all(r * 2 == round(r * 2) for r, (_, s, _) in zip(rounded, SAMPLES, strict=True) if s == "pass")


@pytest.mark.parametrize("config", [None, RewardConfig(round_to=0.1)], ids=["paper", "round"])
def test_the_group_step_on_float32_scores_matches_group_rewards(config: RewardConfig | None) -> None:
    """What verl's estimator sees: one float32 score per sample (rm_scores). Decoded, grouped, the rewards are
    group_rewards' to ~1e-5 (the score carries ln N to ~1e-5 in float32)."""
    scores = np.array([encode_score(s, c) for _, s, c in SAMPLES], dtype=np.float32)
    got = rewards_from_scores(_uids(), scores.tolist(), config)
    assert got == pytest.approx(_expected(config), abs=2e-5)


def test_scores_carry_status_and_count() -> None:
    for count in (3.0, 1e5, 123_456_789.0, 7.5e13):
        status, back = decode_score(float(np.float32(encode_score("pass", count))))
        assert status is Status.PASS and back is not None
        assert math.log(back) == pytest.approx(math.log(count), abs=2e-5)
    faster, slower = encode_score(Status.PASS, 1e6), encode_score(Status.PASS, 2e6)
    assert 1.0 <= slower < faster < 2.0  # a pass is worth 1 to 2 on its own, faster higher
    assert [decode_score(encode_score(s, None))[0] for s in ("wrong_answer", "timeout", "no_entry_point",
                                                             "format_error")] == \
        [Status.WRONG_ANSWER, Status.WRONG_ANSWER, Status.NO_ENTRY_POINT, Status.FORMAT_ERROR]
    with pytest.raises(ValueError, match="positive count"):
        encode_score("pass", None)


@pytest.mark.parametrize("score", [0.3, -0.9, 0.99, -2.0])
def test_a_score_effirl_did_not_give_is_refused(score: float) -> None:
    """A score changed on the way (a KL term added to it, another reward function) is not read as a count."""
    with pytest.raises(ScoreDecodeError) as err:
        rewards_from_scores(["u"], [score])
    assert "use_kl_in_reward" in str(err.value) and "\n" not in str(err.value)


def test_bad_batches_are_one_line() -> None:
    with pytest.raises(EffirlError, match=r"reward_extra_info\.status"):
        rewards_from_infos(["u"], [{"count": 5}])
    with pytest.raises(EffirlError, match="uid u-1: completion 0 passed but has no instruction count"):
        group_step(["u-1"], ["pass"], [None])
    with pytest.raises(EffirlError, match="2 uids, 1 statuses"):
        group_step(["a", "b"], ["pass"], [3])
    with pytest.raises(EffirlError, match=r"algorithm\.effirl\.round_to"):
        reward_config({"round_to": -1})
    with pytest.raises(EffirlError, match=r"algorithm\.effirl\.bonus: Extra inputs are not permitted"):
        reward_config({"bonus": 3})
    assert reward_config({"round_to": 0.1}) == RewardConfig(round_to=0.1)


def test_a_group_shares_its_inputs_seed_and_groups_differ() -> None:
    assert group_seed(0, "uid-1") == group_seed(0, "uid-1")  # every completion of a prompt, in any process
    assert len({group_seed(0, f"uid-{i}") for i in range(50)}) == 50
    assert group_seed(1, "uid-1") != group_seed(0, "uid-1")


# -- compute_score -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _stop_scorers() -> Iterator[None]:
    """compute_score keeps its pools for a process's life (a reward worker's): not past this module."""
    yield
    from effirl.training.verl import reward

    reward._close_scorers()


def _call(task: Task, response: str, **kwargs: Any) -> dict[str, Any]:
    info = {"task_id": task.id, "suite": "builtin", "uid": "step-1-prompt-7"}
    meter = "callgrind" if CALLGRIND_OK else "cputime"
    return compute_score("effirl/builtin", response, task.id, info, **{"executor": "local", "meter": meter,
                                                                        **kwargs})


def test_compute_score_checks_and_measures_one_completion(builtin_by_id: dict[str, Task]) -> None:
    task = builtin_by_id["builtin/anagram_group_count"]
    slow, fast = task.references[0].code, task.references[-1].code
    got_slow, got_fast = _call(task, f"Here:\n```python\n{slow}\n```"), _call(task, fast)
    for got in (got_slow, got_fast):
        assert (got["status"], got["acc"], got["task_id"]) == ("pass", 1.0, task.id)
        assert got["count"] > 10_000 and 1.0 <= got["score"] < 2.0
        assert decode_score(got["score"])[0] is Status.PASS
    assert got_fast["count"] < got_slow["count"] and got_fast["score"] > got_slow["score"]
    wrong = _call(task, f"def {task.entry_point}(words):\n    return -1\n")
    assert (wrong["status"], wrong["score"], wrong["count"]) == ("wrong_answer", 0.0, None)
    assert _call(task, "def other(words):\n    return 1\n")["score"] == -0.5
    assert _call(task, "I cannot solve this.")["status"] == "format_error"


def test_compute_score_refuses_a_row_without_task_id_in_one_line() -> None:
    with pytest.raises(EffirlError) as err:
        compute_score("effirl/builtin", "x", None, {"suite": "builtin", "index": 3}, executor="local")
    assert "extra_info.task_id" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(EffirlError, match="extra_info.task_id 'builtin/nope' is not a task of suite"):
        compute_score("effirl/builtin", "x", None, {"task_id": "builtin/nope", "suite": "builtin"},
                      executor="local")


def test_compute_score_names_a_wrong_reward_kwarg() -> None:
    with pytest.raises(EffirlError, match=r"reward_kwargs\.metre: Extra inputs are not permitted"):
        compute_score("effirl/builtin", "x", None, {"task_id": "builtin/lis_length", "suite": "builtin"},
                      metre="callgrind")


# -- effirl data verl ----------------------------------------------------------------------------------------


def test_effirl_data_verl_writes_the_parquet_files_verl_reads(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "verl"
    done = subprocess.run([sys.executable, "-m", "effirl.cli", "data", "verl", "--suite", "builtin", "--out",
                           str(out), "--val-fraction", "0.2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    train, val = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "val.parquet")
    assert set(pq.read_schema(out / "train.parquet").names) == {"data_source", "prompt", "ability",
                                                                "reward_model", "extra_info"}
    assert len(train) + len(val) == 43 and len(val) > 0
    ids = [row["task_id"] for row in train["extra_info"]] + [row["task_id"] for row in val["extra_info"]]
    assert len(set(ids)) == 43  # every task once, in one split
    row = train.iloc[0]
    assert row["data_source"] == "effirl/builtin"
    assert row["reward_model"]["ground_truth"] == row["extra_info"]["task_id"]
    messages = list(row["prompt"])
    assert messages[-1]["role"] == "user" and row["extra_info"]["entry_point"] in messages[-1]["content"]
    assert all(e["split"] == "val" for e in val["extra_info"])
    bad = subprocess.run([sys.executable, "-m", "effirl.cli", "data", "verl", "--suite", "builtin", "--out",
                          str(out), "--strategy", "fastest"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown strategy 'fastest'" in bad.stderr
