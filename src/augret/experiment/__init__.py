"""Experiments: the config of a whole paper-style experiment, the planner, reports and the
side-by-side viewer.

* :class:`~augret.experiment.config.ExperimentConfig`: data, enhancement, encoder, training,
  conditions and planning assumptions (``configs/mbeir-paper.yaml``).
* :func:`~augret.experiment.plan.plan`: counts, tokens, memory and GPU-hours from the data.
* :func:`~augret.experiment.report.write_report`: tables, significance, plots and the
  ablation answers over condition run directories.
* :func:`~augret.experiment.viewer.write_viewer`: a static HTML page comparing two systems.
"""

from augret.experiment.config import ConditionConfig, ExperimentConfig, paper_conditions

__all__ = ["ConditionConfig", "ExperimentConfig", "paper_conditions", "plan", "write_report",
           "write_viewer"]


def __getattr__(name: str):
    if name == "plan":
        from augret.experiment.plan import plan

        return plan
    if name == "write_report":
        from augret.experiment.report import write_report

        return write_report
    if name == "write_viewer":
        from augret.experiment.viewer import write_viewer

        return write_viewer
    raise AttributeError(name)
