"""Sampling solutions from a model: prompt strategies, backends (transformers, OpenAI-compatible servers,
vLLM), and a resumable sampler that writes evalplus-style JSONL.

The Python API: ``generate(GenerateConfig(model=..., n=...), tasks, "samples.jsonl")``; ``render(task,
strategy)`` gives the chat messages of a single-step strategy (the prompt stage-1 data and the RL trainer
use). Nothing here imports torch until a backend is made.
"""

from effirl.generation.config import GenerateConfig, Sampling
from effirl.generation.prompts import STRATEGIES, Templates, default_templates, load_templates, render
from effirl.generation.sampler import GenerateSummary, generate, sample_records

__all__ = ["STRATEGIES", "GenerateConfig", "GenerateSummary", "Sampling", "Templates", "default_templates",
           "generate", "load_templates", "render", "sample_records"]
