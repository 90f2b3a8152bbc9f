"""The typed configuration of a generation run (``effirl generate``, or the Python API).

Why it exists: the CLI, a YAML file (``--config``) and the two-stage pipeline all describe a run the same way,
and a mistake in any of them is one line naming the file, line and key (pydantic, ``extra="forbid"``, read
through :func:`effirl.configfile.load_config`). Backend-specific knobs live in their own sections.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from effirl.generation.prompts import STRATEGIES

BACKENDS = ("transformers", "openai", "vllm")


@dataclass(frozen=True)
class Sampling:
    """What every backend samples with: softmax(logits / temperature) within the top-p nucleus; temperature 0
    is greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransformersOptions(_Section):
    """Local models (``--backend transformers``)."""

    batch_size: int = Field(16, ge=1, description="Rows (samples) generated together")
    device: str = Field("auto", description="auto (CUDA when present, else CPU) | cpu | cuda | cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False


class OpenAIOptions(_Section):
    """Any OpenAI-compatible ``/v1/chat/completions`` server (``--backend openai``)."""

    base_url: str | None = Field(None, description="Default: $OPENAI_BASE_URL, else http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, description="Variable holding the key; default OPENAI_API_KEY "
                                                      "(unset: the key 'EMPTY', as local servers expect)")
    concurrency: int = Field(8, ge=1, description="HTTP requests in flight")
    max_n_per_request: int = Field(16, ge=1, description="Most completions asked of one request (n)")
    timeout_s: float = Field(600.0, gt=0)
    max_retries: int = Field(5, ge=0, description="Retries of a request on 408/409/429/5xx, timeouts, "
                                                   "connection errors and malformed answers")
    retry_base_s: float = Field(1.0, ge=0, description="First backoff; doubles each retry (with jitter)")
    retry_max_s: float = Field(30.0, ge=0)


class VLLMOptions(_Section):
    """vLLM in-process (``--backend vllm``; optional extra, needs a GPU)."""

    chunk: int = Field(1024, ge=1, description="Samples handed to vLLM at once (written when they finish)")
    dtype: str = "auto"
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=1)


class GenerateConfig(BaseModel):
    """One generation run: which model, how to prompt, how to sample, how many samples per task."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model folder or hub id (transformers, vllm), or served name (openai)")
    backend: Literal["transformers", "openai", "vllm"] = "transformers"
    strategy: str = Field("direct", description="direct | efficient | cot | m2wf")
    n: int = Field(1, ge=1, description="Samples per task (indices 0..n-1)")
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(1024, ge=1)
    seed: int = 0
    prompt_file: Path | None = Field(None, description="YAML whose keys replace the default prompt templates")
    transformers: TransformersOptions = Field(default_factory=TransformersOptions)
    openai: OpenAIOptions = Field(default_factory=OpenAIOptions)
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"unknown strategy; known strategies: {', '.join(STRATEGIES)}")
        return value

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("empty model name")
        return value.rstrip("/") or value

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_new_tokens)
