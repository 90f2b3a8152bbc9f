"""Building and running an RL trainer (TRL's ``RLOOTrainer`` or ``GRPOTrainer``) with the efficiency reward.

Why it exists: the two RL commands differ in one TRL class and a few keys; everything else is done once here:
the training prompts and the evaluation split, the batch geometry in the paper's terms turned into TRL's (and
refused, in one line naming the settings, when a prompt's completions would be split across processes: the
group reward of part of a group is wrong, trl issue #3896), the reward built from the config (its meter
checked before any model is loaded), the completion budget fitted to the model's context, the periodic
evaluation, checkpoints and resume (:mod:`effirl.training.common`), and the run's curves.

On a GPU the same code trains on CUDA in bf16 (:func:`effirl.training.common.start` picks device and dtype).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError
from effirl.execution.config import SandboxConfig
from effirl.generation.prompts import Templates, load_templates
from effirl.generation.strategies import evaluation_seed
from effirl.inputs.calibration import resolve_scales
from effirl.tasks import Task, load
from effirl.training.common import (
    SUMMARY,
    Progress,
    callbacks,
    first_line,
    load_model,
    load_tokenizer,
    peft_config,
    progress_callback,
    start,
    train_and_save,
    trainer_arguments,
    world_size,
)
from effirl.training.metrics import METRICS
from effirl.training.reward import EfficiencyReward
from effirl.training.reward_config import EfficiencyRewardConfig
from effirl.training.rl_config import RLConfig
from effirl.training.rl_curves import CURVES_PLOT, eval_rows, plot_rl_curves
from effirl.training.rl_data import PROMPT, TASK_ID, TaskSplit, check_dataset, rl_dataset, split_tasks
from effirl.training.rl_eval import LogsEvaluations, PeriodicEvaluation, make_evaluator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Geometry:
    """The paper's batch terms (prompts per step and per update) in TRL's (completions per pass, process)."""

    processes: int
    accumulation: int  # gradient_accumulation_steps: passes per optimizer update
    steps_per_generation: int  # passes per rollout (TRL's steps_per_generation)
    completions_per_step: int  # batch_size x num_generations
    completions_per_update: int  # mini_batch_size x num_generations
    completions_per_process: int  # what each process generates and scores per rollout

    @property
    def updates_per_step(self) -> int:
        return self.steps_per_generation // self.accumulation


def geometry(cfg: RLConfig, processes: int) -> Geometry:
    """TRL's batch settings for ``cfg`` on ``processes`` processes; one clear line when they cannot be met."""
    g, per_pass = cfg.num_generations, cfg.per_device_batch_size * processes
    update = cfg.mini_batch_size * g
    if update % per_pass:
        raise EffirlError(f"mini_batch_size x num_generations ({cfg.mini_batch_size} x {g} = {update} "
                          f"completions per update) must be a multiple of per_device_batch_size x processes "
                          f"({cfg.per_device_batch_size} x {processes} = {per_pass}) to make whole updates")
    accumulation = update // per_pass
    steps = accumulation * (cfg.batch_size // cfg.mini_batch_size)
    share = cfg.per_device_batch_size * steps
    if share % g:
        raise EffirlError(f"the completions of one prompt would be split across processes: each of the "
                          f"{processes} processes would generate and score {share} completions per step, "
                          f"not a multiple of num_generations ({g}), and a group reward on part of a "
                          f"group is wrong (trl issue #3896); make batch_size ({cfg.batch_size} prompts) a "
                          f"multiple of the number of processes ({processes})")
    return Geometry(processes, accumulation, steps, cfg.batch_size * g, update, share)


def fit_batch(cfg: RLConfig, prompts: int, processes: int = 1) -> RLConfig:
    """``cfg`` with a step of at most ``prompts`` prompts: the paper's 64 (in updates of 32) is more than a
    small suite has. Sizes the config chose are kept (and refused if they cannot work); defaults are scaled
    down, keeping the number of updates per step, and the default pass of ``per_device_batch_size``
    completions is cut until whole updates are made of whole passes."""
    chosen = cfg.model_fields_set
    update: dict[str, int] = {}
    if prompts < cfg.batch_size:
        if {"batch_size", "mini_batch_size"} & chosen:
            raise EffirlError(f"batch_size is {cfg.batch_size} prompts per step, but the training set has "
                              f"only {prompts}; lower batch_size (and mini_batch_size) or add tasks")
        updates = cfg.batch_size // cfg.mini_batch_size
        mini = max(1, prompts // updates)
        batch = mini * updates if mini * updates <= prompts else mini
        log.info("batch_size %d is more than the %d training prompts: %d prompts per step in updates of %d",
                 cfg.batch_size, prompts, batch, mini)
        update.update(batch_size=batch, mini_batch_size=mini)
    completions = update.get("mini_batch_size", cfg.mini_batch_size) * cfg.num_generations
    per_device = cfg.per_device_batch_size
    if "per_device_batch_size" not in chosen and completions % (per_device * processes):
        fits = [d for d in range(per_device, 0, -1) if completions % (d * processes) == 0]
        if fits:
            update["per_device_batch_size"] = fits[0]
    return cfg.model_copy(update=update) if update else cfg


def reward_scales(r: EfficiencyRewardConfig) -> dict[str, int]:
    """The generator scale per task the reward uses (calibration file, else the suite's shipped one, then the
    explicit ``scales``): the evaluation measures at the same scales."""
    scales = resolve_scales(r.calibration, r.suite, r.source)
    scales.update(r.scales or {})
    return scales


def local_processes() -> int:
    """Training processes on this machine (``accelerate launch`` / ``torchrun`` set LOCAL_WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def make_reward(cfg: RLConfig, suite_tasks: list[Task]) -> EfficiencyReward:
    """The efficiency reward of ``cfg`` (an unavailable meter is one line listing those that work here).

    Every training process holds its own reward and sandbox pools: without an explicit ``reward.workers``, the
    machine's CPUs are shared out between the processes on it instead of each one taking them all.
    """
    config = cfg.reward
    here = local_processes()
    if config.workers is None and here > 1 and cfg.executor.kind == "local":
        workers = max(1, (os.cpu_count() or 1) // here)
        log.info("%d training processes on this machine: %d sandbox workers each", here, workers)
        config = config.model_copy(update={"workers": workers})
    return EfficiencyReward.from_config(config, tasks=suite_tasks, executor=cfg.executor)


def _context(model: Any) -> int | None:
    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "max_position_embeddings", None)
    return n if isinstance(n, int) and n > 0 else None


def completion_budget(max_completion_length: int, dataset: Any, tokenizer: Any, model: Any) -> int:
    """``max_completion_length``, cut to what the model's context leaves after the longest prompt (said when
    cut); a prompt that does not fit at all is one line naming its task."""
    context = _context(model)
    if context is None:
        return max_completion_length
    longest, where = 0, ""
    for row in dataset:
        prompt = row[PROMPT]
        text = prompt if isinstance(prompt, str) else tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n > longest:
            longest, where = n, str(row[TASK_ID])
    if longest >= context:
        raise EffirlError(f"the prompt of task {where} is {longest} tokens, the model's context {context}: "
                          "leave the task out (tasks) or use a model with a longer context")
    room = context - longest
    if max_completion_length > room:
        log.info("max_completion_length %d cut to %d: the model's context is %d tokens and the longest "
                 "prompt (%s) %d", max_completion_length, room, context, where, longest)
        return room
    return max_completion_length


def trl_config(config_class: type, cfg: RLConfig, device: Any, geo: Geometry, max_completion_length: int,
               algo_keys: dict[str, Any]) -> Any:
    """TRL's ``RLOOConfig``/``GRPOConfig`` of ``cfg`` (``trl_args`` checked against its fields)."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(cfg.trl_args) - fields)
    if unknown:
        raise EffirlError(f"trl_args: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                          f"{'a key' if len(unknown) == 1 else 'keys'} of TRL's {config_class.__name__}")
    # The common keys, with the "effective batch" of the base config being the completions of one update.
    common = trainer_arguments(cfg.model_copy(update={"batch_size": geo.completions_per_update}), device)
    common["gradient_accumulation_steps"] = geo.accumulation
    kwargs = {**common, "num_generations": cfg.num_generations,
              "steps_per_generation": geo.steps_per_generation,
              "max_completion_length": max_completion_length, "temperature": cfg.temperature,
              "top_p": cfg.top_p, "beta": cfg.beta, "num_iterations": cfg.num_iterations,
              "epsilon": cfg.epsilon, "mask_truncated_completions": cfg.mask_truncated_completions,
              "log_completions": cfg.log_completions, "remove_unused_columns": False, **algo_keys,
              **cfg.trl_args}
    try:
        return config_class(**kwargs)
    except (ValueError, TypeError) as exc:
        raise EffirlError(f"TRL's {config_class.__name__} refused the settings: {first_line(exc)}") from None


@functools.cache
def evaluating(trainer_class: type) -> type:
    """``trainer_class`` with the periodic evaluation's metrics in its log lines."""
    return type(f"Effirl{trainer_class.__name__}", (LogsEvaluations, trainer_class), {})


def _sharded(trainer: Any) -> str | None:
    """Why the main process alone cannot sample from the model (ZeRO-3 or FSDP shards), or None."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return "FSDP"
    plugin = getattr(getattr(trainer, "accelerator", None), "state", None)
    plugin = getattr(plugin, "deepspeed_plugin", None)
    if plugin is not None and getattr(plugin, "zero_stage", None) == 3:
        return "DeepSpeed ZeRO-3"
    return None


@dataclass
class RLRun:
    """A built RL trainer and what must outlive it (the reward's sandbox pools: close them)."""

    trainer: Any
    tokenizer: Any
    config: RLConfig  # as trained (batch sizes fitted to the training set)
    reward: EfficiencyReward
    split: TaskSplit
    geometry: Geometry
    evaluation: PeriodicEvaluation | None


def build_rl_trainer(algo: str, trainer_class: type, config_class: type, cfg: RLConfig,
                     algo_keys: dict[str, Any], progress: Progress | None = None, dataset: Any = None,
                     reward: EfficiencyReward | None = None) -> RLRun:
    """Everything an RL run needs, checked in the order that fails fastest (tasks, batch, meter, model).

    ``dataset``: rows with ``prompt`` and ``task_id`` instead of the suite's prompts; ``reward``: an
    efficiency reward (or a subclass) instead of the one ``cfg.reward`` describes. The run owns the reward:
    it is closed when training ends or fails.
    """
    suite_tasks = load(cfg.suite, cfg.source)
    ev = cfg.evaluation
    split = split_tasks(suite_tasks, cfg.suite, cfg.tasks, ev.tasks, ev.holdout, ev.separate, cfg.seed)
    templates: Templates = load_templates(cfg.prompt_file)
    if dataset is None:
        dataset = rl_dataset(split.train, cfg.strategy, templates)
    else:
        check_dataset(dataset, {t.id: t for t in suite_tasks}, cfg.suite)
        used = set(dataset[TASK_ID])
        split = TaskSplit(train=[t for t in suite_tasks if t.id in used], eval=split.eval)
    cfg = fit_batch(cfg, len(dataset), world_size())
    geo = geometry(cfg, world_size())
    if reward is not None:
        _check_reward(reward, cfg, dataset)
    reward = reward if reward is not None else make_reward(cfg, suite_tasks)
    try:
        device = start(cfg)
        tokenizer = load_tokenizer(cfg.model)
        model = load_model(cfg.model, device)
        budget = completion_budget(cfg.max_completion_length, dataset, tokenizer, model)
        args = trl_config(config_class, cfg, device, geo, budget, algo_keys)
        extra = [progress_callback(progress)] if progress is not None else []
        evaluation = None
        if ev.every > 0:
            evaluator = make_evaluator(
                cfg.out, split.eval, ev, suite=cfg.suite, source=cfg.source, model_label=cfg.model,
                strategy=cfg.strategy, prompt_file=cfg.prompt_file, templates=templates,
                seed=ev.seed if ev.seed is not None else evaluation_seed(cfg.seed),
                max_new_tokens=budget, meter=reward.meter, sandbox=reward_sandbox(reward.config),
                scales=reward_scales(reward.config), reward=reward.config.reward,
                reward_inputs_seed=reward.config.inputs_seed, executor=cfg.executor, progress=progress)
            evaluation = PeriodicEvaluation(evaluator, ev, tokenizer, cfg.out / METRICS)
            extra.append(evaluation)
        trainer = evaluating(trainer_class)(
            model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer,
            peft_config=peft_config(cfg.lora), callbacks=[*callbacks(cfg), *extra])
        if evaluation is not None:
            shards = _sharded(trainer)
            if shards:
                raise EffirlError(f"the periodic evaluation samples from the whole model on the main "
                                  f"process, which {shards} does not hold; set evaluation.every: 0 and "
                                  "evaluate the checkpoints with effirl generate + effirl evaluate")
            evaluation.attach(trainer)
    except BaseException:
        reward.close()
        raise
    log.info("%s: %d training prompts, %d evaluation tasks; %d x %d completions per step in %d update(s), "
             "%d pass(es) of %d per process", algo, len(dataset), len(split.eval), cfg.batch_size,
             cfg.num_generations, geo.updates_per_step, geo.steps_per_generation, cfg.per_device_batch_size)
    return RLRun(trainer, tokenizer, cfg, reward, split, geo, evaluation)


def _check_reward(reward: EfficiencyReward, cfg: RLConfig, dataset: Any) -> None:
    """A reward given to the trainer must know every training task and the trainer's group size."""
    groups = reward.config.num_generations
    if groups is not None and groups != cfg.num_generations:
        raise EffirlError(f"the reward expects groups of {groups} completions (its num_generations), the "
                          f"trainer samples {cfg.num_generations} per prompt")
    unknown = sorted(set(dataset[TASK_ID]) - set(reward.tasks))
    if unknown:
        raise EffirlError(f"the reward does not know the training task(s) {', '.join(unknown[:3])} (its "
                          f"suite is {reward.config.suite!r})")


def reward_sandbox(r: EfficiencyRewardConfig) -> SandboxConfig:
    """The sandbox limits (and workers) of the reward's pools: the evaluation runs under the same."""
    return r.sandbox if r.workers is None else r.sandbox.model_copy(update={"workers": r.workers})


def train_rl(run: RLRun, algo: str) -> Path:
    """Train (resuming from the last checkpoint), save ``OUT/final``, draw the curves; the reward's pools are
    closed whatever happens."""
    cfg = run.config
    try:
        final = train_and_save(run.trainer, cfg, run.tokenizer, algo)
    finally:
        run.reward.close()
    if run.trainer.is_world_process_zero():
        title = f"{algo}: {Path(cfg.model).name or cfg.model}"
        plot = plot_rl_curves(cfg.out / METRICS, cfg.out / CURVES_PLOT, title=title)
        summary_path = cfg.out / SUMMARY
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
        rows = eval_rows(cfg.out / METRICS)
        summary.update(curves_plot=str(plot) if plot else None, last_evaluation=rows[-1] if rows else None,
                       train_tasks=[t.id for t in run.split.train],
                       eval_tasks=[t.id for t in run.split.eval] if run.evaluation is not None else [])
        summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return final
