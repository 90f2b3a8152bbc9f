"""Finding and checking a pipeline config: a shipped name or a file, every stage section checked up front.

Why it exists: ``--config`` takes a shipped config's name (``effirl pipeline configs``) or a YAML path, and a
mistake anywhere in it, a stage package's keys included, must be one line naming the file, line and key before
anything runs (a typo in the evaluate section must not surface after an hour of training).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from effirl.configfile import Lines, read_mapping, set_dotted, validate
from effirl.errors import EffirlError, InputFormatError
from effirl.pipeline.config import PipelineConfig

PLACEHOLDER = "<filled by the pipeline>"
# Values of the right type for the keys the pipeline fills in, so that a section is checked without them.
_FILLED = {"tasks": None, "source": None, "suite": "builtin", "mix": {}, "proportion": 0.5, "resume": True,
           "seed": 0, "decontaminate": []}


def shipped_configs() -> dict[str, Path]:
    """The configs that ship with effirl, by name."""
    folder = Path(str(resources.files("effirl.pipeline") / "configs"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def config_file(name_or_path: str | Path) -> Path:
    """The file of a shipped config's name, or the path itself; an unknown name lists the shipped ones."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_configs()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    if path.suffix in (".yaml", ".yml", ".json") or "/" in str(name_or_path):
        raise EffirlError(f"config file {name_or_path} does not exist")
    raise EffirlError(f"unknown config {str(name_or_path)!r}; shipped configs: {', '.join(shipped)} "
                      "(or give a YAML file)")


def _sections() -> list[tuple[tuple[str, ...], type[BaseModel], tuple[str, ...]]]:
    """(where in the pipeline config, the package's config class, the keys the pipeline fills in)."""
    from effirl.data.config import DPODataConfig, SFTDataConfig
    from effirl.generation.config import GenerateConfig
    from effirl.training.dpo_config import DPOConfig
    from effirl.training.sft_config import SFTConfig
    from effirl.training.warmup_config import WarmupConfig

    return [
        (("base", "warmup", "train"), WarmupConfig, ("model", "out", "suite", "source", "tasks", "mix")),
        (("sample", "generate"), GenerateConfig, ("model",)),
        (("sft", "data"), SFTDataConfig, ("scored", "out", "decontaminate")),
        (("sft", "train"), SFTConfig, ("model", "data", "out", "resume")),
        (("dpo_data", "data"), DPODataConfig, ("scored", "out", "proportion", "decontaminate")),
        (("dpo", "train"), DPOConfig, ("model", "data", "out", "resume")),
        (("evaluate", "generate"), GenerateConfig, ("model", "seed")),
    ]


def _section(config: PipelineConfig, where: tuple[str, ...]) -> dict[str, Any] | None:
    value: Any = config
    for part in where:
        value = getattr(value, part, None) if not isinstance(value, dict) else value.get(part)
        if value is None:
            return None
    return value if isinstance(value, dict) else None


def check_section(model: type[BaseModel], section: dict[str, Any], filled: tuple[str, ...], source: str,
                  lines: Lines, where: tuple[str, ...]) -> None:
    """``section`` must be valid keys of ``model`` (the pipeline's own keys excepted); errors name the key."""
    for key in filled:
        if key in section:
            raise InputFormatError(source, "this key is filled in by the pipeline; remove it",
                                   row=lines.get((*where, key)), field=".".join((*where, key)))
    data = {**section, **{key: _FILLED.get(key, PLACEHOLDER) for key in filled}}
    sub = {k[len(where):]: v for k, v in lines.items() if k[: len(where)] == where}
    try:
        validate(model, data, source, sub)
    except InputFormatError as exc:
        field = ".".join((*where, exc.field)) if exc.field else ".".join(where)
        row = exc.row if exc.row is not None else lines.get(where)
        raise InputFormatError(source, exc.message, row=row, field=field) from None


def load_pipeline_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """The checked config; ``overrides``: dotted keys set on top of the file (``seed`` from ``--seed``)."""
    path = config_file(name_or_path)
    data, lines = read_mapping(path)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        set_dotted(data, key, value)
    config = validate(PipelineConfig, data, str(path), lines, flags=set(given))
    for where, model, filled in _sections():
        section = _section(config, where)
        if section:
            check_section(model, section, filled, str(path), lines, where)
    _check_rl(config, str(path), lines)
    return config


def _check_rl(config: PipelineConfig, source: str, lines: Lines) -> None:
    """The rl section against the config of each algorithm it runs (common keys, then each one's own)."""
    from effirl.training.grpo_config import GRPOConfig
    from effirl.training.rloo_config import RLOOConfig

    filled = ("model", "out", "suite", "source", "tasks", "resume")
    for algorithm in config.rl.algorithms:
        model: type[BaseModel] = RLOOConfig if algorithm == "rloo" else GRPOConfig
        check_section(model, config.rl.train, filled, source, lines, ("rl", "train"))
        own = config.rl.per_algorithm.get(algorithm)
        if own:
            check_section(model, {**config.rl.train, **own}, filled, source, lines,
                          ("rl", "per_algorithm", algorithm))
