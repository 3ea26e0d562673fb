"""Experiments: the config of a whole paper-style experiment, the planner, reports and the
side-by-side viewer.

* :class:`~augret.experiment.config.ExperimentConfig`: data, enhancement, encoder, training,
  conditions and planning assumptions (``configs/mbeir-paper.yaml``).
* :func:`~augret.experiment.plan.plan`: counts, tokens, memory and GPU-hours from the data.
* :func:`~augret.experiment.report.write_report`: tables, significance, plots and the
  ablation answers over condition run directories.
* :func:`~augret.experiment.viewer.write_viewer`: a static HTML page comparing two systems.
* :func:`~augret.experiment.run.run_experiment`: the whole experiment (``augret experiment``),
  cached stage by stage.
"""

from augret.experiment.config import ConditionConfig, ExperimentConfig, paper_conditions
from augret.experiment.plan import plan
from augret.experiment.report import write_report
from augret.experiment.run import run_experiment
from augret.experiment.viewer import write_viewer

__all__ = [
    "ConditionConfig",
    "ExperimentConfig",
    "paper_conditions",
    "plan",
    "run_experiment",
    "write_report",
    "write_viewer",
]
