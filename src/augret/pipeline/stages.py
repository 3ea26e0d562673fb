"""Stage bookkeeping for pipelines: input fingerprints and reuse of unchanged stages.

A stage's fingerprint hashes its config and its inputs (source files by path, size and
mtime, or the fingerprints of the stages it consumes). When a stage finishes it writes
``stage.json`` (name, fingerprint, inputs, config, seconds) into its output directory; the
next run reuses the stage when the fingerprint is the same. ``stage.json`` is removed before
a stage starts, so an interrupted stage is never taken for a finished one. Fingerprints and
``stage.json`` belong to :mod:`augret.formats.fingerprint`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augret.formats.fingerprint import (
    STAGE_FILE,
    file_stats,
    fingerprint,
    read_stage_record,
    write_stage_record,
)

__all__ = ["STAGE_FILE", "StageResult", "file_stats", "fingerprint", "run_stage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResult:
    """What happened to one stage.

    Attributes:
        name: The stage.
        status: ``ran`` or ``reused``.
        fingerprint: Its input fingerprint.
        directory: Its output directory.
        seconds: Time spent in this run (about 0 when reused).
    """

    name: str
    status: str
    fingerprint: str
    directory: Path
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "fingerprint": self.fingerprint,
                "directory": str(self.directory), "seconds": round(self.seconds, 3)}


def run_stage(name: str, directory: Path, fp: str, work: Callable[[], Any], *,
              inputs: Any = None, config: Any = None, force: bool = False,
              clear: Callable[[Path], None] | None = None,
              outputs: Iterable[Path] = ()) -> StageResult:
    """Run ``work`` unless ``directory`` holds a finished stage of the same fingerprint.

    Args:
        name: The stage name (logs, ``stage.json``).
        directory: The stage's output directory.
        fp: The stage's input fingerprint.
        work: Produces the stage's outputs in ``directory``.
        inputs: What the fingerprint covers (recorded in ``stage.json``).
        config: The stage's resolved config (recorded in ``stage.json``).
        force: Run even when up to date.
        clear: Called on ``directory`` before ``work`` when the stage runs (e.g. to drop
            outputs of an earlier config).
        outputs: Files that must exist for the stage to be reused.
    """
    directory = Path(directory)
    present = all(Path(p).is_file() for p in outputs)
    if not force and present and read_stage_record(directory).get("fingerprint") == fp:
        log.info("%s: inputs unchanged (%s); reused", name, fp)
        return StageResult(name, "reused", fp, directory, 0.0)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STAGE_FILE).unlink(missing_ok=True)
    if clear is not None:
        clear(directory)
    log.info("%s: running (%s)", name, fp)
    t0 = time.perf_counter()
    work()
    seconds = time.perf_counter() - t0
    write_stage_record(directory, {"stage": name, "fingerprint": fp, "inputs": inputs,
                                   "config": config, "seconds": round(seconds, 3),
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return StageResult(name, "ran", fp, directory, seconds)
