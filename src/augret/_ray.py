"""Shared Ray plumbing of the ``--engine ray`` runs (enhancement and embedding).

Both engines run a Ray Data pipeline whose last stage is a pool of stateful actors, each
holding one model; the driver consumes the results as they stream in and commits them. This
module only connects to Ray, sizes the actor pool and measures throughput; the stage logic
lives with its stage (:mod:`augret.enhance.ray_engine`, :mod:`augret.encode.ray_engine`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from augret._lazy import require
from augret.errors import ConfigError
from augret.ray_resources import RayResources

__all__ = ["Throughput", "actor_pool", "ray_session"]

log = logging.getLogger(__name__)


@contextmanager
def ray_session(res: RayResources) -> Iterator[Any]:
    """Connect to Ray (or start a local instance) for the duration of a run.

    An already initialised Ray (e.g. in a notebook) is reused and left running; a local
    instance started here gets exactly the CPUs and GPUs the actor pool plus the driver's
    read tasks need, and is shut down on exit.

    Yields:
        The ``ray`` module.
    """
    ray = require("ray", "distributed")
    require("ray.data", "distributed")
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                  "configure_logging": False}
        address = res.address or os.environ.get("RAY_ADDRESS")
        if address:
            kwargs["address"] = address
        else:  # a local instance sized for the pool, plus one CPU for reading tasks
            kwargs["num_cpus"] = int(res.workers * res.cpus_per_worker + 1 + 0.999)
            if res.gpus:
                kwargs["num_gpus"] = int(res.gpus + 0.999)
        log.info("starting Ray (%s)", address or "local instance")
        ray.init(**kwargs)
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # augret shows its own progress and throughput
    ctx.print_on_execution_start = False
    # Ray Data logs each dataset's start and end at INFO: augret's progress says it already
    data_log = logging.getLogger("ray.data")
    if data_log.level == logging.NOTSET:  # a level the user chose stays
        data_log.setLevel(logging.WARNING)
    try:
        _check_capacity(ray, res)
        yield ray
    finally:
        if started:
            ray.shutdown()


def _check_capacity(ray: Any, res: RayResources) -> None:
    total = ray.cluster_resources()
    if res.gpus and total.get("GPU", 0) < res.gpus_per_worker:
        raise ConfigError(f"each Ray worker asks for {res.gpus_per_worker} GPU(s) but the "
                          f"cluster has {total.get('GPU', 0):g}")
    if total.get("CPU", 0) < res.cpus_per_worker:
        raise ConfigError(f"each Ray worker asks for {res.cpus_per_worker} CPU(s) but the "
                          f"cluster has {total.get('CPU', 0):g}")
    if total.get("GPU", 0) < res.gpus or total.get("CPU", 0) < res.workers * res.cpus_per_worker:
        log.warning("the cluster (%s) cannot hold %d workers at once; Ray runs as many as fit",
                    {k: total.get(k) for k in ("CPU", "GPU")}, res.workers)


def actor_pool(res: RayResources) -> dict[str, Any]:
    """``map_batches`` arguments for a fixed pool of ``res.workers`` model-holding actors.

    Ray Data restarts a lost actor and retries its in-flight batch elsewhere (its default
    actor fault tolerance), so losing a worker or node costs only that batch.
    """
    ray = require("ray", "distributed")
    return {"compute": ray.data.ActorPoolStrategy(size=res.workers),
            "num_cpus": res.cpus_per_worker, "num_gpus": res.gpus_per_worker}


@dataclass
class Throughput:
    """Rows, tokens and time of one pipeline stage; rates and an ETA for display and reports."""

    stage: str
    total: int | None = None
    gpus: float = 0.0
    rows: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    def add(self, rows: int, tokens: int = 0) -> None:
        self.rows += rows
        self.tokens += tokens
        self.seconds = time.perf_counter() - self.started

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate (``None`` before any row or without a total)."""
        if self.total is None or not self.rows:
            return None
        return max(self.total - self.rows, 0) / self.rows_per_s

    def line(self) -> str:
        """A short display line: ``12.3 rows/s, 456 tok/s, 8 GPU``."""
        parts = [f"{self.rows_per_s:.1f} rows/s"]
        if self.tokens:
            parts.append(f"{self.tokens_per_s:.0f} tok/s")
        if self.gpus:
            parts.append(f"{self.gpus:g} GPU")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "tokens": self.tokens, "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.rows_per_s, 3),
                "tokens_per_s": round(self.tokens_per_s, 3), "gpus": self.gpus}
