"""Dropping training tasks that an evaluation suite also asks: same entry-point signature, or same prompt.

Why it exists: training on a benchmark's problems inflates its scores. The paper removed Effi-Learner problems
that share a function signature with EvalPerf, and EffiBench problems duplicated in Mercury's test set. Here a
training task is dropped when one of its signatures (entry-point name and parameter names, read from its
prompt, canonical solution and references) equals one of an evaluation task's, or when the two prompts are
equal once normalized (case, punctuation and whitespace ignored).
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from effirl.errors import EffirlError
from effirl.tasks import Task, load
from effirl.tasks.model import EntryKind

_DEF = r"def\s+{name}\s*\(([^)]*)\)"


@dataclass(frozen=True)
class Dropped:
    """A training task removed, and why."""

    task_id: str
    reason: str  # "signature" | "prompt"
    match: str  # the evaluation task it matches
    detail: str  # the shared signature, or the start of the shared prompt


def parse_suites(specs: Iterable[str]) -> list[tuple[str, str | None]]:
    """``["humaneval+", "mbpp+:path/MbppPlus.jsonl.gz"]`` (or comma-separated strings) -> (suite, source)."""
    out: list[tuple[str, str | None]] = []
    for spec in specs:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            suite, _, source = part.partition(":")
            if not suite:
                raise EffirlError(f"--decontaminate {part!r}: expected SUITE or SUITE:SOURCE")
            out.append((suite, source or None))
    return out


def load_suites(specs: Iterable[str]) -> list[Task]:
    """The tasks of every evaluation suite named in ``specs``."""
    tasks: list[Task] = []
    for suite, source in parse_suites(specs):
        tasks.extend(load(suite, source))
    return tasks


def _params(args: ast.arguments, method: bool) -> list[str]:
    names = [a.arg for a in [*args.posonlyargs, *args.args]]
    if method and names and names[0] in ("self", "cls"):
        names = names[1:]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [a.arg for a in args.kwonlyargs]
    names += [f"**{args.kwarg.arg}"] if args.kwarg else []
    return names


def _from_code(code: str, task: Task) -> list[str]:
    try:
        with warnings.catch_warnings():  # invalid escape sequences in a dataset's code are not our concern
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return []
    out = []
    method = task.entry_kind is EntryKind.METHOD
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == task.entry_point:
            out.append(f"{node.name}({', '.join(_params(node.args, method))})".lower())
    return out


def signatures(task: Task) -> set[str]:
    """``name(param, ...)`` (lower case, ``self`` left out) of the entry point, wherever the task has it."""
    found: set[str] = set()
    codes = [task.prompt, task.canonical_solution or "", *(r.code for r in task.references)]
    for code in codes:
        if code:
            found.update(_from_code(code, task))
    if not found:  # a prompt that is not code (MBPP: prose and an assertion) may still spell the header
        for m in re.finditer(_DEF.format(name=re.escape(task.entry_point)), task.prompt):
            params = [p.split(":")[0].split("=")[0].strip() for p in m.group(1).split(",")]
            params = [p for p in params if p and p not in ("self", "cls", "/", "*")]
            found.add(f"{task.entry_point}({', '.join(params)})".lower())
    return found


def normalized_prompt(task: Task) -> str:
    """The prompt's words in lower case, one space apart (punctuation, layout and case ignored)."""
    return " ".join(re.findall(r"[a-z0-9]+", task.prompt.lower()))


def decontaminate(train: Iterable[Task], evaluation: Iterable[Task]) -> tuple[list[Task], list[Dropped]]:
    """(kept training tasks, dropped ones with the evaluation task each matches)."""
    by_signature: dict[str, str] = {}
    by_prompt: dict[str, str] = {}
    for t in evaluation:
        for sig in signatures(t):
            by_signature.setdefault(sig, t.id)
        prompt = normalized_prompt(t)
        if prompt:
            by_prompt.setdefault(prompt, t.id)
    kept: list[Task] = []
    dropped: list[Dropped] = []
    for t in train:
        shared = sorted(s for s in signatures(t) if s in by_signature)
        prompt = normalized_prompt(t)
        if shared:
            dropped.append(Dropped(t.id, "signature", by_signature[shared[0]], shared[0]))
        elif prompt and prompt in by_prompt:
            dropped.append(Dropped(t.id, "prompt", by_prompt[prompt], prompt[:60]))
        else:
            kept.append(t)
    return kept, dropped
