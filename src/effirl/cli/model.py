"""``effirl model``: make a base model from scratch (random weights, a tokenizer trained here)."""

from __future__ import annotations

from pathlib import Path

import typer

from effirl.cli.common import OutOpt, SourceOpt, SuiteOpt, console, friendly

app = typer.Typer(help="Models made here: a Qwen2 with random weights and a locally trained tokenizer.",
                  no_args_is_help=True)


@app.command("init")
@friendly
def init(out: Path = OutOpt, size: str = typer.Option("tiny", "--size", help="tiny (~1.2 M) | small (~27 M)"),
         suite: str = SuiteOpt, source: str = SourceOpt,
         seed: int = typer.Option(0, "--seed", help="Seed of the random weights")) -> None:
    """A causal LM with random weights and a BPE tokenizer trained on the suite's prompts and references."""
    from effirl.models import init_model

    card = init_model(out, size=size, suite=suite, source=source, seed=seed)
    console.print(f"{size} Qwen2: {card['parameters'] / 1e6:.2f} M parameters, vocabulary {card['vocab_size']}, "
                  f"seed {seed}; tokenizer trained on {card['corpus']['texts']} texts of {suite}")
    console.print(f"saved to {out} (Hugging Face format: --backend transformers --model {out})", soft_wrap=True)
