"""What every command shares: the consoles, one-line errors, progress bars and the common options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from effirl.errors import EffirlError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

SuiteOpt = typer.Option("builtin", "--suite", "-s", help="builtin, humaneval+, mbpp+, evalperf, mercury, effibench")
SourceOpt = typer.Option(None, "--source", help="Local file or folder of the suite (default: bundled or official)")
OutOpt = typer.Option(..., "--out", "-o", help="Output folder")


def friendly(fn: F) -> F:
    """Report effirl's errors as one clear line (never a traceback), exit status 2; an interrupt (Ctrl-C) as
    one line too, exit status 130: every long command resumes where it stopped when run again."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EffirlError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: what was finished is kept; rerun the same command to resume",
                              highlight=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def progress_bar() -> tuple[Progress, Callable[[str, int, int], None]]:
    """A rich progress display and the ``(phase, done, total)`` callback that feeds it, one bar per phase."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console)
    ids: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in ids:
            ids[phase] = bar.add_task(phase, total=total)
        bar.update(ids[phase], completed=done, total=total)

    return bar, update


def sandbox_config(workers: int | None, isolation: str, timeout: float | None) -> Any:
    """The sandbox limits of a command's ``--workers``, ``--isolation`` and ``--timeout``."""
    from effirl.execution.config import SandboxConfig

    kw: dict[str, Any] = {"isolation": isolation}
    if workers:
        kw["workers"] = workers
    if timeout:
        kw["test_timeout_s"] = timeout
    return SandboxConfig(**kw)



def quiet_libraries() -> None:
    """No tqdm bars or deprecation chatter from datasets / transformers / huggingface_hub under the command's
    own progress bars (their warnings still reach the log)."""
    import warnings

    from effirl.extras import require

    datasets = require("datasets", "train")
    huggingface_hub = require("huggingface_hub", "train")
    transformers = require("transformers", "train")

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
