"""verl's per-sample reward function: check and measure one completion in effirl's sandbox, on Ray.

Why it exists: verl's reward loop calls ``compute_score(data_source, solution_str, ground_truth, extra_info,
**reward_kwargs)`` once per completion, in its reward workers, while rollouts are still running. This function
is that call: it finds the completion's task (``extra_info.task_id``, written by ``effirl data verl``), checks
the program on the task's tests and on the group's performance inputs, measures a passing one on every
performance input, and returns its status and count as extra info, and as the score that carries them to the
group step (:func:`effirl.training.verl.group.encode_score`).

Where the work runs: checks and measurements go to sandbox actors on the cluster's CPU nodes (the Ray
executor, :mod:`effirl.execution.ray_pool`; the judge runs in those actors, beside their fork servers). Every
reward worker process of the run shares one set of actors (``ExecutorConfig.share``): a native set for checks
and input generation (a few, ``check_actors``) and a metered one for counts (one per CPU), all with the same
meter.

The performance inputs of a group: fresh for every prompt of every step and the same for all ``n`` completions
of one prompt: their seed is ``run_seed(inputs_seed, h(uid))``, ``uid`` being verl's prompt id in the step
(passed in ``extra_info`` by effirl's reward manager), and a generator with a seed gives the same inputs in
every process. Each reward worker process generates them once per uid and task (and keeps the last few
hundred).

Settings come from verl's ``reward.custom_reward_function.reward_kwargs`` (:class:`VerlRewardSettings`).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from effirl.errors import EffirlError
from effirl.execution import judge
from effirl.execution.checking import ExpectedOutputs
from effirl.execution.config import SandboxConfig
from effirl.execution.executor import ExecutorConfig, make_pool
from effirl.execution.measuring import MeasureItem, PerfInput, measure_one
from effirl.execution.verdict import Status, Verdict
from effirl.execution.worker import Worker
from effirl.inputs.calibration import default_scales
from effirl.inputs.perf import PerfInputSet, resolve_perf_inputs, run_seed
from effirl.tasks import Task, by_id, load
from effirl.training.verl.group import encode_score

log = logging.getLogger(__name__)
INPUTS_KEPT = 512  # (task, seed) input sets a reward worker keeps: several steps' groups
WORKER_DIED = "WorkerDied"
# What verl itself may pass a reward function besides the reward_kwargs (a reward model's router, ...).
VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer", "sandbox_fusion_url",
                         "concurrent_semaphore", "memory_limit_mb"})


class VerlRewardSettings(BaseModel):
    """What ``compute_score`` runs with (verl's ``reward.custom_reward_function.reward_kwargs``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite: str | None = None  # None: the one ``effirl data verl`` wrote in extra_info
    source: str | None = None  # a local file or folder of the suite on the reward workers' nodes
    meter: Literal["callgrind", "perf", "cputime"] = "callgrind"
    inputs_seed: int = 0  # base seed of the performance inputs (per group: run_seed(inputs_seed, h(uid)))
    executor: Literal["ray", "local"] = "ray"
    address: str | None = None  # only outside a Ray cluster (verl's workers are already connected)
    share: str = Field(default="verl", pattern=r"^[A-Za-z0-9_.-]+$")  # the name of the shared actor sets
    actors: int | None = Field(default=None, ge=1)  # metered actors (None: one per CPU of the nodes)
    check_actors: int | None = Field(default=None, ge=1)  # native actors (None: one per 8 CPUs, at least 1)
    node_resource: str | None = None  # place the actors only on nodes with this custom Ray resource
    test_timeout_s: float = Field(default=4.0, gt=0)
    total_timeout_s: float = Field(default=60.0, gt=0)
    memory_mb: int = Field(default=2048, ge=64)
    isolation: Literal["auto", "namespaces", "none"] = "auto"


def settings_from(kwargs: Mapping[str, Any]) -> VerlRewardSettings:
    """The settings of ``reward_kwargs``; one line naming the key when one is wrong."""
    try:
        return VerlRewardSettings(**dict(kwargs))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise EffirlError(f"reward.custom_reward_function.reward_kwargs.{key}: {err['msg']}") from None


@dataclass(frozen=True)
class Scored:
    """What the sandbox concluded about one completion."""

    status: Status
    counts: list[float] | None = None  # one per performance input (passing completions)
    error: str | None = None

    @property
    def count(self) -> float | None:
        return sum(self.counts) if self.status.passed and self.counts else None


# -- what runs in the sandbox actors -------------------------------------------------------------------------

_EXPECTED = ExpectedOutputs()  # per process: an actor resolves each task's expected outputs once


@dataclass
class _Inputs:
    task: Task
    seed: int
    scale: int | None


@dataclass
class _Check:
    task: Task
    code: str
    perf: list[PerfInput]
    seed: int
    sandbox_seed: int


def _resolve(worker: Worker, job: _Inputs) -> PerfInputSet | str:
    try:
        return resolve_perf_inputs(worker, job.task, job.seed, job.scale)
    except Exception as exc:  # noqa: BLE001 - reported as the group's inputs error
        return f"{type(exc).__name__}: {exc}"


def _check(worker: Worker, job: _Check) -> Verdict:
    """The task's tests and the group's checked performance inputs in one fresh child, judged in the actor."""
    t = job.task
    tests = _EXPECTED.get(worker, t)
    checked = [p for p in job.perf if p.checked]
    inputs = tests.inputs + [p.args for p in checked]
    expected = tests.expected + [p.expected for p in checked]
    key = f"{tests.key}:verl:{job.seed}" if checked else tests.key
    return judge.run_tests(worker, job.code, t.entry_point, t.entry_kind.value, inputs, expected, atol=t.atol,
                           inputs_key=key, checker=t.checker, seed=job.sandbox_seed)


# -- the scorer of one reward worker process -----------------------------------------------------------------


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: PerfInputSet | str | None = None


class VerlScorer:
    """The sandbox pools and caches of one reward worker process, for one suite; thread-safe."""

    def __init__(self, settings: VerlRewardSettings, suite: str, source: str | None) -> None:
        from effirl.meters import select_meter

        self.settings = settings
        self.suite, self.source = suite, source
        self.tasks = by_id(load(suite, source))
        self.scales = default_scales(suite, source)
        # With Ray the meter works on the sandbox nodes, not necessarily here: the pool asks every node first.
        remote = settings.executor == "ray"
        ok = (lambda: (True, "")) if remote else None
        probes = {"perf_probe": ok, "callgrind_probe": ok} if remote else {}
        self.meter = select_meter(settings.meter, **probes)
        box = SandboxConfig(test_timeout_s=settings.test_timeout_s, total_timeout_s=settings.total_timeout_s,
                            memory_mb=settings.memory_mb, isolation=settings.isolation)
        self.sandbox = box.with_imports_of(t.checker for t in self.tasks.values())
        self._lock = threading.Lock()
        self._native: Any = None
        self._metered: Any = None
        self._inputs: OrderedDict[tuple[str, int], _Pending] = OrderedDict()

    def _executor(self, metered: bool) -> ExecutorConfig | None:
        s = self.settings
        if s.executor == "local":
            return None
        if metered:
            # Counts meet only the counts of the same step: the nodes must agree with one another, not with
            # this reward worker (on a GPU node, without valgrind, say).
            return ExecutorConfig(kind="ray", address=s.address, actors=s.actors,
                                  node_resource=s.node_resource, share=s.share, match_driver=False)
        # A few check actors, each reserving a tenth of a CPU: checks are short, counts take the CPUs.
        actors = s.check_actors or max(1, int(_cluster_cpus(s) // 8))
        return ExecutorConfig(kind="ray", address=s.address, actors=actors, cpus_per_actor=0.1,
                              node_resource=s.node_resource, share=s.share)

    @property
    def native(self) -> Any:
        with self._lock:
            if self._native is None:
                self._native = make_pool(self.sandbox, None, self._executor(False))
            return self._native

    @property
    def metered(self) -> Any:
        with self._lock:
            if self._metered is None:
                self._metered = make_pool(self.sandbox, self.meter, self._executor(True))
            return self._metered

    def close(self) -> None:
        with self._lock:
            pools, self._native, self._metered = (self._native, self._metered), None, None
        for pool in pools:
            if pool is not None:
                pool.close()

    def inputs(self, task: Task, seed: int) -> PerfInputSet | str:
        """The performance inputs of ``task`` for the group of ``seed`` (made once, by the first caller)."""
        key = (task.id, seed)
        with self._lock:
            pending = self._inputs.get(key)
            mine = pending is None
            if mine:
                pending = self._inputs[key] = _Pending()
                while len(self._inputs) > INPUTS_KEPT:
                    self._inputs.popitem(last=False)
        assert pending is not None
        if mine:
            try:
                job = _Inputs(task, seed, self.scales.get(task.id))
                pending.value = self._run(self.native, _resolve, job)
            finally:
                pending.done.set()
        else:
            pending.done.wait()
        return pending.value if pending.value is not None else "the inputs could not be made"

    @staticmethod
    def _run(pool: Any, fn: Any, item: Any) -> Any:
        """``fn(worker, item)`` on ``pool``, once more if the sandbox worker died under it."""
        for attempt in range(2):
            _, result = next(iter(pool.map(fn, [item])))
            verdict = result.verdict if isinstance(result, judge.MeasureResult) else result
            if not (isinstance(verdict, Verdict) and verdict.error_type == WORKER_DIED) or attempt:
                return result
        return result

    def score(self, task_id: str, response: str, seed: int) -> Scored:
        """Check and measure one completion of ``task_id`` on the inputs of the group of ``seed``."""
        from effirl.training.reward import program_of

        task = self.tasks.get(task_id)
        if task is None:
            raise EffirlError(f"verl batch: extra_info.task_id {task_id!r} is not a task of suite "
                              f"{self.suite!r} ({len(self.tasks)} tasks)")
        code = program_of(task, response)
        if code is None:
            return Scored(Status.FORMAT_ERROR, error="no parseable Python code in the response")
        inputs = self.inputs(task, seed)
        if isinstance(inputs, str):
            raise EffirlError(f"{task_id}: the performance inputs of this group could not be made: {inputs}")
        verdict = self._run(self.native, _check, _Check(task, code, inputs.inputs, seed, self.sandbox.seed))
        if not verdict.passed:
            return Scored(verdict.status, error=verdict.error_message)
        if not inputs.inputs:
            return Scored(Status.RUNTIME_ERROR, error="the task has no performance input")
        counts = []
        for i, perf in enumerate(inputs.inputs):
            item = MeasureItem(f"{task_id}:{seed}", task, code, i, perf, 0, self.sandbox.seed)
            got = self._run(self.metered, measure_one, item)
            if not got.verdict.passed or got.value is None:
                why = f"on performance input {i}: {got.verdict.error_message}"
                return Scored(got.verdict.status, error=why)
            counts.append(float(got.value))
        return Scored(Status.PASS, counts=counts)


def _cluster_cpus(settings: VerlRewardSettings) -> float:
    from effirl.execution.ray_pool import connect

    ray = connect(ExecutorConfig(kind="ray", address=settings.address))
    want = settings.node_resource
    return sum(n["Resources"].get("CPU", 0) for n in ray.nodes()
               if n.get("Alive") and (want is None or n["Resources"].get(want, 0) > 0))


_SCORERS: dict[tuple[VerlRewardSettings, str, str | None], VerlScorer] = {}
_SCORERS_LOCK = threading.Lock()


@atexit.register
def _close_scorers() -> None:
    """Stop this process's sandbox pools when it exits (shared Ray actors are left to the other processes)."""
    with _SCORERS_LOCK:
        scorers = list(_SCORERS.values())
        _SCORERS.clear()
    for s in scorers:
        s.close()


def scorer(settings: VerlRewardSettings, suite: str, source: str | None) -> VerlScorer:
    """This process's scorer for ``settings`` and suite (made on first use, kept for the run)."""
    key = (settings, suite, source)
    with _SCORERS_LOCK:
        found = _SCORERS.get(key)
        if found is None:
            found = _SCORERS[key] = VerlScorer(settings, suite, source)
        return found


def group_seed(base_seed: int, uid: Any) -> int:
    """The inputs seed of the group of verl's prompt id ``uid`` (the same in every process)."""
    if uid is None:
        return run_seed(base_seed, 0)
    step = int.from_bytes(hashlib.sha256(str(uid).encode()).digest()[:7], "big")
    return run_seed(base_seed, step)


def compute_score(data_source: str, solution_str: str, ground_truth: Any = None,
                  extra_info: Mapping[str, Any] | None = None, **reward_kwargs: Any) -> dict[str, Any]:
    """verl's reward function: one completion's status and count, and the score that carries them.

    Returns ``{"score", "status", "count", "acc", "task_id"}`` (verl logs every key but ``score`` as the
    sample's reward extra info). A row without ``extra_info.task_id`` is one error line naming the field.
    """
    info = dict(extra_info or {})
    task_id = info.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise EffirlError("verl batch: a row has no extra_info.task_id (data field extra_info.task_id); "
                          "write the training data with `effirl data verl --suite S --out DIR`")
    settings = settings_from({k: v for k, v in reward_kwargs.items() if k not in VERL_KWARGS})
    suite = settings.suite or info.get("suite")
    if not isinstance(suite, str) or not suite:
        raise EffirlError("verl batch: no suite (data field extra_info.suite, or reward_kwargs.suite)")
    source = settings.source if settings.source is not None else info.get("source")
    seed = group_seed(settings.inputs_seed, info.get("uid"))
    got = scorer(settings, suite, source).score(task_id, solution_str or "", seed)
    count = got.count
    return {"score": encode_score(got.status, count), "status": got.status.value,
            "count": float(count) if count is not None else None, "acc": 1.0 if got.status.passed else 0.0,
            "task_id": task_id}
