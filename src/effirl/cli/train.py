"""``effirl train``: TRL trainers (sft, dpo, rloo, grpo) from a YAML config, flags overriding its keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effirl.cli.common import friendly, quiet_libraries

app = typer.Typer(help="Train with TRL: sft, dpo (stage 1), rloo, grpo (stage 2).", no_args_is_help=True)


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config; flags override its keys")
ModelOpt = typer.Option(None, "--model", "-m", help="Model folder (with its tokenizer) or hub id")
DataOpt = typer.Option(None, "--data", "-d", help="effirl data folder, datasets folder, JSON Lines file, "
                       "hub id")
TrainOutOpt = typer.Option(None, "--out", "-o", help="Output folder (checkpoints, metrics.jsonl, final/)")
MaxStepsOpt = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps")
EpochsOpt = typer.Option(None, "--epochs", help="Epochs (paper: SFT 10, DPO 1)")
LrOpt = typer.Option(None, "--lr", help="Learning rate (paper: 5e-6)")
BatchOpt = typer.Option(None, "--batch-size", help="Effective batch, reached by gradient accumulation "
                        "(paper: 1024)")
PerDeviceOpt = typer.Option(None, "--per-device-batch-size", help="Rows per device per step")
SeedOpt = typer.Option(None, "--seed", help="Seed")
ReportOpt = typer.Option(None, "--report-to", help="tensorboard, wandb, ... (repeatable; default: none)")
SetOpt = typer.Option(None, "--set", help="Any config key: KEY=VALUE (dotted keys reach sections, e.g. "
                      "lora.r=8; the value is read as YAML); repeatable")


def _overrides(model: str | None, data: str | None, out: Path | None, max_steps: int | None,
               epochs: float | None, lr: float | None, batch_size: int | None, per_device: int | None,
               seed: int | None, report_to: list[str] | None, sets: list[str] | None) -> dict[str, Any]:
    import yaml

    from effirl.errors import InputFormatError

    given: dict[str, Any] = {"model": model, "data": data, "out": out, "max_steps": max_steps,
                             "epochs": epochs, "learning_rate": lr, "batch_size": batch_size,
                             "per_device_batch_size": per_device, "seed": seed,
                             "report_to": report_to or None}
    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputFormatError("command line", f"expected KEY=VALUE, got {item!r}", field="--set")
        try:
            given[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InputFormatError("command line", f"cannot read the value of {item!r}",
                                   field="--set") from None
    return given


def _run(kind: str, config: Path | None, overrides: dict[str, Any]) -> None:
    from effirl.cli.common import console, progress_bar
    from effirl.configfile import load_config

    if kind == "sft":
        from effirl.training.sft_config import SFTConfig as Config
        from effirl.training.sft_trainer import train_sft as train
    else:
        from effirl.training.dpo_config import DPOConfig as Config  # type: ignore[assignment]
        from effirl.training.dpo_trainer import train_dpo as train  # type: ignore[assignment]
    cfg = load_config(Config, config, overrides)
    quiet_libraries()
    length = f"max {cfg.max_steps} steps" if cfg.max_steps else f"{cfg.epochs:g} epoch(s)"
    console.print(f"{kind}: {cfg.model} on {cfg.data} -> {cfg.out} (lr {cfg.learning_rate:g}, "
                  f"batch {cfg.batch_size}, {length})", highlight=False, soft_wrap=True)
    bar, update = progress_bar()
    with bar:
        final = train(cfg, update)  # type: ignore[arg-type]
    _report(cfg.out, final)


def _report(out: Path, final: Path) -> None:
    import json

    from rich.table import Table

    from effirl.cli.common import console
    from effirl.training.common import SUMMARY
    from effirl.training.metrics import METRICS, read_metrics

    records = [r for r in read_metrics(out / METRICS) if "loss" in r]
    if records:
        table = Table(title="training loss")
        keys = [k for k in ("loss", "rewards/margins", "rewards/accuracies", "learning_rate")
                if any(k in r for r in records)]
        for col in ("step", *keys):
            table.add_column(col, justify="right")
        shown = records if len(records) <= 12 else [*records[:6], *records[-6:]]
        for r in shown:
            table.add_row(str(r["step"]), *("-" if r.get(k) is None else f"{float(r[k]):.4g}" for k in keys))
        console.print(table)
    summary = out / SUMMARY
    if summary.is_file():
        data = json.loads(summary.read_text(encoding="utf-8"))
        console.print(f"steps: {data.get('steps')}, loss plot: {data.get('loss_plot')}", highlight=False)
    console.print(f"final model: {final}", highlight=False, soft_wrap=True)
    console.print(f"metrics: {out / METRICS}", highlight=False, soft_wrap=True)


@app.command("sft")
@friendly
def sft(config: Path = ConfigOpt, model: str = ModelOpt, data: str = DataOpt, out: Path = TrainOutOpt,
        max_steps: int = MaxStepsOpt, epochs: float = EpochsOpt, lr: float = LrOpt,
        batch_size: int = BatchOpt,
        per_device_batch_size: int = PerDeviceOpt, seed: int = SeedOpt, report_to: list[str] = ReportOpt,
        set_: list[str] = SetOpt) -> None:
    """Supervised fine-tuning (TRL SFTTrainer) on effirl data sft rows; the paper's settings by default."""
    _run("sft", config, _overrides(model, data, out, max_steps, epochs, lr, batch_size, per_device_batch_size,
                                   seed, report_to, set_))


@app.command("dpo")
@friendly
def dpo(config: Path = ConfigOpt, model: str = ModelOpt, data: str = DataOpt, out: Path = TrainOutOpt,
        max_steps: int = MaxStepsOpt, epochs: float = EpochsOpt, lr: float = LrOpt,
        batch_size: int = BatchOpt,
        per_device_batch_size: int = PerDeviceOpt, seed: int = SeedOpt, report_to: list[str] = ReportOpt,
        beta: float = typer.Option(None, "--beta", help="DPO beta (paper: 0.1)"),
        set_: list[str] = SetOpt) -> None:
    """Direct preference optimization (TRL DPOTrainer) on effirl data dpo pairs; the paper's settings."""
    overrides = _overrides(model, data, out, max_steps, epochs, lr, batch_size, per_device_batch_size, seed,
                           report_to, set_)
    overrides["beta"] = beta
    _run("dpo", config, overrides)


# -- stage 2: RL with the efficiency reward ------------------------------------------------------------------

RLSuiteOpt = typer.Option(None, "--suite", "-s", help="Task suite of the training prompts (default: builtin)")
RLSourceOpt = typer.Option(None, "--source", help="Local file or folder of the suite")
RLTasksOpt = typer.Option(None, "--tasks", help="Training tasks: ids or names, comma-separated or repeated "
                          "(default: the whole suite)")
RLBatchOpt = typer.Option(None, "--batch-size", help="Prompts per step (paper: 64)")
RLEpochsOpt = typer.Option(None, "--epochs", help="Passes over the training prompts (paper: 30 episodes)")
RLLrOpt = typer.Option(None, "--lr", help="Learning rate (paper: 1e-6)")
GenerationsOpt = typer.Option(None, "--num-generations", "-g", help="Completions per prompt (paper: 64)")
MeterOpt = typer.Option(None, "--meter", help="auto | perf | callgrind | cputime (effirl meters: which work "
                        "here)")
RoundOpt = typer.Option(None, "--reward-round", help="Round the efficiency reward to this step (GRPO with "
                        "Round: 0.1)")
EvalEveryOpt = typer.Option(None, "--eval-every", help="Evaluate pass@1, DPS_norm and reward every K steps "
                            "(0: never)")
KLOpt = typer.Option(None, "--beta", help="KL coefficient (default 0: no reference model)")


def _rl_overrides(model: str | None, suite: str | None, source: str | None, tasks: list[str] | None,
                  out: Path | None, max_steps: int | None, epochs: float | None, lr: float | None,
                  batch_size: int | None, num_generations: int | None, meter: str | None,
                  reward_round: float | None, eval_every: int | None, beta: float | None, seed: int | None,
                  report_to: list[str] | None, sets: list[str] | None) -> dict[str, Any]:
    given = _overrides(model, None, out, max_steps, epochs, lr, batch_size, None, seed, report_to, sets)
    names = [n.strip() for item in tasks or [] for n in item.split(",") if n.strip()]
    flags = {"suite": suite, "source": source, "tasks": names or None, "num_generations": num_generations,
             "reward.meter": meter, "reward.round_to": reward_round, "evaluation.every": eval_every,
             "beta": beta}
    for key, value in flags.items():  # a --set of the same key wins
        if given.get(key) is None:
            given[key] = value
    return given


def _run_rl(kind: str, config: Path | None, overrides: dict[str, Any]) -> None:
    from effirl.cli.common import console, progress_bar
    from effirl.configfile import load_config

    if kind == "rloo":
        from effirl.training.rloo_config import RLOOConfig as Config
        from effirl.training.rloo_trainer import train_rloo as train
    else:
        from effirl.training.grpo_config import GRPOConfig as Config  # type: ignore[assignment]
        from effirl.training.grpo_trainer import train_grpo as train  # type: ignore[assignment]
    cfg = load_config(Config, config, overrides)
    quiet_libraries()
    length = f"max {cfg.max_steps} steps" if cfg.max_steps else f"{cfg.epochs:g} epoch(s)"
    tasks = f"{len(cfg.tasks)} task(s) of {cfg.suite}" if cfg.tasks else f"suite {cfg.suite}"
    rounding = f", reward rounded to {cfg.reward.reward.round_to:g}" if cfg.reward.reward.round_to else ""
    console.print(f"{kind}: {cfg.model} on {tasks} -> {cfg.out} (lr {cfg.learning_rate:g}, {cfg.batch_size} "
                  f"prompts x {cfg.num_generations} completions per step, {length}, meter {cfg.reward.meter}"
                  f"{rounding}, beta {cfg.beta:g})", highlight=False, soft_wrap=True)
    bar, update = progress_bar()
    with bar:
        final = train(cfg, update)  # type: ignore[arg-type]
    _report_rl(cfg.out, final)


def _cell(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{float(value):.4g}"


def _report_rl(out: Path, final: Path) -> None:
    import json

    from rich.table import Table

    from effirl.cli.common import console
    from effirl.training.common import SUMMARY
    from effirl.training.metrics import METRICS, read_metrics
    from effirl.training.rl_curves import eval_rows

    records = [r for r in read_metrics(out / METRICS) if "reward" in r]
    if records:
        table = Table(title="training (mean over the step's completions)")
        labels = {"reward": "reward", "reward_std": "reward std", "efficiency/pass_rate": "pass rate",
                  "efficiency/format_error_rate": "format errors", "efficiency/seconds": "reward s",
                  "step_time": "step s", "kl": "kl", "loss": "loss"}
        keys = [k for k in labels if any(k in r for r in records)]
        table.add_column("step", justify="right")
        for key in keys:
            table.add_column(labels[key], justify="right")
        shown = records if len(records) <= 12 else [*records[:6], *records[-6:]]
        for r in shown:
            table.add_row(str(r["step"]), *(_cell(r.get(k)) for k in keys))
        console.print(table)
    rows = eval_rows(out / METRICS)
    if rows:
        table = Table(title="evaluation")
        keys = ["pass@1", "dps_norm", "reward", "n_samples", "seconds"]
        for col in ("step", *keys):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(str(r["step"]), *(_cell(r.get(k)) for k in keys))
        console.print(table)
    summary = out / SUMMARY
    if summary.is_file():
        data = json.loads(summary.read_text(encoding="utf-8"))
        console.print(f"steps: {data.get('steps')}, curves: {data.get('curves_plot')}", highlight=False,
                      soft_wrap=True)
    console.print(f"final model: {final}", highlight=False, soft_wrap=True)
    console.print(f"metrics: {out / METRICS}", highlight=False, soft_wrap=True)


@app.command("rloo")
@friendly
def rloo(config: Path = ConfigOpt, model: str = ModelOpt, suite: str = RLSuiteOpt, source: str = RLSourceOpt,
         tasks: list[str] = RLTasksOpt, out: Path = TrainOutOpt, max_steps: int = MaxStepsOpt,
         epochs: float = RLEpochsOpt, lr: float = RLLrOpt, batch_size: int = RLBatchOpt,
         num_generations: int = GenerationsOpt, meter: str = MeterOpt, reward_round: float = RoundOpt,
         eval_every: int = EvalEveryOpt, beta: float = KLOpt, seed: int = SeedOpt,
         report_to: list[str] = ReportOpt, set_: list[str] = SetOpt) -> None:
    """RLOO (TRL RLOOTrainer) with the efficiency reward on a suite's prompts: the paper's stage 2."""
    _run_rl("rloo", config, _rl_overrides(model, suite, source, tasks, out, max_steps, epochs, lr, batch_size,
                                          num_generations, meter, reward_round, eval_every, beta, seed,
                                          report_to, set_))


@app.command("grpo")
@friendly
def grpo(config: Path = ConfigOpt, model: str = ModelOpt, suite: str = RLSuiteOpt, source: str = RLSourceOpt,
         tasks: list[str] = RLTasksOpt, out: Path = TrainOutOpt, max_steps: int = MaxStepsOpt,
         epochs: float = RLEpochsOpt, lr: float = RLLrOpt, batch_size: int = RLBatchOpt,
         num_generations: int = GenerationsOpt, meter: str = MeterOpt, reward_round: float = RoundOpt,
         eval_every: int = EvalEveryOpt, beta: float = KLOpt, seed: int = SeedOpt,
         report_to: list[str] = ReportOpt, set_: list[str] = SetOpt) -> None:
    """GRPO (TRL GRPOTrainer) with the efficiency reward; --reward-round 0.1: the paper's GRPO with Round."""
    _run_rl("grpo", config, _rl_overrides(model, suite, source, tasks, out, max_steps, epochs, lr, batch_size,
                                          num_generations, meter, reward_round, eval_every, beta, seed,
                                          report_to, set_))


@app.command("warmup")
@friendly
def warmup(config: Path = ConfigOpt, model: str = ModelOpt, suite: str = RLSuiteOpt, source: str = RLSourceOpt,
           out: Path = TrainOutOpt, max_steps: int = MaxStepsOpt, lr: float = LrOpt, batch_size: int = BatchOpt,
           seed: int = SeedOpt, set_: list[str] = SetOpt) -> None:
    """Train a model made from nothing (effirl model init) on a suite's warm-up corpus: references (the slowest
    weighted up) and broken variants, the stand-in for an LLM's prior. Defaults: lr 4e-3, batch 16, 700 steps."""
    from effirl.cli.common import console, progress_bar
    from effirl.configfile import load_config
    from effirl.training.warmup_config import WarmupConfig
    from effirl.training.warmup_trainer import train_warmup

    overrides = _overrides(model, None, out, max_steps, None, lr, batch_size, None, seed, None, set_)
    overrides.pop("data")
    overrides.update({"suite": suite, "source": source})
    cfg = load_config(WarmupConfig, config, overrides)
    quiet_libraries()
    console.print(f"warm-up: {cfg.model} on the corpus of {cfg.suite} -> {cfg.out} (lr {cfg.learning_rate:g}, "
                  f"batch {cfg.batch_size}, {cfg.max_steps} steps, mix {cfg.mix.model_dump()})", highlight=False,
                  soft_wrap=True)
    bar, update = progress_bar()
    with bar:
        final = train_warmup(cfg, update)
    _report(cfg.out, final)
