"""The configuration of ``augret query`` and ``augret serve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from augret.config import check_choices, check_min, option
from augret.enhance.config import EnhanceConfig
from augret.errors import ConfigError

__all__ = ["SearcherConfig", "ServeConfig"]


@dataclass(frozen=True)
class SearcherConfig:
    """What is searched besides the index directory, and how queries are embedded and
    enhanced (:meth:`augret.serve.Searcher.open`)."""

    bm25_dir: Path | None = option(None, help="A BM25 index (or root) to fuse with the dense "
                                              "index: hybrid search (reciprocal rank "
                                              "fusion). A Milvus index here is searched by "
                                              "its BM25 function (give the same directory "
                                              "twice for Milvus hybrid).")
    pool: str | None = option(None, help="Pool to take from an index root (default: union, "
                                         "or the only one).")
    data_dir: Path | None = option(None, help="M-BEIR directory of the pool files (default: "
                                              "as recorded in the index).")
    encoder: str | None = option(None, help="Query encoder name or checkpoint (default: the "
                                            "index's).")
    device: str = option("auto", help="Encoder device (auto, cpu, cuda...), also the search "
                                      "device of a flat16 index (auto: the GPUs when "
                                      "present).")
    rrf_k: float = option(60.0, help="Hybrid RRF constant.")
    max_pixels: int = option(40_000_000, help="Largest accepted query image (width x "
                                              "height).")
    enhance: EnhanceConfig | None = option(
        None, help="Query-time enhancement (an EnhanceConfig, as for augret enhance); none: "
                   "off.")

    def __post_init__(self) -> None:
        check_min(self, 1, "max_pixels")
        if self.rrf_k <= 0:
            raise ConfigError(f"rrf_k must be > 0, got {self.rrf_k!r}")


@dataclass(frozen=True)
class ServeConfig:
    """The search service: what it searches, where it listens, its limits and access."""

    searcher: SearcherConfig = option(factory=SearcherConfig,
                                      help="What is searched and how queries are embedded "
                                           "and enhanced.")
    host: str = option("127.0.0.1", help="Interface to listen on (loopback only by "
                                         "default).")
    port: int = option(8000, help="TCP port.")
    log_level: Literal["debug", "info", "warning", "error"] = option(
        "info", help="uvicorn's log level.")
    max_k: int = option(100, help="Largest k a request may ask for (larger is a 422).")
    default_k: int | None = option(None, help="k when a request gives none (none: the smaller "
                                              "of 10 and max_k).")
    max_upload_bytes: int = option(10 * 1024 * 1024, help="Largest query image file "
                                                          "(decoded bytes).")
    max_text_chars: int = option(2000, help="Longest text / instruction.")
    api_key: str | None = option(None, help="Require this key on /search and /items "
                                            "(X-API-Key header or Authorization: Bearer).")
    cors_origins: tuple[str, ...] = option((), help="Origins allowed cross-site (none: CORS "
                                                    "off).")
    title: str = option("augret search", help="The page title.")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.default_k is None:
            object.__setattr__(self, "default_k", min(10, self.max_k))
        if self.max_k < 1 or not 1 <= self.default_k <= self.max_k:
            raise ConfigError("need 1 <= default_k <= max_k")
        check_min(self, 1, "max_upload_bytes", "max_text_chars", "port")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key must not be blank")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: a base64 image plus room for the other fields."""
        return self.max_upload_bytes * 4 // 3 + 4 * self.max_text_chars + 64 * 1024
