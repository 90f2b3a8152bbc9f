"""The stages of the two-stage pipeline, each a call into the package that owns that work.

Why it exists: the pipeline joins generation, evaluation, data and training; it must not hold their logic. Each
function here turns the pipeline config and the earlier stages' outputs into the config of one package call
(``effirl.generation.generate``, ``effirl.evaluation.evaluate``, ``effirl.data.build_dpo``,
``effirl.training.*``), writes into its stage's ``out/`` folder, and returns what it made (model paths,
figures) for ``stage.json``. Every call it makes resumes on its own (samples and results are written line by
line, trainers restart from their last checkpoint), so a stage cut in the middle resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError
from effirl.pipeline.config import PipelineConfig
from effirl.tasks import Task

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


@dataclass
class Context:
    """What every stage can read: the config, the run folder, the task splits, shared settings."""

    config: PipelineConfig
    run_dir: Path
    tasks: dict[str, list[Task]]  # split name -> tasks of the training suite
    progress: Progress
    scales: dict[str, int] = field(default_factory=dict)
    meter: Any = None  # the one Meter of the run (selected once)

    def out(self, stage: str) -> Path:
        return self.run_dir / stage / "out"

    def outputs(self, stage: str) -> dict[str, Any]:
        path = self.run_dir / stage / "stage.json"
        if not path.is_file():
            raise EffirlError(f"stage {stage} has not run in {self.run_dir}")
        return dict(json.loads(path.read_text(encoding="utf-8")).get("outputs") or {})

    def rel(self, path: Path | str) -> str:
        """A path inside the run as ``stage.json`` keeps it: relative to the run folder (which may move)."""
        p = Path(path)
        try:
            return p.resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def path(self, value: str) -> str:
        """A path from ``stage.json``, usable from here: relative ones are inside the run folder (a model
        given by hub id, or a path outside the run, is kept as it is)."""
        inside = self.run_dir / value
        return str(inside.resolve()) if not Path(value).is_absolute() and inside.exists() else value

    def sampling_seed(self) -> int:
        """The evaluation's sampling seed (the evaluate stage and the RL curves): apart from stage 1's."""
        from effirl.generation.strategies import evaluation_seed

        seed = self.config.evaluate.seed
        return seed if seed is not None else evaluation_seed(self.config.seed)

    def sandbox(self) -> Any:
        from effirl.execution.config import SandboxConfig

        return SandboxConfig(workers=self.config.workers) if self.config.workers else SandboxConfig()

    def prefixed(self, stage: str) -> Progress:
        def report(phase: str, done: int, total: int) -> None:
            self.progress(f"{stage}: {phase}", done, total)

        return report


def _p(value: float) -> str:
    return f"p{value:g}"


# -- base -------------------------------------------------------------------------------------------------------

def run_base(ctx: Context) -> dict[str, Any]:
    """The base model: a given path, a shipped model (copied into the run), or init plus the warm-up."""
    spec = ctx.config.base
    out = ctx.out("base")
    out.mkdir(parents=True, exist_ok=True)
    if spec.model is not None:
        return {"model": spec.model, "origin": "given"}
    if spec.shipped is not None:
        from effirl.models.shipped import copy_shipped_model

        target = out / "model"
        card = copy_shipped_model(spec.shipped, target)
        return {"model": ctx.rel(target), "origin": f"shipped:{spec.shipped}", "card": card}
    assert spec.init is not None
    from effirl.generation.prompts import template_texts
    from effirl.models import init_model

    init_dir = out / "init"
    if not (init_dir / "config.json").is_file():
        ctx.progress("base: init", 0, 1)
        suite = ctx.config.train_suite
        init_model(init_dir, spec.init.size, suite.suite, suite.source, spec.init.seed, extra_texts=template_texts())
        ctx.progress("base: init", 1, 1)
    if spec.warmup is None:
        return {"model": ctx.rel(init_dir), "origin": f"init:{spec.init.size}"}
    from effirl.training.warmup_trainer import CORPUS_STATS

    final = warm_up(ctx, init_dir, out / "warmup")
    return {"model": ctx.rel(final), "origin": f"init:{spec.init.size}+warmup",
            "corpus": json.loads((out / "warmup" / CORPUS_STATS).read_text(encoding="utf-8"))}


def warm_up(ctx: Context, init_dir: Path, out: Path) -> Path:
    """Train the initialized model from scratch on the warm-up corpus of every task (as pretraining would)."""
    from effirl.training.warmup_config import WarmupConfig
    from effirl.training.warmup_trainer import train_warmup

    spec = ctx.config.base.warmup
    assert spec is not None
    suite = ctx.config.train_suite
    cfg = WarmupConfig(**{"seed": ctx.config.seed, **spec.train, "mix": spec.mix, "suite": suite.suite,
                          "source": suite.source, "tasks": [t.id for t in ctx.tasks["all"]],
                          "model": str(init_dir), "out": out})
    return train_warmup(cfg, ctx.prefixed("base: warm-up"))


# -- sample, score ----------------------------------------------------------------------------------------------

def base_model(ctx: Context) -> str:
    return ctx.path(str(ctx.outputs("base")["model"]))


def run_sample(ctx: Context) -> dict[str, Any]:
    """Stage 1's samples from the base model on the chosen split."""
    from effirl.generation import GenerateConfig, generate

    spec = ctx.config.sample
    cfg = GenerateConfig(**{"seed": ctx.config.seed, **spec.generate, "model": base_model(ctx)})
    out = ctx.out("sample")
    out.mkdir(parents=True, exist_ok=True)
    summary = generate(cfg, ctx.tasks[spec.split], out / "samples.jsonl", progress=ctx.prefixed("sample"))
    return {"samples": ctx.rel(out / "samples.jsonl"), "written": summary.written + summary.existing,
            "tasks": summary.tasks, "mean_completion_tokens": summary.mean_completion_tokens}


def run_spec(ctx: Context, samples: Path | None, out: Path, inputs_seed: int, suite: str | None = None,
             source: str | None = None) -> Any:
    """The ``effirl evaluate`` run of ``samples`` with the pipeline's one meter, sandbox and scales."""
    from effirl.batch import RunSpec

    train = ctx.config.train_suite
    same_suite = suite is None or (suite == train.suite and source == train.source)
    return RunSpec(suite=suite or train.suite, source=source if suite is not None else train.source,
                   samples=samples, out=out, meter=ctx.meter, sandbox=ctx.sandbox(), inputs_seed=inputs_seed,
                   scales=dict(ctx.scales) if same_suite else {})


def run_score(ctx: Context) -> dict[str, Any]:
    """Verdicts, counts and rewards of the samples (``effirl evaluate``: the scored folder stage-1 data reads)."""
    from effirl.evaluation import evaluate

    samples = Path(ctx.path(ctx.outputs("sample")["samples"]))
    spec = run_spec(ctx, samples, ctx.out("score"), ctx.config.score.inputs_seed)
    summary = evaluate(spec, ctx.prefixed("score"))
    return {"scored": ctx.rel(ctx.out("score")), "statuses": summary.statuses,
            "pass_at_1": summary.overall.pass_at_1, "dps_norm": summary.overall.dps_norm}


# -- stage 1 training -------------------------------------------------------------------------------------------

def run_sft(ctx: Context) -> dict[str, Any]:
    """The paper's SFT row: the two fastest correct samples per task, then SFT from the base model."""
    from effirl.data import SFTDataConfig, build_sft
    from effirl.training.sft_config import SFTConfig
    from effirl.training.sft_trainer import train_sft

    spec = ctx.config.sft
    out = ctx.out("sft")
    data = out / "data"
    if not (data / "stats.json").is_file():
        if data.exists():
            shutil.rmtree(data)  # a build cut in the middle: built again (it takes seconds)
        build_sft(SFTDataConfig(**{"seed": ctx.config.seed, **spec.data, "scored": ctx.out("score"),
                                   "out": data}))
    cfg = SFTConfig(**{"seed": ctx.config.seed, **spec.train, "model": base_model(ctx), "data": str(data),
                       "out": out / "train", "resume": True})
    return {"model": ctx.rel(_trained(cfg, train_sft, ctx.prefixed("sft"))), "data": ctx.rel(data)}


def run_dpo_data(ctx: Context) -> dict[str, Any]:
    """One DPO data set per proportion of efficiency pairs."""
    from effirl.data import DPODataConfig, build_dpo

    spec = ctx.config.dpo_data
    made: dict[str, Any] = {}
    for p in spec.proportions:
        out = ctx.out("dpo_data") / _p(p)
        if not (out / "stats.json").is_file():
            if out.exists():
                shutil.rmtree(out)
            build_dpo(DPODataConfig(**{"seed": ctx.config.seed, **spec.data, "proportion": p,
                                       "scored": ctx.out("score"), "out": out}))
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
        made[_p(p)] = {"data": ctx.rel(out), "rows": stats.get("rows"), "pairs": stats.get("pairs")}
    return {"sets": made}


def run_dpo(ctx: Context) -> dict[str, Any]:
    """One DPO model per proportion, from the base model (or the SFT model)."""
    from effirl.training.dpo_config import DPOConfig
    from effirl.training.dpo_trainer import train_dpo

    spec = ctx.config.dpo
    start = ctx.path(ctx.outputs("sft")["model"]) if spec.start == "sft" else base_model(ctx)
    models: dict[str, str] = {}
    for p in ctx.config.dpo_data.proportions:
        cfg = DPOConfig(**{"seed": ctx.config.seed, **spec.train, "model": start,
                           "data": str(ctx.out("dpo_data") / _p(p)), "out": ctx.out("dpo") / _p(p),
                           "resume": True})
        models[_p(p)] = ctx.rel(_trained(cfg, train_dpo, ctx.prefixed(f"dpo {_p(p)}")))
    return {"models": models, "start": ctx.rel(start)}


def _trained(cfg: Any, train: Callable[[Any, Progress], Path], progress: Progress) -> Path:
    """``OUT/final`` of one training: trained (or resumed from its last checkpoint), or kept when an earlier
    run of this stage finished it (its summary is written after the final model)."""
    from effirl.training.common import FINAL, SUMMARY

    final = cfg.out / FINAL
    if (cfg.out / SUMMARY).is_file() and (final / "config.json").is_file():
        log.info("%s is finished: kept", final)
        return final
    return train(cfg, progress)


# -- stage 2 ----------------------------------------------------------------------------------------------------

def rl_config(ctx: Context, algorithm: str, seed: int, start: str, out: Path) -> Any:
    """The RL trainer's config of one arm: the rl section's keys, then what the pipeline decides (the start
    model, the train split, the run's meter, scales and workers, the evaluation on the train split with the
    evaluation stage's inputs seed, Round for ``grpo_round``)."""
    from effirl.training.grpo_config import GRPOConfig
    from effirl.training.rloo_config import RLOOConfig

    spec = ctx.config.rl
    keys = {**spec.train, **spec.per_algorithm.get(algorithm, {})}
    reward = {**keys.pop("reward", {}), "meter": ctx.config.meter, "scales": dict(ctx.scales)}
    if ctx.config.workers:
        reward["workers"] = ctx.config.workers
    if algorithm == "grpo_round":
        reward["round_to"] = spec.round_to
    evaluation = {"inputs_seed": ctx.config.evaluate.inputs_seed, "seed": ctx.sampling_seed(),
                  **keys.pop("evaluation", {})}
    if "tasks" not in evaluation and not evaluation.get("holdout"):  # by default the curves follow the train split
        evaluation["tasks"] = [t.id for t in ctx.tasks["train"]]
    suite = ctx.config.train_suite
    model = RLOOConfig if algorithm == "rloo" else GRPOConfig
    return model(**{"seed": seed, **keys, "reward": {"inputs_seed": seed, **reward}, "evaluation": evaluation,
                    "model": start, "out": out, "suite": suite.suite, "source": suite.source,
                    "tasks": [t.id for t in ctx.tasks["train"]], "resume": True})


def run_rl(ctx: Context) -> dict[str, Any]:
    """One RL run per (algorithm, seed), each from the DPO model of ``rl.proportion``."""
    from effirl.training.grpo_trainer import train_grpo
    from effirl.training.rloo_trainer import train_rloo

    spec = ctx.config.rl
    start = ctx.path(ctx.outputs("dpo")["models"][_p(spec.proportion)])
    models: dict[str, str] = {}
    for algorithm in spec.algorithms:
        for seed in spec.seeds:
            name = f"{algorithm}-s{seed}"
            cfg = rl_config(ctx, algorithm, seed, start, ctx.out("rl") / name)
            train = train_rloo if algorithm == "rloo" else train_grpo
            models[name] = ctx.rel(_trained(cfg, train, ctx.prefixed(f"rl {name}")))
    return {"models": models, "start": ctx.rel(start)}


# -- evaluation -------------------------------------------------------------------------------------------------

def run_models(ctx: Context) -> list[tuple[str, str]]:
    """Every model the run produced, in the order of the report: base, sft, dpo per proportion, rl arms."""
    models = [("base", base_model(ctx))]
    if ctx.config.sft.enabled:
        models.append(("sft", ctx.path(ctx.outputs("sft")["model"])))
    for name, path in ctx.outputs("dpo")["models"].items():
        models.append((f"dpo-{name}", ctx.path(path)))
    if ctx.config.rl.enabled:
        for name, path in ctx.outputs("rl")["models"].items():
            models.append((name, ctx.path(path)))
    return models


def _eval_tasks(ctx: Context, suite: Any) -> dict[str, list[Task]]:
    """The evaluation suite's tasks by split (train / heldout for the training suite, else all); an empty
    split (no held-out tasks) is left out."""
    from effirl.tasks import load

    train = ctx.config.train_suite
    by_split = ctx.tasks if (suite.suite, suite.source) == (train.suite, train.source) \
        else {"all": load(suite.suite, suite.source)}
    out: dict[str, list[Task]] = {}
    for split in suite.splits:
        tasks = by_split[split][: suite.limit] if suite.limit else by_split[split]
        if tasks:
            out[split] = tasks
    return out


def _label(suite: Any, index: int) -> str:
    """A folder name for an evaluation suite: its name, and its position when the config lists it twice."""
    name = suite.suite.replace("+", "plus").replace("/", "_")
    return name if index == 0 else f"{name}-{index + 1}"


def run_evaluate(ctx: Context) -> dict[str, Any]:
    """Every model, every evaluation suite and split: samples (one seed for every model, apart from stage 1's),
    then ``effirl evaluate`` with one meter and one inputs seed; a split's references are measured once and
    shared with every model's folder."""
    from effirl.evaluation import evaluate
    from effirl.evaluation.references import share_references
    from effirl.generation import GenerateConfig, generate
    from effirl.samples import write_subset

    spec = ctx.config.evaluate
    out = ctx.out("evaluate")
    models = run_models(ctx)
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for suite in spec.suites:
        label = _label(suite, seen.get(suite.suite, 0))
        seen[suite.suite] = seen.get(suite.suite, 0) + 1
        splits = _eval_tasks(ctx, suite)
        union = list({t.id: t for tasks in splits.values() for t in tasks}.values())
        for name, path in models:  # samples first: each model is loaded once per suite
            cfg = GenerateConfig(**{**spec.generate, "seed": ctx.sampling_seed(), "model": path})
            generate(cfg, union, out / "samples" / name / f"{label}.jsonl",
                     progress=ctx.prefixed(f"evaluate: sample {name} on {suite.suite}"))
        for split, tasks in splits.items():
            first: Path | None = None
            for name, path in models:
                folder = out / f"{label}-{split}" / name
                write_subset(out / "samples" / name / f"{label}.jsonl", folder / "samples.jsonl",
                             {t.id for t in tasks})
                if first is not None:
                    share_references(first, folder)  # the same tasks, meter and inputs
                rs = run_spec(ctx, folder / "samples.jsonl", folder, spec.inputs_seed, suite.suite, suite.source)
                summary = evaluate(rs, ctx.prefixed(f"evaluate: {name} on {suite.suite} {split}"))
                first = first or folder
                m = summary.overall
                rows.append({"name": name, "model": ctx.rel(path), "suite": suite.suite, "split": split,
                             "pass_at_1": m.pass_at_1, "dps_norm": m.dps_norm, "dps": m.dps,
                             "beyond": m.beyond, "reward_mean": m.mean_reward, "n_tasks": m.n_tasks,
                             "n_samples": m.n_samples, "n_dps_tasks": m.n_dps_tasks,
                             "statuses": summary.statuses, "folder": ctx.rel(folder)})
    (out / "metrics.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return {"rows": len(rows), "metrics": ctx.rel(out / "metrics.json")}
