"""The typed config of the two-stage pipeline: one model per stage, validated before anything runs.

Why it exists: ``effirl pipeline run`` takes one YAML file from base model to report. Each stage section holds
only what the pipeline decides for that stage (which split, which proportions, which algorithms and seeds) and,
under ``generate`` / ``data`` / ``train``, the keys of the stage package's own config (``GenerateConfig``,
``DPODataConfig``, ``DPOConfig``, ``RLOOConfig``/``GRPOConfig``, ...), minus the paths the pipeline fills in
(model, data, output folder). Those sections are checked against the package's config when the file is loaded,
so a misspelt key anywhere is one line naming the file, line and key, before a model is loaded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from effirl.data.warmup import WarmupMix

RL_ALGORITHMS = ("rloo", "grpo", "grpo_round")
STAGES = ("base", "sample", "score", "sft", "dpo_data", "dpo", "rl", "evaluate")
SPLITS = ("train", "heldout", "all")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuiteRef(_Strict):
    """A task suite and where its data is (None: bundled, or its official location)."""

    suite: str = "builtin"
    source: str | None = None


class SplitConfig(_Strict):
    """How the training suite's tasks split into ``train`` (stage-1 data, RL) and ``heldout`` (never trained
    on, evaluated to see whether what was learnt transfers)."""

    heldout_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of tasks held out: those with the "
                                    "smallest seeded hash of their id")
    heldout: list[str] | None = Field(None, description="Explicit held-out task ids (wins over the fraction)")
    seed: int = 0


class InitSpec(_Strict):
    """A model made here from nothing (``effirl model init``)."""

    size: Literal["tiny", "small"] = "tiny"
    seed: int = 0


class WarmupSpec(_Strict):
    """Training the initialized model from scratch on the warm-up corpus (the stand-in for pretraining)."""

    mix: WarmupMix = Field(default_factory=WarmupMix)
    train: dict[str, Any] = Field(default_factory=dict, description="Keys of WarmupConfig but model/out/suite/"
                                  "source/mix")


class BaseStage(_Strict):
    """Where the base model comes from: a path or hub id, a shipped model, or ``init`` plus a warm-up."""

    model: str | None = None
    shipped: str | None = Field(None, description="A base model shipped with effirl (effirl model shipped)")
    init: InitSpec | None = None
    warmup: WarmupSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BaseStage:
        given = [name for name in ("model", "shipped", "init") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of model, shipped, init (got {', '.join(given) or 'none'})")
        if self.warmup is not None and self.init is None:
            raise ValueError("warmup trains a model made by init; it needs init")
        return self


class SampleStage(_Strict):
    """Stage 1's samples from the base model (the paper: 100 per problem)."""

    split: Literal["train", "all"] = "train"
    generate: dict[str, Any] = Field(default_factory=dict, description="Keys of GenerateConfig but model")


class ScoreStage(_Strict):
    """Verdicts and counts of the samples (``effirl evaluate``)."""

    inputs_seed: int = Field(1, description="Seed of the performance inputs of stage-1 scoring")


class DpoDataStage(_Strict):
    """DPO pairs; one data set per proportion of efficiency pairs."""

    proportions: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=lambda: [0.1],
                                                                       min_length=1)
    data: dict[str, Any] = Field(default_factory=dict, description="Keys of DPODataConfig but scored/out")


class SftStage(_Strict):
    """The optional SFT stage (the paper's SFT row): the top-2 fastest correct samples per task."""

    enabled: bool = False
    data: dict[str, Any] = Field(default_factory=dict, description="Keys of SFTDataConfig but scored/out")
    train: dict[str, Any] = Field(default_factory=dict, description="Keys of SFTConfig but model/data/out")


class DpoStage(_Strict):
    """Stage 1's DPO training, one model per proportion, from the base (or the SFT) model."""

    start: Literal["base", "sft"] = "base"
    train: dict[str, Any] = Field(default_factory=dict, description="Keys of DPOConfig but model/data/out")


class RlStage(_Strict):
    """Stage 2: RL from the DPO checkpoint of ``proportion`` with the efficiency reward."""

    enabled: bool = True
    algorithms: list[Literal["rloo", "grpo", "grpo_round"]] = Field(default_factory=lambda: ["rloo"],
                                                                     min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    proportion: float = Field(0.1, description="Which DPO model RL starts from (one of dpo_data.proportions)")
    round_to: float = Field(0.1, gt=0, description="GRPO with Round: the reward's rounding step")
    train: dict[str, Any] = Field(default_factory=dict, description="Keys of the RL trainers' configs but "
                                  "model/out/suite/source/tasks")
    per_algorithm: dict[Literal["rloo", "grpo", "grpo_round"], dict[str, Any]] = Field(
        default_factory=dict, description="Keys for one algorithm only (e.g. grpo: {loss_type: grpo})")


class EvalSuite(SuiteRef):
    """One evaluation suite; ``splits`` applies to the training suite (train / heldout), else ``all``."""

    splits: list[Literal["train", "heldout", "all"]] = Field(default_factory=lambda: ["all"], min_length=1)
    limit: int | None = Field(None, ge=1, description="First N tasks only (for quick runs)")


class EvaluateStage(_Strict):
    """Every model of the run, scored with the same meter and inputs: pass@1, DPS_norm, Beyond, reward."""

    suites: list[EvalSuite] = Field(default_factory=lambda: [EvalSuite(splits=["train", "heldout"])],
                                    min_length=1)
    inputs_seed: int = Field(7, description="Seed of the evaluation's performance inputs (no training step "
                             "uses it)")
    seed: int | None = Field(None, description="Sampling seed of the evaluation; None: derived from the run's "
                             "seed, apart from the seed stage 1 samples with")
    generate: dict[str, Any] = Field(default_factory=dict, description="Keys of GenerateConfig but model")


class PipelineConfig(_Strict):
    """The whole run."""

    name: str
    description: str = ""
    seed: int = 0
    train_suite: SuiteRef = Field(default_factory=SuiteRef)
    tasks: list[str] | None = Field(None, description="Only these tasks of the training suite (ids, or names "
                                    "without the suite's prefix); None: all")
    decontaminate: list[SuiteRef] = Field(default_factory=list, description="Drop training tasks that match a "
                                          "task of these suites (signature or prompt)")
    split: SplitConfig = Field(default_factory=SplitConfig)
    meter: str = Field("auto", description="auto | perf | callgrind | cputime: one meter for the whole run")
    calibration: str | None = Field(None, description="Generator scales: a file, 'shipped:NAME', or None for "
                                    "the suite's default")
    workers: int | None = Field(None, ge=1, description="Sandbox workers (default: one per CPU)")
    base: BaseStage
    sft: SftStage = Field(default_factory=SftStage)
    sample: SampleStage = Field(default_factory=SampleStage)
    score: ScoreStage = Field(default_factory=ScoreStage)
    dpo_data: DpoDataStage = Field(default_factory=DpoDataStage)
    dpo: DpoStage = Field(default_factory=DpoStage)
    rl: RlStage = Field(default_factory=RlStage)
    evaluate: EvaluateStage = Field(default_factory=EvaluateStage)
    report: dict[str, str] = Field(default_factory=dict, description="Notes printed in the report, by title")

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        from effirl.tasks import SUITES

        held_out = bool(self.split.heldout) or self.split.heldout_fraction > 0
        if self.sample.split == "all" and held_out:
            raise ValueError("sample.split is 'all' but some tasks are held out: their samples would reach the "
                             "training data; use sample.split: train")
        for suite in [self.train_suite, *self.decontaminate, *self.evaluate.suites]:
            if suite.suite.lower() not in SUITES:
                raise ValueError(f"unknown suite {suite.suite!r}; known suites: {', '.join(SUITES)}")
        for suite in self.evaluate.suites:
            own = (suite.suite, suite.source) == (self.train_suite.suite, self.train_suite.source)
            if not own and set(suite.splits) - {"all"}:
                raise ValueError(f"evaluate suite {suite.suite!r} is not the training suite: its split is 'all' "
                                 "(train / heldout split the training suite only)")
        if self.rl.enabled and self.rl.proportion not in self.dpo_data.proportions:
            raise ValueError(f"rl.proportion {self.rl.proportion} is not among dpo_data.proportions "
                             f"{self.dpo_data.proportions}")
        if self.dpo.start == "sft" and not self.sft.enabled:
            raise ValueError("dpo.start is 'sft' but the sft stage is not enabled")
        return self


def stage_names(config: PipelineConfig) -> list[str]:
    """The stages this config runs, in order."""
    names = ["base", "sample", "score"]
    if config.sft.enabled:
        names.append("sft")
    names += ["dpo_data", "dpo"]
    if config.rl.enabled:
        names.append("rl")
    return [*names, "evaluate"]
