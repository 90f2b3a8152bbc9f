"""Sandbox workers as Ray actors: the local pool's interface on the CPUs of a cluster.

Why it exists: one machine cannot check and measure as fast as GPU nodes generate (an RL step of the paper is
64 prompts x 64 completions). :class:`RayPool` runs the same warmed fork servers as the local
:class:`~effirl.execution.pool.Pool`, one per CPU of the nodes its actors are placed on, behind the same
interface (``map``, ``close``, a context manager, ``.config``), with the same verdicts and counts.

Where each part runs, and why the security model is unchanged:

* **The driver** (``effirl check/measure/evaluate``, a verl reward worker: whoever calls :meth:`RayPool.map`)
  holds the samples and tasks, cuts the items into small chunks, sends each chunk to a sandbox actor with the
  function to apply, streams results back in completion order, and replaces actors that die. It runs no
  untrusted code and decides no verdict.
* **A sandbox actor** (:class:`SandboxActor`, one Ray CPU each) is the trusted parent of one fork server: it
  owns a local :class:`~effirl.execution.worker.Worker` and calls ``fn(worker, item)``, the very function the
  local pool calls (``check_samples``'s ``check_one``, ``measure_one``, the performance-input resolver). The
  judge therefore runs here, beside the fork server: the expected outputs travel with the work to the actor
  (inside the task, or computed there from the canonical solution), every returned value is compared as it
  arrives, and the child is stopped at its first wrong answer. The actor is effirl's own code, as trusted as
  the driver.
* **The fork server and its children** run on the actor's node with the isolation they have locally; a child
  never receives an expected output, only its program and inputs, and reports plain values to the actor.

A killed actor takes its fork server and children with it: the server dies with its parent (the worker's
lifeline, see :mod:`effirl.execution.worker`), and its PID namespace's init with it.

What the driver sends: ``fn`` pickled once per ``map`` (a closure over the tasks and the expected-output
resolver is fine: locks in it become fresh locks in the actor, and a pool it refers to becomes a
:class:`PoolView` with the same ``config`` and ``meter``); large functions travel through Ray's object store,
small ones inline. Items travel in chunks (work items are pydantic models and dataclasses, pickled as they
are); the driver yields its own item objects, so what ``fn`` changes on its copy of an item stays in the
actor.

Placement: each actor reserves ``cpus_per_actor`` CPUs (one by default), on nodes offering ``node_resource``
if set; actors that cannot be placed yet wait in Ray's queue and join when they start. With ``share``, every
process naming the same share uses one set of named actors (the first creates them, the others attach, and a
process's ``close`` leaves them to the others): verl's reward workers do so.

Isolation: an actor whose fork server could not get full OS isolation on its node (no user or PID namespace,
no network or filesystem view of its own) is refused, named in the log, unless the sandbox's ``isolation`` is
explicitly ``"none"``: a cluster of nodes without user namespaces must not quietly run untrusted code beside
the trusted judge of every other run (locally the same weak setting risks one machine, and the pool warns).

Failures: an actor that dies (its process killed, its node lost) is replaced, and the runs it had in flight
are run again once on the actors alive (so a node lost mid-batch costs only its runs in flight). A run lost
with its actor a second time is yielded as a failure of the sandbox for that run alone: ``fn`` is called
for it, here in the driver, on a :class:`LostWorker`, whose every run reports that the worker died, as a
local worker does when its fork server dies (the judge's verdict: ``runtime_error``, ``WorkerDied``); only
where ``fn`` cannot report that does the map raise :class:`SandboxActorLost`. A slot whose actors die
``REPLACE_LIMIT`` times within ``REPLACE_WINDOW_S`` is retired (its node is likely bad), as is one whose
actor cannot start its fork server or is refused for its isolation: each is said once in the log, and the
pool goes on with the others; only when no actor is left does a map raise one :class:`NoSandboxActorLeft`
naming the nodes and why. A replaced or retired actor's worker folder is removed on its node once its
process is gone. An error raised by ``fn`` reaches the consumer as it does from the local pool. Every actor
of a pool carries the same meter; before any actor starts, every node that may host one is asked whether that
meter works there (callgrind: valgrind installed) and, for a measuring pool, whether its meter version and
environment fingerprint are this machine's (the records carry this machine's; with ``match_driver`` off, only
whether the nodes agree); the pool is refused, naming the nodes, otherwise.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import pickle
import shutil
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

from effirl.errors import EffirlError
from effirl.execution.config import SandboxConfig
from effirl.execution.executor import ExecutorConfig
from effirl.execution.pool import announce
from effirl.execution.report import IsolationReport
from effirl.execution.worker import LANES, RunOutcome, Worker, WorkerError
from effirl.extras import require

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

MAX_CHUNK = 16  # items per actor call at most
CHUNK_TARGET_S = 0.25  # actor calls of about this long (a chunk in flight is what an actor's death costs)
INLINE_FN_BYTES = 64 * 1024  # a pickled fn this small goes with every call; a larger one once, by reference
FN_CACHE = 8  # deserialized functions an actor keeps
SHUTDOWN_S = 10.0  # how long close() waits for actors to stop their fork servers before killing them
WAIT_S = 1.0  # the driver's longest wait for a result before it looks at its deadlines again
REPLACE_LIMIT = 3  # a slot whose actors die this many times ...
REPLACE_WINDOW_S = 600.0  # ... within this many seconds is retired, not given another actor


class SandboxActorLost(WorkerError):
    """A run whose sandbox actors died twice, for which ``fn`` could not report a dead worker."""


class NoSandboxActorLeft(EffirlError, WorkerError):
    """Every sandbox actor of a pool was retired (it could not start, was refused, or kept dying)."""


class RayConnectError(EffirlError):
    """Ray is not reachable at the address given."""


class RemoteError(RuntimeError):
    """An exception raised in a sandbox actor that could not travel back as itself."""


# -- connecting ----------------------------------------------------------------------------------------------


def _ray() -> Any:
    return require("ray", "ray", "the Ray executor (--executor ray)")


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, on a ``HOST:PORT`` or ``ray://HOST:PORT`` nobody answers at."""
    target = address if "://" in address else f"tcp://{address}"
    try:
        parsed = urlparse(target)
        host, port = parsed.hostname, parsed.port
    except ValueError:
        raise RayConnectError(f"--ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT") \
            from None
    if not host or port is None:
        raise RayConnectError(f"--ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        why = exc.strerror or exc
        raise RayConnectError(f"cannot reach the Ray cluster at {address}: {why} (is `ray start --head` "
                              "running there, and the port open?)") from None


def connect(executor: ExecutorConfig) -> Any:
    """The ``ray`` module, connected to the cluster ``executor`` names (an existing connection is kept)."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    address = executor.address
    if address not in (None, "auto", "local"):
        _reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"at {address}" if address else "(RAY_ADDRESS, or a local instance)"
        raise RayConnectError(f"cannot connect to a Ray cluster {where}: {first}") from None
    return ray


# -- shipping functions --------------------------------------------------------------------------------------

_LOCK = type(threading.Lock())
_RLOCK = type(threading.RLock())


def _new_lock(reentrant: bool) -> Any:
    return threading.RLock() if reentrant else threading.Lock()


def dumps_fn(fn: Callable[..., Any]) -> bytes:
    """``fn`` pickled for an actor: its locks become fresh locks there, a pool a :class:`PoolView`."""
    cloudpickle = _ray().cloudpickle

    class Pickler(cloudpickle.CloudPickler):  # type: ignore[misc,name-defined]
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) in (_LOCK, _RLOCK):
                return _new_lock, (type(obj) is _RLOCK,)
            return super().reducer_override(obj)

    buf = io.BytesIO()
    Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(fn)
    return buf.getvalue()


@dataclass
class PoolView:
    """What a function shipped to an actor sees of the pool it was written for: its config and meter."""

    config: SandboxConfig
    meter: Any = None

    def map(self, fn: Any, items: Any) -> Any:
        raise RuntimeError("a pool cannot be used from inside a sandbox actor")


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a :class:`RemoteError` with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - whatever makes it unpicklable
        return RemoteError(f"{type(exc).__name__}: {exc}")


# -- the actor -----------------------------------------------------------------------------------------------


class SandboxActor:
    """One Ray actor: the trusted parent (worker and judge) of one fork server on its node."""

    def __init__(self, index: int, config: SandboxConfig, meter: Any = None) -> None:
        self.worker = Worker(index, config, meter)
        self._fns: OrderedDict[str, Callable[[Worker, Any], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def start(self) -> dict[str, Any]:
        """Start the fork server; where it runs, what isolation it has, or (``error``) why it cannot start."""
        ray = _ray()
        info: dict[str, Any] = {
            "node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
            "host": socket.gethostname(), "pid": os.getpid(), "workdir": self.worker._workdir}
        try:
            self.worker.ensure_started()
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which retires this actor
            self.worker.close()
            self.worker.remove_workdir()
            return {**info, "error": f"{type(exc).__name__}: {_first_line(exc)}"}
        report = self.worker.report
        return {**info, "server_pid": self.worker.server_pid, "lanes": self.worker.lanes,
                "report": asdict(report) if report is not None else None}

    def _fn(self, key: str, payload: bytes | list[Any]) -> Callable[[Worker, Any], Any]:
        with self._lock:
            fn = self._fns.get(key)
            if fn is not None:
                self._fns.move_to_end(key)
                return fn
        data = payload if isinstance(payload, bytes) else _ray().get(payload[0])
        fn = pickle.loads(data)
        with self._lock:
            self._fns[key] = fn
            while len(self._fns) > FN_CACHE:
                self._fns.popitem(last=False)
        return fn

    def run(self, key: str, payload: bytes | list[Any],
            items: list[Any]) -> tuple[list[tuple[bool, Any]], float]:
        """``fn(worker, item)`` for each item, in order; stops at the first error. Returns the results
        (``(True, value)`` or ``(False, exception)``) and the seconds spent."""
        t0 = time.monotonic()
        fn = self._fn(key, payload)
        out: list[tuple[bool, Any]] = []
        context = _ray().get_runtime_context()
        for item in items:
            if out and _cancelled(context):  # the driver no longer wants this call (its consumer stopped)
                break
            try:
                out.append((True, fn(self.worker, item)))
            except Exception as exc:  # noqa: BLE001 - handed to the driver, raised there
                out.append((False, _portable(exc)))
                break
        return out, time.monotonic() - t0

    def pids(self) -> dict[str, Any]:
        """This actor's process and its fork server's (for tests and diagnostics)."""
        return {"pid": os.getpid(), "server_pid": self.worker.server_pid}

    def shutdown(self) -> None:
        """Stop the fork server and remove its private folder."""
        self.worker.close()
        self.worker.remove_workdir()


def _cancelled(context: Any) -> bool:
    try:
        return bool(context.is_canceled())
    except RuntimeError:  # not in a Ray worker (a direct call)
        return False


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this (Linux) machine; a zombie does not."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def remove_actor_folder(pid: int, workdir: str, wait_s: float = SHUTDOWN_S) -> bool:
    """Run on a killed actor's node: once its process ``pid`` is gone, remove its worker's folder (which it
    would have removed itself had it been shut down). Whether the folder is gone."""
    if not os.path.basename(workdir.rstrip("/")).startswith("effirl-w"):
        return False  # never anything but a worker's folder
    deadline = time.monotonic() + wait_s
    while _process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    shutil.rmtree(workdir, ignore_errors=True)
    return not os.path.exists(workdir)


class LostWorker:
    """What ``fn`` is given for a run lost with its sandbox actor twice: a worker whose fork server is gone.

    Every run reports ``worker_died`` at once, as a local :class:`~effirl.execution.worker.Worker` reports
    a run under a server that died, and nothing is run (it stands in for the worker in the driver, which runs
    no untrusted code): the judge turns it into ``runtime_error`` / ``WorkerDied``, the failure of the sandbox
    that callers such as the reward's ``run_all`` retry or count as a worker failure."""

    def __init__(self, index: int, config: SandboxConfig, meter: Any = None) -> None:
        self.index = index
        self.config = config
        self.meter = meter
        self.lanes = 1
        self.report: IsolationReport | None = None
        self.server_pid: int | None = None
        self.restarts = 0
        self.alive = False

    def ensure_started(self) -> bool:
        return False

    def start(self, timeout: float = 120.0) -> None:
        raise WorkerError(f"worker {self.index}: its sandbox actor was lost")

    restart = start

    def run(self, job: dict[str, Any], inputs: list[Any], inputs_key: str | None, on_frame: Any,
            test_timeout_s: float | None = None, total_timeout_s: float | None = None) -> RunOutcome:
        return RunOutcome(stop_reason="worker_died")

    def close(self) -> None:
        return None

    def remove_workdir(self) -> None:
        return None


def isolation_refusal(config: SandboxConfig, report: IsolationReport | None) -> str | None:
    """Why an actor whose fork server reports ``report`` may not run untrusted code (``None``: it may).

    Only full isolation is accepted, unless the sandbox config explicitly asks for none."""
    if config.isolation == "none" or (report is not None and report.full):
        return None
    missing = ("; ".join(report.problems) or "namespaces disabled") if report is not None else "no report"
    return (f"refused: its fork server has no full isolation there ({missing}), and untrusted code would run "
            "beside the judges of the other runs; give the nodes user namespaces, or set the sandbox's "
            "isolation to 'none' to accept that")


# -- nodes ---------------------------------------------------------------------------------------------------


def meter_probe(name: str) -> tuple[bool, str]:
    """Whether the meter called ``name`` works on this machine, and why not."""
    if name == "callgrind":
        from effirl.meters.callgrind import probe

        return probe()
    if name == "perf":
        from effirl.meters.perf import probe as perf_probe

        return perf_probe()
    return True, ""


def probe_node(meter: Any, probe: Callable[[str], tuple[bool, str]] | None = None) -> dict[str, Any]:
    """Run on one node: whether ``meter`` works there, its version and the environment's fingerprint."""
    from effirl.meters.base import environment_fingerprint

    ok, why = (probe or meter_probe)(meter.name)
    return {"ok": ok, "why": why, "version": meter.version() if ok else None,
            "fingerprint": environment_fingerprint(), "host": socket.gethostname()}


def _node_name(node: dict[str, Any]) -> str:
    return f"{node.get('NodeManagerAddress') or node.get('NodeManagerHostname') or '?'} " \
           f"(node {str(node.get('NodeID', '?'))[:8]})"


# -- the pool ------------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One sandbox actor of the pool (its replacement keeps the slot and worker index, with a new handle)."""

    index: int
    handle: Any
    gen: int = 0
    ready: bool = False
    start_ref: Any = None
    where: str = "?"
    load: int = 0  # calls in flight on this actor, all maps together (cancelled ones until they end)
    info: dict[str, Any] | None = None  # what the current actor said when it started (node, pid, folder)
    deaths: deque[float] = field(default_factory=deque)  # when its actors died, within REPLACE_WINDOW_S
    dead: str | None = None  # why the slot was retired (no actor is given to it again)


@dataclass
class _Chunk:
    slot: _Slot
    gen: int
    work: list[tuple[int, Any, int]]  # (position, item, attempt)


@dataclass
class _MapState:
    queue: deque[tuple[int, Any, int]]
    data: bytes  # fn, pickled
    inflight: dict[Any, _Chunk] = field(default_factory=dict)
    mine: dict[int, int] = field(default_factory=dict)  # calls in flight per slot index, this map's
    lost_fn: Callable[[Any, Any], Any] | None = None  # a copy of fn for the runs lost twice


class RayPool:
    """Sandbox workers as Ray actors; see the module docstring."""

    def __init__(self, config: SandboxConfig | None = None, meter: Any = None,
                 executor: ExecutorConfig | None = None, *,
                 node_probe: Callable[[str], tuple[bool, str]] | None = None) -> None:
        self.config = config or SandboxConfig()
        self.meter = meter
        self.executor = executor or ExecutorConfig(kind="ray")
        self._ray = connect(self.executor)
        errors = self._ray.exceptions  # what ray.get raises when an actor, or its node, is gone
        self._lost_errors = (errors.RayActorError, errors.WorkerCrashedError, errors.OutOfMemoryError,
                             errors.ObjectLostError)
        self._lock = threading.RLock()
        self._closed = False
        self._said: set[str] = set()  # warnings already logged
        self._orphans: dict[Any, tuple[_Slot, int]] = {}  # cancelled calls that may still run: (slot, gen)
        self._cleanups: list[Any] = []  # folder removals of killed actors, on their nodes
        self._remover: Any = None
        self._item_s: float | None = None  # seconds per item, smoothed: sizes the chunks
        self.lanes = LANES if meter is None else 1
        self.depth = self.lanes + 1  # calls a map keeps in flight per actor: one queued behind the busy lanes
        nodes = self._nodes()
        self._check_nodes(nodes, node_probe, self.executor.match_driver)
        cpus = sum(node["Resources"].get("CPU", 0) for node in nodes)
        explicit = self.config.workers if "workers" in self.config.model_fields_set else None
        n = self.executor.actors or explicit or int(cpus // self.executor.cpus_per_actor)
        # A "control" group of its own: start, pids and shutdown never queue behind runs.
        self._actor_cls = self._ray.remote(concurrency_groups={"control": 1})(SandboxActor)
        self.slots: list[_Slot] = []
        self._t0 = time.monotonic()
        try:
            for i in range(max(1, n)):
                self.slots.append(_Slot(index=i, handle=self._spawn(i)))
                self.slots[-1].start_ref = self._start(self.slots[-1].handle)
        except BaseException:
            self._abandon()
            raise
        log.info("ray executor: %d sandbox actor(s) on %d node(s)%s", len(self.slots), len(nodes),
                 f", meter {meter.name}" if meter is not None else "")

    def _abandon(self) -> None:
        """``__init__`` failed after spawning actors: kill them (shared ones are left to the others)."""
        self._closed = True
        if self.executor.share:
            return
        for slot in self.slots:
            try:
                self._ray.kill(slot.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    # -- set-up ----------------------------------------------------------------------------------------------
    def _nodes(self) -> list[dict[str, Any]]:
        want = self.executor.node_resource
        nodes = [n for n in self._ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0
                 and (want is None or n.get("Resources", {}).get(want, 0) > 0)]
        if not nodes:
            extra = f" offering the resource {want!r}" if want else ""
            raise EffirlError(f"the Ray cluster has no alive node with CPUs{extra} for sandbox actors")
        return nodes

    def _check_nodes(self, nodes: list[dict[str, Any]], probe: Callable[[str], tuple[bool, str]] | None,
                     match_driver: bool) -> None:
        """Refuse, before any run, a cluster on which this pool's meter cannot count, naming the nodes."""
        if self.meter is None:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from effirl.meters.base import environment_fingerprint

        task = self._ray.remote(num_cpus=0, max_retries=0)(probe_node)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(self.meter, probe) for n in nodes]
        try:
            found = self._ray.get(refs, timeout=self.executor.start_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a node that cannot even run the probe
            raise EffirlError(f"cannot ask the Ray nodes whether meter {self.meter.name!r} works there: "
                              f"{_first_line(exc)}") from None
        lacking = [f"{_node_name(n)}: {f['why']}" for n, f in zip(nodes, found, strict=True) if not f["ok"]]
        if lacking:
            name = self.meter.name
            hint = " (install valgrind there, or use another --meter)" if name == "callgrind" else ""
            raise EffirlError(f"meter {name!r} is not available on {len(lacking)} of {len(nodes)} Ray "
                              f"node(s): {'; '.join(lacking)}{hint}")
        if match_driver:
            mine = (self.meter.version(), environment_fingerprint())
            other = [f"{_node_name(n)} ({f['version']}, environment {f['fingerprint']})"
                     for n, f in zip(nodes, found, strict=True) if (f["version"], f["fingerprint"]) != mine]
            if other:
                raise EffirlError(f"{len(other)} Ray node(s) would count with another meter version or "
                                  f"environment than this machine ({mine[0]}, environment {mine[1]}), "
                                  f"whose are recorded with the counts: {'; '.join(other)}; run effirl from "
                                  "a node of the same image")
        else:
            kinds = {(f["version"], f["fingerprint"]) for f in found}
            if len(kinds) > 1:
                desc = "; ".join(f"{_node_name(n)} ({f['version']}, environment {f['fingerprint']})"
                                 for n, f in zip(nodes, found, strict=True))
                raise EffirlError(f"the Ray nodes would count with different meter versions or environments, "
                                  f"so counts within a batch would not be comparable: {desc}")

    def _spawn(self, index: int) -> Any:
        ex = self.executor
        options: dict[str, Any] = {"num_cpus": ex.cpus_per_actor, "max_concurrency": self.depth,
                                   "max_restarts": 0, "max_task_retries": 0}
        if ex.node_resource:
            options["resources"] = {ex.node_resource: 0.001}
        if ex.share:  # one set of actors for every process that names it; the first one creates them
            kind = self.meter.name if self.meter is not None else "native"
            options.update(name=f"{ex.share}-{kind}-{index}", namespace="effirl", get_if_exists=True)
        return self._actor_cls.options(**options).remote(index, self.config, self.meter)

    @staticmethod
    def _start(handle: Any) -> Any:
        return handle.start.options(concurrency_group="control").remote()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return PoolView, (self.config, self.meter)

    def close(self) -> None:
        """Stop every actor's fork server (removing its folder), then the actors; wait a while for the folders
        of killed actors to be removed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            slots = list(self.slots)
        ray = self._ray
        if not self.executor.share:  # else the other processes that share them go on using them
            started = [s for s in slots if s.dead is None and (s.ready or (
                s.start_ref is not None and ray.wait([s.start_ref], timeout=0)[0]))]
            stops = {s.handle.shutdown.options(concurrency_group="control").remote(): s for s in started}
            stopped: set[int] = set()
            if stops:
                try:
                    done, _ = ray.wait(list(stops), num_returns=len(stops), timeout=SHUTDOWN_S)
                except Exception:  # noqa: BLE001 - the actors are killed below anyway
                    done = []
                for ref in done:
                    try:
                        ray.get(ref)
                        stopped.add(stops[ref].index)
                    except Exception:  # noqa: BLE001 - its folder is removed on its node below
                        pass
            for s in slots:
                if s.dead is None:
                    self._discard(s.handle, None if s.index in stopped else s.info)
        with self._lock:
            cleanups, self._cleanups = self._cleanups, []
        if cleanups:
            try:
                ray.wait(cleanups, num_returns=len(cleanups), timeout=SHUTDOWN_S, fetch_local=False)
            except Exception:  # noqa: BLE001 - best effort: a lost node's folder went with it
                pass

    def kill_actor(self, index: int, wait_s: float = 30.0) -> None:
        """Kill actor ``index``'s process (its fork server and children go with it) and wait until Ray knows it
        is dead, so that the next map meets a dead actor, not one still finishing its work: for tests."""
        handle = self.slots[index].handle
        self._ray.kill(handle, no_restart=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                self._ray.get(handle.pids.options(concurrency_group="control").remote(), timeout=1.0)
            except Exception:  # noqa: BLE001 - RayActorError (dead) or a timeout while it dies
                return
            time.sleep(0.05)

    def pids(self, index: int) -> dict[str, Any]:
        """Actor ``index``'s process id and its fork server's (after it has started)."""
        slot = self.slots[index]
        return self._ray.get(slot.handle.pids.options(concurrency_group="control").remote())

    # -- starting, replacing and retiring actors -------------------------------------------------------------
    def _say_once(self, text: str) -> None:
        with self._lock:
            if text in self._said:
                return
            self._said.add(text)
        log.warning(text)

    def _discard(self, handle: Any, info: dict[str, Any] | None) -> None:
        """Kill an actor; once its process is gone, remove its worker's folder on its node (``info``)."""
        try:
            self._ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if not info or not info.get("workdir") or not info.get("node_id"):
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        try:
            if self._remover is None:
                self._remover = self._ray.remote(num_cpus=0, max_retries=0)(remove_actor_folder)
            strategy = NodeAffinitySchedulingStrategy(info["node_id"], soft=False)
            ref = self._remover.options(scheduling_strategy=strategy).remote(info["pid"], info["workdir"])
        except Exception as exc:  # noqa: BLE001 - a folder left behind is no reason to stop
            log.debug("cannot remove the folder of a killed sandbox actor: %s", exc)
            return
        with self._lock:
            if len(self._cleanups) >= 64:  # forget those already done
                done, _ = self._ray.wait(self._cleanups, num_returns=len(self._cleanups), timeout=0,
                                         fetch_local=False)
                self._cleanups = [r for r in self._cleanups if r not in set(done)]
            self._cleanups.append(ref)

    def _on_started(self, slot: _Slot, gen: int, ref: Any) -> None:
        """An actor's start is over: it joins the pool, or its slot is replaced (it died) or retired."""
        try:
            info = self._ray.get(ref)
        except self._lost_errors as exc:
            self._replace(slot, gen, f"it died while starting ({_first_line(exc)})")
            return
        except self._ray.exceptions.RayTaskError as exc:  # start itself failed (not the fork server)
            self._retire(slot, gen, f"could not start: {_first_line(exc)}", None)
            return
        where = f"{info['ip']} (node {info['node_id'][:8]})"
        if info.get("error"):
            self._retire(slot, gen, f"could not start its fork server: {info['error']}", info, where)
            return
        report = IsolationReport(**info["report"]) if info.get("report") else None
        refusal = isolation_refusal(self.config, report)
        if refusal is not None:
            self._retire(slot, gen, refusal, info, where)
            return
        with self._lock:
            if slot.gen != gen or slot.start_ref is not ref:
                return
            slot.ready, slot.start_ref, slot.info, slot.where = True, None, info, where
        announce(report)

    def _retire(self, slot: _Slot, gen: int, why: str, info: dict[str, Any] | None,
                where: str | None = None) -> None:
        """Give ``slot`` no actor any more (said once per node and reason); the pool goes on without it."""
        with self._lock:
            if slot.gen != gen or slot.dead is not None or self._closed:
                return
            slot.dead, slot.ready, slot.start_ref, slot.load = why, False, None, 0
            slot.gen += 1  # what the old actor still had in flight no longer counts
            slot.where = where or slot.where
            handle, info = slot.handle, info or slot.info
            left = sum(1 for s in self.slots if s.dead is None)
        self._say_once(f"sandbox actor(s) on {slot.where}: {why}; going on with the others")
        log.info("sandbox actor %d retired (%d left)", slot.index, left)
        self._discard(handle, info)

    def _replace(self, slot: _Slot, gen: int, why: str) -> None:
        """Give ``slot`` a new actor, unless another map already replaced the one of generation ``gen``, or
        the slot's actors keep dying (``REPLACE_LIMIT`` deaths within ``REPLACE_WINDOW_S``): it is retired."""
        with self._lock:
            if slot.gen != gen or slot.dead is not None or self._closed:
                return
            now = time.monotonic()
            while slot.deaths and now - slot.deaths[0] > REPLACE_WINDOW_S:
                slot.deaths.popleft()
            slot.deaths.append(now)
            if len(slot.deaths) >= REPLACE_LIMIT:
                self._retire(slot, gen, f"its actors died {len(slot.deaths)} times within "
                                        f"{REPLACE_WINDOW_S:.0f} s (the last: {why})", None)
                return
            log.warning("sandbox actor %d on %s: %s; replacing it", slot.index, slot.where, why)
            self._discard(slot.handle, slot.info)
            slot.handle = self._spawn(slot.index)
            slot.gen += 1
            slot.ready, slot.load, slot.where, slot.info = False, 0, "?", None
            slot.start_ref = self._start(slot.handle)

    def _no_actor_left(self) -> NoSandboxActorLeft:
        """The one error of a pool whose every slot was retired: where, and why (per node, the first slot's
        reason; slots of a node usually fail alike)."""
        nodes: dict[str, list[str]] = {}
        for s in self.slots:
            nodes.setdefault(s.where, []).append(s.dead or "not started")
        parts = []
        for where, whys in nodes.items():
            others = len(set(whys)) - 1
            parts.append(f"{len(whys)} on {where}: {whys[0]}" + (f" (and {others} other reason(s))" if others
                                                                  else ""))
        return NoSandboxActorLeft(f"no sandbox actor is left to run on ({'; '.join(parts)})")

    # -- mapping ---------------------------------------------------------------------------------------------
    def _ship(self, fn: Callable[[Worker, Any], Any]) -> tuple[str, bytes | list[Any], bytes]:
        data = dumps_fn(fn)
        key = hashlib.sha256(data).hexdigest()[:24]
        return key, (data if len(data) <= INLINE_FN_BYTES else [self._ray.put(data)]), data

    def _chunk_size(self, waiting: int) -> int:
        """Items for the next call: about ``CHUNK_TARGET_S`` of work (one item until an item's time is known),
        and never so many that an actor would go idle while others still have a long queue."""
        if self._item_s is None:
            return 1
        capacity = max(1, sum(1 for s in self.slots if s.ready)) * self.depth
        spread = math.ceil(waiting / (2 * capacity))
        per_time = int(CHUNK_TARGET_S / max(self._item_s, 1e-6))
        return max(1, min(MAX_CHUNK, spread, per_time))

    def _reap(self) -> None:
        """Cancelled calls of earlier maps that have ended no longer weigh on their actors."""
        with self._lock:
            refs = list(self._orphans)
        if not refs:
            return
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        with self._lock:
            for ref in done:
                slot, gen = self._orphans.pop(ref)
                if slot.gen == gen:
                    slot.load = max(0, slot.load - 1)

    def _dispatch(self, state: _MapState, key: str, payload: bytes | list[Any]) -> None:
        """Send chunks of the queue to ready actors that have room, the least loaded first."""
        while state.queue:
            with self._lock:
                free = [s for s in self.slots if s.ready and state.mine.get(s.index, 0) < self.depth]
                if not free:
                    return
                slot = min(free, key=lambda s: (s.load, state.mine.get(s.index, 0), s.index))
                n = self._chunk_size(len(state.queue))
                work = [state.queue.popleft() for _ in range(min(n, len(state.queue)))]
                ref = slot.handle.run.remote(key, payload, [item for _, item, _ in work])
                slot.load += 1
                state.mine[slot.index] = state.mine.get(slot.index, 0) + 1
                state.inflight[ref] = _Chunk(slot, slot.gen, work)

    def _settle(self, state: _MapState, ref: Any) -> _Chunk:
        chunk = state.inflight.pop(ref)
        with self._lock:
            state.mine[chunk.slot.index] -= 1
            if chunk.slot.gen == chunk.gen:
                chunk.slot.load = max(0, chunk.slot.load - 1)
        return chunk

    def _lost(self, state: _MapState, chunk: _Chunk, why: str) -> list[tuple[Any, Any]]:
        """An actor died with ``chunk`` in flight: replace it and queue the chunk's runs again, once; a run
        lost a second time is returned with its result, a failure of the sandbox (see :class:`LostWorker`)."""
        again = [(pos, item, attempt + 1) for pos, item, attempt in chunk.work if attempt == 0]
        twice = [item for _, item, attempt in chunk.work if attempt > 0]
        where = chunk.slot.where
        self._replace(chunk.slot, chunk.gen, why)
        state.queue.extendleft(reversed(again))
        if not twice:
            return []
        log.warning("%d run(s) lost twice with their sandbox actors (the last on %s: %s): reported as the "
                    "sandbox's failure (WorkerDied)", len(twice), where, why)
        return [(item, self._lost_result(state, chunk.slot.index, item, where, why)) for item in twice]

    def _lost_result(self, state: _MapState, index: int, item: Any, where: str, why: str) -> Any:
        """``fn``'s result for a run lost twice: a copy of ``fn`` (as shipped, so nothing of the caller's own
        changes) on a copy of the item, with a :class:`LostWorker`, here in the driver (nothing is run)."""
        cloudpickle = self._ray.cloudpickle
        try:
            if state.lost_fn is None:
                state.lost_fn = pickle.loads(state.data)
            return state.lost_fn(LostWorker(index, self.config, self.meter),
                                 cloudpickle.loads(cloudpickle.dumps(item)))
        except Exception as exc:  # noqa: BLE001 - fn cannot report a dead worker: the map fails
            raise SandboxActorLost(f"a run was lost twice with its sandbox actors (the last on {where}: "
                                   f"{why}), and its function could not report a dead worker "
                                   f"({type(exc).__name__}: {_first_line(exc)}); the run: {_short(item)}") \
                from exc

    def map(self, fn: Callable[[Worker, T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """``fn(worker, item)`` for every item, on the actors; yields ``(item, result)`` as they complete."""
        if self._closed:
            raise RuntimeError("this pool is closed")

        work = [(i, item, 0) for i, item in enumerate(items)]
        if not work:
            return
        ray = self._ray
        key, payload, data = self._ship(fn)
        state = _MapState(queue=deque(work), data=data)
        remaining = len(work)
        waited_since = time.monotonic()
        try:
            while remaining:
                self._reap()
                self._dispatch(state, key, payload)
                with self._lock:
                    starting = {s.start_ref: (s, s.gen) for s in self.slots if s.start_ref is not None}
                waitable = [*state.inflight, *starting]
                if not waitable:
                    raise self._no_actor_left()
                done, _ = ray.wait(waitable, num_returns=1, timeout=WAIT_S)
                if not done:
                    if not state.inflight and time.monotonic() - max(waited_since, self._t0) > \
                            self.executor.start_timeout_s:
                        wait_s = self.executor.start_timeout_s
                        raise EffirlError(f"no sandbox actor started within {wait_s:.0f} s: the cluster "
                                          f"has no free CPU for them (free: {ray.available_resources()})")
                    continue
                ref = done[0]
                if ref in starting:
                    self._on_started(*starting[ref], ref)
                    continue
                chunk = self._settle(state, ref)
                try:
                    results, seconds = ray.get(ref)
                except self._lost_errors as exc:
                    for item, value in self._lost(state, chunk, _first_line(exc)):
                        remaining -= 1
                        yield item, value
                    continue
                waited_since = time.monotonic()
                if results and len(results) == len(chunk.work) and all(ok for ok, _ in results):
                    each = seconds / len(results)
                    self._item_s = each if self._item_s is None else 0.7 * self._item_s + 0.3 * each
                # An actor stops a chunk at its first error: fewer results than items, the last one an error.
                for (_, item, _), (ok, value) in zip(chunk.work, results, strict=False):
                    if not ok:
                        raise value
                    remaining -= 1
                    yield item, value
        finally:
            # A consumer that stops early (or an error): the calls still in flight are cancelled, but one that
            # runs goes on until its current item ends, so it weighs on its actor until then (``_reap``).
            for ref in list(state.inflight):
                chunk = state.inflight.pop(ref)
                with self._lock:
                    self._orphans[ref] = (chunk.slot, chunk.gen)
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 120 else text[:120] + "..."
