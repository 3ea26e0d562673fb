"""The queries an index searches, per task: embedded query vectors or query texts.

An index backend declares which queries it searches (:attr:`IndexBackend.queries
<augret.index.backends.IndexBackend.queries>`): dense indexes take the ``queries/<task>``
entries of an embedding directory (:class:`EmbeddedQueries`), BM25 takes the query texts of
an M-BEIR directory (:class:`TextQueries`). Both give :func:`augret.index.search_to_run_dir`
the same four things: the tasks, a check against an index, the fingerprint parts of a task's
run and the run itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from augret.config import config_hash
from augret.data.ids import task_id
from augret.data.mbeir import MBEIRDir
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.evaluate.runs import Run
from augret.formats.embeddings import EmbeddingDir, EmbeddingEntry, is_embedding_dir
from augret.index.config import SearchConfig
from augret.index.search import SearchResult
from augret.index.vectors import VectorSet

__all__ = ["EmbeddedQueries", "QuerySource", "TextQueries", "search_entry"]

log = logging.getLogger(__name__)


class QuerySource(Protocol):
    """The queries of every task, as one kind of index searches them."""

    root: Path

    def tasks(self, wanted: Sequence[str] | None) -> list[str]:
        """``wanted`` (checked to be present), or every task present.

        Raises:
            DataNotFoundError: A wanted task has no queries here.
        """
        ...

    def check_index(self, index_dir: Path, meta: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` when these queries cannot search that index."""
        ...

    def key(self, task: str, cfg: SearchConfig) -> list[Any]:
        """What a task's run depends on besides the index and the depth (its fingerprint)."""
        ...

    def run(self, index: Any, task: str, *, depth: int, cfg: SearchConfig,
            modalities: str | None, tag: str) -> Run:
        """Search a task's queries in ``index``."""
        ...


def _concat(results: list[SearchResult]) -> SearchResult:
    return SearchResult(ids=np.concatenate([r.ids for r in results]),
                        scores=np.concatenate([r.scores for r in results]),
                        rows=np.concatenate([r.rows for r in results]))


def search_entry(index: Any, entry: EmbeddingEntry, *, k: int, batch_size: int = 1024,
                 modalities: str | Iterable[str] | None = None, tag: str | None = None,
                 task: int | None = None) -> Run:
    """Search every query of an embedding entry (streamed shard by shard) into a run.

    Args:
        index: A dense index (:class:`~augret.index.dense.DenseIndex`).
        entry: A ``queries/<task>`` entry.
        k: Depth.
        batch_size: Queries per index call.
        modalities: Optional candidate-modality filter.
        tag: The run tag.
        task: UniIR's task id for the 7th column (``None``: 6 columns).
    """
    qids = entry.read_ids()
    parts = [index.search(x, k, batch_size=batch_size, modalities=modalities, normalize=False)
             for _, x in VectorSet.from_entries([entry]).iter_batches(
                 max(batch_size, 1 << 14), normalize=True)]
    if not parts:
        return Run([], np.zeros((0, 0)), np.zeros((0, 0)), [], tag=tag)
    return _concat(parts).to_run(qids, task_ids=task, tag=tag)


def _encoder_name(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    return value if isinstance(value, str) else None


class EmbeddedQueries:
    """The ``queries/<task>`` entries of an embedding directory (for dense indexes).

    Args:
        path: The embedding directory.

    Raises:
        DataNotFoundError: ``path`` is not an embedding directory.
    """

    def __init__(self, path: str | Path) -> None:
        if not is_embedding_dir(path):
            raise DataNotFoundError(f"{path}: not an embedding directory (meta.json and "
                                    "queries/)")
        self.emb = EmbeddingDir(path)
        self.root = self.emb.root

    def tasks(self, wanted: Sequence[str] | None) -> list[str]:
        tasks = list(wanted) if wanted else self.emb.names("queries")
        for t in tasks:
            if not self.emb.has("queries", t):
                raise DataNotFoundError(f"{self.emb.root}: no query entry queries/{t}")
        return tasks

    def check_index(self, index_dir: Path, meta: Mapping[str, Any]) -> None:
        a, b = _encoder_name(self.emb.encoder), _encoder_name(meta.get("encoder"))
        if a and b and a != b:
            raise ConfigError(f"queries embedded with {a!r} but {index_dir} indexes {b!r}")

    def key(self, task: str, cfg: SearchConfig) -> list[Any]:
        return [self.emb.entry("queries", task).fingerprint, config_hash(cfg, scope="dense")]

    def run(self, index: Any, task: str, *, depth: int, cfg: SearchConfig,
            modalities: str | None, tag: str) -> Run:
        entry = self.emb.entry("queries", task)
        if entry.dim != index.dim:
            raise DataFormatError(f"queries of dimension {entry.dim} for an index of "
                                  f"dimension {index.dim}", path=entry.path)
        return search_entry(index, entry, k=depth, batch_size=cfg.batch_size,
                            modalities=modalities, tag=tag, task=task_id(task))


class TextQueries:
    """The test query texts of an M-BEIR directory (for BM25).

    The text is ``field`` (``query_txt``: after enhancement, the rewritten query;
    ``query_txt_raw`` the original) with no instruction prefix.

    Args:
        path: The M-BEIR directory.
        field: The query text field.
        index_path: The indexes to search (named in the error below).

    Raises:
        ConfigError: ``path`` is an embedding directory.
    """

    def __init__(self, path: str | Path, *, field: str = "query_txt",
                 index_path: str | Path | None = None) -> None:
        if is_embedding_dir(path):
            raise ConfigError(f"{index_path} holds BM25 indexes, which search query texts: "
                              f"give the M-BEIR directory, not the embedding directory "
                              f"{path}")
        self.data = MBEIRDir(path)
        self.root = self.data.root
        self.field = field
        self.files = {tf.task.name: tf.queries for tf in self.data.tasks()}

    def tasks(self, wanted: Sequence[str] | None) -> list[str]:
        tasks = list(wanted) if wanted else list(self.files)
        for t in tasks:
            if t not in self.files:
                raise DataNotFoundError(f"{self.data.root}: no test query file for {t!r}")
        return tasks

    def check_index(self, index_dir: Path, meta: Mapping[str, Any]) -> None:
        return None

    def key(self, task: str, cfg: SearchConfig) -> list[Any]:
        qfile = self.files[task]
        st = qfile.stat()
        return [str(qfile), st.st_size, st.st_mtime, self.field, config_hash(cfg)]

    def run(self, index: Any, task: str, *, depth: int, cfg: SearchConfig,
            modalities: str | None, tag: str) -> Run:
        qids, texts = [], []
        for q in self.data.iter_queries(task):
            qids.append(q.id)
            text = q.field_text(self.field)
            texts.append(text if isinstance(text, str) else None)
        res = index.search(texts, depth, batch_size=cfg.batch_size, modalities=modalities,
                           threads=cfg.threads)
        return res.to_run(qids, task_ids=task_id(task), tag=tag)
