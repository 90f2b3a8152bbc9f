"""The ``effirl`` command. It mirrors the modules: one module of this package per command group."""

from __future__ import annotations

import logging

import typer
from rich.logging import RichHandler

from effirl.cli import data, generate, inputs, meters, model, pipeline, runs, tasks, train
from effirl.cli.common import err_console

app = typer.Typer(help="Correct and fast code from code LLMs, proven by measurement.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)])


app.add_typer(tasks.app, name="tasks")
app.command()(runs.check)
app.command()(runs.measure)
app.command()(runs.evaluate)
app.add_typer(inputs.app, name="inputs")
app.command()(meters.meters)
app.command()(generate.generate)
app.add_typer(model.app, name="model")
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.add_typer(pipeline.app, name="pipeline")

__all__ = ["app"]
