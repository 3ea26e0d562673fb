"""Thin helpers over FAISS: factory strings, GPU cloning, search-time parameters."""

from __future__ import annotations

import logging
import math
from types import ModuleType
from typing import Any

import numpy as np

from augret._lazy import require
from augret.errors import ConfigError

log = logging.getLogger(__name__)

GPU_MAX_K = 2048  # FAISS GPU k-selection limit


def faiss() -> ModuleType:
    """The ``faiss`` module (``augret[index]``)."""
    return require("faiss", "index")


def gpu_count(fa: ModuleType) -> int:
    """FAISS GPUs visible (0 for a CPU-only build)."""
    try:
        return int(fa.get_num_gpus()) if hasattr(fa, "get_num_gpus") else 0
    except Exception:  # a GPU build without a usable driver
        return 0


def want_gpu(fa: ModuleType, mode: str) -> bool:
    """Whether to use GPUs under ``mode`` (``auto``, ``on``, ``off``).

    Raises:
        ConfigError: ``on`` without a FAISS GPU build and device.
    """
    if mode == "off":
        return False
    n = gpu_count(fa)
    if mode == "on" and n == 0:
        raise ConfigError("gpu 'on' but FAISS sees no GPU (install faiss-gpu and a driver)")
    return n > 0


def to_gpus(fa: ModuleType, index: Any) -> Any:
    """Clone a CPU index onto all GPUs, sharded as UniIR does; the input on failure."""
    try:
        co = fa.GpuMultipleClonerOptions()
        co.shard = True
        return fa.index_cpu_to_all_gpus(index, co=co)
    except (RuntimeError, AttributeError) as exc:  # e.g. HNSW has no GPU version
        log.warning("FAISS could not move the index to GPU (%s); staying on CPU", exc)
        return index


_GPU_RESOURCES: list[Any] = []  # kept alive as long as the indexes that use them


def to_gpu(fa: ModuleType, index: Any) -> Any:
    """Clone a CPU index onto GPU 0 (to train and fill IVF/PQ: one quantizer, not one per
    shard); the input on failure."""
    try:
        if not _GPU_RESOURCES:
            _GPU_RESOURCES.append(fa.StandardGpuResources())
        return fa.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)
    except (RuntimeError, AttributeError) as exc:
        log.warning("FAISS could not move the index to GPU (%s); building on CPU", exc)
        return index


def to_cpu(fa: ModuleType, index: Any) -> Any:
    """A CPU copy of a GPU index (the index itself when it already is on CPU)."""
    on_gpu = "Gpu" in type(index).__name__ or _is_shards(index)
    return fa.index_gpu_to_cpu(index) if on_gpu and hasattr(fa, "index_gpu_to_cpu") else index


def _is_shards(index: Any) -> bool:
    return type(index).__name__ in ("IndexShards", "IndexReplicas")


def default_nlist(n: int) -> int:
    """``4·√n`` lists, at most ``n / 39`` (FAISS wants 39 training points per list)."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def default_pq_m(dim: int) -> int:
    """The divisor of ``dim`` closest to ``dim / 8`` from below (at least 1)."""
    target = max(1, dim // 8)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def factory(kind: str, dim: int, n: int, *, nlist: int | None, hnsw_m: int,
            pq_m: int | None, pq_nbits: int) -> tuple[str, dict[str, int]]:
    """The FAISS factory string of ``kind`` and the resolved structural parameters.

    Raises:
        ConfigError: Unknown kind, or ``pq_m`` not dividing ``dim``.
    """
    if kind == "flat":
        return "Flat", {}
    if kind == "hnsw":
        return f"HNSW{hnsw_m},Flat", {"hnsw_m": hnsw_m}
    params: dict[str, int] = {}
    if kind in ("ivf", "ivfpq"):
        params["nlist"] = nlist or default_nlist(n)
    if kind in ("ivfpq", "pq"):
        m = pq_m or default_pq_m(dim)
        if dim % m:
            raise ConfigError(f"pq_m={m} must divide the dimension {dim}")
        params.update(pq_m=m, pq_nbits=pq_nbits)
    if kind == "ivf":
        return f"IVF{params['nlist']},Flat", params
    if kind == "ivfpq":
        return f"IVF{params['nlist']},PQ{params['pq_m']}x{pq_nbits}", params
    if kind == "pq":
        return f"PQ{params['pq_m']}x{pq_nbits}", params
    raise ConfigError(f"unknown index kind {kind!r}; use flat, ivf, hnsw, ivfpq or pq")


def set_search_params(fa: ModuleType, index: Any, kind: str, *, nprobe: int | None = None,
                      ef_search: int | None = None) -> None:
    """Set IVF ``nprobe`` / HNSW ``efSearch`` on an index of ``kind`` (CPU or GPU copy)."""
    gpu = "Gpu" in type(index).__name__ or _is_shards(index)
    space = fa.GpuParameterSpace() if gpu and hasattr(fa, "GpuParameterSpace") \
        else fa.ParameterSpace()
    if nprobe is not None and kind in ("ivf", "ivfpq"):
        space.set_index_parameter(index, "nprobe", nprobe)
    if ef_search is not None and kind == "hnsw":
        space.set_index_parameter(index, "efSearch", ef_search)


def flat_index_filled(fa: ModuleType, dim: int, n: int) -> tuple[Any, np.ndarray | None]:
    """An ``IndexFlatIP`` sized for ``n`` vectors and a writable view of its storage.

    Filling the view in place allocates the index once (an ``add`` per shard would grow its
    buffer geometrically, up to twice the final size). The view is ``None`` when this FAISS
    build does not expose its storage; then add vectors with ``index.add``.
    """
    index = fa.IndexFlatIP(dim)
    if n == 0:
        return index, None
    try:
        index.codes.resize(n * dim * 4)
        view = fa.rev_swig_ptr(index.codes.data(), n * dim * 4).view(np.float32)
        view = view.reshape(n, dim)
    except (AttributeError, TypeError, RuntimeError):
        return fa.IndexFlatIP(dim), None
    index.ntotal = n
    return index, view
