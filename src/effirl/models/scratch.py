"""``effirl model init``: a Qwen2 causal LM with random weights and a tokenizer trained on a suite's text.

Two sizes: ``tiny`` (about 1.2 M parameters: width 128, 4 layers, a vocabulary of up to 2k), which trains
from scratch on the builtin suite in minutes on two cores, and ``small`` (about 27 M: width 512, 8 layers, up to
4k). Input and output embeddings are untied.
The model is saved in Hugging Face format with its tokenizer, chat template and generation config, and an
``effirl_model.json`` that records how it was made (size, suite, seed, corpus digest), so that it can be made
again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError
from effirl.extras import require
from effirl.models.tokenizer import IM_END, PAD, train_tokenizer
from effirl.tasks import Task, load

CARD = "effirl_model.json"


@dataclass(frozen=True)
class ModelSize:
    """The shape of a Qwen2 made from scratch."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int


SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(vocab_size=2048, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048),
    "small": ModelSize(vocab_size=4096, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                       num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096),
}


def suite_corpus(tasks: list[Task], extra_texts: list[str] | None = None) -> list[str]:
    """The tokenizer's training text: every prompt and reference of the suite, then ``extra_texts`` (such as
    the generation templates' instructions, so that a rendered prompt is short)."""
    texts = [t.prompt for t in tasks] + [r.code for t in tasks for r in t.references]
    return texts + list(extra_texts or [])


def init_model(out: str | Path, size: str = "tiny", suite: str = "builtin", source: str | None = None,
               seed: int = 0, extra_texts: list[str] | None = None) -> dict[str, Any]:
    """Build and save the model; returns the card written to ``out/effirl_model.json``."""
    if size not in SIZES:
        raise EffirlError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    torch = require("torch", "train", "effirl model init")
    transformers = require("transformers", "train", "effirl model init")
    shape = SIZES[size]
    texts = suite_corpus(load(suite, source), extra_texts)
    tokenizer = train_tokenizer(texts, shape.vocab_size, shape.max_position_embeddings)
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    pad = tokenizer.convert_tokens_to_ids(PAD)
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=eos, pad_token_id=pad, use_cache=True)
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(config)
    model.generation_config = transformers.GenerationConfig(eos_token_id=eos, pad_token_id=pad, do_sample=True,
                                                            temperature=1.0, top_p=1.0, top_k=0)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    card = {"size": size, "shape": asdict(shape), "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer), "suite": suite, "source": source, "seed": seed,
            "corpus": {"texts": len(texts), "sha256_16": digest}, "weights": "random (from config)"}
    (target / CARD).write_text(json.dumps(card, indent=2), encoding="utf-8")
    return card
