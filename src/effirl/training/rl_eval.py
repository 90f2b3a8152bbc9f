"""The periodic evaluation of a policy in RL training: pass@1, DPS_norm and mean reward every K steps.

Why it exists: the paper's training curves (pass@1, efficiency, reward against the step) need the policy
scored the same way at every point of a run, cheaply enough for the CPU miniature, and on inputs the training
never saw. Each evaluation:

* samples from the model in memory (no checkpoint is written for it), through the same prompt templates and
  the ``transformers`` backend of ``effirl generate``, with seeds fixed per (task, sample) so that two steps
  differ only by the policy; the trainer's random state is left as it was;
* scores the samples with ``effirl evaluate`` (:func:`effirl.evaluation.evaluate`) with the reward's meter,
  sandbox and generator scales, on performance inputs of the evaluation's own seed (by default
  ``run_seed(reward.inputs_seed, -1)``: training steps draw ``run_seed(reward.inputs_seed, step >= 0)``);
* reuses the task references measured once per run in ``OUT/eval/references/`` (same meter, same inputs: their
  counts do not change between steps), copied into each step's folder, where ``evaluate`` finds them done;
* leaves ``OUT/eval/step-N/`` (samples, results, summary, report) and adds ``eval/pass@1``, ``eval/dps_norm``,
  ``eval/reward``, ... to the trainer's log line of step N, hence to ``OUT/metrics.jsonl`` and every tracker.

It runs on the main process only, while the others wait at their next collective; it needs the whole model
there (not ZeRO-3 or FSDP shards).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from effirl.batch import RunSpec
from effirl.evaluation import EvalConfig, evaluate
from effirl.evaluation.references import measure_references, share_references, write_reference_samples
from effirl.generation.backends.base import Backend
from effirl.generation.config import GenerateConfig, TransformersOptions
from effirl.generation.prompts import Templates
from effirl.generation.sampler import generate
from effirl.inputs.perf import run_seed
from effirl.tasks import Task
from effirl.training.metrics import read_metrics
from effirl.training.rl_config import EvalSettings

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
EVAL_DIR = "eval"
REFERENCES_DIR = "references"
SAMPLES = "samples.jsonl"
PREFIX = "eval/"
EVAL_STEP = -1  # the run_seed "step" of the evaluation's inputs: no training step draws it
KEYS = ("pass@1", "dps_norm", "reward", "dps", "beyond", "n_tasks", "n_samples", "n_passed", "seconds")


def eval_inputs_seed(settings: EvalSettings, reward_inputs_seed: int) -> int:
    """The evaluation's performance-input seed: the configured one, else one no training step draws."""
    if settings.inputs_seed is not None:
        return settings.inputs_seed
    return run_seed(reward_inputs_seed, EVAL_STEP)


def step_folder(out: Path, step: int) -> Path:
    return out / EVAL_DIR / f"step-{step:06d}"


@contextlib.contextmanager
def _kept_random_state(model: Any) -> Iterator[None]:
    """Sampling for the evaluation leaves the random state of training (CPU and the model's GPU) untouched."""
    import torch

    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else None
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        yield


class PolicyEvaluator:
    """Evaluates a model in memory on fixed tasks; see the module doc. ``backend(model, tokenizer)`` makes the
    generation backend (default: ``transformers`` around the model, which stays where it is)."""

    def __init__(self, out: Path, tasks: Sequence[Task], spec: RunSpec, generate_config: GenerateConfig,
                 templates: Templates, eval_config: EvalConfig, progress: Progress | None = None,
                 backend: Callable[[Any, Any], Backend] | None = None) -> None:
        if not tasks:
            raise ValueError("no evaluation tasks")
        self.out = out
        self.tasks = list(tasks)
        self.spec = spec
        self.generate_config = generate_config
        self.templates = templates
        self.eval_config = eval_config
        self.progress = progress
        self.backend = backend or _transformers_backend
        self.references = out / EVAL_DIR / REFERENCES_DIR
        self._references_ready = False

    def _phase(self, name: str) -> Progress:
        progress = self.progress

        def report(phase: str, done: int, total: int) -> None:
            if progress is not None:
                progress(f"{name} {phase}", done, total)

        return report

    def measure_references(self) -> None:
        """The references of the evaluation tasks, measured once per run (resumed if interrupted)."""
        if self._references_ready:
            return
        layout = write_reference_samples(self.references, self.tasks)
        measure_references(replace(self.spec, out=self.references), layout, self._phase("eval"))
        self._references_ready = True

    def run(self, model: Any, tokenizer: Any, step: int) -> dict[str, float | int | None]:
        """Sample from ``model``, score, and return the ``eval/...`` metrics of ``step``."""
        start = time.monotonic()
        self.measure_references()
        folder = step_folder(self.out, step)
        if folder.exists():  # left by a run that stopped before its next checkpoint: another policy's samples
            shutil.rmtree(folder)
        share_references(self.references, folder)
        backend = self.backend(model, tokenizer)
        with _kept_random_state(model):
            generate(self.generate_config, self.tasks, folder / SAMPLES, backend=backend,
                     templates=self.templates, progress=self._phase("eval"))
        summary = evaluate(replace(self.spec, out=folder, samples=folder / SAMPLES), self._phase("eval"),
                           self.eval_config)
        o = summary.overall
        values: dict[str, float | int | None] = {
            "pass@1": o.pass_at_1, "dps_norm": o.dps_norm, "reward": o.mean_reward, "dps": o.dps,
            "beyond": o.beyond, "n_tasks": o.n_tasks, "n_samples": o.n_samples, "n_passed": o.n_passed,
            "seconds": round(time.monotonic() - start, 3)}
        log.info("evaluation at step %d: pass@1 %s, DPS_norm %s, mean reward %s (%s)", step,
                 _fmt(o.pass_at_1), _fmt(o.dps_norm), _fmt(o.mean_reward), folder)
        return {PREFIX + k: values[k] for k in KEYS}


def _transformers_backend(model: Any, tokenizer: Any, batch_size: int = 16) -> Backend:
    """The ``transformers`` backend around the model in training (it restores the model's train mode)."""
    from effirl.generation.backends.hf import TransformersBackend

    return TransformersBackend(model, tokenizer, batch_size=batch_size)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def make_evaluator(out: Path, tasks: Sequence[Task], settings: EvalSettings, *, suite: str,
                   source: str | None, model_label: str, strategy: str, prompt_file: Path | None,
                   templates: Templates, seed: int, max_new_tokens: int, meter: Any, sandbox: Any,
                   scales: dict[str, int], reward: Any, reward_inputs_seed: int, executor: Any,
                   progress: Progress | None = None) -> PolicyEvaluator:
    """The evaluator of an RL run's config (tasks in suite order, as ``evaluate`` lists their references)."""
    spec = RunSpec(suite=suite, out=out / EVAL_DIR, source=source, meter=meter, sandbox=sandbox,
                   inputs_seed=eval_inputs_seed(settings, reward_inputs_seed), scales=dict(scales),
                   executor=executor)
    gen = GenerateConfig(model=model_label, backend="transformers", strategy=strategy, n=settings.n,
                         temperature=settings.temperature, top_p=settings.top_p,
                         max_new_tokens=settings.max_new_tokens or max_new_tokens, seed=seed,
                         prompt_file=prompt_file,
                         transformers=TransformersOptions(batch_size=settings.batch_size))
    return PolicyEvaluator(out, tasks, spec, gen, templates,
                           EvalConfig(reward=reward, min_correct=settings.min_correct), progress,
                           functools.partial(_transformers_backend, batch_size=settings.batch_size))


class PeriodicEvaluation(TrainerCallback):
    """Runs a :class:`PolicyEvaluator` at step 0 (``at_start``), every ``every`` steps and at the last step
    (``at_end``), on the main process; its metrics join the trainer's log line of that step (see
    :class:`LogsEvaluations`, which the trainer must mix in: :meth:`attach` checks it)."""

    def __init__(self, evaluator: PolicyEvaluator, settings: EvalSettings, tokenizer: Any,
                 metrics: Path) -> None:
        self.evaluator = evaluator
        self.settings = settings
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.trainer: Any = None
        self._pending: dict[str, float | int | None] = {}

    def attach(self, trainer: Any) -> None:
        if not isinstance(trainer, LogsEvaluations):
            raise TypeError("the trainer must mix in LogsEvaluations for the evaluation to reach its logs")
        self.trainer = trainer
        trainer.effirl_evaluation = self

    def due(self, step: int, max_steps: int) -> bool:
        every = self.settings.every
        return every > 0 and (step % every == 0 or (self.settings.at_end and step == max_steps))

    def take(self) -> dict[str, float | int | None]:
        """The metrics of the evaluation made at this step, once."""
        out, self._pending = self._pending, {}
        return out

    def _evaluated(self, step: int) -> bool:
        return any(r.get("step") == step and PREFIX + "pass@1" in r for r in read_metrics(self.metrics))

    def _evaluate(self, model: Any, step: int) -> None:
        self._pending = self.evaluator.run(model, self.tokenizer, step)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not (state.is_world_process_zero and self.settings.every > 0 and self.settings.at_start):
            return
        if state.global_step != 0 or self._evaluated(0):
            return
        self._evaluate(self.trainer.model, 0)
        self.trainer.log({})  # a log line of step 0 that carries the metrics (LogsEvaluations)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.due(state.global_step, state.max_steps):
            return
        if state.is_world_process_zero:
            self._evaluate(self.trainer.model, state.global_step)
        # This step's log line carries the metrics, whatever logging_steps says; every process must log it
        # (the log gathers the loss over processes).
        control.should_log = True


class LogsEvaluations:
    """Mix-in for a TRL trainer: the metrics of an evaluation made at this step join the step's log line (so
    ``state.log_history``, ``metrics.jsonl`` and every ``report_to`` tracker get them)."""

    effirl_evaluation: PeriodicEvaluation | None = None

    def log(self, logs: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if self.effirl_evaluation is not None:
            logs.update(self.effirl_evaluation.take())
        super().log(logs, *args, **kwargs)  # type: ignore[misc]
