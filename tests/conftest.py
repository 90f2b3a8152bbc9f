"""Shared fixtures: sandbox workers and pools with small limits, and the bundled task suite.

Every fixture here is session-scoped (a fork server takes a few hundred milliseconds to start) and generic;
test modules that need other limits start their own workers through ``start_worker``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny Qwen2 with random weights, as ``effirl model init`` makes it, for every test that needs a model
    (tests read it and write elsewhere)."""
    pytest.importorskip("transformers", reason="the 'train' extra (transformers) is not installed")
    from effirl.generation.prompts import template_texts
    from effirl.models import init_model

    out = tmp_path_factory.mktemp("tiny")
    init_model(out, "tiny", seed=0, extra_texts=template_texts())
    return out


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Training tests run torch on one thread: seconds each, and no fight with the sandbox for two cores."""
    torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
