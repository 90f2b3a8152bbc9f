"""``effirl check``, ``measure`` and ``evaluate``: batch runs of a samples file (or the suite's references)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from effirl.cli.common import (
    OutOpt,
    SourceOpt,
    SuiteOpt,
    console,
    err_console,
    friendly,
    progress_bar,
    sandbox_config,
)

WorkersOpt = typer.Option(None, "--workers", "-j", help="Parallel workers (default: CPU cores)")
IsolationOpt = typer.Option("auto", "--isolation", help="auto | namespaces | none")
SamplesOpt = typer.Option(None, "--samples", help="evalplus-style JSONL; default: the suite's references")
MeterOpt = typer.Option("auto", "--meter", help="auto | perf | callgrind | cputime")
SeedOpt = typer.Option(0, "--seed", help="Seed of the generated performance inputs")
ScaleOpt = typer.Option(None, "--scale", help="Generator scale (default: calibrated or the task's)")
RepeatsOpt = typer.Option(1, "--repeats", help="Measurements per input, each in a fresh process")
CalibrationOpt = typer.Option(None, "--calibration", help="Calibrated scales (effirl inputs calibrate)")
ExecutorOpt = typer.Option("local", "--executor", help="local | ray (sandbox workers as Ray actors)")
RayAddressOpt = typer.Option(None, "--ray-address", help="With --executor ray: auto (a running cluster), "
                             "HOST:PORT or ray://HOST:PORT; default: RAY_ADDRESS, else a local Ray instance")


def _executor(kind: str, address: str | None) -> Any:
    """The executor of ``--executor`` and ``--ray-address`` (a bad combination is one error line)."""
    from effirl.errors import InputFormatError
    from effirl.execution.executor import ExecutorConfig

    if kind not in ("local", "ray"):
        raise InputFormatError("command line", f"unknown executor {kind!r}; choose local or ray",
                               field="--executor")
    if address is not None and kind != "ray":
        raise InputFormatError("command line", "only applies with --executor ray", field="--ray-address")
    return ExecutorConfig(kind=kind, address=address)


def _measured_spec(suite: str, source: str | None, samples: Path | None, out: Path, meter: str, workers: int | None,
                   isolation: str, seed: int, scale: int | None, repeats: int, calibration: Path | None,
                   executor: Any) -> Any:
    """The run of ``measure`` and ``evaluate``: a meter, seeded inputs, calibrated scales, an executor."""
    from effirl.batch import RunSpec
    from effirl.meters import select_meter

    spec = RunSpec(suite=suite, source=source, samples=samples, out=out, meter=select_meter(meter),
                   sandbox=sandbox_config(workers, isolation, None), inputs_seed=seed, scale=scale, repeats=repeats,
                   scales=_scales(calibration), executor=executor)
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
    from effirl.batch import run

    bar, update = progress_bar()
    with bar:
        records = run(spec, update)
    _summarize_statuses(records)
    console.print(f"results: {spec.out / 'results.jsonl'}")


@friendly
def check(suite: str = SuiteOpt, source: str = SourceOpt, samples: Path = SamplesOpt, out: Path = OutOpt,
          workers: int = WorkersOpt, isolation: str = IsolationOpt,
          timeout: float = typer.Option(None, "--timeout", help="Seconds allowed per test"),
          executor: str = ExecutorOpt, ray_address: str = RayAddressOpt) -> None:
    """Correctness of every sample in the sandbox: DIR/results.jsonl, one line per sample."""
    from effirl.batch import RunSpec

    spec = RunSpec(suite=suite, source=source, samples=samples, out=out,
                   sandbox=sandbox_config(workers, isolation, timeout),
                   executor=_executor(executor, ray_address))
    _run_and_report(spec)


@friendly
def measure(suite: str = SuiteOpt, source: str = SourceOpt, samples: Path = SamplesOpt, out: Path = OutOpt,
            meter: str = MeterOpt, workers: int = WorkersOpt, isolation: str = IsolationOpt,
            seed: int = SeedOpt, scale: int = ScaleOpt, repeats: int = RepeatsOpt,
            calibration: Path = CalibrationOpt, executor: str = ExecutorOpt,
            ray_address: str = RayAddressOpt) -> None:
    """Correctness, then the meter's count on each performance input for every passing sample."""
    spec = _measured_spec(suite, source, samples, out, meter, workers, isolation, seed, scale, repeats,
                          calibration, _executor(executor, ray_address))
    _run_and_report(spec)


@friendly
def evaluate(suite: str = SuiteOpt, source: str = SourceOpt, samples: Path = SamplesOpt, out: Path = OutOpt,
             meter: str = MeterOpt, workers: int = WorkersOpt, isolation: str = IsolationOpt,
             seed: int = SeedOpt, scale: int = ScaleOpt, repeats: int = RepeatsOpt,
             calibration: Path = CalibrationOpt,
             min_correct: int = typer.Option(1, "--min-correct", help="Correct samples a task needs to count for "
                                             "DPS (EvalPerf uses 10 of 100)"),
             executor: str = ExecutorOpt, ray_address: str = RayAddressOpt) -> None:
    """Samples and re-measured references: pass@1, reward, DPS, Beyond, NET; summary.json, report.md, plots."""
    from effirl.evaluation import EvalConfig
    from effirl.evaluation import evaluate as run_evaluation
    from effirl.meters.base import MeterMismatchError

    spec = _measured_spec(suite, source, samples, out, meter, workers, isolation, seed, scale, repeats,
                          calibration, _executor(executor, ray_address))
    bar, update = progress_bar()
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

