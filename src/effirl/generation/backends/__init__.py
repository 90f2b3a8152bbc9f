"""Generation backends behind one interface (:class:`~effirl.generation.backends.base.Backend`): a local
``transformers`` model, any OpenAI-compatible server, or vLLM in-process. Each lives in its own module and
imports its heavy library only when made, so the core install stays torch-free."""

from __future__ import annotations

from typing import TYPE_CHECKING

from effirl.generation.backends.base import PROMPT_TOO_LONG, Backend, Completion, Request

if TYPE_CHECKING:
    from effirl.generation.config import GenerateConfig


def make_backend(config: GenerateConfig) -> Backend:
    """The backend ``config.backend`` names, built from ``config``'s section for it."""
    if config.backend == "transformers":
        from effirl.generation.backends.hf import TransformersBackend

        t = config.transformers
        return TransformersBackend(config.model, batch_size=t.batch_size, device=t.device, dtype=t.dtype,
                                   trust_remote_code=t.trust_remote_code)
    if config.backend == "openai":
        from effirl.generation.backends.openai_compat import OpenAIBackend

        return OpenAIBackend.from_options(config.model, config.openai)
    if config.backend == "vllm":
        from effirl.generation.backends.vllm_local import VLLMBackend

        return VLLMBackend.from_options(config.model, config.vllm)
    raise AssertionError(config.backend)  # GenerateConfig only admits the three


__all__ = ["PROMPT_TOO_LONG", "Backend", "Completion", "Request", "make_backend"]
