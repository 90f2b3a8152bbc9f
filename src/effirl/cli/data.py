"""``effirl data``: training data built from scored samples (SFT rows, DPO pairs) and files for other trainers."""

from __future__ import annotations

import typer

app = typer.Typer(help="Training data from scored samples: sft, dpo; data files for verl.", no_args_is_help=True)
