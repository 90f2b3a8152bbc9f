"""From a model's response (or an evalplus sample) to the program that will run.

Responses come as plain code, as markdown with fenced blocks (```python ... ```), or as a completion to append
to the prompt. A response with no parseable Python at all is a ``format_error`` (the paper's −1.5 case).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from effirl.tasks.model import EntryKind, Task

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.#-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.#-]*)[^\n]*\n(.*)\Z", re.M | re.S)
_PY_TAGS = {"", "python", "py", "python3", "py3", "pycon"}


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def defines(code: str, entry_point: str, entry_kind: EntryKind | str = EntryKind.FUNCTION) -> bool:
    """Whether ``code`` (statically) defines the entry point."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    if EntryKind(entry_kind) is EntryKind.METHOD:
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == "Solution":
                return any(
                    isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point
                    for n in node.body
                )
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == entry_point for t in node.targets):
            return True
    return False


def normalized(code: str) -> str:
    """The syntax tree of a program without positions: comments, blank lines and layout do not matter. Two
    programs with the same tree run the same bytecode (only their line numbers differ), so a deterministic
    meter gives them the same count on the same inputs: a run judges and measures them once."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return code


def code_blocks(text: str) -> list[str]:
    """Fenced code blocks that are (or may be) Python, in order; an unclosed last fence counts too."""
    blocks = [m.group(3) for m in _FENCE.finditer(text) if m.group(2).lower() in _PY_TAGS]
    if not blocks:
        m = _OPEN_FENCE.search(text)
        if m and m.group(2).lower() in _PY_TAGS:
            blocks.append(m.group(3))
    return blocks


def _longest_parsing_prefix(text: str) -> str | None:
    lines = text.splitlines()
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if candidate.strip() and parses(candidate):
            return candidate
    return None


def extract_code(response: str, entry_point: str | None = None,
                 entry_kind: EntryKind | str = EntryKind.FUNCTION) -> str | None:
    """The program in a response, or ``None`` when there is no parseable code."""
    blocks = [b for b in code_blocks(response) if b.strip() and parses(b)]
    if blocks:
        if entry_point:
            for b in blocks:
                if defines(b, entry_point, entry_kind):
                    return b
            joined = "\n\n".join(blocks)  # definitions split across blocks
            if defines(joined, entry_point, entry_kind) and parses(joined):
                return joined
        return blocks[0]
    if "```" in response or "~~~" in response:
        return None
    if response.strip() and parses(response):
        return response
    prefix = _longest_parsing_prefix(response)
    if prefix is not None and (entry_point is None or defines(prefix, entry_point, entry_kind)):
        return prefix
    return None


def program_from_sample(task: Task, sample: dict[str, Any]) -> str | None:
    """The full program of an evalplus-style sample: ``solution`` (full code) or ``completion`` (after the prompt)."""
    if "solution" in sample and sample["solution"] is not None:
        return extract_code(str(sample["solution"]), task.entry_point, task.entry_kind)
    completion = str(sample.get("completion") or "")
    if "```" in completion:
        code = extract_code(completion, task.entry_point, task.entry_kind)
        if code is None:
            return None
        if defines(code, task.entry_point, task.entry_kind):
            return code
        joined = task.prompt + code
        return joined if parses(joined) else None
    joined = task.prompt + completion
    if parses(joined):
        return joined
    return extract_code(completion, task.entry_point, task.entry_kind)
