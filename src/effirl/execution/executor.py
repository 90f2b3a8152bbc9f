"""Where the sandbox workers run, chosen by config: this machine's processes, or actors on a Ray cluster.

Why it exists: the batch run (``effirl check``, ``measure``, ``evaluate``) and the trainers' reward functions
hold "a pool" (``map``, ``close``, a context manager, ``.config``) and must not care whether its workers are
fork servers of this process (:class:`~effirl.execution.pool.Pool`) or of Ray actors spread over a cluster's
CPU nodes (:class:`~effirl.execution.ray_pool.RayPool`). Both give the same verdicts and the same counts for
the same meter and inputs; only the order in which results stream back may differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from effirl.execution.config import SandboxConfig
from effirl.execution.worker import Worker

T = TypeVar("T")
R = TypeVar("R")


class ExecutorConfig(BaseModel):
    """Which executor runs the sandbox workers, and how to reach it.

    The rest applies to Ray only. ``address``: ``None`` connects to the cluster that ``RAY_ADDRESS`` or a
    running local cluster names, else starts a Ray instance on this machine; ``"auto"`` requires a running
    cluster; ``HOST:PORT`` (the head's GCS) or ``ray://HOST:PORT`` (Ray Client) names one. ``actors``: how
    many sandbox actors (default: one per CPU of the nodes they may run on, or the sandbox's explicit
    ``workers``), each reserving ``cpus_per_actor`` CPUs. ``node_resource``: place them only on nodes that
    offer this custom resource (``ray start --resources '{"effirl": 1000}'`` on the CPU nodes), so that GPU
    nodes keep their CPUs. ``share``: a name under which every process that gives it uses the same actors
    (verl's reward workers): the first one creates them, the others attach, and closing a pool leaves them to
    the others. ``match_driver``: a measuring pool's nodes must count with this machine's meter version and
    environment (the batch run records this machine's with every count); off, they need only agree with one
    another (verl, whose counts only ever meet counts of the same step).

    Unlike the local pool, which warns and goes on, the Ray pool refuses actors whose fork server lacks full
    isolation on its node (no user or PID namespace, say) unless the sandbox config's ``isolation`` is
    explicitly ``"none"``; actors that cannot start, are refused or keep dying are retired one by one, and
    only a pool with none left fails (see :mod:`effirl.execution.ray_pool`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    actors: int | None = Field(default=None, ge=1)
    cpus_per_actor: float = Field(default=1.0, gt=0)
    node_resource: str | None = None
    share: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    match_driver: bool = True
    start_timeout_s: float = Field(default=300.0, gt=0)  # no sandbox actor started in this time: an error

    @model_validator(mode="after")
    def _ray_only(self) -> ExecutorConfig:
        if self.kind == "local":
            names = ("address", "actors", "node_resource", "share")
            given = [name for name in names if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to the ray executor (kind: ray)")
        return self


class SandboxPool(Protocol):
    """What every executor's pool offers (the local :class:`~effirl.execution.pool.Pool`'s interface)."""

    config: SandboxConfig
    meter: Any

    def map(self, fn: Callable[[Worker, T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> SandboxPool: ...

    def __exit__(self, *exc: object) -> None: ...


def make_pool(config: SandboxConfig, meter: Any = None,
              executor: ExecutorConfig | None = None) -> SandboxPool:
    """A pool of sandbox workers (carrying ``meter``, if given) on the executor ``executor`` names."""
    if executor is None or executor.kind == "local":
        from effirl.execution.pool import Pool

        return Pool(config, meter)
    from effirl.execution.ray_pool import RayPool

    return RayPool(config, meter, executor)
