"""Sampling solutions from a model: prompt strategies, backends (transformers, OpenAI-compatible servers), and a
resumable sampler that writes evalplus-style JSONL."""
