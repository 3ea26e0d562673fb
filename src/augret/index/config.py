"""Typed configs of the index stage (load them with :func:`augret.config.load_config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from augret.errors import ConfigError

__all__ = ["BM25Config", "IndexConfig", "SearchConfig", "check_gpu_mode"]

IndexKind = Literal["flat", "ivf", "hnsw", "ivfpq", "pq"]
GpuMode = Literal["auto", "on", "off"]
DENSE_KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw", "ivfpq", "pq")


def check_gpu_mode(value: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is ``auto``, ``on`` or ``off``."""
    if value not in ("auto", "on", "off"):
        raise ConfigError(f"gpu must be 'auto', 'on' or 'off', got {value!r}")


@dataclass(frozen=True)
class IndexConfig:
    """How a dense (FAISS) index is built.

    All indexes use inner product on L2-normalised vectors (cosine), as UniIR.

    Attributes:
        kind: ``flat`` (exact; UniIR's ``IDMap,Flat``, the only kind for M-BEIR numbers),
            ``ivf`` (inverted lists, flat codes), ``hnsw`` (graph), ``ivfpq`` (inverted lists,
            product-quantised codes) or ``pq`` (product quantisation, exhaustive).
        normalize: L2-normalise vectors before indexing (UniIR does; keep it on).
        nlist: IVF lists; ``None`` picks ``4·√n`` (at most ``n / 39``).
        nprobe: IVF lists visited per query (stored; a search may override it).
        hnsw_m: HNSW neighbours per node.
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW search-time beam width (stored; a search may override it).
        pq_m: PQ sub-quantisers (must divide the dimension); ``None`` picks about ``dim / 8``.
        pq_nbits: Bits per PQ code.
        train_size: Vectors sampled to train IVF/PQ; ``None`` picks
            ``min(n, max(100_000, 64·nlist))``.
        recall_queries: Indexed vectors used as queries to measure recall against exact search
            after an approximate build (0 skips the measurement).
        recall_k: The k of that recall@k.
        seed: Seed of the training and recall samples.
        gpu: ``auto`` uses FAISS GPUs when ``faiss.get_num_gpus() > 0``; ``on`` requires them.
        batch_rows: Rows converted to float32 at a time while streaming shards.
    """

    kind: IndexKind = "flat"
    normalize: bool = True
    nlist: int | None = None
    nprobe: int = 32
    hnsw_m: int = 32
    ef_construction: int = 100
    ef_search: int = 128
    pq_m: int | None = None
    pq_nbits: int = 8
    train_size: int | None = None
    recall_queries: int = 1000
    recall_k: int = 10
    seed: int = 0
    gpu: GpuMode = "auto"
    batch_rows: int = 65_536

    def __post_init__(self) -> None:
        for name in ("nprobe", "hnsw_m", "ef_construction", "ef_search", "pq_nbits",
                     "recall_k", "batch_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer")
        for name in ("nlist", "pq_m", "train_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive integer")
        if self.recall_queries < 0:
            raise ConfigError("recall_queries must be >= 0")
        check_gpu_mode(self.gpu)


@dataclass(frozen=True)
class BM25Config:
    """How a BM25 index is built (bm25s).

    Attributes:
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: bm25s scoring variant (``lucene``, ``robertson``, ``atire``, ``bm25l``,
            ``bm25+``).
        stopwords: ``en`` drops English stopwords (bm25s's list); ``none`` keeps every token.
        stemmer: A PyStemmer algorithm (e.g. ``english``); needs ``pip install PyStemmer``.
        text_field: The candidate field indexed (``txt``: after enhancement, the captions).
    """

    k1: float = 1.5
    b: float = 0.75
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    stopwords: Literal["en", "none"] = "en"
    stemmer: str | None = None
    text_field: Literal["txt", "txt_raw"] = "txt"

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ConfigError("BM25 needs k1 >= 0 and 0 <= b <= 1")


@dataclass(frozen=True)
class SearchConfig:
    """How query entries are searched and run files written.

    Attributes:
        k: Depth of every run; ``None`` uses each task's deepest metric (10, or 50 for
            Fashion200K and FashionIQ), as UniIR.
        batch_size: Queries per search call.
        filter_modality: Keep only candidates of the task's target modality (over-fetching
            so that k results remain). Off by default: UniIR does not filter.
        nprobe: Override the index's IVF ``nprobe``.
        ef_search: Override the index's HNSW ``efSearch``.
        gpu: ``auto`` searches on FAISS GPUs when present.
        threads: BM25 search threads (0: one).
        tag: The run tag (6th column); ``None``: ``augret_<kind>``.
    """

    k: int | None = None
    batch_size: int = 1024
    filter_modality: bool = False
    nprobe: int | None = None
    ef_search: int | None = None
    gpu: GpuMode = "auto"
    threads: int = 0
    tag: str | None = None

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise ConfigError("k must be a positive integer")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be a positive integer")
        check_gpu_mode(self.gpu)
