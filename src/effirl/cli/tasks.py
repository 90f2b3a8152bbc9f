"""``effirl tasks``: list and show the tasks of a suite."""

from __future__ import annotations

import typer
from rich.table import Table

from effirl.cli.common import SourceOpt, SuiteOpt, console, friendly

app = typer.Typer(help="List and show the tasks of a suite.", no_args_is_help=True)


@app.command("list")
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


@app.command("show")
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

