"""The typed settings of :class:`effirl.training.reward.EfficiencyReward`, as a trainer's YAML config holds
them.

Why it exists: the online reward has more knobs than the group-reward formula (``RewardConfig``): which tasks
and meter, how many sandbox workers, the inputs seed, and the time budgets that keep one looping completion
from holding a step. They live here, typed and strict (``extra="forbid"``), so a trainer config can carry them
as one block (``reward: {suite: builtin, meter: callgrind, round_to: 0.1, ...}``) and the CLI can override
them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from effirl.execution.config import SandboxConfig
from effirl.scoring.reward import RewardConfig


class EfficiencyRewardConfig(BaseModel):
    """Everything :class:`~effirl.training.reward.EfficiencyReward` is built from (its keyword arguments).

    Time budgets (see :mod:`effirl.training.reward_runs`): a completion is checked on the task's tests and the
    step's fresh performance input with a per-result clock of ``max(min_budget_s, budget_factor x`` the
    slowest reference's native time``)``, and measured under the meter within ``max(min_budget_s,
    budget_factor x`` the slowest reference's time under that meter``)`` plus an allowance for the
    child's set-up, which the measured run's clock includes: ``start_allowance_s``, and
    ``import_allowance_s`` for each installed module the program's import statements name that the sandbox's
    servers do not hold already (the harness imports them before the count starts; at most 16 such modules
    are allowed for), in native seconds scaled by the meter's slowdown. Tasks without a reference get the
    sandbox's flat ``test_timeout_s`` and ``total_timeout_s`` instead.

    ``fresh_inputs``: new generator inputs every call; a task without a generator keeps fixed performance
    inputs (its dataset's, or its largest test input), which the reward says once at construction.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite: str = "builtin"
    source: str | None = None  # a local file or folder of the suite (None: its default location)
    meter: str = "auto"  # auto | perf | callgrind | cputime
    reward: RewardConfig = Field(default_factory=RewardConfig)  # the paper's constants; round_to: with Round
    workers: int | None = Field(default=None, ge=1)  # sandbox workers per pool (None: one per CPU)
    fresh_inputs: bool = True  # new performance inputs every call (seed from the trainer's step)
    inputs_seed: int = 0  # base seed of the performance inputs (a call's: run_seed(inputs_seed, step))
    calibration: str | None = None  # a file of effirl inputs calibrate; None: the suite's shipped one
    scales: dict[str, int] | None = None  # generator scale per task id (wins over the calibration)
    budget_factor: float = Field(default=10.0, ge=1.0)
    min_budget_s: float = Field(default=1.0, gt=0)  # floor of both clocks (each in its own seconds)
    start_allowance_s: float = Field(default=0.2, ge=0)  # native seconds for a measured child's set-up
    import_allowance_s: float = Field(default=0.02, ge=0)  # native seconds per named module it pre-imports
    num_generations: int | None = Field(default=None, ge=1)  # completions per prompt (duplicates vs splits)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
