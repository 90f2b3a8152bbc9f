"""Optional dependencies: one clear line saying which extra to install, instead of an ImportError.

Why it exists: the core install (tasks, sandbox, meters, scoring) stays free of torch; generation, training and
scale-out import their heavy libraries only when used, through :func:`require`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from effirl.errors import EffirlError

INSTALL = {
    "train": "pip install torch==2.13.0 && pip install 'effirl[train]'  (torch pinned first: a CPU build here)",
    "openai": "pip install 'effirl[openai]'",
    "ray": "pip install 'effirl[ray]'",
    "verl": "pip install 'effirl[verl]' in an environment of its own (verl pins transformers < 5.11)",
    "vllm": "pip install vllm",
}


class MissingExtraError(EffirlError):
    """A feature needs an optional dependency that is not installed."""


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = feature or module
        raise MissingExtraError(f"{what} needs the '{extra}' extra ({module} is not importable: {exc}); "
                                f"install it with: {INSTALL.get(extra, f'pip install effirl[{extra}]')}") from None
