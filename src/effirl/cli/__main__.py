"""``python -m effirl.cli``."""

from effirl.cli import app

app()
