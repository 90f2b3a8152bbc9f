"""``effirl meters``: which meters work on this machine, and why not."""

from __future__ import annotations

from rich.table import Table

from effirl.cli.common import console, friendly


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


