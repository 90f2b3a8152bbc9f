"""The efficiency reward as TRL calls it, on hand-made groups of builtin completions, with callgrind counts.

Two prompts interleaved, each with its slow reference, its fast reference, a wrong answer, a program without
the entry point and prose: the rewards must be exactly ``group_rewards`` on the statuses and counts the reward
reports in ``last_details``, the penalties exact, fast above slow, in plain and conversational form, with and
without Round. Then the call's mechanics: duplicates judged once, fresh inputs per step, metrics, time
budgets, a dying sandbox worker, groups split across processes, and the one-line errors.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import reward_cases as rc

from effirl.errors import EffirlError
from effirl.execution.config import SandboxConfig
from effirl.meters import callgrind
from effirl.scoring.reward import RewardConfig, group_rewards
from effirl.training import EfficiencyReward
from effirl.training.reward import CompletionDetail, program_of

CALLGRIND_OK, CALLGRIND_WHY = callgrind.probe()
needs_callgrind = pytest.mark.skipif(not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}")
BOX = SandboxConfig(workers=2, test_timeout_s=2.0, total_timeout_s=30.0, cpu_s=30)


def make(**kwargs: Any) -> EfficiencyReward:
    return EfficiencyReward(suite="builtin", meter=kwargs.pop("meter", "callgrind"), workers=2,
                            scales=rc.SCALES, sandbox=kwargs.pop("sandbox", BOX), **kwargs)


@pytest.fixture(scope="module")
def reward() -> Iterator[EfficiencyReward]:
    if not CALLGRIND_OK:
        pytest.skip(f"callgrind unavailable: {CALLGRIND_WHY}")
    with make() as r:
        yield r


def by_group(details: list[CompletionDetail]) -> dict[int, list[CompletionDetail]]:
    out: dict[int, list[CompletionDetail]] = {}
    for d in details:
        out.setdefault(d.group, []).append(d)
    return out


def assert_rewards_are_group_rewards(reward: EfficiencyReward, rewards: list[float],
                                     config: RewardConfig | None = None) -> None:
    details = reward.last_details
    assert [d.index for d in details] == list(range(len(rewards)))
    assert [d.reward for d in details] == rewards
    for members in by_group(details).values():
        expected = group_rewards([d.status for d in members], [d.count for d in members], config)
        assert [rewards[d.index] for d in members] == expected


# -- the rewards of hand-made groups
# ------------------------------------------------------------------------------


@needs_callgrind
def test_rewards_are_the_group_reward_of_the_reported_counts(reward: EfficiencyReward) -> None:
    batch = rc.interleaved()
    rewards = rc.call(reward, batch, trainer_state=rc.Step(1))
    assert len(rewards) == 10 and all(isinstance(r, float) for r in rewards)
    assert_rewards_are_group_rewards(reward, rewards)
    details = reward.last_details
    groups = by_group(details)
    assert len(groups) == 2
    for members in groups.values():
        assert len({d.task_id for d in members}) == 1 and len(members) == 5
    by_kind = {(d.task_id, k): d for d, k in zip(details, batch["kinds"], strict=True)}
    for name in rc.TASK_NAMES:
        tid = rc.task(name).id
        slow, fast = by_kind[(tid, "slow")], by_kind[(tid, "fast")]
        assert slow.status == fast.status == "pass"
        assert slow.count is not None and fast.count is not None and slow.count > 5 * fast.count
        assert slow.counts == [slow.count] and slow.inputs_source == "generated"
        assert slow.inputs_scale == rc.SCALES[tid]
        # ln(slow/fast) > 1: the fastest gets the cap, the slowest s_min
        assert (fast.reward, slow.reward) == (2.0, 1.0)
        for kind, penalty in rc.PENALTY.items():
            d = by_kind[(tid, kind)]
            assert d.reward == penalty and d.count is None, d
        assert by_kind[(tid, "wrong")].status == "wrong_answer"
        assert by_kind[(tid, "no_entry")].status == "no_entry_point"
        assert by_kind[(tid, "prose")].status == "format_error"
        assert all(d.inputs_seed == reward.last_seed for d in details)


@needs_callgrind
def test_conversational_completions_score_as_plain_ones(reward: EfficiencyReward) -> None:
    batch = rc.interleaved()
    plain = rc.call(reward, batch, trainer_state=rc.Step(2))
    plain_details = reward.last_details
    chat = rc.call(reward, rc.as_chat(batch), trainer_state=rc.Step(2))
    assert_rewards_are_group_rewards(reward, chat)
    assert chat == plain
    assert [d.status for d in reward.last_details] == [d.status for d in plain_details]
    assert [d.group for d in reward.last_details] == [d.group for d in plain_details]


@needs_callgrind
def test_round_variant_rounds_the_efficiency_reward_only() -> None:
    """GRPO with Round: a program between the slow and the fast reference gets a reward rounded to 0.5."""
    t = rc.task("lis_length")
    # The fast algorithm, plus quadratic work on a tenth of the input: between the two references.
    middle = rc.fenced(t.references[-1].code.replace("def lis_length(nums):", "def _fast(nums):") + """

def lis_length(nums):
    k = len(nums) // 3
    waste = 0
    for i in range(k):
        for j in range(k):
            waste += (i ^ j) & 1
    return _fast(nums)
""")
    batch = rc.interleaved(kinds=("slow", "fast", "middle", "wrong", "no_entry", "prose"),
                           names=("lis_length",), extra={"lis_length": {"middle": middle}})
    config = RewardConfig(round_to=0.5)
    with make(reward_config=config) as r:
        rewards = rc.call(r, batch, trainer_state=rc.Step(3))
        assert_rewards_are_group_rewards(r, rewards, config)
        unrounded = group_rewards([d.status for d in r.last_details], [d.count for d in r.last_details])
    mid = rewards[2]
    assert r.last_details[2].status == "pass" and 1.0 < unrounded[2] < 2.0, unrounded
    assert mid == round(unrounded[2] * 2) / 2 and mid * 2 == int(mid * 2)
    assert rewards[:2] == [1.0, 2.0] and rewards[3:] == [0.0, -0.5, -1.5]  # penalties are never rounded


# -- one call's mechanics
# ------------------------------------------------------------------------------------------


@needs_callgrind
def test_identical_programs_are_judged_once_per_call(reward: EfficiencyReward) -> None:
    t = rc.task("pair_sum_count")
    fast = t.references[-1].code
    relaid = "# the same program, laid out differently\n" + fast.replace("    count = 0\n",
                                                                          "    count = 0  # n\n\n")
    texts = [rc.fenced(fast), rc.fenced(fast, "Another answer:"), rc.fenced(relaid), rc.completion(t, "slow"),
             rc.completion(t, "slow")]
    batch = {"prompts": [t.prompt] * 5, "completions": texts, "task_id": [t.id] * 5}
    got: dict[str, float] = {}
    rewards = rc.call(reward, batch, trainer_state=rc.Step(4), log_metric=got.__setitem__)
    d = reward.last_details
    # the same program text (the prose around it aside) is judged once; another layout of it is another
    # program (a program can read its own line numbers)
    assert [x.duplicate_of for x in d] == [None, 0, None, None, 3]
    assert d[0].count == d[1].count and d[3].count == d[4].count and d[2].status == "pass"
    assert rewards[0] == rewards[1] and max(rewards[:3]) == 2.0 and min(rewards[:3]) > 1.99  # ~one count
    assert rewards[3:] == [1.0, 1.0]
    assert got["efficiency/distinct_programs"] == 3.0
    times = reward.last_times
    assert times is not None and times.checks == 3 and times.measurements == 3


@needs_callgrind
def test_fresh_inputs_every_step_and_fixed_ones_on_request(reward: EfficiencyReward) -> None:
    t = rc.task("lis_length")
    batch = {"prompts": [t.prompt] * 2, "completions": [rc.completion(t, "slow"), rc.completion(t, "fast")],
             "task_id": [t.id] * 2}
    seeds, slow_counts = [], []
    for step in (10, 11, 11):
        rc.call(reward, batch, trainer_state=rc.Step(step))
        seeds.append(reward.last_seed)
        slow_counts.append(reward.last_details[0].count)
    assert len(set(seeds)) == 3  # a new seed every step, and for a second call at the same step
    assert len(set(slow_counts)) == 3  # new inputs: the data-dependent count moves
    from effirl.inputs.perf import run_seed

    assert seeds[0] == run_seed(0, 10) and seeds[1] == run_seed(0, 11)


@needs_callgrind
def test_metrics_go_through_trls_hooks(reward: EfficiencyReward) -> None:
    metrics: dict[str, float] = {}
    extra: dict[str, list[Any]] = {}
    batch = rc.interleaved()
    rewards = rc.call(reward, batch, trainer_state=rc.Step(5), log_metric=metrics.__setitem__,
                      log_extra=extra.__setitem__)
    assert metrics["efficiency/pass_rate"] == 0.4
    assert metrics["efficiency/format_error_rate"] == 0.2 and metrics["efficiency/no_entry_rate"] == 0.2
    counts = [d.count for d in reward.last_details if d.count]
    assert math.isclose(metrics["efficiency/mean_log_count"], sum(math.log(c) for c in counts) / len(counts))
    assert metrics["efficiency/reward_spread"] == 3.5  # 2.0 down to -1.5 in both groups
    assert metrics["efficiency/seconds"] > 0 and metrics["efficiency/measure_seconds"] > 0
    assert extra["efficiency_status"] == [d.status for d in reward.last_details]
    assert len(extra["efficiency_count"]) == len(rewards)


@needs_callgrind
def test_a_completion_over_its_measurement_budget_is_a_timeout() -> None:
    """Correct, but far slower than the slowest reference under the meter: stopped at its budget (derived from
    that reference), a test error on the performance input, and the call does not wait for it to finish."""
    t = rc.task("lis_length")
    crawl = rc.fenced(t.references[0].code.replace("def lis_length(nums):", "def _slow(nums):") + """

def lis_length(nums):
    for _ in range(200):
        out = _slow(nums)
    return out
""")
    texts = [rc.completion(t, "slow"), rc.completion(t, "fast"), crawl]
    batch = {"prompts": [t.prompt] * 3, "completions": texts, "task_id": [t.id] * 3}
    with make(budget_factor=2.0, start_allowance_s=0.0) as r:
        rc.call(r, batch, trainer_state=rc.Step(1))  # the first call measures the slowest reference (budget)
        meter_s = r._runner.budgets[t.id].meter_s
        assert meter_s is not None
        t0 = time.monotonic()
        rewards = rc.call(r, batch, trainer_state=rc.Step(2))
        took = time.monotonic() - t0
    d = r.last_details
    assert d[2].status == "timeout" and d[2].on_perf_input and rewards[2] == 0.0, d[2]
    assert d[2].budget_s == pytest.approx(max(1.0, 2.0 * meter_s), rel=1e-3)
    assert rewards[:2] == [1.0, 2.0]
    assert took < 4 * d[2].budget_s + 10, took  # 200x the slowest reference would take far longer


@needs_callgrind
def test_an_infinite_loop_holds_the_call_no_longer_than_the_test_clock(reward: EfficiencyReward) -> None:
    batch = rc.interleaved()
    rc.call(reward, batch, trainer_state=rc.Step(20))  # warm
    t0 = time.monotonic()
    rc.call(reward, batch, trainer_state=rc.Step(21))
    base = time.monotonic() - t0
    t = rc.task("lis_length")
    looping = rc.fenced("def lis_length(nums):\n    while True:\n        pass\n")
    batch = rc.interleaved(kinds=(*rc.KINDS, "loop"), extra={"lis_length": {"loop": looping},
                                                             "pair_sum_count": {"loop": rc.completion(
                                                                 rc.task("pair_sum_count"), "fast")}})
    t0 = time.monotonic()
    rewards = rc.call(reward, batch, trainer_state=rc.Step(22))
    took = time.monotonic() - t0
    loop = next(d for d in reward.last_details if d.task_id == t.id and d.index >= 10)
    assert loop.status == "timeout" and rewards[loop.index] == 0.0
    others = [d for d in reward.last_details if d.index != loop.index]
    assert all(d.status in ("pass", "wrong_answer", "no_entry_point", "format_error") for d in others)
    clock = reward._runner.clock_s(t.id)
    assert clock == reward.config.min_budget_s  # the slowest reference takes milliseconds natively: the floor
    print(f"\nwithout the loop {base:.2f} s, with it {took:.2f} s, test clock {clock} s")
    assert took <= base + clock + 3.0


# -- a sandbox worker that dies in the middle of a call
# -----------------------------------------------------------


def _kill_servers(pool: Any, stop: threading.Event, every_s: float, once: bool) -> None:
    """Kill the fork servers of ``pool`` (their process groups) while they run a child, as an OOM kill
    would."""
    while not stop.is_set():
        for w in pool.workers:
            proc = w.proc
            if proc is not None and w._busy:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                if once:
                    return
        time.sleep(every_s)


@needs_callgrind
@pytest.mark.parametrize("once", [True, False], ids=["killed-once", "killed-always"])
def test_a_dying_worker_still_gives_every_completion_a_reward(once: bool) -> None:
    t = rc.task("pair_sum_count")
    sleepy = rc.fenced("import time\ntime.sleep(0.6)\n\n" + t.references[-1].code)  # long enough to be hit
    texts = [rc.completion(t, "slow"), sleepy, rc.completion(t, "wrong"), rc.completion(t, "prose")]
    batch = {"prompts": [t.prompt] * 4, "completions": texts, "task_id": [t.id] * 4}
    with make() as r:
        rc.call(r, batch, trainer_state=rc.Step(1))  # warm: pools started, budgets known
        stop = threading.Event()
        killer = threading.Thread(target=_kill_servers, args=(r._runner.native, stop, 0.05, once),
                                  daemon=True)
        killer.start()
        try:
            rewards = rc.call(r, batch, trainer_state=rc.Step(2))
        finally:
            stop.set()
            killer.join()
        details = r.last_details
        assert len(rewards) == 4 and rewards[3] == -1.5
        if once:
            assert any(d.reran for d in details), details
            assert not any(d.worker_failure for d in details)
            assert [d.status for d in details] == ["pass", "pass", "wrong_answer", "format_error"]
        else:
            hit = [d for d in details if d.worker_failure]
            assert hit
            assert all(d.reran and d.status == "runtime_error" and rewards[d.index] == 0.0 for d in hit)
        after = rc.call(r, batch, trainer_state=rc.Step(3))  # training goes on
        assert [d.status for d in r.last_details] == ["pass", "pass", "wrong_answer", "format_error"]
        assert after[3] == -1.5


# -- groups split across processes
# ---------------------------------------------------------------------------------


def _rank(rank: int, port: int, sizes: dict[str, int], num_generations: int | None, out: Any) -> None:
    import torch.distributed as dist

    from effirl.training.reward_groups import check_groups_whole

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        check_groups_whole(sizes, num_generations, {})
        out.put((rank, "ok"))
    except EffirlError as exc:
        out.put((rank, str(exc)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("case", ["split", "whole", "drawn-twice"])
def test_a_group_split_across_processes_is_refused_in_every_process(case: str) -> None:
    """Two real processes of a gloo process group, as TRL runs them: a prompt whose completions are in both is
    refused by both, with the settings that keep groups whole; whole groups (or a prompt drawn twice, each
    copy whole) pass."""
    mp = pytest.importorskip("torch.multiprocessing")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sizes = {"split": ({"a|p": 4, "b|q": 8}, {"a|p": 4, "c|r": 8}),
             "whole": ({"a|p": 8}, {"b|q": 8}),
             "drawn-twice": ({"a|p": 8}, {"a|p": 8})}[case]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, port, sizes[r], 8, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    if case == "split":
        for rank in (0, 1):
            assert "split across processes (4 in process 0, 4 in process 1)" in got[rank], got
            assert "multiple of num_generations" in got[rank] and "#3896" in got[rank]
    else:
        assert got == {0: "ok", 1: "ok"}


# -- bad input: one clear line
# -------------------------------------------------------------------------------------


def test_bad_batches_are_one_clear_line() -> None:
    r = EfficiencyReward(suite="builtin", meter="cputime", scales=rc.SCALES)
    try:
        batch = rc.interleaved()
        with pytest.raises(EffirlError, match=r"needs a 'task_id' column .* suite 'builtin'"):
            r(prompts=batch["prompts"], completions=batch["completions"])
        with pytest.raises(EffirlError, match=r"completion 3: unknown task 'builtin/no_such_task': not in "
                                              r"suite 'builtin' \(43 tasks"):
            ids = list(batch["task_id"])
            ids[3] = "builtin/no_such_task"
            r(prompts=batch["prompts"], completions=batch["completions"], task_id=ids)
        with pytest.raises(EffirlError, match="'task_id' column has 2 values for 10 completions"):
            r(prompts=batch["prompts"], completions=batch["completions"], task_id=batch["task_id"][:2])
        assert r._runner._native is None  # refused before any sandbox work
    finally:
        r.close()


def test_an_unavailable_meter_names_the_available_ones() -> None:
    from effirl.meters import perf

    ok, why = perf.probe()
    if ok:
        pytest.skip("perf works here: no unavailable meter to ask for")
    with pytest.raises(EffirlError) as exc:
        EfficiencyReward(suite="builtin", meter="perf")
    text = str(exc.value)
    assert "\n" not in text and why in text
    assert "available here: " + (", ".join(["callgrind", "cputime"] if CALLGRIND_OK else ["cputime"])) in text
    with pytest.raises(EffirlError, match="unknown meter 'pmu'.*available here"):
        EfficiencyReward(suite="builtin", meter="pmu")
    with pytest.raises(EffirlError, match="scales: unknown task"):
        EfficiencyReward(suite="builtin", meter="cputime", scales={"builtin/nope": 3})


def test_the_reward_has_trls_signature_and_name() -> None:
    """TRL 1.16 calls ``reward_func(prompts=, completions=, completion_ids=, **columns, trainer_state=,
    log_extra=, log_metric=)`` and logs it under ``get_callable_name``."""
    import inspect

    trl_utils = pytest.importorskip("trl.trainer.utils")
    r = EfficiencyReward(suite="builtin", meter="cputime")
    try:
        assert trl_utils.get_callable_name(r) == "efficiency_reward"
        assert not trl_utils.is_async_callable(r)
        params = inspect.signature(r).parameters
        for name in ("prompts", "completions", "completion_ids", "trainer_state", "log_metric", "log_extra"):
            assert name in params
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    finally:
        r.close()


def test_programs_are_read_from_full_responses_or_continuations() -> None:
    t = rc.task("lis_length")
    assert (program_of(t, rc.completion(t, "fast")) or "").strip() == t.references[-1].code.strip()
    assert program_of(t, rc.completion(t, "prose")) is None
    assert program_of(t, "") is None
    assert "def helper" in (program_of(t, rc.completion(t, "no_entry")) or "")  # not a stub + the helper
    body = "    return len(set(nums))\n"  # a plain continuation of the prompt's signature
    assert program_of(t, body) == t.prompt + body


def test_importing_effirl_training_loads_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, effirl.training as t; t.EfficiencyReward; t.EfficiencyRewardConfig; "
            "print(sorted(m for m in ('torch', 'trl', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_reward_config_with_an_unknown_key_names_it(tmp_path: Any) -> None:
    from effirl.configfile import load_config
    from effirl.training import EfficiencyRewardConfig

    path = tmp_path / "reward.yaml"
    path.write_text("suite: builtin\nmeter: cputime\nreward:\n  round_to: 0.1\n  s_maxx: 3\n")
    with pytest.raises(EffirlError) as exc:
        load_config(EfficiencyRewardConfig, path)
    text = str(exc.value)
    assert "reward.s_maxx" in text and str(path) in text and "row 5" in text and "s_max_cap" in text, text
    path.write_text("suite: builtin\nmeter: cputime\nreward:\n  round_to: 0.1\nbudget_factor: 20\n")
    good = load_config(EfficiencyRewardConfig, path, overrides={"workers": 1})
    assert (good.reward.round_to, good.budget_factor, good.workers) == (0.1, 20.0, 1)
    with EfficiencyReward.from_config(good) as r:
        assert r.config == good and r.meter.name == "cputime"


# -- fixed inputs, tasks without any, clocks that fail, set-up allowances
# -----------------------------------------


def test_fresh_inputs_say_once_which_tasks_keep_fixed_ones(caplog: pytest.LogCaptureFixture) -> None:
    """Only tasks with a generator get new inputs every call: the others are named once at construction, and
    every completion's detail says whether its inputs were fresh."""
    small = rc.small_tasks()
    tasks = [small["dataset"], small["canonical"], small["checker"]]
    with caplog.at_level("WARNING", logger="effirl.training.reward"):
        r = EfficiencyReward(suite="small", tasks=tasks, meter="cputime", workers=2, sandbox=BOX)
    lines = [rec.getMessage() for rec in caplog.records if "fresh_inputs" in rec.getMessage()]
    assert len(lines) == 1 and "2 of 3 tasks have no input generator" in lines[0], lines
    assert "small/sumsq_canonical" in lines[0] and "fixed" in lines[0]
    assert r.fixed_input_tasks == ["small/sumsq_canonical", "small/sumsq_dataset"]
    try:
        texts = [rc.fenced(rc.SUMSQ_FAST), rc.fenced(rc.DISTINCT_FAST)]
        ids = [small["dataset"].id, small["checker"].id]
        rc.call(r, {"prompts": ["a", "b"], "completions": texts, "task_id": ids}, trainer_state=rc.Step(1))
        d = r.last_details
        assert [x.status for x in d] == ["pass", "pass"]
        assert (d[0].inputs_source, d[0].inputs_fresh) == ("dataset", False)
        assert (d[1].inputs_source, d[1].inputs_fresh) == ("generated", True)
    finally:
        r.close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="effirl.training.reward"):
        EfficiencyReward(suite="small", tasks=tasks, meter="cputime", fresh_inputs=False).close()
    assert not [rec for rec in caplog.records if "fresh_inputs" in rec.getMessage()]


def test_a_task_without_any_performance_input_gives_its_passes_s_min(
        caplog: pytest.LogCaptureFixture) -> None:
    """Nothing to measure on (no generator, no dataset inputs, no tests): a correct program is not a failure;
    the group's passes all get the reward of an all-equal group, flagged ``unmeasured``."""
    bare = rc.small_tasks()["dataset"].model_copy(update={"id": "small/bare", "tests": (), "perf_inputs": ()})
    texts = [rc.fenced(rc.SUMSQ_FAST), rc.fenced(rc.SUMSQ_SLOW), rc.completion(bare, "no_entry"),
             rc.completion(bare, "prose")]
    with caplog.at_level("WARNING", logger="effirl.training.reward"):
        r = EfficiencyReward(suite="small", tasks=[bare], meter="cputime", workers=2, sandbox=BOX)
    assert any("no performance input at all (small/bare)" in rec.getMessage() for rec in caplog.records)
    with r:
        rewards = rc.call(r, {"prompts": [bare.prompt] * 4, "completions": texts, "task_id": [bare.id] * 4},
                          trainer_state=rc.Step(1))
        d = r.last_details
    assert rewards == [1.0, 1.0, -0.5, -1.5]
    assert [x.status for x in d[:2]] == ["pass", "pass"]
    assert all(x.unmeasured and x.count is None for x in d[:2])
    assert "no performance input" in (d[0].error or "") and not d[2].unmeasured


class _FakePool:
    """Stands in for a sandbox pool: the clocks' results come from a list, everything else passes."""

    def __init__(self, clocks: list[Any]) -> None:
        self.clocks = clocks
        self.asked = 0

    def map(self, fn: Any, items: list[Any]) -> Iterator[Any]:
        from effirl.execution.checking import TaskTests
        from effirl.execution.judge import MeasureResult
        from effirl.execution.verdict import Status, Verdict
        from effirl.inputs.perf import PerfInput, PerfInputSet
        from effirl.training.reward_runs import _MeasureJob, _TaskReady

        for pair in items:
            job = pair[1]
            if isinstance(job, _MeasureJob):
                if job.trusted:
                    self.asked += 1
                    wall = self.clocks.pop(0)
                    verdict = Verdict(status=Status.PASS if wall else Status.TIMEOUT, wall_s=wall)
                    yield pair, MeasureResult(verdict, 1e6 if wall else None)
                else:
                    yield pair, MeasureResult(Verdict(status=Status.PASS, wall_s=0.01), 1000.0)
            else:  # a task to prepare
                native = self.clocks.pop(0) if job.need_clock else None
                self.asked += job.need_clock
                yield pair, _TaskReady(PerfInputSet(job.task.id, "generated", [PerfInput([[1, 2]], 3, True)]),
                                       TaskTests([], [], "k"), native_s=native)


def _runner() -> Any:
    from effirl.meters.cputime import CpuTimeMeter
    from effirl.training.reward_runs import RewardRunner

    t = rc.task("lis_length")
    return t.id, RewardRunner({t.id: t}, CpuTimeMeter(), BOX, scales={}, budget_factor=10.0, min_budget_s=1.0,
                              start_allowance_s=0.2)


def test_a_failed_reference_clock_is_tried_again_on_a_later_call() -> None:
    """A clock whose measurement failed is not cached as unknown for the rest of the run (flat limits,
    50x under callgrind): it is known only once measured, and tried again on later calls, CLOCK_TRIES in
    all."""
    from effirl.execution.verdict import Status
    from effirl.inputs.perf import PerfInput, PerfInputSet
    from effirl.training.reward_runs import CLOCK_TRIES, Outcome, _Step, _TaskReady

    tid, runner = _runner()
    runner._metered = _FakePool([None, 0.5])
    programs = {"p": (tid, "def lis_length(nums):\n    return 1\n")}
    flat = runner.sandbox.total_timeout_s * runner.meter.slowdown
    budgets = []
    for seed in (1, 2, 3):
        step = _Step(seed)
        step.ready[tid] = _TaskReady(PerfInputSet(tid, "generated", [PerfInput([[1, 2]], 2, True)]))
        step.outcomes["p"] = Outcome(Status.PASS)
        runner._measure(step, programs, ["p"])
        budgets.append((runner.budgets[tid].meter_known, step.outcomes["p"].budget_s))
    assert budgets[0] == (False, flat)  # the first try failed: flat limits for now
    assert budgets[1] == (True, round(max(1.0, 10 * 0.5) + 0.2, 3))  # measured on the next call
    assert budgets[2] == budgets[1] and runner._metered.asked == 2  # and never again
    tid, runner = _runner()
    runner._native = _FakePool([None] * CLOCK_TRIES)
    for seed in range(CLOCK_TRIES + 2):
        runner._prepare(_Step(seed), [tid])
    assert runner._native.asked == CLOCK_TRIES and runner.budgets[tid].native_s is None  # gives up at last
    tid, runner = _runner()
    runner._native = _FakePool([None, 0.02])
    for seed in range(4):
        runner._prepare(_Step(seed), [tid])
    assert runner._native.asked == 2 and runner.clock_s(tid) == max(1.0, 10 * 0.02)


def test_the_measurement_budget_allows_for_the_modules_a_program_names() -> None:
    """The measured run's clock includes the imports done before its count: each installed module a program
    names that the servers do not hold adds ``import_allowance_s`` (at most ALLOWED_IMPORTS of them); a
    program naming none keeps its reference's budget, and names that are held or not installed add nothing."""
    from effirl.training.reward_runs import ALLOWED_IMPORTS, Budget, named_imports

    tid, runner = _runner()
    runner.budgets[tid] = Budget(meter_s=2.0)
    held = runner._held
    slow = runner.meter.slowdown
    assert named_imports("def f(x):\n    return x\n", held) == 0
    code = ("import statistics, doctest\nimport math, collections.abc\nfrom fractions import Fraction\n"
            "import no_such_module_effirl\nimport xml.etree.ElementTree as ET\n")
    assert named_imports(code, held) == 4  # statistics, doctest, fractions, xml.etree.ElementTree
    assert named_imports("this is not Python (", held) == 0
    base = max(1.0, 10 * 2.0)
    assert runner.budget_s(tid) == pytest.approx(base + 0.2 * slow)
    assert runner.budget_s(tid, 4) == pytest.approx(base + (0.2 + 4 * 0.02) * slow)
    many = "\n".join(f"import {m}" for m in (
        "statistics", "doctest", "fractions", "decimal", "json", "csv", "ast", "dis", "difflib", "email",
        "html", "http", "inspect", "json", "locale", "pprint", "shlex", "textwrap", "zipfile", "tarfile"))
    assert named_imports(many, held) > ALLOWED_IMPORTS
    assert runner.budget_s(tid, named_imports(many, held)) == pytest.approx(
        base + (0.2 + ALLOWED_IMPORTS * 0.02) * slow)
