"""A byte-level BPE tokenizer trained on local text, with ChatML special tokens and a chat template.

Byte-level, so any text (a prompt in another language, a stray emoji in a response) still encodes: the trained
merges only make the suite's own text short. The chat template is Qwen's ChatML, so that prompts rendered
with ``apply_chat_template`` look like those of the Qwen2.5-Coder models the paper trains.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from effirl.extras import require

PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END)

# ChatML, as Qwen2.5 uses it (without its default system prompt): a turn is
# "<|im_start|>{role}\n{content}<|im_end|>\n", and the generation prompt opens the assistant's turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int) -> Any:
    """A ``PreTrainedTokenizerFast`` with ``vocab_size`` entries at most, trained on ``texts``."""
    tokenizers = require("tokenizers", "train", "training a tokenizer")
    transformers = require("transformers", "train", "training a tokenizer")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, bos_token=None, unk_token=None,
        additional_special_tokens=[IM_START], model_max_length=model_max_length, padding_side="left",
        clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    return fast
