"""``effirl data``: training data built from scored samples (SFT rows, DPO pairs) and files for other trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effirl.cli.common import friendly

app = typer.Typer(help="Training data from scored samples: sft, dpo; data files for verl.", no_args_is_help=True)


ScoredOpt = typer.Option(None, "--scored", help="An effirl evaluate (or measure) output folder")
DataOutOpt = typer.Option(None, "--out", "-o", help="Output folder")
DataConfigOpt = typer.Option(None, "--config", "-c", help="YAML config; flags override its keys")
SamplesOpt = typer.Option(None, "--samples", help="Where the scored samples file is now, if it has moved")
MaxRowsOpt = typer.Option(None, "--max-rows", help="Cap on rows (paper: 5,000 SFT, 50,000 DPO)")
DedupOpt = typer.Option(None, "--dedup", help="ast (default) | exact | none")
DecontaminateOpt = typer.Option(None, "--decontaminate", help="Drop tasks matching these evaluation suites: "
                                "SUITE[:SOURCE],... (repeatable)")
DataSeedOpt = typer.Option(None, "--seed", help="Seed of dedup choices and pair draws (default 0)")


def _data_overrides(scored: Path | None, out: Path | None, samples: Path | None, per_task: int | None,
                    max_rows: int | None, dedup: str | None, decontaminate: list[str] | None,
                    seed: int | None) -> dict[str, Any]:
    return {"scored": scored, "out": out, "samples": samples, "per_task": per_task, "max_rows": max_rows,
            "dedup": dedup, "decontaminate": decontaminate or None, "seed": seed}


def _print_stats(stats: Any) -> None:
    from rich.table import Table

    from effirl.cli.common import console
    from effirl.data.stats import table_rows

    table = Table(title=f"{stats.kind} data from {stats.scored}")
    table.add_column("")
    table.add_column("value", justify="right", overflow="fold")
    for label, value in table_rows(stats):
        table.add_row(label, value)
    console.print(table)
    for d in stats.dropped:
        console.print(f"decontamination dropped {d.task_id}: {d.reason} matches {d.match} ({d.detail})",
                      highlight=False, soft_wrap=True)
    for reason, ids in stats.skipped.items():
        shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        console.print(f"skipped ({reason}): {shown}", highlight=False, soft_wrap=True)
    for note in stats.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for name, path in stats.files.items():
        console.print(f"{name}: {path}", highlight=False, soft_wrap=True)


@app.command("sft")
@friendly
def sft(scored: Path = ScoredOpt, out: Path = DataOutOpt, config: Path = DataConfigOpt,
        samples: Path = SamplesOpt,
        per_task: int = typer.Option(None, "--per-task", help="Fastest distinct correct samples per task "
                                     "(default 2)"),
        max_rows: int = MaxRowsOpt, dedup: str = DedupOpt, decontaminate: list[str] = DecontaminateOpt,
        seed: int = DataSeedOpt) -> None:
    """SFT rows: per task the K fastest distinct correct samples, as chat messages (TRL, LlamaFactory)."""
    from effirl.cli.common import progress_bar
    from effirl.configfile import load_config
    from effirl.data import SFTDataConfig, build_sft

    cfg = load_config(SFTDataConfig, config, _data_overrides(scored, out, samples, per_task, max_rows, dedup,
                                                              decontaminate, seed))
    bar, update = progress_bar()
    with bar:
        stats = build_sft(cfg, progress=update)
    _print_stats(stats)


@app.command("dpo")
@friendly
def dpo(scored: Path = ScoredOpt, out: Path = DataOutOpt, config: Path = DataConfigOpt,
        samples: Path = SamplesOpt,
        proportion: float = typer.Option(None, "--proportion", "-p", help="Share of efficiency pairs, in "
                                         "[0, 1] (default 0.1, the paper's)"),
        min_ratio: float = typer.Option(None, "--min-ratio", help="An efficiency pair's slower/faster "
                                        "count, at least (default 1.1)"),
        fill: bool = typer.Option(None, "--fill/--keep-ratio", help="When one kind runs short: fill up "
                                  "with the other, or shrink the set to keep the share (default)"),
        per_task: int = typer.Option(None, "--per-task", help="Pairs of each kind per task, at most"),
        max_rows: int = MaxRowsOpt, dedup: str = DedupOpt, decontaminate: list[str] = DecontaminateOpt,
        seed: int = DataSeedOpt) -> None:
    """DPO pairs: correctness (pass vs fail) and efficiency (fewer instructions) pairs, a share P of those."""
    from effirl.cli.common import progress_bar
    from effirl.configfile import load_config
    from effirl.data import DPODataConfig, build_dpo

    overrides = _data_overrides(scored, out, samples, per_task, max_rows, dedup, decontaminate, seed)
    overrides.update(proportion=proportion, min_ratio=min_ratio, fill=fill)
    cfg = load_config(DPODataConfig, config, overrides)
    bar, update = progress_bar()
    with bar:
        stats = build_dpo(cfg, progress=update)
    _print_stats(stats)


@app.command("verl")
@friendly
def verl(suite: str = typer.Option(..., "--suite", "-s", help="The suite whose tasks are the prompts"),
         source: str = typer.Option(None, "--source", help="Local file or folder of the suite"),
         out: Path = typer.Option(..., "--out", "-o", help="Output folder: train.parquet (and val.parquet)"),
         val_fraction: float = typer.Option(0.0, "--val-fraction", help="Share of tasks for val.parquet"),
         seed: int = typer.Option(0, "--seed", help="Seed of the train/val draw"),
         strategy: str = typer.Option("direct", "--strategy", help="Prompt: direct | efficient | cot"),
         prompt_file: Path = typer.Option(None, "--prompt-file", help="YAML overriding prompt templates"),
         ) -> None:
    """verl's parquet files (prompt, data_source, reward_model, extra_info.task_id) for a suite's tasks."""
    from rich.table import Table

    from effirl.cli.common import console
    from effirl.data.verl import write_verl
    from effirl.tasks import load

    if source is not None and Path(source).exists():
        source = str(Path(source).resolve())  # the reward loads the suite from here (or reward_kwargs.source)
    written = write_verl(load(suite, source), suite, out, source, val_fraction=val_fraction, seed=seed,
                         strategy=strategy, prompt_file=prompt_file)
    table = Table(title=f"verl data: {suite}")
    for col in ("split", "rows", "file"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for split, (path, n) in written.items():
        table.add_row(split, str(n), str(path))
    console.print(table)
