"""``effirl train``: TRL trainers (sft, dpo, rloo, grpo) from a YAML config, flags overriding its keys."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train with TRL: sft, dpo (stage 1), rloo, grpo (stage 2).", no_args_is_help=True)
