"""Shared fixtures: sandbox workers and pools with small limits, and the bundled task suite.

Every fixture here is session-scoped (a fork server takes a few hundred milliseconds to start) and generic;
test modules that need other limits start their own workers through ``start_worker``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from effirl.execution.config import SandboxConfig
from effirl.execution.pool import Pool
from effirl.execution.worker import Worker
from effirl.tasks import Task, by_id, load

# Nothing in the tests may reach a model hub (none is reachable here; users' CI may have one).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Small wall-clock limits keep hostile programs (infinite loops, sleepers) cheap to test.
TEST_SANDBOX = SandboxConfig(workers=2, test_timeout_s=2.0, total_timeout_s=20.0, cpu_s=20)


@pytest.fixture(scope="session")
def sandbox_config() -> SandboxConfig:
    """The limits of the shared ``worker`` and ``pool``."""
    return TEST_SANDBOX


@pytest.fixture(scope="session")
def start_worker() -> Iterator[Callable[..., Worker]]:
    """Factory: ``start_worker(index, **config_overrides)`` starts a worker that is closed at session end."""
    started: list[Worker] = []

    def start(index: int = 0, **overrides: Any) -> Worker:
        cfg = TEST_SANDBOX.model_copy(update=overrides) if overrides else TEST_SANDBOX
        w = Worker(index, cfg)
        w.start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()
        w.remove_workdir()


@pytest.fixture(scope="session")
def worker(start_worker: Callable[..., Worker]) -> Worker:
    """One started fork server (index 0) with the test limits."""
    return start_worker(0)


@pytest.fixture(scope="session")
def pool(sandbox_config: SandboxConfig) -> Iterator[Pool]:
    """A pool of ``sandbox_config.workers`` fork servers (started lazily)."""
    with Pool(sandbox_config) as p:
        yield p


@pytest.fixture(scope="session")
def builtin_tasks() -> list[Task]:
    """The bundled suite, as ``effirl.tasks.load("builtin")`` returns it."""
    return load("builtin")


@pytest.fixture(scope="session")
def builtin_by_id(builtin_tasks: list[Task]) -> dict[str, Task]:
    return by_id(builtin_tasks)
