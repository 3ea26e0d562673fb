"""The Ray sub-config shared by the ``ray`` engines of ``augret enhance`` and ``augret embed``.

Both stage configs nest it as ``ray:`` (YAML keys ``address``, ``workers``,
``gpus_per_worker``, ``cpus_per_worker``); none of it changes what a run writes, so none of
it is hashed.
"""

from __future__ import annotations

from dataclasses import dataclass

from augret.config import check_min, option
from augret.errors import ConfigError

__all__ = ["RayResources"]


@dataclass(frozen=True)
class RayResources:
    """How many model-holding Ray actors to run and what each one reserves."""

    address: str | None = option(
        None, hash=False,
        help="Ray cluster address (auto, ray://HOST:10001, HOST:6379); none starts a local "
             "Ray instance for the run (or joins $RAY_ADDRESS).")
    workers: int = option(1, hash=False, help="Ray actors, each holding one model.")
    gpus_per_worker: float = option(
        0.0, hash=False,
        help="GPUs each actor reserves (0 on CPU; 1 for one vLLM engine; more for tensor "
             "parallelism).")
    cpus_per_worker: float = option(
        1.0, hash=False,
        help="CPUs each actor reserves (its torch threads on CPU; image decoding runs in it).")

    def __post_init__(self) -> None:
        check_min(self, 1, "workers")
        check_min(self, 0, "gpus_per_worker")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker!r}")

    @property
    def gpus(self) -> float:
        """GPUs the whole pool reserves."""
        return self.workers * self.gpus_per_worker
