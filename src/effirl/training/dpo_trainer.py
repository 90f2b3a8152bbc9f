"""``effirl train dpo``: TRL's ``DPOTrainer`` on the pairs of ``effirl data dpo``, with effirl's common
set-up.

Why it exists: the paper's DPO stage (correctness and efficiency pairs) as one call, :func:`train_dpo`, that
the CLI and the two-stage pipeline share. The reference model is a frozen copy of the starting model (with
LoRA, the base model with the adapter switched off), as TRL makes it.
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
from effirl.training.data import load_rows
from effirl.training.dpo_config import DPOConfig

log = logging.getLogger(__name__)


def build_dpo_trainer(config: DPOConfig, progress: Progress | None = None) -> tuple[Any, Any]:
    """The ``trl.DPOTrainer`` of ``config`` and its tokenizer, ready to train."""
    trl = require("trl", "train", "effirl train dpo")
    device = start(config)
    tokenizer = load_tokenizer(config.model)
    rows = load_rows(config.data, "dpo").select_columns(["prompt", "chosen", "rejected"])
    model = load_model(config.model, device)
    args = trl.DPOConfig(**trainer_arguments(config, device), max_length=fit_length(config.max_length, model),
                         beta=config.beta, loss_type=[config.loss_type],
                         precompute_ref_log_probs=config.precompute_ref_log_probs)
    extra = [progress_callback(progress)] if progress is not None else []
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                             peft_config=peft_config(config.lora), callbacks=[*callbacks(config), *extra])
    return trainer, tokenizer


def train_dpo(config: DPOConfig, progress: Progress | None = None) -> Path:
    """Train, save and return the final model's folder (``OUT/final``)."""
    trainer, tokenizer = build_dpo_trainer(config, progress)
    return train_and_save(trainer, config, tokenizer, "dpo")
