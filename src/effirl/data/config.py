"""The typed settings of ``effirl data sft|dpo`` and of :func:`build_sft` / :func:`build_dpo`.

Why it exists: the CLI, YAML configs and the two-stage pipeline all build the same data; one pydantic model
per builder (``extra="forbid"``) makes a misspelt key one clear line through
:func:`effirl.configfile.load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DedupMode = Literal["ast", "exact", "none"]


class DataConfig(BaseModel):
    """What both builders share: where the scored samples are, how they are deduplicated and filtered."""

    model_config = ConfigDict(extra="forbid")

    scored: Path = Field(description="An `effirl evaluate` (or `measure`) output folder")
    out: Path = Field(description="Output folder")
    samples: Path | None = Field(None, description="The samples file the folder scored, when it has moved "
                                 "(its sha256 must still match the one recorded)")
    per_task: int | None = Field(None, ge=1, description="SFT: rows per task (default 2); DPO: pairs of each "
                                 "kind per task, at most (default: no limit)")
    max_rows: int | None = Field(None, ge=1, description="Cap on rows (paper: 5,000 SFT, 50,000 DPO)")
    dedup: DedupMode = "ast"
    decontaminate: list[str] = Field(default_factory=list,
                                     description="Evaluation suites as SUITE or SUITE:SOURCE")
    seed: int = 0


class SFTDataConfig(DataConfig):
    """SFT rows: per task the ``per_task`` (default 2) fastest distinct correct samples."""


class DPODataConfig(DataConfig):
    """DPO pairs: correctness and efficiency pairs mixed with a share ``proportion`` of efficiency pairs."""

    proportion: float = Field(0.1, ge=0.0, le=1.0, description="Share of efficiency pairs (paper: 0.1)")
    min_ratio: float = Field(1.1, ge=1.0, description="Efficiency pairs: rejected / chosen count, at least")
    fill: bool = Field(False, description="When one kind runs short, fill up with the other (the share then "
                       "differs from `proportion`, and says so) instead of shrinking the set to keep it")
