"""Memory a dense index needs to search, and the memory of this machine.

``augret index info`` shows each index directory's needs (through its backend's ``memory``
hook, :attr:`augret.index.backends.IndexBackend.memory`); ``augret plan`` computes the same
figures from row counts before anything is embedded, and compares them with the machine.
The figures count the vectors only (ids and modalities come on top: a few bytes per row).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

__all__ = ["Machine", "MemoryNeeds", "flat16_needs", "flat_needs", "this_machine",
           "vector_bytes"]

log = logging.getLogger(__name__)


def vector_bytes(rows: int, dim: int, itemsize: int) -> int:
    """``rows × dim × itemsize``."""
    return int(rows) * int(dim) * int(itemsize)


@dataclass(frozen=True)
class MemoryNeeds:
    """What searching one index holds, in bytes.

    Attributes:
        fp32: The vectors as float32 (what a FAISS flat index holds).
        fp16: The vectors as float16 (what a flat16 index stores).
        ram: Process memory of a CPU search.
        mapped: Memory-mapped from the index directory: paged in from disk as the search
            reads it (page cache, shared, evictable), never copied.
        gpu: Memory of a GPU search over all GPUs together (``None``: no GPU search).
        gpu_per_device: Added on each GPU (block work).
    """

    fp32: int | None
    fp16: int | None
    ram: int
    mapped: int = 0
    gpu: int | None = None
    gpu_per_device: int = 0


def flat_needs(rows: int, dim: int) -> MemoryNeeds:
    """FAISS ``IndexFlatIP``: float32 vectors in RAM, and on GPUs for a FAISS GPU search."""
    fp32 = vector_bytes(rows, dim, 4)
    return MemoryNeeds(fp32=fp32, fp16=vector_bytes(rows, dim, 2), ram=fp32, gpu=fp32)


def flat16_needs(rows: int, dim: int, block_bytes: int, *, queries: int = 1024
                 ) -> MemoryNeeds:
    """``flat16``: float16 vectors mapped from disk and one block in RAM on the CPU; the
    float16 vectors resident over the GPUs plus one block per GPU on GPUs.

    Args:
        rows: Indexed rows.
        dim: Their dimension.
        block_bytes: The block budget (a block never exceeds the whole collection).
        queries: Queries scored against a block at once (the search batch).
    """
    from augret.index.blocksearch import CELL_BYTES  # the NumPy engine's block work

    fp16 = vector_bytes(rows, dim, 2)
    block = min(int(block_bytes), int(rows) * (4 * int(dim) + CELL_BYTES * queries))
    return MemoryNeeds(fp32=vector_bytes(rows, dim, 4), fp16=fp16, ram=block,
                       mapped=fp16, gpu=fp16, gpu_per_device=block)


@dataclass(frozen=True)
class Machine:
    """Memory of a machine.

    Attributes:
        ram: Physical memory (``None``: unknown).
        gpus: Memory of each GPU.
    """

    ram: int | None
    gpus: list[int] = field(default_factory=list)


def _ram() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _gpus() -> list[int]:
    try:
        import torch
    except ImportError:
        return []
    try:
        if not torch.cuda.is_available():
            return []
        return [int(torch.cuda.get_device_properties(i).total_memory)
                for i in range(torch.cuda.device_count())]
    except RuntimeError as exc:  # a CUDA build without a usable driver
        log.info("no GPU memory: %s", exc)
        return []


def this_machine() -> Machine:
    """This machine's RAM and the memory of each GPU torch sees."""
    return Machine(ram=_ram(), gpus=_gpus())
