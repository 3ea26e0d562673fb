"""The configuration of ``augret mbeir run``.

Hash scopes: an experiment fingerprints a condition's RunConfig in the scope of its retriever
(``dense``, ``bm25``, ``hybrid``: the fields that retriever reads), and the pipeline's embed
stages in the scope ``embed`` (the fields that decide the vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from augret.config import check_choices, check_min, option
from augret.errors import ConfigError
from augret.index.config import BM25Config, IndexConfig, MilvusConfig

__all__ = ["RETRIEVERS", "RunConfig"]

RETRIEVERS = ("dense", "bm25", "hybrid")
_DENSE = ("dense", "hybrid")
_VECTORS = (*_DENSE, "embed")


@dataclass(frozen=True)
class RunConfig:
    """What ``augret mbeir run`` does."""

    encoder: str | None = option(None, hash=("embed",),
                                 help="Encoder name or checkpoint (dense and hybrid "
                                      "retrievers), as for augret embed.")
    retriever: Literal["dense", "bm25", "hybrid"] = option(
        "dense", hash=RETRIEVERS,
        help="dense (FAISS, or Milvus: see backend), bm25, or hybrid (reciprocal rank fusion "
             "of both).")
    pools: list[str] = option(factory=lambda: ["local", "union"], hash=RETRIEVERS,
                              help="local and/or union.")
    tasks: list[str] | None = option(None, hash=RETRIEVERS,
                                     help="Only these test tasks, e.g. cirr_task7,oven_task8 "
                                          "(default: every task of the query directory).")
    instruction: Literal["first", "random", "none"] = option(
        "first", hash=_VECTORS, help="Query instructions: first (prompt_1), random or none.")
    backbone: str | None = option(None, hash=_VECTORS,
                                  help="Architecture of a UniIR .pth checkpoint (default: "
                                       "inferred).")
    context_length: int | None = option(None, hash=_VECTORS,
                                        help="Text context length (default: the model's).")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = option(
        "auto", hash=_VECTORS, help="auto (fp16 autocast on CUDA, fp32 on CPU), fp32, fp16, "
                                    "bf16.")
    on_missing_image: Literal["skip", "error", "drop"] = option(
        "skip", hash=_VECTORS, help="skip, error or drop (see augret embed).")
    batch_size: int = option(256, hash=_DENSE, help="Items per encoder forward pass.")
    workers: int = option(4, hash=_DENSE, help="Image-decoding workers.")
    device: str = option("auto", hash=_DENSE,
                         help="Encoder device (auto, cpu, cuda...), also the search device of "
                              "flat16 indexes (auto: the GPUs when present).")
    backend: Literal["faiss", "milvus"] = option(
        "faiss", hash=_DENSE, hash_if_changed=True,
        help="Where dense retrieval runs: faiss (the default, and the only backend for "
             "published M-BEIR numbers) or milvus (one Milvus collection, see the milvus "
             "section; hybrid then takes BM25 from the same collection).")
    index: IndexConfig = option(factory=IndexConfig, hash=_DENSE,
                                help="Dense index parameters (default: exact, UniIR's "
                                     "protocol).")
    milvus: MilvusConfig = option(factory=MilvusConfig, hash=_DENSE, hash_if_changed=True,
                                  help="The Milvus collection (backend milvus; default: a "
                                       "Milvus Lite database in OUT/index/milvus).")
    bm25: BM25Config = option(factory=BM25Config, hash=("bm25", "hybrid"),
                              help="BM25 parameters.")
    k: int | None = option(None, hash=RETRIEVERS,
                           help="Run depth (default: each task's deepest metric, 10 or 50).")
    filter_modality: bool = option(False, hash=RETRIEVERS,
                                   help="Keep only candidates of the task's modality (UniIR "
                                        "does not).")
    rrf_k: float = option(60.0, hash=("hybrid",), help="The hybrid RRF constant.")
    metrics: list[str] = option(factory=list, hash=RETRIEVERS,
                                help="Extra metrics evaluated per task, e.g. mrr@10,ndcg@10 "
                                     "(metrics.json).")

    def __post_init__(self) -> None:
        check_choices(self)
        if not self.pools or any(p not in ("local", "union") for p in self.pools):
            raise ConfigError("pools must be 'local' and/or 'union'")
        if self.retriever != "bm25" and not self.encoder:
            raise ConfigError(f"the {self.retriever} retriever needs an encoder")
        if self.backend == "milvus" and self.retriever == "bm25":
            raise ConfigError("the milvus backend searches a collection of embeddings: use "
                              "retriever dense, or hybrid (BM25 from the same collection)")
        check_min(self, 1, "batch_size", "k", "context_length")
        check_min(self, 0, "workers")
        if self.rrf_k <= 0:
            raise ConfigError(f"rrf_k must be > 0, got {self.rrf_k!r}")

    @property
    def dense(self) -> bool:
        """Whether dense retrieval runs (dense or hybrid)."""
        return self.retriever in _DENSE

    @property
    def lexical(self) -> bool:
        """Whether BM25 runs (bm25 or hybrid)."""
        return self.retriever in ("bm25", "hybrid")
