"""``effirl inputs``: calibrate generator scales, show a generated performance input."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from effirl.cli.common import SourceOpt, SuiteOpt, console, friendly, progress_bar

app = typer.Typer(help="Performance inputs: calibrate generator scales, show a generated input.",
                  no_args_is_help=True)


@app.command("calibrate")
@friendly
def inputs_calibrate(
    suite: str = SuiteOpt, source: str = SourceOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Calibration file to write (JSON)"),
    meter: str = typer.Option("callgrind", "--meter", help="auto | perf | callgrind | cputime"),
    budget: float = typer.Option(None, "--budget", help="Slowest reference's count at the chosen scale "
                                 "(instructions; CPU seconds with cputime). Default 2e8 / 0.5 s"),
    min_contrast: float = typer.Option(4.0, "--min-contrast", help="Required slowest/fastest count ratio"),
    workers: int = typer.Option(2, "--workers", "-j", help="Tasks calibrated in parallel"),
    seed: int = typer.Option(0, "--seed", help="Seed of the inputs generated while calibrating"),
    max_scale: int = typer.Option(10**8, "--max-scale", help="Largest scale tried"),
    max_input_mb: float = typer.Option(8.0, "--max-input-mb", help="Largest generated argument list (MB)"),
    memory_mb: int = typer.Option(1024, "--memory-mb", help="Memory of the generator and trusted reference"),
    task: list[str] = typer.Option(None, "--task", "-t", help="Only these task ids (repeatable)"),
) -> None:
    """Find each task's generator scale where its slowest reference costs about the budget; check the contrast."""
    import time

    from effirl.inputs.calibration import CalibrationConfig, calibrate_suite, write_calibration
    from effirl.meters import select_meter
    from effirl.tasks import get, load

    tasks = load(suite, source)
    if task:
        tasks = [get(tasks, t if "/" in t or suite != "builtin" else f"builtin/{t}") for t in task]
    m = select_meter(meter)
    config = CalibrationConfig(budget=budget, min_contrast=min_contrast, seed=seed, max_scale=max_scale,
                               max_input_bytes=int(max_input_mb * 1e6), memory_mb=memory_mb)
    console.print(f"calibrating {len(tasks)} tasks of {suite} with {m.name} ({m.version()}), "
                  f"budget {config.budget_for(m):.3g} {m.unit}, min contrast {min_contrast:g}, {workers} workers")
    t0 = time.monotonic()
    bar, update = progress_bar()
    with bar:
        results = calibrate_suite(tasks, config, m, workers=workers, progress=update)
    wall = time.monotonic() - t0
    write_calibration(out, results, meter=m, config=config, suite=suite, wall_s=wall)
    table = Table(title=f"calibration of {suite} ({m.name}, budget {config.budget_for(m):.3g} {m.unit})")
    for col in ("task", "scale", "slow count", "fast count", "contrast", "ok / why"):
        table.add_column(col, justify="right" if col in ("scale", "slow count", "fast count", "contrast") else "left",
                         no_wrap=col not in ("task", "ok / why"), overflow="fold",
                         min_width=12 if col == "ok / why" else None)

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    prefix = f"{suite}/" if results and all(r.task_id.startswith(f"{suite}/") for r in results) else ""
    for r in results:
        why = "ok" if r.passed else f"[red]{r.status}[/]: {r.reason or ''}"
        if r.passed and r.limited_by:
            why = f"ok (limited by {r.limited_by})"
        table.add_row(r.task_id[len(prefix):], "-" if r.scale is None else str(r.scale), num(r.slow_count), num(r.fast_count),
                      "-" if r.contrast is None else f"{r.contrast:.1f}", why)
    console.print(table)
    failing = [r for r in results if not r.passed]
    console.print(f"{len(results) - len(failing)} of {len(results)} tasks pass the contrast check"
                  + (f"; failing: {', '.join(r.task_id for r in failing)}" if failing else ""))
    console.print(f"wrote {out}", highlight=False, soft_wrap=True)
    console.print(f"total wall time: {wall:.1f} s", highlight=False)


@app.command("show")
@friendly
def inputs_show(
    task_id: str, suite: str = SuiteOpt, source: str = SourceOpt,
    seed: int = typer.Option(0, "--seed", help="Seed of the generated input"),
    scale: int = typer.Option(None, "--scale", help="Generator scale"),
    calibration: Path = typer.Option(None, "--calibration", help="Take the scale from this calibration file"),
    width: int = typer.Option(400, "--width", help="Characters of the input's repr to print"),
) -> None:
    """One generated performance input: scale, seed, size, a truncated repr, and the trusted expected output."""
    from effirl.execution.config import SandboxConfig
    from effirl.execution.worker import Worker
    from effirl.inputs.calibration import args_size, default_scales, read_scales
    from effirl.inputs.perf import resolve_perf_inputs
    from effirl.tasks import get, load

    if scale is not None and calibration is not None:
        raise typer.BadParameter("give --scale or --calibration, not both")
    tasks = load(suite, source)
    t = get(tasks, task_id if "/" in task_id or suite != "builtin" else f"builtin/{task_id}")
    if scale is not None:
        chosen, origin = scale, "--scale"
    else:
        scales = read_scales(calibration) if calibration is not None else default_scales(suite, source)
        chosen = scales.get(t.id)
        origin = (f"calibration {calibration}" if calibration is not None else "shipped calibration") \
            if chosen is not None else "the task's default_scale"
    worker = Worker(0, SandboxConfig(workers=1))
    try:
        worker.start()
        got = resolve_perf_inputs(worker, t, seed, chosen)
    finally:
        worker.close()
        worker.remove_workdir()
    console.rule(t.id)
    console.print(f"source: {got.source}  scale: {got.scale} (from {origin})  seed: {got.seed}"
                  f"{'  [yellow]low contrast[/]' if got.low_contrast else ''}")
    for note in got.notes:
        console.print(f"note: {note}")
    for i, perf in enumerate(got.inputs):
        text = repr(perf.args)
        short = text if len(text) <= width else text[:width] + f"... ({len(text)} chars)"
        console.print(f"input {i}: {args_size(perf.args)} bytes (marshal)", highlight=False)
        console.print(short, markup=False, highlight=False)
        exp = repr(perf.expected)
        console.print(f"expected ({'trusted reference' if got.source == 'generated' else 'tests'}): "
                      f"{exp if len(exp) <= width else exp[:width] + '...'}", markup=False, highlight=False)

