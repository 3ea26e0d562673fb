"""Typed configs of the index stage (load them with :func:`augret.config.load_config`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from augret.config import check_choices, check_min, option
from augret.errors import ConfigError

__all__ = ["BM25Config", "IndexConfig", "MilvusConfig", "SearchConfig", "check_gpu_mode",
           "search_device"]

IndexKind = Literal["flat", "flat16", "ivf", "hnsw", "ivfpq", "pq"]
GpuMode = Literal["auto", "on", "off"]
DENSE_KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw", "ivfpq", "pq")
#: The kinds of the flat16 backend (augret.index.flat16).
FLAT16_KINDS: tuple[str, ...] = ("flat16",)
#: Valid search ``device`` values (flat16 indexes).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+(,\d+)*)?)$")
#: Hash scope of an experiment condition's fingerprint of its dense or hybrid retrieval: it
#: takes every IndexConfig field (:func:`augret.config.hash_values`).
_RETRIEVAL_SCOPES = ("dense", "hybrid")


def check_gpu_mode(value: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is ``auto``, ``on`` or ``off``."""
    if value not in ("auto", "on", "off"):
        raise ConfigError(f"gpu must be 'auto', 'on' or 'off', got {value!r}")


def search_device(device: str) -> str:
    """The flat16 search device that goes with an encoder device: the same when it is one
    (``auto``, ``cpu``, ``cuda``, ``cuda:N``), else ``cpu`` (e.g. ``mps``)."""
    return device if DEVICE_PATTERN.match(device) else "cpu"


@dataclass(frozen=True)
class IndexConfig:
    """How a dense index is built (FAISS, or the exact flat16 kind).

    All indexes use inner product on L2-normalised vectors (cosine), as UniIR.
    """

    kind: IndexKind = option(
        "flat", help="flat (exact; UniIR's IDMap,Flat, float32 in RAM), flat16 (exact, the "
                     "same results: float16 shards memory-mapped from the index directory, "
                     "searched block by block on the CPU or GPUs), ivf (inverted lists, flat "
                     "codes), hnsw (graph), ivfpq (inverted lists, product-quantised codes) or "
                     "pq (product quantisation, exhaustive). Only the exact kinds give M-BEIR "
                     "numbers.")
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
    device: str = option("auto", hash=False,
                         help="flat16 indexes: auto (torch on every visible GPU when there is "
                              "one, else NumPy on the CPU), cpu, cuda (every visible GPU, the "
                              "candidates sharded across them), cuda:N or cuda:N,M.")
    block_mb: int = option(256, hash=False,
                           help="flat16 indexes: memory of one block of candidates (float32 "
                                "rows and their scores), in MiB; a search holds one block per "
                                "device plus the top-k buffers.")
    # dense run files' fingerprints (scope "dense") have always included it
    threads: int = option(0, hash=("dense",), help="BM25 search threads (0: one).")
    tag: str | None = option(None, help="The run tag (6th column); none: augret_<kind>.")

    def __post_init__(self) -> None:
        check_choices(self)
        check_min(self, 1, "k", "batch_size", "nprobe", "ef_search", "block_mb")
        check_min(self, 0, "threads")
        if not DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or cuda:N,M; got "
                              f"{self.device!r}")


MilvusKind = Literal["flat", "hnsw", "ivf"]
_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
MILVUS_KINDS: tuple[str, ...] = ("flat", "hnsw", "ivf")
#: Lucene's English stop words (what Milvus calls ``_english_``), spelled out so that Milvus
#: Lite and a Milvus server drop the same words.
ENGLISH_STOP_WORDS: tuple[str, ...] = (
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with")


@dataclass(frozen=True)
class MilvusConfig:
    """How a Milvus collection is built (the ``milvus`` index backend).

    One collection holds every pool of a build (each row lists its pools), with the
    candidates' modality, text and image path beside the vector; vectors are scored by inner
    product on L2-normalised vectors, as FAISS.
    """

    kind: MilvusKind = option(
        "flat", help="flat (exact: Milvus FLAT, the ranking of FAISS exact), hnsw (graph) or "
                     "ivf (IVF_FLAT).")
    uri: str | None = option(
        None, hash=False, help="The Milvus server (http://HOST:19530) or a Milvus Lite file "
                               "(*.db); none: a Milvus Lite database inside the index "
                               "directory (milvus.db).")
    collection: str | None = option(None, hash=False,
                                    help="Collection name; none: augret_<index directory "
                                         "name>.")
    token_env: str = option("MILVUS_TOKEN", hash=False,
                            help="Environment variable holding the server's token "
                                 "(user:password or an API key); the token is never written "
                                 "to disk.")
    timeout: float = option(60.0, hash=False, help="Seconds one call to the server may take.")
    replicas: int = option(1, hash=False, help="In-memory replicas the collection is loaded "
                                               "with (a cluster's query nodes serve them in "
                                               "parallel).")
    normalize: bool = option(True, help="L2-normalise vectors before indexing (as FAISS; keep "
                                        "it on).")
    nlist: int | None = option(None, help="IVF lists; none picks 4·√n (at most n / 39).")
    nprobe: int = option(32, help="IVF lists visited per query (stored; a search may "
                                  "override it).")
    hnsw_m: int = option(32, help="HNSW neighbours per node.")
    ef_construction: int = option(100, help="HNSW build-time beam width.")
    ef_search: int = option(128, help="HNSW search-time beam width (stored; a search may "
                                      "override it).")
    recall_queries: int = option(1000, help="Indexed vectors used as queries to measure "
                                            "recall against exact search after an "
                                            "approximate build (0 skips the measurement).")
    recall_k: int = option(10, help="The k of that recall@k.")
    seed: int = option(0, help="Seed of the recall sample.")
    text_search: bool = option(
        True, help="Index the candidate texts with Milvus's BM25 function, for lexical and "
                   "hybrid search from the same collection (needs Milvus >= 2.5 or Milvus "
                   "Lite).")
    text_field: Literal["txt", "txt_raw"] = option(
        "txt", help="The candidate field stored and searched (txt: after enhancement; "
                    "txt_raw: the original).")
    k1: float = option(1.5, help="BM25 term-frequency saturation.")
    b: float = option(0.75, help="BM25 length normalisation.")
    stop_words: tuple[str, ...] = option(
        ENGLISH_STOP_WORDS, help="Words the BM25 analyzer drops (default: Lucene's English "
                                 "list); it splits words with Milvus's standard tokenizer "
                                 "and lowercases them.")
    insert_rows: int = option(2000, hash=False, help="Rows per insert call (a Milvus request "
                                                      "holds at most 64 MB).")

    def __post_init__(self) -> None:
        check_choices(self)
        check_min(self, 1, "nprobe", "hnsw_m", "ef_construction", "ef_search", "recall_k",
                  "insert_rows", "nlist", "replicas")
        check_min(self, 0, "recall_queries")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0, got {self.timeout!r}")
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ConfigError("BM25 needs k1 >= 0 and 0 <= b <= 1")
        if self.collection is not None and not _COLLECTION_NAME.fullmatch(self.collection):
            raise ConfigError(f"collection {self.collection!r}: Milvus names are letters, "
                              "digits and underscores, starting with a letter or underscore "
                              "(at most 255)")
