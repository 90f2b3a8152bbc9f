"""``effirl pipeline``: the two-stage method end to end from one config (run, plan, the shipped configs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.table import Table

from effirl.cli.common import OutOpt, console, friendly, progress_bar, quiet_libraries

app = typer.Typer(help="The two-stage pipeline from one config: base -> sample -> score -> dpo_data -> dpo -> rl "
                  "-> evaluate.", no_args_is_help=True)
ConfigOpt = typer.Option(..., "--config", "-c", help="A shipped config's name (effirl pipeline configs) or a YAML file")


@app.command("configs")
@friendly
def configs() -> None:
    """The shipped configs."""
    import yaml

    from effirl.pipeline import shipped_configs

    table = Table(title="shipped pipeline configs")
    table.add_column("name")
    table.add_column("description")
    for name, path in shipped_configs().items():
        desc = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("description", "")
        table.add_row(name, " ".join(str(desc).split())[:160])
    console.print(table)


@app.command("plan")
@friendly
def plan(config: str = ConfigOpt,
         device: str = typer.Option("cpu", "--device", help="cpu | gpu: which rough rates the estimate uses"),
         workers: int = typer.Option(2, "--workers", help="Sandbox workers assumed by the estimate")) -> None:
    """The stages, data, models and a rough compute estimate, without running anything."""
    from effirl.pipeline import load_pipeline_config, make_plan
    from effirl.pipeline.plan import FILL, RATES, human, total

    cfg = load_pipeline_config(config)
    if device not in RATES:
        raise typer.BadParameter("--device is cpu or gpu")
    stages = make_plan(cfg, device, workers)
    table = Table(title=f"plan of {cfg.name}")
    for col in ("stage", "what", "work", "estimate"):
        table.add_column(col, overflow="fold")
    for st in stages:
        work = ", ".join(f"{k} {v:,.0f}" for k, v in st.work.items())
        table.add_row(st.name, st.what, work, human(st.seconds) if st.seconds else "-")
    console.print(table)
    console.print(f"estimate: {human(total(stages))} on one {device} with {workers} sandbox worker(s) (rough rates: "
                  f"{json.dumps(RATES[device])}; completions filling {FILL:.0%} of their token limit)",
                  soft_wrap=True)


@app.command("run")
@friendly
def run(config: str = ConfigOpt, out: Path = OutOpt,
        force: str = typer.Option(None, "--force", help="Redo this stage and those after it"),
        seed: int = typer.Option(None, "--seed", help="Override the config's seed")) -> None:
    """Run the config's stages in DIR, skipping finished ones and resuming one cut in the middle."""
    from effirl.pipeline import load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(config, {"seed": seed})
    quiet_libraries()
    if logging.getLogger().level > logging.DEBUG:  # the stages' own narration; --verbose keeps it
        for name in ("effirl.evaluation", "effirl.training.common", "effirl.training.rl_common",
                     "effirl.meters.select", "effirl.data", "effirl.generation", "effirl.batch"):
            logging.getLogger(name).setLevel(logging.WARNING)
    bar, update = progress_bar()
    with bar:
        result = run_pipeline(cfg, out, force=force, progress=update,
                              notice=lambda text: bar.console.print(f"[bold]pipeline[/] {text}", highlight=False))
    summary = json.loads(Path(result.files["summary"]).read_text(encoding="utf-8"))
    table = Table(title=f"{cfg.name}: models")
    for col in ("model", "suite", "split", "pass@1 %", "DPS_norm", "Beyond %", "reward"):
        table.add_column(col, justify="left" if col in ("model", "suite", "split") else "right")

    def f(v: float | None, scale: float = 1.0, d: int = 1) -> str:
        return "-" if v is None else f"{v * scale:.{d}f}"

    for row in summary["stages"]:
        table.add_row(row["name"], row["suite"], row["split"], f(row["pass_at_1"], 100), f(row["dps_norm"]),
                      f(row["beyond"], 100), f(row["reward_mean"], 1, 3))
    console.print(table)
    console.print(f"ran {', '.join(result.ran) or 'nothing'}; skipped {', '.join(result.skipped) or 'nothing'}; "
                  f"{result.wall_s:.0f} s")
    console.print(f"report: {result.files['report']}")
    console.print(f"summary: {result.files['summary']}")
