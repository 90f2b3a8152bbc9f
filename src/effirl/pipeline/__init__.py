"""The two-stage pipeline: base model -> samples -> scores -> DPO data -> DPO -> RL -> evaluation -> report.

It joins the stage packages (generation, evaluation, data, training) and holds none of their logic:
``load_pipeline_config`` finds and checks a config, ``run_pipeline`` runs or resumes its stages, ``make_plan``
says what a config would run. Importing this package loads no torch.
"""

from effirl.pipeline.config import PipelineConfig, stage_names
from effirl.pipeline.loading import load_pipeline_config, shipped_configs
from effirl.pipeline.plan import make_plan
from effirl.pipeline.runner import RunResult, run_pipeline

__all__ = ["PipelineConfig", "RunResult", "load_pipeline_config", "make_plan", "run_pipeline", "shipped_configs",
           "stage_names"]
