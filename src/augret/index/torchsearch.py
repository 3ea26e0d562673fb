"""The torch engine of ``flat16``: the same exact blocked search on GPUs (or torch's CPU).

Each device takes a contiguous share of the rows (several GPUs of one machine shard the
candidates), searches it block by block in float32 (blocks converted from float16 and
L2-normalised on the device, scored with a float32 matrix product at full precision, no
TF32), keeps per-query top-k buffers on the device, and the shares' results are merged on
the host. The tie rule is :mod:`augret.index.blocksearch`'s: equal scores, lower row first.

A GPU keeps its share resident in float16 when it fits beside the block work (uploaded once,
block by block from the memory-mapped shards, so host memory stays one block); otherwise
every query batch streams the share from the host. torch is imported only here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from augret._lazy import require
from augret.errors import ConfigError
from augret.index.blocksearch import RowBlocks, block_rows, merge_topk
from augret.index.config import DEVICE_PATTERN

__all__ = ["TorchEngine", "cuda_devices", "resolve_devices"]

log = logging.getLogger(__name__)

#: Bytes per (query, row) cell: float32 scores, comparison masks, top-k work.
CELL_BYTES = 12
#: Share of a GPU's free memory a resident share may take.
RESIDENT_FRACTION = 0.85


def _torch() -> Any:
    return require("torch", "train")


def cuda_devices() -> list[str]:
    """The CUDA devices torch sees (``[]`` without torch or a GPU)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def resolve_devices(spec: str) -> list[str] | None:
    """The torch devices a ``device`` value names; ``None`` for the NumPy CPU engine.

    ``auto``: every visible GPU, else the CPU (NumPy); ``cpu``: NumPy; ``cuda``: every
    visible GPU; ``cuda:N`` or ``cuda:N,M``: those GPUs.

    Raises:
        ConfigError: A malformed value, or GPUs asked for that torch does not see.
    """
    if not DEVICE_PATTERN.match(spec):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or cuda:N,M; got {spec!r}")
    if spec == "cpu":
        return None
    seen = cuda_devices()
    if spec == "auto":
        return seen or None
    if not seen:
        raise ConfigError(f"device {spec!r} but torch sees no GPU (a CUDA build of torch and "
                          "a driver are needed; --device cpu searches with NumPy)")
    if spec == "cuda":
        return seen
    wanted = [f"cuda:{i}" for i in spec.partition(":")[2].split(",")]
    missing = [d for d in wanted if d not in seen]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not visible (torch sees {len(seen)} GPU(s))")
    return list(dict.fromkeys(wanted))


@contextlib.contextmanager
def _full_precision(torch: Any) -> Iterator[None]:
    """float32 matrix products in full float32 (no TF32), restored afterwards."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _block_topk(torch: Any, s: Any, k: int) -> tuple[Any, Any]:
    """The top ``min(k, cols)`` of each row of ``s``, ties at the k-th score by lower column."""
    kk = min(k, s.shape[1])
    vals, idx = torch.topk(s, kk, dim=1)
    kth = vals[:, -1:]
    tied = ((s >= kth).sum(dim=1) > kk) & (kth[:, 0] > float("-inf"))
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        t, b = s[rows], kth[rows]
        eq = t == b
        room = kk - (t > b).sum(dim=1, keepdim=True)
        keep = (t > b) | (eq & (eq.cumsum(dim=1) <= room))
        cols = keep.nonzero()[:, 1].view(len(rows), kk)
        idx[rows] = cols
        vals[rows] = t.gather(1, cols)
    return vals, idx


def _merge(torch: Any, best_s: Any, best_r: Any, s: Any, r: Any, k: int) -> tuple[Any, Any]:
    cs = torch.cat([best_s, s], dim=1)
    cr = torch.cat([best_r, r], dim=1)
    order = torch.argsort(cr, dim=1, stable=True)
    cs, cr = cs.gather(1, order), cr.gather(1, order)
    order = torch.argsort(cs, dim=1, descending=True, stable=True)[:, :k]
    return cs.gather(1, order), cr.gather(1, order)


class _Share:
    """One device's rows ``[lo, hi)``: resident in float16 on the device, or streamed."""

    def __init__(self, torch: Any, device: str, blocks: RowBlocks | None, lo: int, hi: int, *,
                 block_bytes: int, resident: bool | None, data: Any = None) -> None:
        self.torch, self.device, self.blocks = torch, torch.device(device), blocks
        self.lo, self.hi = lo, hi
        self.data: Any = data
        if data is not None or blocks is None:
            return
        if resident is None:
            resident = self._fits(block_bytes)
        if resident and hi > lo:
            self._upload(block_rows(block_bytes, blocks.dim, 0))

    def _fits(self, block_bytes: int) -> bool:
        if self.device.type != "cuda":
            return False
        free, _ = self.torch.cuda.mem_get_info(self.device)
        need = (self.hi - self.lo) * self.blocks.dim * 2
        return need + 2 * block_bytes <= RESIDENT_FRACTION * free

    def _upload(self, rows: int) -> None:
        torch = self.torch
        self.data = torch.empty((self.hi - self.lo, self.blocks.dim), dtype=torch.float16,
                                device=self.device)
        for first, x in self.blocks.iter(rows, lo=self.lo, hi=self.hi, dtype=np.float16):
            self.data[first - self.lo: first - self.lo + len(x)] = torch.from_numpy(x)
        log.info("%s holds rows %d-%d resident (%.2f GiB float16)", self.device, self.lo,
                 self.hi, self.data.numel() * 2 / 2**30)

    def _iter(self, rows: int) -> Iterator[tuple[int, Any]]:
        torch = self.torch
        if self.data is not None:
            for start in range(0, self.hi - self.lo, rows):
                yield self.lo + start, self.data[start: start + rows].float()
            return
        for first, x in self.blocks.iter(rows, lo=self.lo, hi=self.hi, dtype=np.float16):
            yield first, torch.from_numpy(x).to(self.device).float()

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None, *,
               rows: int, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device)
        best_s = torch.full((len(q), k), float("-inf"), device=self.device)
        best_r = torch.full((len(q), k), -1, dtype=torch.int64, device=self.device)
        mask = None
        if allowed is not None:
            mask = torch.from_numpy(np.ascontiguousarray(allowed[self.lo: self.hi])).to(
                self.device)
        with torch.inference_mode():
            for first, x in self._iter(rows):
                if normalize:  # x is this block's own float32 copy
                    norms = torch.linalg.vector_norm(x, dim=1)
                    x.div_(torch.where(norms == 0, torch.ones_like(norms), norms)[:, None])
                s = q @ x.T
                if mask is not None:
                    s.masked_fill_(~mask[first - self.lo: first - self.lo + len(x)][None, :],
                                   float("-inf"))
                vals, idx = _block_topk(torch, s, k)
                best_s, best_r = _merge(torch, best_s, best_r, vals, idx + first, k)
            best_r = torch.where(best_s > float("-inf"), best_r, torch.full_like(best_r, -1))
        return best_s.cpu().numpy(), best_r.cpu().numpy()


class TorchEngine:
    """Exact blocked search with torch on one or more devices (rows sharded across them).

    Args:
        blocks: The stored rows.
        devices: torch devices (``["cuda:0", "cuda:1"]``; ``["cpu"]`` runs torch on the CPU).
        normalize: L2-normalise rows before scoring.
        block_bytes: The memory budget of one block per device (float32 rows and score
            work); a GPU's resident float16 share comes on top.
        resident: Keep each GPU's share resident (``None``: when it fits).
    """

    def __init__(self, blocks: RowBlocks, devices: Sequence[str], *, normalize: bool = True,
                 block_bytes: int = 256 << 20, resident: bool | None = None) -> None:
        if not devices:
            raise ConfigError("the torch engine needs at least one device")
        torch = _torch()
        bounds = np.linspace(0, len(blocks), len(devices) + 1).round().astype(np.int64)
        shares = [_Share(torch, d, blocks, int(lo), int(hi), block_bytes=block_bytes,
                         resident=resident)
                  for d, lo, hi in zip(devices, bounds[:-1], bounds[1:], strict=True)]
        self._setup(torch, shares, blocks.dim, normalize=normalize, block_bytes=block_bytes)

    @classmethod
    def from_tensors(cls, tensors: Sequence[Any], *, normalize: bool = True,
                     block_bytes: int = 256 << 20) -> TorchEngine:
        """An engine over float16 ``(rows, dim)`` tensors already on their devices: one share
        per tensor, their rows in the order given.

        Raises:
            ConfigError: No tensor, or tensors of other dtypes or widths.
        """
        torch = _torch()
        if not tensors or any(t.dtype != torch.float16 or t.ndim != 2
                              or t.shape[1] != tensors[0].shape[1] for t in tensors):
            raise ConfigError("from_tensors takes 2-D float16 tensors of one width")
        bounds = np.cumsum([0, *(len(t) for t in tensors)])
        shares = [_Share(torch, str(t.device), None, int(lo), int(hi), block_bytes=block_bytes,
                         resident=True, data=t)
                  for t, lo, hi in zip(tensors, bounds[:-1], bounds[1:], strict=True)]
        engine = cls.__new__(cls)
        engine._setup(torch, shares, int(tensors[0].shape[1]), normalize=normalize,
                      block_bytes=block_bytes)
        return engine

    def _setup(self, torch: Any, shares: list[_Share], dim: int, *, normalize: bool,
               block_bytes: int) -> None:
        self.torch = torch
        self.shares = shares
        self.dim = dim
        self.rows = shares[-1].hi if shares else 0
        self.devices = [str(share.device) for share in shares]
        self.device = ",".join(self.devices)
        self.normalize = normalize
        self.block_bytes = block_bytes
        self._pool = (ThreadPoolExecutor(len(shares), thread_name_prefix="flat16")
                      if len(shares) > 1 else None)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, rows)`` of float32 queries: float32 scores (``-inf`` padding),
        int64 rows (``-1`` padding), equal scores by lower row."""
        if not len(queries) or not self.rows:
            return (np.full((len(queries), k), -np.inf, dtype=np.float32),
                    np.full((len(queries), k), -1, dtype=np.int64))

        rows = block_rows(self.block_bytes, self.dim, len(queries), cell_bytes=CELL_BYTES)

        def one(share: _Share) -> tuple[np.ndarray, np.ndarray]:
            return share.search(queries, k, allowed, rows=rows, normalize=self.normalize)

        with _full_precision(self.torch):
            if self._pool is None:
                return one(self.shares[0])
            return merge_topk(list(self._pool.map(one, self.shares)), k)

    @property
    def resident(self) -> list[bool]:
        """Per device: whether its share is held resident."""
        return [share.data is not None for share in self.shares]
