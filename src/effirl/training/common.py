"""What every trainer shares (SFT, DPO, and the RL trainers built on the same base).

Why it exists: each TRL trainer wants the same dozen decisions made the same way: the typed fields common to
all (model, output folder, learning-rate schedule, epochs or steps, an effective batch reached by gradient
accumulation, seed, checkpoints, ``report_to``, optional LoRA), the device and dtype (bf16 on CUDA, fp32 on
CPU), loading a model folder with one clear line when it lacks a tokenizer, resuming from the last checkpoint,
a ``metrics.jsonl`` written as training goes, and the final model saved in Hugging Face format with its
tokenizer.

Layout of ``OUT/``: ``config.yaml`` (the resolved config), ``checkpoints/checkpoint-N/`` (resumable),
``metrics.jsonl``, ``loss.png``, ``final/`` (model + tokenizer; with LoRA the merged model, and the adapter in
``adapter/``) and ``train_summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from effirl.configfile import dump_config
from effirl.errors import EffirlError
from effirl.extras import require

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
FINAL = "final"
ADAPTER = "adapter"
CONFIG = "config.yaml"
SUMMARY = "train_summary.json"
Progress = Callable[[str, int, int], None]  # (phase, done, total)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class LoraSettings(BaseModel):
    """LoRA adapters (peft) instead of full fine-tuning."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"


class TrainConfig(BaseModel):
    """The fields every trainer has. Defaults follow the paper's Tables 8-9 where it gives them."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A model folder (Hugging Face format, with its tokenizer) or a hub id")
    out: Path = Field(description="Output folder: checkpoints, metrics.jsonl, final/")
    learning_rate: float = Field(5e-6, gt=0)
    lr_scheduler: str = Field("cosine", description="transformers' lr_scheduler_type")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (wins)")
    batch_size: int = Field(1024, ge=1, description="Effective batch: per device x devices x accumulation")
    per_device_batch_size: int = Field(4, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 0
    save_steps: int = Field(100, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    logging_steps: int = Field(1, ge=1)
    report_to: list[str] = Field(default_factory=list, description="tensorboard, wandb, ... ([]: none)")
    lora: LoraSettings | None = None
    gradient_checkpointing: bool = False
    device: Literal["auto", "cuda", "cpu"] = "auto"
    resume: bool = Field(True, description="Continue from the last checkpoint in OUT/checkpoints, if any")


@dataclass(frozen=True)
class Device:
    """Where training runs and in which precision."""

    kind: Literal["cuda", "cpu"]
    dtype: str  # "bfloat16" | "float32"

    @property
    def bf16(self) -> bool:
        return self.dtype == "bfloat16"


def choose_device(preference: str = "auto") -> Device:
    """CUDA in bf16 when there is one (fp32 if it lacks bf16); otherwise the CPU in fp32."""
    torch = require("torch", "train", "training")
    has_cuda = bool(torch.cuda.is_available())
    if preference == "cuda" and not has_cuda:
        raise EffirlError("device 'cuda' was asked for but torch sees no CUDA device")
    if preference == "cpu" or not has_cuda:
        return Device("cpu", "float32")
    return Device("cuda", "bfloat16" if torch.cuda.is_bf16_supported() else "float32")


def world_size() -> int:
    """Processes taking part (``accelerate launch`` / ``torchrun`` set WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def accumulation_steps(batch_size: int, per_device: int, processes: int = 1) -> int:
    """Gradient accumulation steps that reach ``batch_size`` (at least; logged when it cannot be exact)."""
    steps = max(1, math.ceil(batch_size / (per_device * processes)))
    reached = steps * per_device * processes
    if reached != batch_size:
        log.warning("effective batch %d (asked %d): %d per device x %d process(es) x %d accumulation steps",
                    reached, batch_size, per_device, processes, steps)
    return steps


def first_line(exc: BaseException) -> str:
    """An exception as one line (its first), for an error message that must stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_local(name: str) -> bool:
    """A folder path rather than a hub id ("org/name" or "name")."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def load_tokenizer(model: str) -> Any:
    """The model's tokenizer, with a chat template and a pad token; one clear line when there is none."""
    transformers = require("transformers", "train", "training")
    path = Path(model).expanduser()
    if _is_local(model):
        if not path.is_dir():
            raise EffirlError(f"model folder {model} does not exist")
        if not any((path / f).is_file() for f in _TOKENIZER_FILES):
            raise EffirlError(f"model folder {model} has no tokenizer (none of "
                              f"{', '.join(_TOKENIZER_FILES)}); save the tokenizer beside the weights "
                              "(tokenizer.save_pretrained)")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path) if _is_local(model) else model)
    except (OSError, ValueError) as exc:
        raise EffirlError(f"cannot load the tokenizer of {model}: {first_line(exc)}") from None
    if not getattr(tok, "chat_template", None):
        raise EffirlError(f"the tokenizer of {model} has no chat template, and the training data are chat "
                          "messages; use an instruct/chat model or set tokenizer.chat_template")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model: str, device: Device) -> Any:
    """The causal LM in the device's dtype (bf16 on CUDA, fp32 on CPU)."""
    transformers = require("transformers", "train", "training")
    torch = require("torch", "train", "training")
    if _is_local(model) and not (Path(model).expanduser() / "config.json").is_file():
        raise EffirlError(f"model folder {model} has no config.json: not a Hugging Face model folder")
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(
            str(Path(model).expanduser()) if _is_local(model) else model, dtype=getattr(torch, device.dtype))
    except (OSError, ValueError) as exc:
        raise EffirlError(f"cannot load the model {model}: {first_line(exc)}") from None


def fit_length(max_length: int, model: Any) -> int:
    """``max_length``, at most the model's context (``max_position_embeddings``), said when it is cut."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit < max_length:
        log.info("max_length %d is over the model's context; using %d", max_length, limit)
        return limit
    return max_length


def peft_config(lora: LoraSettings | None) -> Any:
    """The peft ``LoraConfig`` of ``lora`` (None without)."""
    if lora is None:
        return None
    peft = require("peft", "train", "LoRA training")
    return peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                           target_modules=lora.target_modules, task_type="CAUSAL_LM")


_REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
              "comet_ml": ("comet_ml",), "trackio": ("trackio",)}


def check_report_to(report_to: list[str]) -> None:
    """One clear line for a tracker that is not installed (transformers would fail deep in the Trainer)."""
    import importlib.util

    for name in report_to:
        modules = _REPORTERS.get(name)
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise EffirlError(f"report_to {name!r} needs the {modules[0]} package: pip install {modules[0]}")


def trainer_arguments(cfg: TrainConfig, device: Device) -> dict[str, Any]:
    """The keyword arguments of ``transformers.TrainingArguments`` (any TRL ``*Config``) that ``cfg`` sets."""
    return {
        "output_dir": str(cfg.out / CHECKPOINTS),
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio,  # a float under 1 is a ratio of the total steps
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": accumulation_steps(cfg.batch_size, cfg.per_device_batch_size,
                                                          world_size()),
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "report_to": list(cfg.report_to) or "none",
        "bf16": device.bf16,
        "use_cpu": device.kind == "cpu",
        _checkpointing_key(): cfg.gradient_checkpointing,
        "disable_tqdm": True,  # progress goes to the caller's callback (the CLI's bar), logs to metrics.jsonl
    }


def _checkpointing_key() -> str:
    """transformers 5 renamed ``gradient_checkpointing`` (now an alias) ``activation_checkpointing``."""
    import dataclasses

    transformers = require("transformers", "train", "training")
    names = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def last_checkpoint(cfg: TrainConfig) -> str | None:
    """The newest ``checkpoint-N`` folder to resume from (None: start afresh, or ``resume`` is off)."""
    folder = cfg.out / CHECKPOINTS
    if not cfg.resume or not folder.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(folder))
    if found:
        log.info("resuming from %s", found)
    return found


def callbacks(cfg: TrainConfig) -> list[Any]:
    """The callbacks every effirl trainer carries (``OUT/metrics.jsonl``)."""
    from effirl.training.metrics import METRICS, MetricsCallback

    return [MetricsCallback(cfg.out / METRICS)]


def start(cfg: TrainConfig) -> Device:
    """Create ``OUT``, keep the resolved config in ``OUT/config.yaml``, seed everything; the device."""
    transformers = require("transformers", "train", "training")
    check_report_to(cfg.report_to)
    cfg.out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, cfg.out / CONFIG)
    transformers.set_seed(cfg.seed)
    device = choose_device(cfg.device)
    log.info("training on %s in %s", device.kind, device.dtype)
    return device


def progress_callback(progress: Progress) -> Any:
    """A callback reporting ``(phase, step, total steps)`` to ``progress`` (the CLI's progress bar)."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                progress("train", state.global_step, state.max_steps)

    return _Progress()


def train_and_save(trainer: Any, cfg: TrainConfig, tokenizer: Any, algo: str) -> Path:
    """Train (resuming from the last checkpoint), save ``OUT/final`` with the tokenizer, plot the loss."""
    from transformers import PrinterCallback

    from effirl.training.metrics import LOSS_PLOT, METRICS, plot_metrics, read_metrics

    trainer.remove_callback(PrinterCallback)  # its print of every log line: metrics.jsonl has them
    result = trainer.train(resume_from_checkpoint=last_checkpoint(cfg))
    final = cfg.out / FINAL
    if cfg.lora is not None and hasattr(trainer.model, "merge_and_unload"):
        if trainer.is_world_process_zero():  # the adapter, then the merged model, so that final/ loads alone
            trainer.model.save_pretrained(cfg.out / ADAPTER)
            tokenizer.save_pretrained(cfg.out / ADAPTER)
            trainer.model.merge_and_unload().save_pretrained(final)
    else:
        trainer.save_model(str(final))  # every process takes part (sharded and DeepSpeed states are gathered)
    if not trainer.is_world_process_zero():
        return final
    tokenizer.save_pretrained(final)
    log.info("saved the final model to %s", final)
    plot_metrics(cfg.out / METRICS, cfg.out / LOSS_PLOT, title=f"{algo} loss")
    losses = [r["loss"] for r in read_metrics(cfg.out / METRICS) if isinstance(r.get("loss"), (int, float))]
    summary = {"algo": algo, "model": cfg.model, "final": str(final), "steps": trainer.state.global_step,
               "epoch": trainer.state.epoch, "train_loss": getattr(result, "training_loss", None),
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
               "metrics": str(cfg.out / METRICS), "loss_plot": str(cfg.out / LOSS_PLOT)}
    (cfg.out / SUMMARY).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return final
