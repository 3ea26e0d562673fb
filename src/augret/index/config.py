"""Typed configs of the index stage (load them with :func:`augret.config.load_config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from augret.config import check_choices, check_min, option
from augret.errors import ConfigError

__all__ = ["BM25Config", "IndexConfig", "SearchConfig", "check_gpu_mode"]

IndexKind = Literal["flat", "ivf", "hnsw", "ivfpq", "pq"]
GpuMode = Literal["auto", "on", "off"]
DENSE_KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw", "ivfpq", "pq")
#: Hash scope of an experiment condition's fingerprint of its dense or hybrid retrieval: it
#: takes every IndexConfig field (:func:`augret.config.hash_values`).
_RETRIEVAL_SCOPES = ("dense", "hybrid")


def check_gpu_mode(value: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is ``auto``, ``on`` or ``off``."""
    if value not in ("auto", "on", "off"):
        raise ConfigError(f"gpu must be 'auto', 'on' or 'off', got {value!r}")


@dataclass(frozen=True)
class IndexConfig:
    """How a dense (FAISS) index is built.

    All indexes use inner product on L2-normalised vectors (cosine), as UniIR.
    """

    kind: IndexKind = option(
        "flat", help="flat (exact; UniIR's IDMap,Flat, the only kind for M-BEIR numbers), ivf "
                     "(inverted lists, flat codes), hnsw (graph), ivfpq (inverted lists, "
                     "product-quantised codes) or pq (product quantisation, exhaustive).")
    normalize: bool = option(True, help="L2-normalise vectors before indexing (UniIR does; "
                                        "keep it on).")
    nlist: int | None = option(None, help="IVF lists; none picks 4·√n (at most n / 39).")
    nprobe: int = option(32, help="IVF lists visited per query (stored; a search may "
                                  "override it).")
    hnsw_m: int = option(32, help="HNSW neighbours per node.")
    ef_construction: int = option(100, help="HNSW build-time beam width.")
    ef_search: int = option(128, help="HNSW search-time beam width (stored; a search may "
                                      "override it).")
    pq_m: int | None = option(None, help="PQ sub-quantisers (must divide the dimension); none "
                                         "picks about dim / 8.")
    pq_nbits: int = option(8, help="Bits per PQ code.")
    train_size: int | None = option(None, help="Vectors sampled to train IVF/PQ; none picks "
                                               "min(n, max(100000, 64·nlist)).")
    recall_queries: int = option(1000, help="Indexed vectors used as queries to measure "
                                            "recall against exact search after an "
                                            "approximate build (0 skips the measurement).")
    recall_k: int = option(10, help="The k of that recall@k.")
    seed: int = option(0, help="Seed of the training and recall samples.")
    gpu: GpuMode = option("auto", hash=_RETRIEVAL_SCOPES,
                          help="auto uses FAISS GPUs when there are any; on requires them.")
    batch_rows: int = option(65_536, hash=_RETRIEVAL_SCOPES,
                             help="Rows converted to float32 at a time while streaming "
                                  "shards.")

    def __post_init__(self) -> None:
        check_choices(self)
        check_min(self, 1, "nprobe", "hnsw_m", "ef_construction", "ef_search", "pq_nbits",
                  "recall_k", "batch_rows", "nlist", "pq_m", "train_size")
        check_min(self, 0, "recall_queries")


@dataclass(frozen=True)
class BM25Config:
    """How a BM25 index is built (bm25s)."""

    k1: float = option(1.5, help="Term-frequency saturation.")
    b: float = option(0.75, help="Length normalisation.")
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = option(
        "lucene", help="bm25s scoring variant.")
    stopwords: Literal["en", "none"] = option(
        "en", help="en drops English stopwords (bm25s's list); none keeps every token.")
    stemmer: str | None = option(None, help="A PyStemmer algorithm (e.g. english); needs "
                                            "pip install PyStemmer.")
    text_field: Literal["txt", "txt_raw"] = option(
        "txt", help="The candidate field indexed (txt: after enhancement, the captions; "
                    "txt_raw: the original).")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ConfigError("BM25 needs k1 >= 0 and 0 <= b <= 1")


@dataclass(frozen=True)
class SearchConfig:
    """How query entries are searched and run files written."""

    k: int | None = option(None, help="Depth of every run; none uses each task's deepest "
                                      "metric (10, or 50 for Fashion200K and FashionIQ), as "
                                      "UniIR.")
    batch_size: int = option(1024, hash=False, help="Queries per search call.")
    filter_modality: bool = option(
        False, help="Keep only candidates of the task's target modality (over-fetching so "
                    "that k results remain). Off by default: UniIR does not filter.")
    nprobe: int | None = option(None, help="Override the index's IVF nprobe.")
    ef_search: int | None = option(None, help="Override the index's HNSW efSearch.")
    gpu: GpuMode = option("auto", hash=False, help="auto searches on FAISS GPUs when present.")
    # dense run files' fingerprints (scope "dense") have always included it
    threads: int = option(0, hash=("dense",), help="BM25 search threads (0: one).")
    tag: str | None = option(None, help="The run tag (6th column); none: augret_<kind>.")

    def __post_init__(self) -> None:
        check_choices(self)
        check_min(self, 1, "k", "batch_size", "nprobe", "ef_search")
        check_min(self, 0, "threads")
