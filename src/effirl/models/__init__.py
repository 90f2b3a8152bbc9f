"""Causal LMs made here from nothing: a tokenizer trained on a suite's text and a Qwen2 with random weights.

No pretrained weights can be downloaded where effirl is tested, so tests and the CPU miniature build their base
model with :func:`init_model` (``effirl model init``) and save it in Hugging Face format, which the generation
backends and TRL load like any other model.
"""

from effirl.models.scratch import SIZES, ModelSize, init_model, suite_corpus

__all__ = ["SIZES", "ModelSize", "init_model", "suite_corpus"]
