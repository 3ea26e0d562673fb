"""``experiment.json``: the per-stage status and input fingerprint of an experiment run.

Written atomically after every change, so a crash leaves the last consistent state; a stage
whose fingerprint matches a ``done`` entry is skipped on the next run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from augret.data.jsonl import read_json, write_json

__all__ = ["STATE_FILE", "ExperimentState"]

log = logging.getLogger(__name__)

STATE_FILE = "experiment.json"


class ExperimentState:
    """The stage records of one experiment directory.

    Args:
        out_dir: The experiment directory (``experiment.json`` lives there).
        name: The experiment name (recorded).
    """

    def __init__(self, out_dir: Path, name: str) -> None:
        self.path = Path(out_dir) / STATE_FILE
        data: dict[str, Any] = read_json(self.path) if self.path.is_file() else {}
        self.name = name
        self.stages: dict[str, dict[str, Any]] = data.get("stages", {})

    def entry(self, stage: str) -> dict[str, Any] | None:
        """The record of ``stage``, if any."""
        return self.stages.get(stage)

    def is_done(self, stage: str, fp: str) -> bool:
        """Whether ``stage`` finished with inputs of fingerprint ``fp``."""
        e = self.stages.get(stage)
        return e is not None and e.get("status") == "done" and e.get("fingerprint") == fp

    def start(self, stage: str, fp: str) -> None:
        """Record that ``stage`` is running with fingerprint ``fp``."""
        self.stages[stage] = {"status": "running", "fingerprint": fp,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.save()

    def finish(self, stage: str, seconds: float, **info: Any) -> None:
        """Record that ``stage`` finished, with optional JSON-able details."""
        e = self.stages[stage]
        e.update(status="done", seconds=round(seconds, 3),
                 finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **info)
        self.save()

    def save(self) -> None:
        """Write ``experiment.json`` atomically."""
        write_json(self.path, {"name": self.name, "stages": self.stages}, default=str)
