"""``effirl train warmup``: train a from-scratch model on a suite's warm-up corpus with TRL's SFT trainer.

Why it exists: the CPU miniature's base model (and any user's model made with ``effirl model init``) needs a
prior before stage 1. This writes the corpus (:mod:`effirl.data.warmup`: references, the slowest weighted up,
and broken variants verified wrong in the sandbox) to ``OUT/corpus.jsonl`` with its stats, then trains on it
with the SFT trainer (loss on the whole answer), resuming from its last checkpoint like every effirl trainer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError
from effirl.training.common import Progress
from effirl.training.warmup_config import WarmupConfig

log = logging.getLogger(__name__)
CORPUS = "corpus.jsonl"
CORPUS_STATS = "corpus_stats.json"


def corpus_settings(config: WarmupConfig) -> dict[str, Any]:
    """What a corpus is made from: a corpus in OUT made from other settings must not be trained on."""
    return {"suite": config.suite, "source": config.source, "tasks": config.tasks, "mix": config.mix.model_dump(),
            "seed": config.seed}


def write_corpus(config: WarmupConfig) -> Path:
    """``OUT/corpus.jsonl``, made once: a resumed run trains on the same rows; one made from other settings is
    refused (its checkpoints belong to that corpus)."""
    from effirl.data.warmup import warmup_rows
    from effirl.execution.config import SandboxConfig
    from effirl.execution.pool import Pool
    from effirl.tasks import load

    corpus = config.out / CORPUS
    settings = corpus_settings(config)
    if corpus.is_file():
        try:
            made = json.loads((config.out / CORPUS_STATS).read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError):
            made = None
        if made != settings:
            raise EffirlError(f"{config.out} holds a warm-up corpus made from other settings ({made}); use "
                              "another --out, or remove the folder to start afresh")
        return corpus
    config.out.mkdir(parents=True, exist_ok=True)
    tasks = load(config.suite, config.source)
    if config.tasks is not None:
        wanted = set(config.tasks)
        unknown = sorted(wanted - {t.id for t in tasks})
        if unknown:
            raise EffirlError(f"warm-up tasks not in {config.suite}: {', '.join(unknown[:5])}")
        tasks = [t for t in tasks if t.id in wanted]
    with Pool(SandboxConfig()) as pool:
        rows, stats = warmup_rows(tasks, config.mix, pool, seed=config.seed)
    stats["settings"] = settings
    (config.out / CORPUS_STATS).write_text(json.dumps(stats, indent=2), encoding="utf-8")
    tmp = corpus.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(corpus)
    log.info("warm-up corpus: %d rows (%s)", stats["rows"], stats["by_kind"])
    return corpus


def train_warmup(config: WarmupConfig, progress: Progress | None = None) -> Path:
    """Write the corpus, train, save and return ``OUT/final``."""
    from effirl.training.sft_config import SFTConfig
    from effirl.training.sft_trainer import train_sft

    corpus = write_corpus(config)
    fields = config.model_dump(exclude={"suite", "source", "tasks", "mix"})
    return train_sft(SFTConfig(**fields, data=str(corpus)), progress)
