"""The prompts of every strategy, in one place: plain-data templates (``templates.yaml``) and their rendering.

Why it exists: the prompt is part of an experiment. Stage-1 data, the RL trainer and evaluation must all ask a
task the same way, and a user must be able to change the wording without touching code: ``--prompt-file``
gives a YAML file whose keys replace the defaults'. Templates are checked when loaded (unknown keys or
placeholders are one error naming the file, line and key), and their digest is recorded with every sample so
that a samples file never mixes two wordings.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from effirl.configfile import read_mapping, validate
from effirl.errors import EffirlError, InputFormatError
from effirl.tasks.model import EntryKind, Task

SINGLE_STEP = ("direct", "efficient", "cot")
MULTI_STEP = ("m2wf",)
STRATEGIES = SINGLE_STEP + MULTI_STEP
M2WF_STEPS = ("recall", "evaluate", "plan", "guide")

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_COMMON = ("task", "prompt", "entry_point", "format", "k")
# Which placeholders each template may use (dotted key -> names).
_ALLOWED: dict[str, tuple[str, ...]] = {
    "system": (),
    "format.function": ("entry_point",),
    "format.method": ("entry_point",),
    **{f"strategies.{s}": _COMMON for s in SINGLE_STEP},
    "m2wf.recall": _COMMON,
    "m2wf.evaluate": _COMMON,
    "m2wf.plan": (*_COMMON, "recollections"),
    "m2wf.guide": _COMMON,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FormatTemplates(_Strict):
    """The answer-format instruction, by entry kind."""

    function: str
    method: str


class StrategyTemplates(_Strict):
    """The user message of each single-step strategy."""

    direct: str
    efficient: str
    cot: str


class M2WFTemplates(_Strict):
    """M2WF's four steps and its two knobs."""

    k: int = Field(ge=1, le=10)
    min_confidence: float = Field(ge=0.0, le=1.0)
    recall: str
    evaluate: str
    plan: str
    guide: str


class Templates(_Strict):
    """Every prompt template; ``source`` says where they came from (not part of the digest)."""

    system: str = ""
    format: FormatTemplates
    strategies: StrategyTemplates
    m2wf: M2WFTemplates
    source: str = Field(default="default", exclude=True)

    @property
    def digest(self) -> str:
        """16 hex digits of the templates' content: samples record it, and resume refuses another wording."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _default_data() -> tuple[dict[str, Any], str]:
    ref = resources.files("effirl.generation").joinpath("templates.yaml")
    with resources.as_file(ref) as path:
        data, _ = read_mapping(path)
        return data, str(path)


def _merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(into)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_placeholders(templates: Templates, source: str, lines: dict[tuple[str, ...], int]) -> None:
    data = templates.model_dump()
    for key, allowed in _ALLOWED.items():
        node: Any = data
        for part in key.split("."):
            node = node[part]
        for m in _PLACEHOLDER.finditer(node):
            name = m.group(1)
            if name is not None and name not in allowed:
                known = ", ".join("{" + a + "}" for a in allowed) or "none"
                raise InputFormatError(source, f"unknown placeholder {{{name}}}; known here: {known} "
                                       "(write {{" + name + "}} for literal braces)",
                                       row=lines.get(tuple(key.split("."))), field=key)


@lru_cache(maxsize=1)
def default_templates() -> Templates:
    """The templates shipped with effirl (``effirl/generation/templates.yaml``)."""
    data, source = _default_data()
    templates = validate(Templates, data, source)
    _check_placeholders(templates, source, {})
    return templates


def load_templates(path: str | Path | None = None) -> Templates:
    """The default templates, with the keys of the YAML file ``path`` (if given) replacing theirs."""
    if path is None:
        return default_templates()
    user, lines = read_mapping(path)
    defaults, _ = _default_data()
    templates = validate(Templates, {**_merge(defaults, user), "source": str(path)}, str(path), lines)
    _check_placeholders(templates, str(path), lines)
    return templates


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with its ``{name}`` placeholders replaced (one pass: values are never re-scanned);
    ``{{``/``}}`` become literal braces, and a brace around anything else is left alone."""

    def sub(m: re.Match[str]) -> str:
        whole, name = m.group(0), m.group(1)
        if name is None:
            return whole[0]
        if name not in values:
            raise EffirlError(f"prompt template uses {{{name}}}, which is not known here")
        return values[name]

    return _PLACEHOLDER.sub(sub, template)


def _is_code(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def task_text(task: Task) -> str:
    """The task as a prompt shows it: fenced as Python when the prompt is code, else as written."""
    prompt = task.prompt.strip("\n")
    if prompt.strip() and _is_code(prompt):
        return f"```python\n{prompt}\n```"
    return prompt.strip()


def task_values(task: Task, templates: Templates, **extra: str) -> dict[str, str]:
    """The placeholder values of ``task`` (``extra`` adds step-specific ones such as ``recollections``)."""
    kind = "method" if EntryKind(task.entry_kind) is EntryKind.METHOD else "function"
    fmt = fill(getattr(templates.format, kind), {"entry_point": task.entry_point})
    return {"task": task_text(task), "prompt": task.prompt, "entry_point": task.entry_point, "format": fmt,
            "k": str(templates.m2wf.k), **extra}


def messages(templates: Templates, user: str) -> list[dict[str, str]]:
    """A conversation of one user turn, after the system message when the templates have one."""
    out = [{"role": "system", "content": templates.system}] if templates.system.strip() else []
    return [*out, {"role": "user", "content": user}]


def check_strategy(strategy: str) -> str:
    """``strategy`` if known, else an error listing the known ones."""
    if strategy not in STRATEGIES:
        raise EffirlError(f"unknown strategy {strategy!r}; known strategies: {', '.join(STRATEGIES)}")
    return strategy


def render(task: Task, strategy: str = "direct", templates: Templates | None = None) -> list[dict[str, str]]:
    """The chat messages of a single-step strategy (direct, efficient, cot) for ``task``."""
    check_strategy(strategy)
    if strategy not in SINGLE_STEP:
        raise EffirlError(f"strategy {strategy!r} takes several model steps; render() gives the prompt of a "
                          f"single-step strategy ({', '.join(SINGLE_STEP)})")
    t = templates or default_templates()
    return messages(t, fill(getattr(t.strategies, strategy), task_values(task, t)))


def template_texts(templates: Templates | None = None) -> list[str]:
    """The instruction texts of every template, placeholders removed: extra tokenizer training text, so that a
    tokenizer made here (``effirl model init``) encodes rendered prompts in few tokens."""
    t = templates or default_templates()
    blank = _BlankValues()
    texts = [t.system, t.format.function, t.format.method, t.strategies.direct, t.strategies.efficient,
             t.strategies.cot, t.m2wf.recall, t.m2wf.evaluate, t.m2wf.plan, t.m2wf.guide]
    return [_PLACEHOLDER.sub(lambda m: blank[m.group(1)] if m.group(1) else m.group(0)[0], x)
            for x in texts if x.strip()]


class _BlankValues(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""
