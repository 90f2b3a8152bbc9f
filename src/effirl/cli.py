"""The ``effirl`` command: its sub-commands mirror the modules (tasks, check, measure, evaluate, inputs, meters)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from effirl.errors import EffirlError

app = typer.Typer(help="Correct and fast code from code LLMs, proven by measurement.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
tasks_app = typer.Typer(help="List and show the tasks of a suite.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
inputs_app = typer.Typer(help="Performance inputs: calibrate generator scales, show a generated input.",
                         no_args_is_help=True)
app.add_typer(inputs_app, name="inputs")
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

SuiteOpt = typer.Option("builtin", "--suite", "-s", help="builtin, humaneval+, mbpp+, evalperf, mercury, effibench")
SourceOpt = typer.Option(None, "--source", help="Local file or folder of the suite (default: bundled or official)")


def friendly(fn: F) -> F:
    """Report effirl's errors as one clear line (never a traceback), exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EffirlError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)])


@tasks_app.command("list")
@friendly
def tasks_list(suite: str = SuiteOpt, source: str = SourceOpt) -> None:
    """One line per task: id, entry point, tests, references, difficulty."""
    from effirl.tasks import load

    tasks = load(suite, source)
    table = Table(title=f"{suite}: {len(tasks)} tasks")
    for col in ("id", "entry point", "tests", "refs", "generator", "difficulty", "tags"):
        table.add_column(col)
    for t in tasks:
        table.add_row(t.id, t.entry_point, str(len(t.tests)), str(len(t.references)), "yes" if t.generator else "-",
                      t.difficulty or "-", ",".join(t.tags))
    console.print(table)
    console.print(f"{len(tasks)} tasks")


@tasks_app.command("show")
@friendly
def tasks_show(task_id: str, suite: str = SuiteOpt, source: str = SourceOpt) -> None:
    """Everything about one task."""
    from effirl.tasks import get, load

    t = get(load(suite, source), task_id)
    console.rule(t.id)
    console.print(f"suite: {t.suite}  entry: {t.entry_point} ({t.entry_kind.value})  difficulty: {t.difficulty}")
    console.print(f"tests: {len(t.tests)} (expected from {t.expected_from}), atol={t.atol}")
    console.print(f"origin: {t.origin}  licence: {t.license}")
    console.rule("prompt")
    console.print(t.prompt, markup=False, highlight=False)
    for r in t.references:
        console.rule(f"reference {r.label} {r.complexity or ''}")
        console.print(r.code, markup=False, highlight=False)


def _progress() -> tuple[Progress, Callable[[str, int, int], None]]:
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console)
    ids: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in ids:
            ids[phase] = bar.add_task(phase, total=total)
        bar.update(ids[phase], completed=done, total=total)

    return bar, update


def _sandbox(workers: int | None, isolation: str, timeout: float | None) -> Any:
    from effirl.execution.config import SandboxConfig

    kw: dict[str, Any] = {"isolation": isolation}
    if workers:
        kw["workers"] = workers
    if timeout:
        kw["test_timeout_s"] = timeout
    return SandboxConfig(**kw)


WorkersOpt = typer.Option(None, "--workers", "-j", help="Parallel workers (default: CPU cores)")
IsolationOpt = typer.Option("auto", "--isolation", help="auto | namespaces | none")
SamplesOpt = typer.Option(None, "--samples", help="evalplus-style JSONL; default: the suite's references")
OutOpt = typer.Option(..., "--out", "-o", help="Output folder")
MeterOpt = typer.Option("auto", "--meter", help="auto | perf | callgrind | cputime")
SeedOpt = typer.Option(0, "--seed", help="Seed of the generated performance inputs")
ScaleOpt = typer.Option(None, "--scale", help="Generator scale (default: calibrated or the task's)")
RepeatsOpt = typer.Option(1, "--repeats", help="Measurements per input, each in a fresh process")
CalibrationOpt = typer.Option(None, "--calibration", help="Calibrated scales (effirl inputs calibrate)")


def _measured_spec(suite: str, source: str | None, samples: Path | None, out: Path, meter: str, workers: int | None,
                   isolation: str, seed: int, scale: int | None, repeats: int, calibration: Path | None) -> Any:
    """The run of ``measure`` and ``evaluate``: a meter, seeded inputs, calibrated scales."""
    from effirl.meters import select_meter
    from effirl.pipeline import RunSpec

    spec = RunSpec(suite=suite, source=source, samples=samples, out=out, meter=select_meter(meter),
                   sandbox=_sandbox(workers, isolation, None), inputs_seed=seed, scale=scale, repeats=repeats,
                   scales=_scales(calibration))
    console.print(f"meter: {spec.meter.name} ({spec.meter.version()})")
    return spec


def _summarize_statuses(records: list[dict[str, Any]]) -> None:
    from collections import Counter

    counts = Counter(r["status"] for r in records)
    table = Table(title="verdicts")
    table.add_column("status")
    table.add_column("samples", justify="right")
    for status, n in counts.most_common():
        table.add_row(status, str(n))
    console.print(table)


def _run_and_report(spec: Any) -> None:
    """Run ``spec`` with progress bars, then print the verdict counts and where the results are."""
    from effirl.pipeline import run

    bar, update = _progress()
    with bar:
        records = run(spec, update)
    _summarize_statuses(records)
    console.print(f"results: {spec.out / 'results.jsonl'}")


@app.command()
@friendly
def check(suite: str = SuiteOpt, source: str = SourceOpt, samples: Path = SamplesOpt, out: Path = OutOpt,
          workers: int = WorkersOpt, isolation: str = IsolationOpt,
          timeout: float = typer.Option(None, "--timeout", help="Seconds allowed per test")) -> None:
    """Correctness of every sample in the sandbox: DIR/results.jsonl, one line per sample."""
    from effirl.pipeline import RunSpec

    spec = RunSpec(suite=suite, source=source, samples=samples, out=out,
                   sandbox=_sandbox(workers, isolation, timeout))
    _run_and_report(spec)


@app.command()
@friendly
def measure(suite: str = SuiteOpt, source: str = SourceOpt, samples: Path = SamplesOpt, out: Path = OutOpt,
            meter: str = MeterOpt, workers: int = WorkersOpt, isolation: str = IsolationOpt,
            seed: int = SeedOpt, scale: int = ScaleOpt, repeats: int = RepeatsOpt,
            calibration: Path = CalibrationOpt) -> None:
    """Correctness, then the meter's count on each performance input for every passing sample."""
    spec = _measured_spec(suite, source, samples, out, meter, workers, isolation, seed, scale, repeats, calibration)
    _run_and_report(spec)


@app.command()
@friendly
def evaluate(suite: str = SuiteOpt, source: str = SourceOpt, samples: Path = SamplesOpt, out: Path = OutOpt,
             meter: str = MeterOpt, workers: int = WorkersOpt, isolation: str = IsolationOpt,
             seed: int = SeedOpt, scale: int = ScaleOpt, repeats: int = RepeatsOpt,
             calibration: Path = CalibrationOpt,
             min_correct: int = typer.Option(1, "--min-correct", help="Correct samples a task needs to count for "
                                             "DPS (EvalPerf uses 10 of 100)"),
             ) -> None:
    """Samples and re-measured references: pass@1, reward, DPS, Beyond, NET; summary.json, report.md, plots."""
    from effirl.evaluation import EvalConfig
    from effirl.evaluation import evaluate as run_evaluation
    from effirl.meters.base import MeterMismatchError

    spec = _measured_spec(suite, source, samples, out, meter, workers, isolation, seed, scale, repeats, calibration)
    bar, update = _progress()
    try:
        with bar:
            summary = run_evaluation(spec, update, EvalConfig(min_correct=min_correct))
    except MeterMismatchError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    _print_evaluation(summary)


def _print_evaluation(summary: Any) -> None:
    def f(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    table = Table(title=f"evaluation: {summary.suite}")
    for col in ("", "tasks", "n", "pass@1", "reward", "DPS", "DPS_norm", "Beyond", "NET"):
        table.add_column(col, justify="right" if col else "left", no_wrap=True)
    groups = [("all", summary.overall), *summary.by_difficulty.items()]
    for name, m in groups:
        table.add_row(name, str(m.n_tasks), str(m.n_samples), f(m.pass_at_1), f(m.mean_reward), f(m.dps, 1),
                      f(m.dps_norm, 1), f(m.beyond), f(m.net, 2))
    console.print(table)
    if summary.by_reference_role:
        roles = Table(title="samples that are references")
        for col in ("reference", "n", "pass rate", "reward", "DPS_norm", "Beyond", "NET ratio"):
            roles.add_column(col, justify="right" if col != "reference" else "left", no_wrap=True)
        for name, r in summary.by_reference_role.items():
            roles.add_row(name.replace(" reference", ""), str(r.n_samples), f(r.pass_rate), f(r.mean_reward),
                          f(r.dps_norm, 1), f(r.beyond), f(r.net_ratio, 2))
        console.print(roles)
    statuses = ", ".join(f"{k} {v}" for k, v in summary.statuses.items())
    console.print(f"statuses: {statuses}")
    if summary.low_contrast_tasks:
        console.print(f"low-contrast tasks: {len(summary.low_contrast_tasks)} (see the report)")
    console.print(f"report: {summary.files['report']}")
    console.print(f"summary: {summary.files['summary']}")
    console.print(f"results: {summary.files['results']} (references: {summary.files['references']})")
    for plot in summary.files["plots"]:
        console.print(f"plot: {plot}")


def _scales(path: Path | None) -> dict[str, int]:
    if path is None:
        return {}
    from effirl.inputs.calibration import read_scales

    return read_scales(path)


@app.command()
@friendly
def meters() -> None:
    """Which meters work on this machine, and why not."""
    from effirl.meters import available_meters

    table = Table(title="meters")
    table.add_column("meter")
    table.add_column("available")
    table.add_column("detail")
    for name, (ok, why) in available_meters().items():
        table.add_row(name, "yes" if ok else "no", why)
    console.print(table)



@inputs_app.command("calibrate")
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
    bar, update = _progress()
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


@inputs_app.command("show")
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


if __name__ == "__main__":
    app()
