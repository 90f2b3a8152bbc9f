"""``effirl pipeline plan``: what a config will run (stages, data, models) and a rough compute estimate.

Why it exists: a config such as the paper's takes GPU-days; its size should be visible, and checkable, before
anything runs. The plan loads the tasks (to count them) but no model, and runs nothing.

The estimate counts work, then turns it into time with rough per-unit rates (stated in the output): tokens to
generate, programs to check, measurements (an upper bound: every sample measured), and optimizer steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from effirl.errors import EffirlError
from effirl.pipeline.config import PipelineConfig, stage_names
from effirl.pipeline.splits import select_tasks, split_tasks
from effirl.tasks import Task, load

# Rough rates for the estimate (documented in the plan's output). Generation: tokens per second of the whole
# machine; checks and measurements: seconds per program per sandbox worker; training: seconds per sample.
# Measured here for the tiny model (2 cores: ~1,900 tokens/s at batch 32; check + measurement ~0.3 s at the
# miniature's input budget); guesses for the rest. Completions are assumed to fill FILL of their token limit.
RATES = {
    "cpu": {"tokens_s": {"tiny": 2000.0, "small": 300.0, "large": 2.0}, "check_s": 0.05, "measure_s": 0.3,
            "train_s_per_row": {"tiny": 0.01, "small": 0.1, "large": 10.0}},
    "gpu": {"tokens_s": {"tiny": 50000.0, "small": 20000.0, "large": 3000.0}, "check_s": 0.05, "measure_s": 0.3,
            "train_s_per_row": {"tiny": 0.001, "small": 0.005, "large": 0.5}},
}
FILL = 0.4


# Published sizes, for a plan made where a suite's data is not reachable (the paper's config on a laptop).
KNOWN_SIZES = {"builtin": 43, "humaneval+": 164, "mbpp+": 378, "evalperf": 118, "mercury": 256, "effibench": 1000}


def _suite_tasks(suite: str, source: str | None) -> tuple[list[Task] | None, str | None]:
    """The suite's tasks, or None and why (no data here: the plan then counts its published size)."""
    try:
        return load(suite, source), None
    except EffirlError as exc:
        return None, f"{suite} is not available here ({str(exc).splitlines()[0][:120]}); counted as its " \
                     f"published size, {KNOWN_SIZES.get(suite.lower(), 0):,} tasks"


def _split_counts(config: PipelineConfig) -> tuple[dict[str, int], str | None]:
    suite = config.train_suite
    loaded, why = _suite_tasks(suite.suite, suite.source)
    if loaded is not None:
        tasks = split_tasks(select_tasks(loaded, config.tasks), config.split)
        return {k: len(v) for k, v in tasks.items()}, None
    n = len(config.tasks) if config.tasks else KNOWN_SIZES.get(suite.suite.lower(), 0)
    held = len(config.split.heldout) if config.split.heldout else round(config.split.heldout_fraction * n)
    return {"all": n, "heldout": held, "train": n - held}, why


@dataclass
class PlanStage:
    name: str
    what: str
    work: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _size(config: PipelineConfig) -> str:
    if config.base.init is not None:
        return config.base.init.size
    if config.base.shipped is not None:
        return "tiny"
    return "large"


def _gen(section: dict[str, Any]) -> tuple[int, int]:
    return int(section.get("n", 1)), int(section.get("max_new_tokens", 1024))


def make_plan(config: PipelineConfig, device: str = "cpu", workers: int = 2) -> list[PlanStage]:
    """The stages of ``config`` with their data, models and estimated work."""
    suite = config.train_suite
    counts, why = _split_counts(config)
    size = _size(config)
    rate = RATES[device]
    tok_s = rate["tokens_s"][size] / FILL  # per token of the limit
    row_s = rate["train_s_per_row"][size]
    out: list[PlanStage] = []
    n_train = counts["train"]
    for name in stage_names(config):
        if name == "base":
            b = config.base
            what = (f"model {b.model}" if b.model else f"shipped model {b.shipped}" if b.shipped
                    else f"init {b.init.size if b.init else ''} (seed {b.init.seed if b.init else ''})")
            st = PlanStage("base", what + (f"; note: {why}" if why else ""))
            if b.warmup is not None:
                steps = int(b.warmup.train.get("max_steps") or 0)
                batch = int(b.warmup.train.get("batch_size", 16))
                st.what += f" + warm-up on all {counts['all']} tasks ({steps} steps x batch {batch})"
                st.work["optimizer steps"] = steps
                st.seconds = steps * batch * row_s
        elif name == "sample":
            n, max_new = _gen(config.sample.generate)
            k = counts[config.sample.split]
            st = PlanStage("sample", f"{n} samples x {k} tasks ({config.sample.split}), up to {max_new} tokens each")
            st.work = {"samples": n * k, "tokens (max)": n * k * max_new}
            st.seconds = n * k * max_new / tok_s
        elif name == "score":
            n, _ = _gen(config.sample.generate)
            k = counts[config.sample.split]
            st = PlanStage("score", f"check {n * k} samples, measure the passing ones with meter {config.meter}")
            st.work = {"checks": n * k, "measurements (max)": n * k}
            st.seconds = n * k * (rate["check_s"] + rate["measure_s"]) / workers
        elif name == "sft":
            st = PlanStage("sft", f"top-2 fastest correct per task -> SFT from the base model "
                           f"({config.sft.train.get('epochs', 10)} epochs)")
            st.seconds = 2 * n_train * float(config.sft.train.get("epochs", 10)) * row_s
        elif name == "dpo_data":
            ps = ", ".join(f"{p:g}" for p in config.dpo_data.proportions)
            st = PlanStage("dpo_data", f"DPO pairs at efficiency share p = {ps}")
        elif name == "dpo":
            steps = config.dpo.train.get("max_steps")
            batch = int(config.dpo.train.get("batch_size", 1024))
            st = PlanStage("dpo", f"{len(config.dpo_data.proportions)} DPO model(s) from {config.dpo.start}"
                           + (f", {steps} steps x batch {batch}" if steps else ", 1 epoch"))
            rows = (steps or 1) * batch if steps else 50 * n_train
            st.work = {"pair rows seen": rows * len(config.dpo_data.proportions)}
            st.seconds = 2 * rows * len(config.dpo_data.proportions) * row_s
        elif name == "rl":
            t = config.rl.train
            arms = len(config.rl.algorithms) * len(config.rl.seeds)
            g = int(t.get("num_generations", 64))
            prompts = int(t.get("batch_size", 64))
            max_new = int(t.get("max_completion_length", 12288))
            updates = max(1, prompts // int(t.get("mini_batch_size", 32)))  # optimizer steps per rollout
            if t.get("max_steps"):
                steps = int(t["max_steps"])
                rollouts = math.ceil(steps / updates)
            else:  # epochs over the training prompts (the paper's 30 episodes)
                rollouts = math.ceil(float(t.get("epochs", 30)) * n_train / prompts)
                steps = rollouts * updates
            st = PlanStage("rl", f"{', '.join(config.rl.algorithms)} x seeds {config.rl.seeds} from DPO "
                           f"p={config.rl.proportion:g}: {rollouts} rollouts of {prompts} prompts x {g} "
                           f"completions, {steps} optimizer steps")
            completions = arms * rollouts * prompts * g
            st.work = {"runs": arms, "completions": completions, "tokens (max)": completions * max_new}
            st.seconds = (completions * max_new / tok_s
                          + completions * (rate["check_s"] + rate["measure_s"]) / workers
                          + completions * row_s)
        else:  # evaluate
            n, max_new = _gen(config.evaluate.generate)
            models = 1 + len(config.dpo_data.proportions) + int(config.sft.enabled) + (
                len(config.rl.algorithms) * len(config.rl.seeds) if config.rl.enabled else 0)
            k = 0
            for s in config.evaluate.suites:
                if (s.suite, s.source) == (suite.suite, suite.source):
                    k += sum(counts[sp] for sp in s.splits)
                else:
                    other, _ = _suite_tasks(s.suite, s.source)
                    n_other = len(other) if other is not None else KNOWN_SIZES.get(s.suite.lower(), 0)
                    k += min(n_other, s.limit) if s.limit else n_other
            st = PlanStage("evaluate", f"{models} models x {k} tasks x {n} samples, "
                           f"suites {', '.join(s.suite for s in config.evaluate.suites)}")
            st.work = {"samples": models * k * n, "measurements (max)": models * k * n}
            st.seconds = models * k * n * (max_new / tok_s + (rate["check_s"] + rate["measure_s"]) / workers)
        out.append(st)
    return out


def human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def total(stages: list[PlanStage]) -> float:
    return math.fsum(s.seconds for s in stages)
