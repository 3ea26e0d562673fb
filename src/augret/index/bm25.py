"""Lexical retrieval: a BM25 index (bm25s) over candidate texts, with a simple tokenizer.

This module is the ``bm25`` backend of :mod:`augret.index.backends`.

Tokens are lowercase ``\\w+`` runs, optionally without English stopwords (bm25s's list) and
stemmed with PyStemmer (optional; nothing is downloaded). Candidate text is ``txt`` (after
enhancement: the captions); query text is ``query_txt`` without any instruction prefix.
Documents with no query token score 0 and are never returned.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret import __version__
from augret._lazy import require
from augret.config import config_hash, config_to_dict, write_resolved
from augret.data.ids import MODALITIES
from augret.data.mbeir import UNION, MBEIRDir, iter_candidates
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.formats.fingerprint import stable_hash
from augret.formats.indexes import (
    begin_write,
    payload_path,
    read_ids,
    read_meta,
    read_modalities,
    source_info,
    write_ids,
    write_meta,
    write_modalities,
)
from augret.index.config import BM25Config
from augret.index.pools import check_unique
from augret.index.search import SearchResult, modality_mask, ranked_search
from augret.progress import track

__all__ = ["BM25Index", "Tokenizer", "bm25_pool_files", "build_bm25_index", "text_pools"]

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
NUMBA_MIN_DOCS = 50_000  # below this, numba's compile time (~5 s) outweighs its speed


class Tokenizer:
    """Lowercase regex tokenizer with optional English stopwords and PyStemmer stemming.

    Args:
        stopwords: ``"en"`` or ``"none"``.
        stemmer: A PyStemmer algorithm name (e.g. ``"english"``) or ``None``.

    Raises:
        ConfigError: Unknown stopword list.
        MissingExtraError: A stemmer is asked for but PyStemmer is not installed.
    """

    def __init__(self, stopwords: str = "en", stemmer: str | None = None) -> None:
        if stopwords not in ("en", "none"):
            raise ConfigError(f"stopwords must be 'en' or 'none', got {stopwords!r}")
        self.stopwords_name = stopwords
        self.stemmer_name = stemmer
        if stopwords == "en":
            self.stopwords = frozenset(require("bm25s.stopwords", "index").STOPWORDS_EN)
        else:
            self.stopwords = frozenset()
        self._stem = None
        if stemmer:
            module = require("Stemmer", "index")
            try:
                self._stem = module.Stemmer(stemmer).stemWords
            except KeyError:
                raise ConfigError(f"unknown PyStemmer algorithm {stemmer!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """The description stored in ``meta.json``."""
        return {"pattern": _WORD.pattern, "lowercase": True, "stopwords": self.stopwords_name,
                "stemmer": self.stemmer_name}

    def __call__(self, text: str | None) -> list[str]:
        """The tokens of ``text`` (empty for ``None``)."""
        if not text:
            return []
        tokens = [t for t in _WORD.findall(text.lower()) if t not in self.stopwords]
        return self._stem(tokens) if self._stem is not None and tokens else tokens


class BM25Index:
    """A bm25s model with row ids, optional row modalities and its description.

    Args:
        model: A fitted ``bm25s.BM25``.
        ids: Row ids.
        meta: The description written to ``meta.json``.
        modalities: Optional int8 modality code per row.
    """

    def __init__(self, model: Any, ids: np.ndarray | Sequence[str], meta: dict[str, Any],
                 modalities: np.ndarray | None = None) -> None:
        self.model = model
        self.ids = np.asarray(ids, dtype=str)
        self.meta = meta
        self.modalities = modalities
        tok = meta.get("tokenizer", {})
        self.tokenizer = Tokenizer(tok.get("stopwords", "en"), tok.get("stemmer"))
        if int(model.scores["num_docs"]) != len(self.ids):
            raise DataFormatError(f"the BM25 index holds {model.scores['num_docs']} documents "
                                  f"but there are {len(self.ids)} ids")

    def __repr__(self) -> str:
        return f"BM25Index({len(self)} docs, pool={self.meta.get('pool')!r})"

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, texts: Iterable[str | None], ids: Sequence[str],
              cfg: BM25Config | None = None, *, modalities: np.ndarray | None = None,
              meta: dict[str, Any] | None = None, progress: bool = True) -> BM25Index:
        """Index ``texts`` (one per id; ``None`` is an empty document).

        Raises:
            DataFormatError: Text and id counts differ, or an id repeats.
        """
        bm25s = require("bm25s", "index")
        cfg = cfg or BM25Config()
        tokenizer = Tokenizer(cfg.stopwords, cfg.stemmer)
        vocab: dict[str, int] = {}
        docs: list[list[int]] = []
        with track("tokenizing", len(ids), enabled=progress) as advance:
            for text in texts:
                docs.append([vocab.setdefault(t, len(vocab)) for t in tokenizer(text)])
                if len(docs) % 10_000 == 0:
                    advance(10_000)
        if len(docs) != len(ids):
            raise DataFormatError(f"{len(docs)} texts for {len(ids)} ids")
        check_unique(list(ids), ["documents"], [len(ids)])
        if not docs:
            raise DataFormatError("nothing to index: no documents")
        if not vocab:
            vocab[""] = 0  # bm25s needs one token; every document is empty
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        if not lengths.any():
            log.warning("no document has a token; BM25 will find nothing here (image-only "
                        "candidates need enhancement captions first)")
        model = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
        with np.errstate(invalid="ignore", divide="ignore"):
            model.index(bm25s.tokenization.Tokenized(ids=docs, vocab=vocab),
                        show_progress=False)
        full = {"kind": "bm25", "tokenizer": tokenizer.to_dict(),
                "params": {"k1": cfg.k1, "b": cfg.b, "method": cfg.method,
                           "text_field": cfg.text_field},
                "count": len(docs), "vocabulary": len(vocab),
                "empty_documents": int((lengths == 0).sum()),
                "mean_tokens": round(float(lengths.mean()), 3),
                "bm25s_version": getattr(bm25s, "__version__", None),
                "augret_version": __version__, **(meta or {})}
        return cls(model, ids, full, modalities)

    @classmethod
    def load(cls, path: str | Path, *, backend: str = "auto", mmap: bool = False,
             **_: Any) -> BM25Index:
        """Open a BM25 index directory.

        Args:
            path: The index directory.
            backend: ``numpy``, ``numba``, or ``auto`` (numba for large indexes when
                installed).
            mmap: Memory-map the score matrix instead of reading it.
        """
        bm25s = require("bm25s", "index")
        path = Path(path)
        meta = read_meta(path)
        if meta["kind"] != "bm25":
            raise DataFormatError(f"a {meta['kind']} index, not BM25", path=path)
        payload = payload_path(path, "bm25")
        if not payload.is_dir():
            raise DataFormatError(f"no {payload.name}/ folder", path=path)
        ids = read_ids(path)
        if backend == "auto":
            backend = "numba" if _has_numba() and len(ids) >= NUMBA_MIN_DOCS else "numpy"
        model = bm25s.BM25.load(str(payload), mmap=mmap, show_progress=False,
                                backend=backend)
        return cls(model, ids, meta, read_modalities(path, len(ids)))

    def save(self, out_dir: str | Path) -> Path:
        """Write the index directory (``meta.json`` last). Returns it."""
        out_dir = Path(out_dir)
        begin_write(out_dir)
        self.model.save(str(payload_path(out_dir, "bm25")), show_progress=False)
        write_ids(out_dir, self.ids)
        write_modalities(out_dir, self.modalities)
        self.meta["modalities"] = self.modalities is not None
        write_meta(out_dir, self.meta)
        return out_dir

    def _top(self, tokens: list[list[str]], k: int, threads: int
             ) -> tuple[np.ndarray, np.ndarray]:
        n = len(tokens)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        rows = np.full((n, k), -1, dtype=np.int64)
        live = [i for i, t in enumerate(tokens) if t]
        if not live:
            return scores, rows
        res = self.model.retrieve([tokens[i] for i in live], k=k, show_progress=False,
                                  n_threads=threads, sorted=True)
        r = np.asarray(res.documents, dtype=np.int64)
        s = np.asarray(res.scores, dtype=np.float32)
        # deterministic order among equal scores (row position), zero scores are misses
        order = np.lexsort((r, -s), axis=1) if r.ndim == 2 else None
        if order is not None:
            r, s = np.take_along_axis(r, order, axis=1), np.take_along_axis(s, order, axis=1)
        miss = s <= 0
        r[miss], s[miss] = -1, -np.inf
        rows[live], scores[live] = r, s
        return scores, rows

    def search(self, queries: Sequence[str | None], k: int, *, batch_size: int = 1024,
               modalities: str | Iterable[str] | None = None, threads: int = 0,
               progress: bool = False) -> SearchResult:
        """Top-k documents of each query text by BM25 score.

        Args:
            queries: Query texts (``None`` or no known token: no results).
            k: Results per query.
            batch_size: Queries per bm25s call.
            modalities: Keep only candidates of these modalities (needs stored modalities).
            threads: bm25s threads (0: the calling thread only).
            progress: Show a progress bar.
        """
        if isinstance(queries, str):
            queries = [queries]
        if k < 1:
            raise ConfigError(f"k must be a positive integer, got {k}")
        allowed = modality_mask(self.modalities, modalities)
        vocab = self.model.vocab_dict
        n, ntotal = len(queries), len(self.ids)
        scores = np.empty((n, k), dtype=np.float32)
        rows = np.empty((n, k), dtype=np.int64)
        with track("BM25 search", n, enabled=progress) as advance:
            for start in range(0, n, batch_size):
                batch = [[t for t in self.tokenizer(q) if t in vocab]
                         for q in queries[start: start + batch_size]]

                def run(pos: np.ndarray, depth: int, batch: list[list[str]] = batch
                        ) -> tuple[np.ndarray, np.ndarray]:
                    return self._top([batch[i] for i in pos], depth, threads)

                s, r = ranked_search(run, len(batch), k, ntotal, allowed)
                scores[start: start + len(batch)] = s
                rows[start: start + len(batch)] = r
                advance(len(batch))
        ids = np.where(rows >= 0, self.ids[np.clip(rows, 0, None)], "")
        return SearchResult(ids=ids, scores=scores, rows=rows)


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def bm25_pool_files(data: MBEIRDir, pool: str) -> list[Path]:
    """The pool files of ``pool`` in an M-BEIR directory.

    The union's files are :meth:`MBEIRDir.union_pool_files` (the global test pool when
    present, else the local test pools), the same candidates as the dense union.

    Raises:
        DataNotFoundError: No such pool.
    """
    if pool == UNION:
        files = data.union_pool_files()
        if not files:
            raise DataNotFoundError(f"{data.root}: no global test pool and no local test pool")
        return files
    path = data.pool_file(pool)
    if path is None:
        raise DataNotFoundError(f"{data.root}: no local pool {pool!r}")
    return [path]


def text_pools(data_dir: str | Path, *, local: bool = True, union: bool = True) -> list[str]:
    """The pools of an M-BEIR directory BM25 can index: its local pool files, then ``union``
    when the directory has one (:meth:`MBEIRDir.union_pool_files`).

    Raises:
        DataNotFoundError: None of the pools asked for is there.
    """
    data = MBEIRDir(data_dir)
    names = list(data.local_pools()) if local else []
    if union and data.union_pool_files():
        names.append(UNION)
    if not names:
        raise DataNotFoundError(f"{data.root}: no candidate pool to index")
    return names


def _candidate_rows(files: Sequence[Path], field: str, sink: dict[str, list]
                    ) -> Iterator[str | None]:
    index = {m: i for i, m in enumerate(MODALITIES)}
    for path in files:
        for c in iter_candidates(path):
            sink["ids"].append(c.id)
            sink["modalities"].append(index[c.modality])
            text = c.field_text(field)
            yield text if isinstance(text, str) else None


def build_bm25_index(data_dir: str | Path, out_dir: str | Path, *, pool: str,
                     cfg: BM25Config | None = None, force: bool = False,
                     progress: bool = True) -> BM25Index:
    """Build the BM25 index of one pool of an M-BEIR (or enhanced) directory.

    Args:
        data_dir: The M-BEIR directory.
        out_dir: The index directory to write.
        pool: A local pool name (e.g. ``mscoco_task0_test``) or ``union``.
        cfg: Tokenizer and BM25 parameters.
        force: Rebuild even when an up-to-date index exists.
        progress: Show progress bars.
    """
    cfg = cfg or BM25Config()
    data = MBEIRDir(data_dir)
    files = bm25_pool_files(data, pool)
    sources = [source_info(f) for f in files]
    fingerprint = stable_hash([config_hash(cfg), sources])
    out_dir = Path(out_dir)
    if not force:
        try:
            old = read_meta(out_dir)
        except Exception:  # nothing there yet
            old = {}
        if old.get("fingerprint") == fingerprint:
            log.info("%s is up to date (same pool files and config); not rebuilt", out_dir)
            return BM25Index.load(out_dir)
    t0 = time.perf_counter()
    sink: dict[str, list] = {"ids": [], "modalities": []}
    texts = list(_candidate_rows(files, cfg.text_field, sink))
    log.info("BM25 over %d candidates of %s (%s)", len(texts), pool, cfg.text_field)
    meta = {"pool": pool, "data_dir": str(data.root), "sources": sources,
            "config": config_to_dict(cfg), "fingerprint": fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    index = BM25Index.build(texts, sink["ids"], cfg,
                            modalities=np.asarray(sink["modalities"], dtype=np.int8),
                            meta=meta, progress=progress)
    index.meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    index.save(out_dir)
    write_resolved(cfg, out_dir)
    return index
