"""Offline training data from scored samples: AST dedup, SFT rows, DPO pairs, decontamination, exports.

``build_sft`` / ``build_dpo`` are what ``effirl data sft|dpo`` run; their typed configs are in
:mod:`effirl.data.config`. Importing this package loads no torch (``datasets`` only when a build is written).
"""

from effirl.data.config import DataConfig, DPODataConfig, SFTDataConfig
from effirl.data.dpo import build_dpo
from effirl.data.scored import ScoredSample, ScoredSet, load_scored
from effirl.data.sft import build_sft
from effirl.data.stats import DataStats

__all__ = ["DPODataConfig", "DataConfig", "DataStats", "SFTDataConfig", "ScoredSample", "ScoredSet",
           "build_dpo", "build_sft", "load_scored"]
