"""Stage 2 on TRL: RLOO and GRPO with the efficiency reward, the periodic evaluation, resume, and the configs.

The trainers run two steps each on CPU with the tiny random model and the real sandbox reward (callgrind) on
the builtin suite. That model writes no code yet, so in those two tests the reward first puts the task's
slowest and fastest references in place of two completions of each group (:class:`WithReferences`): the
trainer then sees real checks, instruction counts and group rewards (2.0 for the fast one, 1.0 for the slow
one, penalties for the model's prose), non-zero advantages and a real update. ``effirl train rloo`` runs from
a config through the CLI with the unchanged reward, evaluates every 2 steps and resumes. The periodic
evaluation is checked on a policy whose answers are known (the references, through a scripted generation
backend).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl", reason="the 'train' extra (trl) is not installed")

from typer.testing import CliRunner  # noqa: E402

from effirl.cli import app  # noqa: E402
from effirl.configfile import load_config  # noqa: E402
from effirl.errors import EffirlError, InputFormatError  # noqa: E402
from effirl.execution.config import SandboxConfig  # noqa: E402
from effirl.generation.backends.base import Backend, Completion, Request  # noqa: E402
from effirl.inputs.perf import run_seed  # noqa: E402
from effirl.meters import callgrind  # noqa: E402
from effirl.tasks import by_id, load  # noqa: E402
from effirl.training.grpo_config import GRPOConfig  # noqa: E402
from effirl.training.grpo_trainer import train_grpo  # noqa: E402
from effirl.training.reward import EfficiencyReward  # noqa: E402
from effirl.training.rl_common import fit_batch, geometry  # noqa: E402
from effirl.training.rl_config import EvalSettings  # noqa: E402
from effirl.training.rl_data import check_dataset, prompt_rows, split_tasks  # noqa: E402
from effirl.training.rl_eval import make_evaluator  # noqa: E402
from effirl.training.rloo_config import RLOOConfig  # noqa: E402
from effirl.training.rloo_trainer import build_rloo_trainer  # noqa: E402

CALLGRIND_OK, CALLGRIND_WHY = callgrind.probe()
needs_callgrind = pytest.mark.skipif(not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}")
ROOT = Path(__file__).resolve().parents[1]
BUILTIN = by_id(load("builtin"))
LIS, PAIRS = "builtin/lis_length", "builtin/pair_sum_count"
# A quarter of the shipped calibration's scales: the slow reference still costs ~25x the fast one (callgrind).
SCALES = {LIS: 250, PAIRS: 185}
BOX = {"workers": 2, "test_timeout_s": 2.0, "total_timeout_s": 30.0, "cpu_s": 30}
# Two prompts x four completions per step, 48 new tokens, two steps: seconds on CPU.
SMALL: dict[str, Any] = {"tasks": ["lis_length", "pair_sum_count"], "batch_size": 2, "mini_batch_size": 2,
                         "per_device_batch_size": 4, "num_generations": 4, "max_completion_length": 48,
                         "learning_rate": 1e-3, "save_steps": 1, "max_steps": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> Path:
    return tiny_model


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fenced(code: str) -> str:
    return f"Here is a solution.\n\n```python\n{code.strip()}\n```\n"


class WithReferences(EfficiencyReward):
    """The real reward, scoring each group with its first completion replaced by the task's slowest reference
    and its second by the fastest (the tiny random model writes no code); it records what it saw and said."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 completion_ids: Sequence[Any] | None = None, **kwargs: Any) -> list[float]:
        assert completions is not None
        seen: Counter[tuple[str, str]] = Counter()
        replaced = []
        for prompt, completion, task_id in zip(prompts or [], completions, kwargs["task_id"], strict=True):
            group = (task_id, json.dumps(prompt))
            k = seen[group]
            seen[group] += 1
            refs = self.tasks[task_id].references
            if k < 2:
                text = fenced(refs[0].code if k == 0 else refs[-1].code)
                chat = isinstance(completion, list)
                completion = [{"role": "assistant", "content": text}] if chat else text
            replaced.append(completion)
        rewards = super().__call__(prompts, replaced, completion_ids, **kwargs)
        self.calls.append({"step": kwargs["trainer_state"].global_step, "groups": dict(Counter(
            t for t in kwargs["task_id"])), "details": list(self.last_details), "rewards": rewards})
        return rewards


def make_reward(round_to: float | None = None) -> WithReferences:
    from effirl.scoring.reward import RewardConfig

    return WithReferences(suite="builtin", meter="callgrind", workers=2, scales=SCALES, num_generations=4,
                          reward_config=RewardConfig(round_to=round_to), sandbox=SandboxConfig(**BOX))


def weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    import torch

    return any(not torch.equal(before[k], after[k]) for k in before)


def check_groups(reward: WithReferences, round_to: float | None) -> None:
    """Each call scored whole groups of four, the references against each other and the model's text."""
    for call in reward.calls:
        assert call["groups"] == {LIS: 4, PAIRS: 4}
        by_group: dict[int, list[Any]] = {}
        for d in call["details"]:
            by_group.setdefault(d.group, []).append(d)
        for members in by_group.values():
            slow, fast, *model = members
            assert (slow.status, fast.status) == ("pass", "pass")
            assert fast.count < slow.count / 5  # measured, on this call's inputs
            assert fast.reward == 2.0 and slow.reward == 1.0
            assert all(m.reward in (-1.5, -0.5, 0.0) for m in model)
            if round_to:
                assert all(abs(d.reward / round_to - round(d.reward / round_to)) < 1e-9 for d in members)


# -- the trainers, two steps each ----------------------------------------------------------------------------


@needs_callgrind
def test_grpo_with_round_runs_two_steps_with_the_real_reward(tiny: Path, tmp_path: Path) -> None:
    reward = make_reward(round_to=0.1)
    cfg = GRPOConfig(model=str(tiny), out=tmp_path / "run", evaluation={"every": 0}, **SMALL,
                     reward={"meter": "callgrind", "round_to": 0.1})
    final = train_grpo(cfg, reward=reward)
    assert [c["step"] for c in reward.calls] == [0, 1]  # one rollout per step, seeded by the step
    seeds = [c["details"][0].inputs_seed for c in reward.calls]
    assert seeds == [run_seed(0, 0), run_seed(0, 1)]  # fresh performance inputs every step
    check_groups(reward, 0.1)
    records = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in records] == [1, 2]
    for r, call in zip(records, reward.calls, strict=True):
        assert r["reward"] == pytest.approx(sum(call["rewards"]) / 8)  # what TRL trained on is the reward's
        assert r["efficiency/pass_rate"] == 0.5 and r["reward_std"] > 0
    assert changed(weights(tiny), weights(final))  # non-zero advantages moved the policy
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["algo"] == "grpo" and summary["steps"] == 2 and summary["train_tasks"] == [LIS, PAIRS]
    assert (tmp_path / "run" / "rl_curves.png").is_file() and (final / "tokenizer.json").is_file()
    assert "round_to: 0.1" in (tmp_path / "run" / "config.yaml").read_text()


@needs_callgrind
def test_rloo_runs_two_updates_of_one_rollout_with_the_real_reward(tiny: Path, tmp_path: Path) -> None:
    # The paper's mini-batches: 2 prompts per step, updated one prompt (4 completions) at a time.
    cfg = RLOOConfig(model=str(tiny), out=tmp_path / "run", evaluation={"every": 0},
                     **{**SMALL, "mini_batch_size": 1, "beta": 0.05})
    reward = make_reward()
    run = build_rloo_trainer(cfg, reward=reward)
    geo = run.geometry
    assert (geo.accumulation, geo.steps_per_generation, geo.updates_per_step) == (1, 2, 2)
    assert run.trainer.ref_model is not None  # beta > 0: a frozen reference for the KL term
    from effirl.training.rl_common import train_rl

    final = train_rl(run, "rloo")
    assert [c["step"] for c in reward.calls] == [0]  # one rollout served both updates
    check_groups(reward, None)
    records = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2] and "kl" in records[0]  # KL at the rollout (RLOO's reward)
    assert changed(weights(tiny), weights(final))
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2").is_dir()


# -- the periodic evaluation --------------------------------------------------------------------------------


class Scripted(Backend):
    """A policy whose answers are known: sample i of a task is its reference i (slowest first), fenced."""

    name = "scripted"

    def __init__(self) -> None:
        self.requests = 0

    def run(self, requests: Sequence[Request], sampling: Any, on_result: Any) -> None:
        for request in requests:
            self.requests += 1
            task = next(t for t in BUILTIN.values() if t.entry_point in request.messages[-1]["content"])
            for i, _ in enumerate(request.seeds):
                text = fenced(task.references[min(i, len(task.references) - 1)].code)
                on_result(request, i, Completion(text, 10, 10, "stop"))


@needs_callgrind
def test_the_evaluation_scores_a_known_policy_on_inputs_of_its_own(tmp_path: Path) -> None:
    from effirl.generation.prompts import default_templates
    from effirl.meters.select import select_meter
    from effirl.scoring.reward import RewardConfig

    settings = EvalSettings(every=2, n=2, temperature=0.0)
    phases: list[str] = []
    scripted = Scripted()
    evaluator = make_evaluator(
        tmp_path, [BUILTIN[LIS]], settings, suite="builtin", source=None, model_label="scripted",
        strategy="direct", prompt_file=None, templates=default_templates(), seed=0, max_new_tokens=64,
        meter=select_meter("callgrind"), sandbox=SandboxConfig(**BOX), scales=SCALES, reward=RewardConfig(),
        reward_inputs_seed=0, executor=None, progress=lambda phase, done, total: phases.append(phase))
    evaluator.backend = lambda model, tokenizer: scripted
    got = evaluator.run(object(), None, 2)
    # The slowest and the fastest reference of the task: both pass, worth 1.0 and 2.0 against each other;
    # against the task's two reference clusters (EvalPerf's DPS_norm) the fast one scores 100, the slow 50.
    assert got["eval/pass@1"] == 1.0 and got["eval/reward"] == 1.5 and got["eval/n_samples"] == 2
    summary = json.loads((tmp_path / "eval" / "step-000002" / "summary.json").read_text())
    assert got["eval/dps_norm"] == summary["overall"]["dps_norm"] == pytest.approx(75.0)
    assert scripted.requests == 1 and "eval references measure" in phases
    # The references, measured once into eval/references, are what the step scored against.
    shared = read_jsonl(tmp_path / "eval" / "references" / "references.jsonl")
    assert read_jsonl(tmp_path / "eval" / "step-000002" / "references.jsonl") == shared and len(shared) == 2
    # Performance inputs of the evaluation's own seed: not one a training step (step >= 0) draws.
    results = read_jsonl(tmp_path / "eval" / "step-000002" / "results.jsonl")
    seeds = {r["inputs"]["seed"] for r in [*results, *shared]}
    assert seeds == {run_seed(0, -1)} and run_seed(0, -1) not in {run_seed(0, s) for s in range(10_000)}


def test_evaluation_is_due_every_k_steps_and_at_the_end() -> None:
    from effirl.training.rl_eval import PeriodicEvaluation

    cb = PeriodicEvaluation(None, EvalSettings(every=3), None, Path("m"))  # type: ignore[arg-type]
    assert [s for s in range(1, 11) if cb.due(s, 10)] == [3, 6, 9, 10]
    cb = PeriodicEvaluation(None, EvalSettings(every=3, at_end=False), None, Path("m"))  # type: ignore[arg-type]
    assert [s for s in range(1, 11) if cb.due(s, 10)] == [3, 6, 9]
    cb = PeriodicEvaluation(None, EvalSettings(every=0), None, Path("m"))  # type: ignore[arg-type]
    assert not any(cb.due(s, 10) for s in range(1, 11))


# -- effirl train rloo from a config, with evaluation and resume ---------------------------------------------


def test_cli_rloo_from_a_config_evaluates_every_k_steps_and_resumes(tiny: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "rloo.yaml"
    cfg.write_text(f"""model: {tiny}
out: {tmp_path / 'ignored'}
suite: builtin
tasks: [lis_length, pair_sum_count]
batch_size: 2
mini_batch_size: 2
per_device_batch_size: 4
num_generations: 2
max_completion_length: 32
save_steps: 1
reward:
  meter: cputime
  workers: 2
  scales: {json.dumps(SCALES)}
  sandbox: {json.dumps(BOX)}
evaluation:
  every: 2
  tasks: [lis_length]
  n: 1
  temperature: 0.0
  max_new_tokens: 16
""")
    out = tmp_path / "run"
    command = ["train", "rloo", "--config", str(cfg), "--out", str(out), "--max-steps"]
    got = CliRunner().invoke(app, [*command, "3"])
    assert got.exit_code == 0, got.output
    assert "evaluation" in got.output and "final model" in got.output
    first = read_jsonl(out / "metrics.jsonl")
    evals = [r for r in first if "eval/pass@1" in r]
    assert [r["step"] for r in evals] == [0, 2, 3]  # at start, every 2, at the end
    for r in evals:
        assert r["eval/pass@1"] == 0.0 and r["eval/n_samples"] == 1  # the random model's prose fails
        assert r["eval/reward"] in (-1.5, -0.5, 0.0) and "eval/dps_norm" in r
    assert [r["step"] for r in first if "reward" in r] == [1, 2, 3]
    assert not (tmp_path / "ignored").exists()
    used = (out / "config.yaml").read_text()
    assert "max_steps: 3" in used and "meter: cputime" in used

    shutil.rmtree(out / "final")
    got = CliRunner().invoke(app, [*command, "4"])
    assert got.exit_code == 0, got.output
    again = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in again if "eval/pass@1" in r] == [0, 2, 3, 4]  # resumed at 3: no step redone
    assert [r["step"] for r in again if "reward" in r] == [1, 2, 3, 4]
    assert again[: len(first) - 1] == first[:-1]  # the earlier history is kept as it was
    assert (out / "checkpoints" / "checkpoint-4").is_dir() and (out / "eval" / "step-000004").is_dir()
    # CPU-time counts are never equal twice: the same counts in every step's references mean one measurement.
    shared = read_jsonl(out / "eval" / "references" / "references.jsonl")
    assert all(r["counts"] for r in shared)
    for step in (0, 2, 3, 4):
        assert read_jsonl(out / "eval" / f"step-{step:06d}" / "references.jsonl") == shared
    assert (out / "final" / "model.safetensors").is_file()


# -- configs and bad input ----------------------------------------------------------------------------------


def test_defaults_follow_the_papers_table_10() -> None:
    cfg = RLOOConfig(model="m", out=Path("o"))
    assert (cfg.learning_rate, cfg.temperature, cfg.epochs) == (1e-6, 1.0, 30.0)
    assert (cfg.batch_size, cfg.mini_batch_size, cfg.num_generations) == (64, 32, 64)
    assert cfg.max_completion_length == 12288 and cfg.beta == 0.0
    assert cfg.reward.reward.round_to is None and cfg.reward.num_generations == 64
    one, eight = geometry(cfg, 1), geometry(cfg, 8)
    # 64 prompts x 64 completions per step; updates of 32 x 64 completions, 4 per pass and device.
    assert (one.accumulation, one.steps_per_generation, one.updates_per_step) == (512, 1024, 2)
    assert (eight.accumulation, eight.steps_per_generation, eight.completions_per_process) == (64, 128, 512)
    # The builtin suite has 43 tasks: the default step is scaled to them, two updates per step as in the
    # paper; a batch the config chose is never changed.
    fitted = fit_batch(cfg, 43)
    assert (fitted.batch_size, fitted.mini_batch_size) == (42, 21) and fitted.num_generations == 64
    with pytest.raises(EffirlError, match="training set has only 3"):
        fit_batch(RLOOConfig(model="m", out=Path("o"), batch_size=4, mini_batch_size=2), 3)
    small = fit_batch(RLOOConfig(model="m", out=Path("o"), num_generations=2), 2)  # 2 tasks, flags alone
    assert (small.batch_size, small.mini_batch_size, small.per_device_batch_size) == (2, 1, 2)
    assert geometry(small, 1).updates_per_step == 2


def test_reward_keys_sit_in_one_block_and_round_makes_grpo_with_round(tmp_path: Path) -> None:
    path = tmp_path / "grpo.yaml"
    path.write_text("model: m\nout: o\nsuite: builtin\nnum_generations: 8\nreward:\n  meter: cputime\n"
                    "  round_to: 0.1\n  format_error: -2.0\n  workers: 3\n")
    cfg = load_config(GRPOConfig, path)
    assert cfg.reward.reward.round_to == 0.1 and cfg.reward.reward.format_error == -2.0
    assert (cfg.reward.meter, cfg.reward.workers, cfg.reward.num_generations) == ("cputime", 3, 8)
    again = load_config(GRPOConfig, path, {"reward.round_to": 0.5, "reward.meter": "callgrind"})
    assert again.reward.reward.round_to == 0.5 and again.reward.meter == "callgrind"
    with pytest.raises(InputFormatError, match="differs from suite"):
        load_config(GRPOConfig, path, {"reward.suite": "humaneval+"})


@pytest.mark.parametrize(("text", "expect"), [
    ("learning_rat: 0.1\n", ["row 3", "learning_rat", "unknown key"]),
    ("reward:\n  metre: callgrind\n", ["row 4", "reward.metre", "unknown key"]),
    ("evaluation:\n  evry: 5\n", ["row 4", "evaluation.evry", "unknown key"]),
    ("batch_size: 64\nmini_batch_size: 24\n", ["multiple of mini_batch_size"]),
    ("trl_args:\n  beta: 0.1\n", ["trl_args may not set beta"]),
    ("evaluation:\n  tasks: [fib_mod]\n  holdout: 0.2\n", ["not both"]),
])
def test_a_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, expect: list[str]) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("model: m\nout: o\n" + text)
    with pytest.raises(InputFormatError) as err:
        load_config(RLOOConfig, path)
    for piece in expect:
        assert piece in str(err.value)
    got = CliRunner().invoke(app, ["train", "rloo", "--config", str(path)])
    assert got.exit_code == 2 and "Traceback" not in got.output and expect[-1] in " ".join(got.output.split())


def test_groups_are_never_split_across_processes() -> None:
    """The geometry check agrees with TRL's own sampler and accelerate's sharding: a configuration passes
    exactly when every process's generation batch holds whole groups."""
    from trl.trainer.utils import RepeatSampler

    for processes in (1, 2, 3, 4):
        for batch, mini, per_device, g in [(6, 3, 2, 2), (4, 2, 1, 4), (3, 3, 1, 2), (2, 1, 1, 2),
                                           (6, 2, 3, 4)]:
            cfg = RLOOConfig(model="m", out=Path("o"), batch_size=batch, mini_batch_size=mini,
                             per_device_batch_size=per_device, num_generations=g)
            try:
                geo = geometry(cfg, processes)
            except EffirlError as exc:
                assert "trl issue #3896" in str(exc) or "to make whole updates" in str(exc)
                if "#3896" in str(exc):
                    assert f"batch_size ({batch} prompts)" in str(exc)
                    assert f"number of processes ({processes})" in str(exc)
                continue
            stream = list(RepeatSampler(list(range(batch * 3)), mini_repeat_count=g, batch_size=batch,
                                        repeat_count=geo.steps_per_generation, shuffle=False))
            chunk = per_device * geo.steps_per_generation  # one process's batch of one rollout
            for p in range(processes):
                mine = stream[p * chunk:(p + 1) * chunk]
                assert all(n % g == 0 for n in Counter(mine).values()), (processes, batch, mini, g)
    odd = RLOOConfig(model="m", out=Path("o"), batch_size=3, mini_batch_size=1, per_device_batch_size=1,
                     num_generations=2)
    with pytest.raises(EffirlError, match=r"batch_size \(3 prompts\) a multiple of the number of processes"):
        geometry(odd, 2)


def test_the_evaluation_split() -> None:
    tasks = load("builtin")
    plain = split_tasks(tasks, "builtin", ["fib_mod", "builtin/lis_length"], None, 0.0, False, 0)
    assert [t.id for t in plain.train] == [t.id for t in plain.eval]
    held = split_tasks(tasks, "builtin", None, None, 0.25, False, 0)
    held_ids = {t.id for t in held.eval}
    assert len(held_ids) == round(0.25 * len(tasks)) and not held_ids & {t.id for t in held.train}
    reordered = split_tasks(list(reversed(tasks)), "builtin", None, None, 0.25, False, 0)
    assert {t.id for t in reordered.eval} == held_ids  # chosen by task id, not by position
    apart = split_tasks(tasks, "builtin", ["fib_mod", "lis_length"], ["lis_length"], 0.0, True, 0)
    assert [t.id for t in apart.train] == ["builtin/fib_mod"] and [t.id for t in apart.eval] == [LIS]
    with pytest.raises(EffirlError, match="evaluation.tasks: unknown task 'nope' in suite 'builtin'"):
        split_tasks(tasks, "builtin", None, ["nope"], 0.0, False, 0)
    with pytest.raises(EffirlError, match="no training task is left"):
        split_tasks(tasks, "builtin", ["fib_mod"], ["fib_mod"], 0.0, True, 0)


def test_a_dataset_without_task_id_or_with_an_unknown_task_is_one_line(tiny: Path, tmp_path: Path) -> None:
    import datasets

    rows = prompt_rows([BUILTIN[LIS], BUILTIN[PAIRS]])
    check_dataset(datasets.Dataset.from_list(rows), BUILTIN, "builtin")
    bare = datasets.Dataset.from_list([{"prompt": r["prompt"]} for r in rows])
    cfg = RLOOConfig(model=str(tiny), out=tmp_path / "run", **SMALL)
    with pytest.raises(EffirlError, match="has no 'task_id' column"):
        build_rloo_trainer(cfg, dataset=bare)
    alien = datasets.Dataset.from_list([*rows, {"prompt": rows[0]["prompt"], "task_id": "builtin/nope"}])
    with pytest.raises(EffirlError, match="row 2 names task 'builtin/nope', which is not in suite 'builtin'"):
        build_rloo_trainer(cfg, dataset=alien)
    assert not (tmp_path / "run").exists()  # refused before anything was written or loaded


def test_a_reward_that_does_not_fit_the_trainer_is_refused(tiny: Path, tmp_path: Path) -> None:
    cfg = RLOOConfig(model=str(tiny), out=tmp_path / "run", **SMALL)
    with EfficiencyReward(suite="builtin", meter="cputime", num_generations=8) as reward, \
            pytest.raises(EffirlError, match="groups of 8 completions .* the trainer samples 4 per prompt"):
        build_rloo_trainer(cfg, reward=reward)
    assert not (tmp_path / "run").exists()


def test_command_line_flags_reach_their_keys() -> None:
    from effirl.cli.train import _rl_overrides

    tasks = ["lis_length,fib_mod", "trapped_rain"]
    flags = _rl_overrides("m", "builtin", None, tasks, Path("o"), 7, None, 2e-6, 4, 4, "cputime", 0.1, 0,
                          0.01, 3, None, ["mini_batch_size=2", "reward.workers=2"])
    cfg = load_config(GRPOConfig, None, flags)
    assert cfg.tasks == ["lis_length", "fib_mod", "trapped_rain"] and cfg.max_steps == 7
    assert (cfg.batch_size, cfg.mini_batch_size, cfg.num_generations, cfg.beta) == (4, 2, 4, 0.01)
    assert (cfg.reward.meter, cfg.reward.reward.round_to, cfg.reward.workers) == ("cputime", 0.1, 2)
    assert cfg.evaluation.every == 0 and cfg.learning_rate == 2e-6 and cfg.seed == 3


def test_an_unavailable_meter_lists_those_that_work(tiny: Path, tmp_path: Path) -> None:
    from effirl.meters import perf

    if perf.probe()[0]:
        pytest.skip("perf works here")
    flags = ["--model", str(tiny), "--tasks", "lis_length,pair_sum_count", "--out", str(tmp_path / "run"),
             "--batch-size", "2", "--num-generations", "2", "--set", "mini_batch_size=2", "--meter", "perf"]
    got = CliRunner().invoke(app, ["train", "grpo", *flags])
    text = " ".join(got.output.split())
    assert got.exit_code == 2 and "Traceback" not in got.output
    assert "meter 'perf' is not available here" in text and "cputime" in text
    assert not (tmp_path / "run").exists()


def test_trl_args_reach_trl_and_unknown_ones_are_named(tiny: Path, tmp_path: Path) -> None:
    cfg = RLOOConfig(model=str(tiny), out=tmp_path / "run", **SMALL, trl_args={"top_k": 5, "no_such_key": 1},
                     evaluation={"every": 0}, reward={"meter": "cputime"})
    with pytest.raises(EffirlError, match="trl_args: no_such_key is not a key of TRL's RLOOConfig"):
        build_rloo_trainer(cfg)
    run = build_rloo_trainer(cfg.model_copy(update={"trl_args": {"top_k": 5}}))
    try:
        assert run.trainer.args.top_k == 5 and run.trainer.args.max_completion_length == 48
        assert run.trainer.args.num_generations == 4 and run.trainer.args.remove_unused_columns is False
    finally:
        run.reward.close()


def test_the_shipped_recipes_are_valid_configs() -> None:
    recipes = sorted((ROOT / "recipes" / "trl").glob("*.yaml"))
    assert recipes
    for path in recipes:
        kind = GRPOConfig if path.name.startswith("grpo") else RLOOConfig
        cfg = load_config(kind, path, {"model": "m", "out": "o"})
        geometry(cfg, 1)
