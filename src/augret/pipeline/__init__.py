"""Multi-stage pipelines that chain the stage APIs (embed, index, search, evaluate).

* :func:`run_mbeir` (``augret mbeir run``): an M-BEIR directory (raw or enhanced queries and
  corpus) to run files and the M-BEIR table, reusing every stage whose inputs did not change.
"""

from augret.pipeline.config import RunConfig
from augret.pipeline.mbeir import RunReport, run_mbeir
from augret.pipeline.stages import StageResult

__all__ = ["RunConfig", "RunReport", "StageResult", "run_mbeir"]
