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
    from effirl.generation.prompts import template_texts
    from effirl.models import init_model

    # The prompt templates' instructions join the tokenizer's training text, so rendered prompts are short.
    card = init_model(out, size=size, suite=suite, source=source, seed=seed, extra_texts=template_texts())
    millions, vocab, texts = card["parameters"] / 1e6, card["vocab_size"], card["corpus"]["texts"]
    console.print(f"{size} Qwen2: {millions:.2f} M parameters, vocabulary {vocab}, seed {seed}; tokenizer "
                  f"trained on {texts} texts of {suite} and the prompt templates", soft_wrap=True)
    console.print(f"saved to {out} (Hugging Face format: --backend transformers --model {out})",
                  soft_wrap=True)


@app.command("shipped")
@friendly
def shipped() -> None:
    """The base models that ship with effirl (a pipeline config's base: {shipped: NAME}) and how each was made."""
    from rich.table import Table

    from effirl.models.shipped import shipped_card, shipped_models

    table = Table(title="shipped base models")
    for col in ("name", "parameters", "made by"):
        table.add_column(col, overflow="fold")
    for name in shipped_models():
        card = shipped_card(name)
        table.add_row(name, f"{card.get('parameters', 0) / 1e6:.2f} M", str(card.get("command", "-")))
    console.print(table)
