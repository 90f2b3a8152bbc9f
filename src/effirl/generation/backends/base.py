"""The one interface every generation backend implements, so that strategies and the sampler never care where
completions come from (a local transformers model, an OpenAI-compatible server, vLLM in-process).

A :class:`Request` is one chat prompt and the seeds of the completions wanted for it (one seed per sample: a
strategy's first step asks for all of a task's samples at once, later steps ask for one). A backend runs
requests and reports each completion through a callback as soon as it is ready; the callback may answer with
follow-up requests (the next step of a multi-step strategy), which the backend schedules too. Results are
therefore written as they come, and a batch or a pool of HTTP requests stays full across steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from effirl.generation.config import Sampling

Messages = list[dict[str, str]]

# finish_reason of a completion that was never generated because its prompt does not fit the model's context.
PROMPT_TOO_LONG = "prompt_too_long"


@dataclass(frozen=True, eq=False)
class Request:
    """One chat prompt and one completion per seed. ``tag`` is the caller's (one entry per seed)."""

    messages: Messages
    seeds: tuple[int, ...]
    tag: tuple[Any, ...] = ()

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class Completion:
    """One generated response and its accounting.

    ``completion_tokens`` counts the generated tokens (the end-of-turn token included, as servers count it);
    ``None`` where the server did not say. ``tokens_estimated``: the server gave one total for several
    completions of a request, shared out by text length. ``error``: why nothing was generated
    (``finish_reason == PROMPT_TOO_LONG``).
    """

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str
    tokens_estimated: bool = False
    error: str | None = None


# on_result(request, index of the completion within the request, completion) -> follow-up requests
OnResult = Callable[[Request, int, Completion], Sequence[Request]]


class Backend(ABC):
    """Generates completions for requests; implementations own their model or client."""

    name: str = "base"

    @abstractmethod
    def run(self, requests: Sequence[Request], sampling: Sampling, on_result: OnResult) -> None:
        """Generate every completion of ``requests`` and of the follow-ups ``on_result`` returns; return when
        none is left. An unrecoverable problem (server unreachable after the retries, bad key) raises
        :class:`~effirl.errors.EffirlError`; the completions already reported stay reported."""

    def count_prompt_tokens(self, messages: Messages) -> int | None:
        """Tokens of ``messages`` rendered as a prompt, where the backend can tell without generating."""
        return None

    @property
    def context_length(self) -> int | None:
        """The most tokens (prompt and completion) the model takes, where known locally."""
        return None

    def describe(self) -> str:
        """One line for logs and the CLI: where the completions come from."""
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op unless a backend holds something
        """Release the model or client (a no-op by default)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
