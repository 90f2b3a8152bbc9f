"""``effirl train sft``: TRL's ``SFTTrainer`` on the rows of ``effirl data sft``, with effirl's common set-up.

Why it exists: the paper's SFT stage (it used LlamaFactory) as one call, :func:`train_sft`, that the CLI and
the two-stage pipeline share: checked config, model and tokenizer, rows turned into conversational
prompt/completion pairs (loss on the response), resume from the last checkpoint, metrics, final model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from effirl.extras import require
from effirl.training.common import (
    Progress,
    callbacks,
    fit_length,
    load_model,
    load_tokenizer,
    peft_config,
    progress_callback,
    start,
    train_and_save,
    trainer_arguments,
)
from effirl.training.data import load_rows, to_prompt_completion
from effirl.training.sft_config import SFTConfig

log = logging.getLogger(__name__)


def build_sft_trainer(config: SFTConfig, progress: Progress | None = None) -> tuple[Any, Any]:
    """The ``trl.SFTTrainer`` of ``config`` and its tokenizer, ready to train."""
    trl = require("trl", "train", "effirl train sft")
    device = start(config)
    tokenizer = load_tokenizer(config.model)
    rows = load_rows(config.data, "sft")
    dataset = to_prompt_completion(rows) if config.completion_only_loss else rows
    model = load_model(config.model, device)
    args = trl.SFTConfig(**trainer_arguments(config, device), max_length=fit_length(config.max_length, model),
                         packing=config.packing, completion_only_loss=config.completion_only_loss)
    extra = [progress_callback(progress)] if progress is not None else []
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config(config.lora), callbacks=[*callbacks(config), *extra])
    return trainer, tokenizer


def train_sft(config: SFTConfig, progress: Progress | None = None) -> Path:
    """Train, save and return the final model's folder (``OUT/final``)."""
    trainer, tokenizer = build_sft_trainer(config, progress)
    return train_and_save(trainer, config, tokenizer, "sft")
