"""One code path from 1 process to N: ``torchrun`` environment, gloo on CPU, NCCL on GPU."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from augret._lazy import require
from augret.errors import ConfigError

__all__ = ["DistContext", "setup", "teardown"]

log = logging.getLogger(__name__)

_watchdog: threading.Thread | None = None


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
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), or run as a single process.

    Under torchrun a watchdog thread also ends this worker when torchrun itself dies.

    Raises:
        ConfigError: More ranks on this node than visible GPUs.
    """
    torch = require("torch", "train")
    if "TORCHELASTIC_RUN_ID" in os.environ:
        _watch_agent()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if world == 1:
        dev = torch.device("cuda" if device == "auto" and want_cuda else
                           ("cpu" if device == "auto" else device))
        return DistContext(0, 1, 0, dev, None)
    if want_cuda:
        visible = torch.cuda.device_count()
        if local >= visible:
            raise ConfigError(f"LOCAL_RANK {local} needs a GPU of its own, but {visible} CUDA "
                              "device(s) are visible: use --nproc_per_node <= the GPUs per "
                              "node (or --device cpu for gloo on CPU)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if (os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"
            and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"):
        log.warning("a restarted torchrun worker group on torchrun's shared store can hang "
                    "in init_process_group; launch torchrun with "
                    "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (run_torchrun does)")
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


def _watch_agent(interval: float = 0.5) -> None:
    """Exit when the ``torchrun`` agent that started this worker dies.

    torchrun starts each worker in a session of its own and stops them only when it shuts
    down cleanly, so a SIGKILLed (or OOM-killed) torchrun would leave its workers training
    on, and writing into the output directory while a ``--resume`` run starts there.
    """
    global _watchdog
    if _watchdog is not None:
        return
    agent = os.getppid()

    def watch() -> None:
        while os.getppid() == agent:
            time.sleep(interval)
        log.error("torchrun (pid %d) is gone; stopping this worker", agent)
        os._exit(1)

    _watchdog = threading.Thread(target=watch, name="augret-torchrun-watchdog", daemon=True)
    _watchdog.start()
