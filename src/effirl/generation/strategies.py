"""Prompt strategies as step machines: what to ask first, and what to ask next given the last answer.

Why it exists: single-step strategies (direct, efficient, cot) ask once; M2WF asks four times, each prompt
built from earlier answers, and may give up and fall back to the direct prompt. The sampler drives every
sample as a :class:`Chain` through its strategy, so one scheduler serves both and a backend can batch the
steps of different samples together.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from effirl.generation.backends.base import PROMPT_TOO_LONG, Completion, Messages
from effirl.generation.m2wf import Recollection, format_recollections, parse_confidences, split_recollections
from effirl.generation.prompts import (
    SINGLE_STEP,
    Templates,
    check_strategy,
    fill,
    messages,
    render,
    task_values,
)
from effirl.tasks.model import Task


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (stable across processes and Python versions, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def evaluation_seed(seed: int) -> int:
    """The sampling seed of an evaluation under a run's ``seed``: apart from the seed that run's training samples
    are drawn with, so that a model is never evaluated on the very random draws its training data came from."""
    return derive_seed(seed, "evaluation")


@dataclass(frozen=True)
class StepSpec:
    """A step to run: its name and the messages to send."""

    name: str
    messages: Messages


@dataclass(frozen=True)
class StepRecord:
    """A step that ran: what was sent and what came back."""

    name: str
    messages: Messages
    response: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str
    tokens_estimated: bool = False

    @classmethod
    def of(cls, spec: StepSpec, completion: Completion) -> StepRecord:
        return cls(spec.name, spec.messages, completion.text, completion.prompt_tokens,
                   completion.completion_tokens, completion.finish_reason, completion.tokens_estimated)

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "messages": self.messages, "response": self.response,
               "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
               "finish_reason": self.finish_reason}
        if self.tokens_estimated:
            out["tokens_estimated"] = True
        return out


@dataclass
class Chain:
    """One sample on its way: its task, index, seed, the steps so far and the strategy's working state."""

    task: Task
    index: int
    seed: int
    steps: list[StepRecord] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    fallback: str | None = None

    def step_seed(self, step: str) -> int:
        return derive_seed(self.seed, step)


class Strategy(ABC):
    """How a sample is asked for: a first step shared by every sample of a task, then steps that depend on
    the sample's own answers."""

    name: str
    multi_step: bool = False

    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    @abstractmethod
    def first(self, task: Task) -> StepSpec:
        """The first step (the same messages for every sample of ``task``)."""

    @abstractmethod
    def next(self, chain: Chain) -> StepSpec | None:
        """The step after ``chain.steps[-1]``, or ``None`` when the last step's response is the solution."""

    def required(self, task: Task) -> Messages:
        """The prompt that must fit in the model's context for any sample of ``task`` to be made."""
        return self.first(task).messages


class SingleStep(Strategy):
    """direct, efficient, cot: one prompt, one answer."""

    def __init__(self, name: str, templates: Templates) -> None:
        super().__init__(templates)
        self.name = name

    def first(self, task: Task) -> StepSpec:
        return StepSpec(self.name, render(task, self.name, self.templates))

    def next(self, chain: Chain) -> StepSpec | None:
        return None


class M2WF(Strategy):
    """Recall k similar problems, rate them, plan from the confident ones, write the code from the plan.

    Falls back to the direct prompt (noted in ``chain.fallback``) when the recollections or their ratings
    cannot be read, when none is rated at least ``min_confidence``, or when a step's prompt no longer fits in
    the model's context.
    """

    name = "m2wf"
    multi_step = True

    def first(self, task: Task) -> StepSpec:
        t = self.templates
        return StepSpec("recall", messages(t, fill(t.m2wf.recall, task_values(task, t))))

    def required(self, task: Task) -> Messages:
        return render(task, "direct", self.templates)

    def next(self, chain: Chain) -> StepSpec | None:
        last = chain.steps[-1]
        if last.name == "direct":
            return None
        if last.finish_reason == PROMPT_TOO_LONG:
            return self._fall_back(chain, f"the {last.name} step's prompt does not fit in the model's "
                                          "context")
        t, task = self.templates, chain.task
        if last.name == "recall":
            recs = split_recollections(last.response)
            if not recs:
                return self._fall_back(chain, "the recall step gave no 'Problem <number>' sections")
            chain.state["recollections"] = recs
            ask = fill(t.m2wf.evaluate, task_values(task, t))
            return StepSpec("evaluate", [*last.messages, {"role": "assistant", "content": last.response},
                                         {"role": "user", "content": ask}])
        if last.name == "evaluate":
            recs: list[Recollection] = chain.state["recollections"]
            scores = parse_confidences(last.response, {r.number for r in recs})
            chain.state["confidence"] = {str(k): v for k, v in sorted(scores.items())}
            if not scores:
                return self._fall_back(chain, "no confidence score could be read from the evaluate step")
            floor = t.m2wf.min_confidence
            kept = [(r, scores[r.number]) for r in recs if scores.get(r.number, -1.0) >= floor]
            if not kept:
                return self._fall_back(chain, f"no recollection reached confidence {floor:g} "
                                              f"(best {max(scores.values()):g})")
            chain.state["kept"] = [r.number for r, _ in kept]
            text = fill(t.m2wf.plan, task_values(task, t, recollections=format_recollections(kept)))
            return StepSpec("plan", messages(t, text))
        if last.name == "plan":
            return StepSpec("guide", [*last.messages, {"role": "assistant", "content": last.response},
                                      {"role": "user", "content": fill(t.m2wf.guide, task_values(task, t))}])
        return None  # guide: its response is the solution

    def _fall_back(self, chain: Chain, reason: str) -> StepSpec:
        chain.fallback = f"m2wf fell back to direct: {reason}"
        return StepSpec("direct", render(chain.task, "direct", self.templates))


def make_strategy(name: str, templates: Templates) -> Strategy:
    """The strategy called ``name`` (an error lists the known ones)."""
    check_strategy(name)
    if name in SINGLE_STEP:
        return SingleStep(name, templates)
    return M2WF(templates)
