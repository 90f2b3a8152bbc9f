"""``effirl generate``: sample solutions from a model into an evalplus-style JSONL file, resumably."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from effirl.cli.common import SourceOpt, SuiteOpt, console, err_console, friendly
from effirl.errors import EffirlError


class _Rates(ProgressColumn):
    """Samples/s and generated tokens/s since the first sample was asked for."""

    def render(self, task: Any) -> Text:
        start, tokens = task.fields.get("t0"), task.fields.get("tokens", 0)
        if start is None or not task.completed:
            return Text("")
        dt = max(time.monotonic() - start, 1e-9)
        return Text(f"{task.completed / dt:.2f} samples/s {tokens / dt:,.0f} tok/s", style="cyan")


def _select(suite: str, source: str | None, ids: str | None, limit: int | None) -> list[Any]:
    from effirl.tasks import get, load

    tasks = load(suite, source)
    if ids:
        tasks = [get(tasks, i.strip()) for i in ids.split(",") if i.strip()]
    if limit is not None:
        tasks = tasks[:limit]
    if not tasks:
        raise EffirlError("no tasks selected (check --tasks / --limit)")
    return tasks


TasksOpt = typer.Option(None, "--tasks", help="Comma-separated task ids (default: all tasks of the suite)")
LimitOpt = typer.Option(None, "--limit", min=0, help="Only the first K (selected) tasks")
ModelOpt = typer.Option(None, "--model", "-m", help="Model folder or hub id (transformers, vllm); the served "
                        "model's name (openai)")
BackendOpt = typer.Option(None, "--backend", help="transformers (default) | openai | vllm")
BaseUrlOpt = typer.Option(None, "--base-url", help="openai: the server, e.g. http://host:8000/v1 (default: "
                          "$OPENAI_BASE_URL, else http://127.0.0.1:8000/v1)")
KeyEnvOpt = typer.Option(None, "--api-key-env", help="openai: the variable holding the API key (default "
                         "OPENAI_API_KEY; unset: 'EMPTY', which local servers accept)")
NOpt = typer.Option(None, "--n", min=1, help="Samples per task (default 1); raising it later adds indices")
TemperatureOpt = typer.Option(None, "--temperature", "-t", min=0.0, help="Default 1.0; 0 is greedy")
TopPOpt = typer.Option(None, "--top-p", help="Nucleus mass (default 1.0)")
MaxTokensOpt = typer.Option(None, "--max-new-tokens", min=1, help="Tokens per response (default 1024)")
StrategyOpt = typer.Option(None, "--strategy", help="direct (default) | efficient | cot | m2wf")
SeedOpt = typer.Option(None, "--seed", help="Run seed (default 0); a sample's seed derives from it, its task "
                       "and its index")
BatchOpt = typer.Option(None, "--batch-size", min=1, help="transformers: samples per batch (default 16)")
ConcurrencyOpt = typer.Option(None, "--concurrency", min=1, help="openai: requests in flight (default 8)")
DeviceOpt = typer.Option(None, "--device", help="transformers: auto (CUDA if present) | cpu | cuda[:N]")
PromptFileOpt = typer.Option(None, "--prompt-file", help="YAML replacing prompt templates (the layout of "
                             "effirl/generation/templates.yaml)")
ConfigOpt = typer.Option(None, "--config", help="YAML of the run's settings (GenerateConfig); flags win")
SamplesOutOpt = typer.Option(..., "--out", "-o", help="Samples file (JSONL); one of the same run is resumed")


@friendly
def generate(suite: str = SuiteOpt, source: str = SourceOpt, tasks: str = TasksOpt, limit: int = LimitOpt,
             model: str = ModelOpt, backend: str = BackendOpt, base_url: str = BaseUrlOpt,
             api_key_env: str = KeyEnvOpt, n: int = NOpt, temperature: float = TemperatureOpt,
             top_p: float = TopPOpt, max_new_tokens: int = MaxTokensOpt, strategy: str = StrategyOpt,
             seed: int = SeedOpt, batch_size: int = BatchOpt, concurrency: int = ConcurrencyOpt,
             device: str = DeviceOpt, prompt_file: Path = PromptFileOpt, config: Path = ConfigOpt,
             out: Path = SamplesOutOpt) -> None:
    """Sample N solutions per task from a local model or an OpenAI-compatible server (vLLM, SGLang, TGI)."""
    from effirl.configfile import load_config
    from effirl.generation import GenerateConfig
    from effirl.generation import generate as run_generation

    if model is None and config is None:
        raise EffirlError("--model is required: a model folder or hub id, or the served model's name with "
                          "--backend openai")
    overrides = {"model": model, "backend": backend, "strategy": strategy, "n": n, "temperature": temperature,
                 "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed,
                 "prompt_file": str(prompt_file) if prompt_file else None,
                 "transformers.batch_size": batch_size, "transformers.device": device,
                 "openai.base_url": base_url, "openai.api_key_env": api_key_env,
                 "openai.concurrency": concurrency}
    cfg = load_config(GenerateConfig, config, overrides)
    selected = _select(suite, source, tasks, limit)
    console.print(f"{len(selected)} tasks x {cfg.n} samples, strategy {cfg.strategy}, temperature "
                  f"{cfg.temperature:g}, top-p {cfg.top_p:g}, seed {cfg.seed} -> {out}", highlight=False,
                  soft_wrap=True)
    if cfg.backend != "openai":
        _quiet_transformers()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rates(),
                   TimeElapsedColumn(), console=err_console)
    ids: dict[str, Any] = {}
    tokens = [0]

    def update(phase: str, done: int, total: int) -> None:
        if phase == "load":
            if phase not in ids:
                ids[phase] = bar.add_task(f"loading {cfg.backend} backend", total=total)
            bar.update(ids[phase], completed=done, visible=done < total)
            return
        if phase not in ids:
            ids[phase] = bar.add_task("generating", total=total, tokens=0, t0=time.monotonic())
        bar.update(ids[phase], completed=done, total=total, tokens=tokens[0])

    def count(record: dict[str, Any]) -> None:
        steps = record.get("steps") or [record]
        tokens[0] += sum(s.get("completion_tokens") or 0 for s in steps)

    try:
        with bar:
            summary = run_generation(cfg, selected, out, progress=update, on_sample=count)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: the samples written so far are in {out}; rerun the same command to "
                          "resume", highlight=False)
        raise typer.Exit(130) from None
    _print_summary(summary, cfg.strategy)


def _quiet_transformers() -> None:
    """No per-file 'Loading weights' bars from transformers under our own progress display."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _print_summary(summary: Any, strategy: str) -> None:
    def num(x: float | None, fmt: str = ".1f") -> str:
        return "-" if x is None else format(x, fmt)

    if summary.written == 0 and summary.existing == summary.requested:
        console.print(f"nothing to do: all {summary.requested} samples ({summary.tasks} tasks) are already "
                      f"in {summary.out}", highlight=False, soft_wrap=True)
        return

    table = Table(title="generation", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("samples written", str(summary.written))
    table.add_row("already in the file", str(summary.existing))
    table.add_row("tasks x n", f"{summary.tasks} ({summary.requested} samples)")
    if summary.backend:
        table.add_row("backend", summary.backend)
    table.add_row("mean prompt tokens", num(summary.mean_prompt_tokens))
    table.add_row("mean completion tokens", num(summary.mean_completion_tokens))
    if summary.finish_reasons:
        reasons = summary.finish_reasons.most_common()
        table.add_row("finish reasons", ", ".join(f"{k} {v}" for k, v in reasons))
    if strategy == "m2wf":
        table.add_row("fell back to direct", str(summary.fallbacks))
    table.add_row("load time", f"{summary.load_s:.1f} s")
    table.add_row("generation time", f"{summary.elapsed_s:.1f} s")
    table.add_row("samples/s", num(summary.samples_per_s, ".2f"))
    table.add_row("tokens/s (all steps)", num(summary.tokens_per_s, ",.0f"))
    console.print(table)
    console.print(f"samples: {summary.out}", soft_wrap=True)
