"""One code path from 1 process to N: ``torchrun`` environment, gloo on CPU, NCCL on GPU."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from augret._lazy import require

__all__ = ["DistContext", "setup", "teardown"]


@dataclass
class DistContext:
    """Where this process stands.

    Attributes:
        rank: Global rank.
        world: Number of processes.
        local_rank: Rank on this machine.
        device: The torch device of this rank.
        backend: ``gloo``, ``nccl`` or ``None`` (one process).
        owns_group: Whether :func:`setup` created the process group (and so tears it down).
    """

    rank: int
    world: int
    local_rank: int
    device: Any
    backend: str | None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.world > 1:
            require("torch", "train").distributed.barrier()


def setup(device: str = "auto") -> DistContext:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), or run as a single process."""
    torch = require("torch", "train")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if world == 1:
        dev = torch.device("cuda" if device == "auto" and want_cuda else
                           ("cpu" if device == "auto" else device))
        return DistContext(0, 1, 0, dev, None)
    if want_cuda:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    owns = False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
    return DistContext(rank, world, local, dev, backend, owns)


def teardown(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if ctx.owns_group:
        torch = require("torch", "train")
        torch.distributed.destroy_process_group()
