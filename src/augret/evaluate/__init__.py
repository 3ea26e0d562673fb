"""Evaluation from runs and qrels: metrics, run files, the M-BEIR table and run comparison.

Pure computation: nothing here loads a model. Submodules: :mod:`~augret.evaluate.runs`,
:mod:`~augret.evaluate.metrics`, :mod:`~augret.evaluate.compare`,
:mod:`~augret.evaluate.table` and :mod:`~augret.evaluate.rundir`.
"""

from augret.evaluate.metrics import DEFAULT_METRICS, EvalResult, evaluate, parse_metrics
from augret.evaluate.runs import Run, read_run, write_run

__all__ = [
    "DEFAULT_METRICS",
    "EvalResult",
    "Run",
    "evaluate",
    "parse_metrics",
    "read_run",
    "write_run",
]
