"""The online correctness-and-efficiency reward, as a plain callable with TRL's reward-function signature.

Why it exists: stage 2 of the paper (RLOO, GRPO, GRPO with Round) scores each completion against the other
completions of its prompt in the same step: the fastest passing one 2.0, the slowest 1.0, failing 0, no entry
point -0.5, unparseable -1.5, speed being the instruction count N on high-contrast inputs (C = -ln N). This
callable joins the sandbox, the meters, the performance inputs and the group-reward formula
(:func:`effirl.scoring.reward.group_rewards`) into what a trainer calls once per step::

    reward = EfficiencyReward(suite="builtin", meter="callgrind")
    trainer = GRPOTrainer(model=..., reward_funcs=reward, train_dataset=dataset_with_a_task_id_column, ...)

Per call: the completions are grouped by prompt (and task); every completion is checked on its task's tests
and on the step's *fresh* performance inputs (new generator inputs every step, seeded by the trainer's step,
with expected outputs from the task's trusted fastest reference, run in the sandbox: a table of answers for
known inputs is worth nothing); every passing one is measured, and every measured output is checked again (a
program that detects the measurement and answers anything then gets a wrong answer, not a smaller count);
identical programs (the exact same program text) of a task are checked and measured once per call (the meter
is deterministic), never cached across calls; the group reward follows (``RewardConfig.round_to``: GRPO with
Round). Only tasks with a generator get fresh inputs: the others keep fixed ones (their dataset's, or their
largest test input), which the reward warns about once at construction (and ``inputs_fresh`` shows per
completion); a task with no performance input at all gives its passing completions ``s_min`` (flagged
``unmeasured``). See :mod:`effirl.training.reward_runs` for the
time budgets and how a dying sandbox worker is handled, and :mod:`effirl.meters.base` for what a count covers
(the program's module body and call, not the installed modules it imports).

It keeps two warm sandbox pools for the whole run (closed by :meth:`close` or a ``with`` block), the details
of its last call (:attr:`last_details`), and reports pass rate, format and no-entry rates, mean log-count and
the reward spread through TRL's ``log_metric`` hook.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from effirl.errors import EffirlError
from effirl.execution.config import SandboxConfig
from effirl.execution.parse import defines, normalized, program_from_sample
from effirl.execution.verdict import Status
from effirl.inputs.calibration import resolve_scales
from effirl.inputs.perf import run_seed
from effirl.meters.base import Meter
from effirl.meters.select import select_meter
from effirl.scoring.reward import RewardConfig, group_rewards
from effirl.tasks import Task, by_id, load
from effirl.training.reward_config import EfficiencyRewardConfig
from effirl.training.reward_groups import Entry, check_groups_whole, groups_of, read_batch
from effirl.training.reward_runs import CallTimes, Outcome, RewardRunner

log = logging.getLogger(__name__)
METRIC_PREFIX = "efficiency/"


@dataclass(frozen=True)
class CompletionDetail:
    """What the last call concluded about one completion (in the call's order)."""

    index: int
    task_id: str
    group: int  # the group's number in the call (groups numbered in order of first appearance)
    status: str
    reward: float
    count: float | None  # instructions (or seconds) over all performance inputs; passing completions only
    counts: list[float] | None  # one per performance input
    inputs_seed: int
    inputs_scale: int | None
    inputs_source: str | None  # generated | dataset | tests
    duplicate_of: int | None = None  # the first completion of the call with the same program (judged once)
    error: str | None = None
    on_perf_input: bool = False  # failed on the step's fresh performance input
    reran: bool = False  # a sandbox worker died under it; its run was repeated
    worker_failure: bool = False  # it failed twice: counted as a failure, not the program's fault
    budget_s: float | None = None  # its measurement budget, in the meter's seconds
    inputs_fresh: bool | None = None  # measured on this call's new generator inputs (False: fixed inputs)
    unmeasured: bool = False  # passed on a task with no performance input this call: no count, reward s_min

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def program_of(task: Task, text: str) -> str | None:
    """The program in a response: a full program (fenced or plain); only when the response holds none, the
    task's
    prompt continued by it (a plain-text completion of the prompt's signature). A complete program without the
    entry point stays what it is (no entry point: -0.5), never a stub of the prompt followed by it."""
    code = program_from_sample(task, {"solution": text})
    if code is not None:
        return code
    continued = program_from_sample(task, {"completion": text})
    if continued is not None and defines(continued, task.entry_point, task.entry_kind) \
            and normalized(continued) != normalized(task.prompt):  # the response added code to the prompt
        return continued
    return None


def _close_runner(runner: RewardRunner) -> None:
    runner.close()


class EfficiencyReward:
    """A TRL reward function: ``reward(prompts=..., completions=..., task_id=[...], ...) -> list[float]``.

    Built once per run (the sandbox pools start on the first call and stay warm); use it as a context manager
    or call :meth:`close`. Keyword arguments are the fields of :class:`EfficiencyRewardConfig`
    (``reward_config`` is its ``reward``); ``meter`` may also be a :class:`~effirl.meters.base.Meter`, and
    ``tasks`` a list of tasks instead of loading ``suite``. ``executor``: an
    :class:`effirl.execution.executor.ExecutorConfig` (Ray).
    """

    __name__ = "efficiency_reward"  # the name TRL logs the reward under (rewards/efficiency_reward/mean)

    def __init__(self, suite: str = "builtin", source: str | None = None, meter: str | Meter = "auto",
                 reward_config: RewardConfig | None = None, workers: int | None = None,
                 fresh_inputs: bool = True, *, inputs_seed: int = 0, calibration: str | None = None,
                 scales: dict[str, int] | None = None, budget_factor: float = 10.0, min_budget_s: float = 1.0,
                 start_allowance_s: float = 0.2, import_allowance_s: float = 0.02,
                 num_generations: int | None = None, sandbox: SandboxConfig | None = None,
                 tasks: Sequence[Task] | None = None, executor: Any = None) -> None:
        self.config = EfficiencyRewardConfig(
            suite=suite, source=source, meter=meter if isinstance(meter, str) else meter.name,
            reward=reward_config or RewardConfig(), workers=workers, fresh_inputs=fresh_inputs,
            inputs_seed=inputs_seed, calibration=calibration, scales=scales, budget_factor=budget_factor,
            min_budget_s=min_budget_s, start_allowance_s=start_allowance_s,
            import_allowance_s=import_allowance_s, num_generations=num_generations,
            sandbox=sandbox or SandboxConfig())
        cfg = self.config
        self.tasks: dict[str, Task] = by_id(list(tasks) if tasks is not None else load(cfg.suite, cfg.source))
        self.meter: Meter = meter if isinstance(meter, Meter) else select_meter(meter)
        scales = resolve_scales(cfg.calibration, cfg.suite, cfg.source)
        unknown = sorted(set(cfg.scales or {}) - set(self.tasks))
        if unknown:
            raise EffirlError(f"scales: unknown task(s) {', '.join(unknown)} in suite {cfg.suite!r}")
        scales.update(cfg.scales or {})
        box = cfg.sandbox if cfg.workers is None else cfg.sandbox.model_copy(update={"workers": cfg.workers})
        self.fixed_input_tasks: list[str] = sorted(t.id for t in self.tasks.values() if not t.generator)
        self.no_input_tasks: list[str] = sorted(t.id for t in self.tasks.values()
                                                if not t.generator and not t.perf_inputs and not t.tests)
        self._warn_fixed_inputs()
        self._runner = RewardRunner(self.tasks, self.meter, box, scales=scales,
                                    budget_factor=cfg.budget_factor, min_budget_s=cfg.min_budget_s,
                                    start_allowance_s=cfg.start_allowance_s,
                                    import_allowance_s=cfg.import_allowance_s, executor=executor)
        self._finalizer = weakref.finalize(self, _close_runner, self._runner)
        self._lock = threading.Lock()
        self._calls = 0
        self._seen_steps: dict[int, int] = {}
        self.last_details: list[CompletionDetail] = []
        self.last_times: CallTimes | None = None
        self.last_seed: int | None = None

    @classmethod
    def from_config(cls, config: EfficiencyRewardConfig, *, tasks: Sequence[Task] | None = None,
                    executor: Any = None) -> EfficiencyReward:
        c = config
        return cls(c.suite, c.source, c.meter, c.reward, c.workers, c.fresh_inputs, inputs_seed=c.inputs_seed,
                   calibration=c.calibration, scales=c.scales, budget_factor=c.budget_factor,
                   min_budget_s=c.min_budget_s, start_allowance_s=c.start_allowance_s,
                   import_allowance_s=c.import_allowance_s, num_generations=c.num_generations,
                   sandbox=c.sandbox, tasks=tasks, executor=executor)

    def _warn_fixed_inputs(self) -> None:
        """Say once that fresh inputs cover only the tasks with a generator (and which have no input at
        all)."""

        def some(ids: list[str]) -> str:
            return ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")

        n, total = len(self.fixed_input_tasks), len(self.tasks)
        if self.config.fresh_inputs and n:
            log.warning("fresh_inputs: %d of %d tasks have no input generator (%s); their performance inputs "
                        "are fixed (the dataset's, or the largest test input) on every call, so a table of "
                        "answers for them is not ruled out", n, total, some(self.fixed_input_tasks))
        if self.no_input_tasks:
            log.warning("%d task(s) have no performance input at all (%s): their passing completions are not "
                        "measured and all get s_min", len(self.no_input_tasks), some(self.no_input_tasks))

    # -- lifecycle
    # ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sandbox pools (a later call starts them again)."""
        self._runner.close()

    def __enter__(self) -> EfficiencyReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.config
        return f"EfficiencyReward(suite={c.suite!r}, meter={self.meter.name!r}, reward={c.reward!r})"

    # -- the call
    # ----------------------------------------------------------------------------------------------
    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 completion_ids: Sequence[Any] | None = None, *, trainer_state: Any = None,
                 log_metric: Callable[[str, float], None] | None = None,
                 log_extra: Callable[[str, list[Any]], None] | None = None, **columns: Any) -> list[float]:
        """One reward per completion, in order (TRL passes the dataset's columns, ``task_id`` among them)."""
        if completions is None:
            raise EffirlError("the efficiency reward needs the completions (TRL passes completions=...)")
        with self._lock:
            return self._score(prompts, completions, columns.get("task_id"), trainer_state, log_metric,
                               log_extra)

    def _seed(self, trainer_state: Any) -> int:
        """This call's inputs seed: ``run_seed(inputs_seed, step)`` from the trainer's step (the call's number
        without a trainer); a second call at the same step gets another seed; fixed when inputs are not
        fresh."""
        self._calls += 1
        if not self.config.fresh_inputs:
            return run_seed(self.config.inputs_seed, 0)
        step = getattr(trainer_state, "global_step", None)
        step = int(step) if isinstance(step, int) else self._calls
        k = self._seen_steps.get(step, 0)
        self._seen_steps = {s: n for s, n in self._seen_steps.items() if s >= step - 8}
        self._seen_steps[step] = k + 1
        base = run_seed(self.config.inputs_seed, step)
        return base if k == 0 else run_seed(base, k)

    def _score(self, prompts: Sequence[Any] | None, completions: Sequence[Any], task_ids: Any,
               trainer_state: Any, log_metric: Callable[[str, float], None] | None,
               log_extra: Callable[[str, list[Any]], None] | None) -> list[float]:
        t0 = time.monotonic()
        cfg = self.config
        entries = read_batch(prompts, completions, task_ids, self.tasks, cfg.suite)
        groups = groups_of(entries)
        check_groups_whole({k: len(v) for k, v in groups.items()}, cfg.num_generations,
                           {k: entries[v[0]].task_id for k, v in groups.items()})
        seed = self._seed(trainer_state)
        codes: list[str | None] = [program_of(self.tasks[e.task_id], e.text) for e in entries]
        # A program's key is its exact text, not its syntax tree: a program can read its own source or line
        # numbers, so two layouts of one tree may behave differently (sampled duplicates are byte-identical).
        first: dict[tuple[str, str], int] = {}  # a program's key -> the first completion with it
        keys: list[tuple[str, str] | None] = []
        for e, code in zip(entries, codes, strict=True):
            key = None if code is None else (e.task_id, code)
            keys.append(key)
            if key is not None:
                first.setdefault(key, e.index)
        programs = {key: (key[0], codes[i]) for key, i in first.items()}
        outcomes, inputs, times = self._runner.run(programs, seed)  # type: ignore[arg-type]

        statuses: list[Status] = []
        counts: list[float | None] = []
        scored: list[float | None] = []  # what the group reward sees: an unmeasured pass ties with the others
        for key in keys:
            if key is None:
                statuses.append(Status.FORMAT_ERROR)
                counts.append(None)
                scored.append(None)
                continue
            o = outcomes[key]
            statuses.append(o.status)
            counts.append(sum(o.counts) if o.status.passed and o.counts else None)
            scored.append(1.0 if o.status.passed and o.unmeasured else counts[-1])
        rewards = [0.0] * len(entries)
        for members in groups.values():
            got = group_rewards([statuses[i] for i in members], [scored[i] for i in members], cfg.reward)
            for i, r in zip(members, got, strict=True):
                rewards[i] = r
        self.last_details = self._details(entries, groups, keys, first, outcomes, inputs, statuses, counts,
                                          rewards, seed)
        self.last_times, self.last_seed = times, seed
        self._log(groups, statuses, counts, rewards, times, time.monotonic() - t0, len(programs), log_metric,
                  log_extra)
        return rewards

    def _details(self, entries: list[Entry], groups: dict[str, list[int]], keys: list[tuple[str, str] | None],
                 first: dict[tuple[str, str], int], outcomes: dict[Any, Outcome], inputs: dict[str, Any],
                 statuses: list[Status], counts: list[float | None], rewards: list[float],
                 seed: int) -> list[CompletionDetail]:
        number = {g: n for n, g in enumerate(groups)}
        out = []
        for e, key in zip(entries, keys, strict=True):
            o = outcomes.get(key) if key is not None else None
            ins = inputs.get(e.task_id)
            dup = first[key] if key is not None and first[key] != e.index else None
            error = "no parseable Python code in the response" if key is None else (o.error if o else None)
            out.append(CompletionDetail(
                index=e.index, task_id=e.task_id, group=number[e.group], status=statuses[e.index].value,
                reward=rewards[e.index], count=counts[e.index],
                counts=list(o.counts) if o is not None and o.counts and o.status.passed else None,
                inputs_seed=seed, inputs_scale=getattr(ins, "scale", None),
                inputs_source=getattr(ins, "source", None), duplicate_of=dup, error=error,
                on_perf_input=bool(o and o.on_perf_input), reran=bool(o and o.reran),
                worker_failure=bool(o and o.worker_failure), budget_s=o.budget_s if o else None,
                inputs_fresh=None if ins is None else self.config.fresh_inputs and ins.source == "generated",
                unmeasured=bool(o and o.unmeasured)))
        return out

    def _log(self, groups: dict[str, list[int]], statuses: list[Status], counts: list[float | None],
             rewards: list[float], times: CallTimes, wall_s: float, distinct: int,
             log_metric: Callable[[str, float], None] | None,
             log_extra: Callable[[str, list[Any]], None] | None) -> None:
        n = len(statuses)
        logs = [math.log(c) for c, s in zip(counts, statuses, strict=True) if s.passed and c and c > 0]
        spreads = [max(rewards[i] for i in m) - min(rewards[i] for i in m) for m in groups.values()]
        metrics = {
            "pass_rate": sum(s.passed for s in statuses) / n if n else 0.0,
            "format_error_rate": sum(s is Status.FORMAT_ERROR for s in statuses) / n if n else 0.0,
            "no_entry_rate": sum(s is Status.NO_ENTRY_POINT for s in statuses) / n if n else 0.0,
            "mean_log_count": statistics.fmean(logs) if logs else float("nan"),
            "reward_spread": statistics.fmean(spreads) if spreads else 0.0,
            "distinct_programs": float(distinct),
            "worker_failures": float(sum(d.worker_failure for d in self.last_details)),
            "seconds": wall_s,
            "inputs_seconds": times.inputs_s,
            "check_seconds": times.check_s,
            "measure_seconds": times.measure_s,
        }
        log.info("efficiency reward: %d completions in %d groups, %d distinct programs, pass rate %.2f, "
                 "%.1f s (inputs %.1f, check %.1f, measure %.1f)", n, len(groups), distinct,
                 metrics["pass_rate"], wall_s, times.inputs_s, times.check_s, times.measure_s)
        if log_metric is not None:
            for name, value in metrics.items():
                if not (isinstance(value, float) and math.isnan(value)):
                    log_metric(METRIC_PREFIX + name, float(value))
        if log_extra is not None:
            log_extra("efficiency_status", [s.value for s in statuses])
            log_extra("efficiency_count", [c if c is not None else float("nan") for c in counts])
