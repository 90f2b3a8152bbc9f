"""Typed limits and options of the sandbox, shared by the fork server, the workers and the CLI."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Modules a worker imports before it forks, so a child starts with them warm: those most solutions use. Anything
# else still imports (from the read-only interpreter view), in the child that asks for it. Every preimported
# module makes every fork dearer (the server's memory is mapped again, and partly copied, for each child), so
# heavy and rare ones (decimal, statistics, hashlib) are left out; a suite whose checkers import a module gets
# it preimported (``with_imports_of``).
DEFAULT_PREIMPORTS: tuple[str, ...] = (
    "array", "bisect", "collections", "copy", "functools", "heapq", "itertools", "math", "operator", "random",
    "re", "string", "sys", "typing",
)


def imported_modules(source: str) -> list[str]:
    """Top-level module names a piece of trusted code (a task's checker) imports, in order of first use."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module]
        else:
            continue
        for name in found:
            top = name.split(".")[0]
            if top not in names:
                names.append(top)
    return names


class SandboxConfig(BaseModel):
    """Limits applied to every child, and how the worker pool is shaped."""

    model_config = ConfigDict(frozen=True)

    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    isolation: Literal["auto", "namespaces", "none"] = "auto"
    test_timeout_s: float = Field(4.0, gt=0)  # wall clock allowed between two results
    total_timeout_s: float = Field(60.0, gt=0)  # wall clock for a whole sample
    cpu_s: int = Field(60, ge=1)  # RLIMIT_CPU of a child
    memory_mb: int = Field(2048, ge=64)  # RLIMIT_AS of a child
    output_limit_bytes: int = Field(64 * 1024, ge=1024)  # stdout+stderr a child may print
    value_limit_bytes: int = Field(16 * 1024 * 1024, ge=1024)  # total bytes of returned values
    file_size_mb: int = Field(16, ge=0)  # RLIMIT_FSIZE
    open_files: int = Field(64, ge=16)  # RLIMIT_NOFILE
    processes: int = Field(32, ge=1)  # RLIMIT_NPROC for the child's uid (where it has its own uid)
    tmp_mb: int = Field(64, ge=1)  # size of the private writable /tmp
    seed: int = 0  # random.seed of every child
    hash_seed: int = 0  # PYTHONHASHSEED of the workers
    preimports: tuple[str, ...] = DEFAULT_PREIMPORTS
    base_uid: int = 61000  # children of worker k run as uid base_uid + k when effirl runs as root

    def with_imports_of(self, checkers: Iterable[str | None]) -> SandboxConfig:
        """This config, preimporting also what the given checkers import (Mercury's need ``lctk``): a checker
        runs in every child of its task, measured ones included."""
        extra = [m for src in checkers if src for m in imported_modules(src)]
        added = tuple(dict.fromkeys(m for m in extra if m not in self.preimports))
        return self.model_copy(update={"preimports": self.preimports + added}) if added else self
