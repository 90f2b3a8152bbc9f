"""``effirl pipeline run``: the stages in order, each skipped when finished, resumed when cut, redone on --force.

Why it exists: one resumable command from base model to report. The runner holds no stage's logic
(:mod:`effirl.pipeline.stages` calls the packages): it resolves the config, the task split, the one meter and
the generator scales of the run, decides for each stage whether to skip, resume or run it (``stage.json``,
:mod:`effirl.pipeline.state`), and writes the run's summary and report at the end.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from effirl.configfile import dump_config
from effirl.errors import EffirlError
from effirl.pipeline import stages
from effirl.pipeline.config import PipelineConfig, stage_names
from effirl.pipeline.splits import select_tasks, split_tasks
from effirl.pipeline.state import Stage, config_hash
from effirl.tasks import Task, load

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
Notice = Callable[[str], None]

TASKS_FILE = "tasks.json"
RUNNERS: dict[str, Callable[[stages.Context], dict[str, Any]]] = {
    "base": stages.run_base,
    "sample": stages.run_sample,
    "score": stages.run_score,
    "sft": stages.run_sft,
    "dpo_data": stages.run_dpo_data,
    "dpo": stages.run_dpo,
    "rl": stages.run_rl,
    "evaluate": stages.run_evaluate,
}


def _noop(*_: Any) -> None:
    return None


def stage_inputs(config: PipelineConfig, name: str) -> list[str]:
    """The folders (relative to the run) a stage reads: a change to any of them after it ran is refused."""
    start = "sft/out" if config.dpo.start == "sft" else "base/out"
    table = {
        "base": [],
        "sample": ["base/out"],
        "score": ["sample/out"],
        "sft": ["base/out", "score/out"],
        "dpo_data": ["score/out"],
        "dpo": ["dpo_data/out", start],
        "rl": ["dpo/out"],
        "evaluate": ["base/out", "dpo/out"] + (["sft/out"] if config.sft.enabled else [])
        + (["rl/out"] if config.rl.enabled else []),
    }
    return table[name]


def stage_section(config: PipelineConfig, name: str) -> dict[str, Any]:
    """What a stage's result depends on in the config: its own section and the run-wide settings it uses."""
    run_wide = {"seed": config.seed, "train_suite": config.train_suite.model_dump(), "tasks": config.tasks,
                "split": config.split.model_dump(), "meter": config.meter, "calibration": config.calibration,
                "decontaminate": [s.model_dump() for s in config.decontaminate]}
    own = getattr(config, name).model_dump(mode="json")
    if name == "evaluate":
        own = {**own, "models": {"sft": config.sft.enabled, "rl": config.rl.enabled}}
    if name == "rl":  # its periodic evaluation samples and measures as the evaluate stage does
        own = {**own, "evaluation": {"seed": config.evaluate.seed, "inputs_seed": config.evaluate.inputs_seed}}
    return {"run": run_wide, name: own}


def run_tasks(config: PipelineConfig, out: Path, notice: Notice = _noop) -> dict[str, list[Task]]:
    """The training suite's tasks by split, decontaminated against the config's evaluation suites; what was
    dropped and the split go to ``out/tasks.json`` (the report names them)."""
    suite = config.train_suite
    tasks = split_tasks(select_tasks(load(suite.suite, suite.source), config.tasks), config.split)
    dropped: list[dict[str, str]] = []
    if config.decontaminate:
        from effirl.data.decontaminate import decontaminate, load_suites

        specs = [f"{s.suite}:{s.source}" if s.source else s.suite for s in config.decontaminate]
        kept, found = decontaminate(tasks["all"], load_suites(specs))
        dropped = [{"task_id": d.task_id, "reason": d.reason, "match": d.match} for d in found]
        if dropped:
            notice(f"decontamination: {len(dropped)} training task(s) dropped")
            keep = {t.id for t in kept}
            tasks = {k: [t for t in v if t.id in keep] for k, v in tasks.items()}
    record = {split: [t.id for t in ts] for split, ts in tasks.items() if split != "all"}
    (out / TASKS_FILE).write_text(json.dumps({**record, "decontaminated": dropped}, indent=2), encoding="utf-8")
    return tasks


@dataclass
class RunResult:
    out: Path
    ran: list[str]
    skipped: list[str]
    wall_s: float
    files: dict[str, Any]


def _scales(config: PipelineConfig) -> dict[str, int]:
    from effirl.inputs.calibration import resolve_scales

    # A task that fails the calibration's contrast check keeps its calibrated scale (its cost stays bounded;
    # its counts separate fast from slow less well, which the calibration file says).
    return resolve_scales(config.calibration, config.train_suite.suite, config.train_suite.source,
                          include_failing=True)


def run_pipeline(config: PipelineConfig, out: Path, *, force: str | None = None, progress: Progress = _noop,
                 notice: Notice = _noop) -> RunResult:
    """Run (or resume) every stage of ``config`` in ``out``; see the module doc."""
    from effirl.meters import select_meter
    from effirl.pipeline.report import write_report

    t0 = time.monotonic()
    out = out.resolve()  # stage records keep paths relative to it; a rerun may start from another folder
    names = stage_names(config)
    if force is not None and force not in names:
        raise EffirlError(f"--force {force}: no such stage in this run; its stages are {', '.join(names)}")
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "config.yaml")
    if force is not None:
        for name in names[names.index(force):]:
            Stage(out, name).clear()
        notice(f"--force {force}: cleared {', '.join(names[names.index(force):])}")
    tasks = run_tasks(config, out, notice)
    ctx = stages.Context(config=config, run_dir=out, tasks=tasks, progress=progress,
                         scales=_scales(config), meter=select_meter(config.meter))
    ran: list[str] = []
    skipped: list[str] = []
    for name in names:
        stage = Stage(out, name)
        inputs = stage_inputs(config, name)
        section = config_hash(stage_section(config, name))
        state = stage.status(section, inputs)
        if state == "done":
            skipped.append(name)
            notice(f"{name}: finished earlier, skipped")
            continue
        notice(f"{name}: {'resuming' if state == 'resume' else 'running'}")
        record = stage.begin(section, inputs)
        try:
            outputs = RUNNERS[name](ctx)
        except ValidationError as exc:  # a package's config refused what the pipeline made of this config
            problem = exc.errors()[0]
            where = ".".join(str(x) for x in problem["loc"])
            raise EffirlError(f"stage {name}: {where}: {problem['msg']} (check the {name} section)") from None
        stage.finish(record, outputs)
        ran.append(name)
    files = write_report(config, out, ctx)
    return RunResult(out=out, ran=ran, skipped=skipped, wall_s=time.monotonic() - t0, files=files)
