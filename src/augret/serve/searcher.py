"""The ad-hoc :class:`Searcher`: one query (text and/or image) against a dense, BM25 or
hybrid index, with optional query-time enhancement.

A query goes through the same steps as the offline pipeline: the enhancer (if any) rewrites
it through ``augret enhance``'s policy, prompts, store and backend; the rewritten text is
what is searched. Dense indexes embed it with the index's own encoder (read from
``meta.json``) and UniIR's input rules (:mod:`augret.encode.inputs`: ``format_string``, the
task's instruction prefix when the index was embedded with instructions); BM25 searches the
rewritten text without instruction; hybrid fuses both rankings by reciprocal rank
(:func:`augret.index.fuse_runs`). Hit records come from the pool files by offset
(:class:`augret.data.lookup.PoolLookup`), never a full load.

Example::

    from augret.serve import AdhocQuery, Searcher

    s = Searcher.open("runs/out/index/dense")          # union pool, encoder from meta.json
    res = s.search(AdhocQuery(text="a red circle", task="mscoco_task0"), k=5)
    [(h.id, h.score) for h in res.hits]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.ids import eval_task
from augret.data.instructions import InstructionTable, read_instructions
from augret.data.mbeir import UNION, MBEIRDir
from augret.data.records import modality_of
from augret.data.text import format_string, instructed_text
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.formats.embeddings import EmbeddingDir
from augret.formats.indexes import index_dirs
from augret.images import decode_image
from augret.index.backends import load_index
from augret.index.config import search_device
from augret.serve.catalog import Catalog, pool_files
from augret.serve.enhancer import Enhanced, QueryEnhancer
from augret.serve.images import ACCEPTED_FORMATS, DEFAULT_MAX_PIXELS
from augret.serve.query import AdhocQuery, Hit, QueryResult

__all__ = ["Searcher", "load_index_encoder", "pick_index"]

log = logging.getLogger(__name__)


@dataclass
class _Prepared:
    query: AdhocQuery
    image: Any  # decoded PIL image or None
    rewritten: str | None
    enhanced: Enhanced | None
    prompt: str | None

    def dense_text(self) -> str | None:
        body = (instructed_text(self.prompt, self.rewritten) if self.prompt
                else format_string(self.rewritten))
        return body or None

    def dense_item(self, separate_instruction: bool) -> Any:
        """The encoder input, as :func:`augret.encode.inputs.query_item` builds it offline:
        the instruction prefixed to the text (CLIP_SF), or beside it (MLLM embedders)."""
        from augret.encode import Item

        if separate_instruction:
            text = self.rewritten.strip() if self.rewritten else ""
            return Item(text or None, self.image, instruction=self.prompt or None)
        return Item(self.dense_text(), self.image)


def pick_index(path: str | Path, pool: str | None = None) -> Path:
    """The index directory to serve from ``path`` (an index directory or a root of them).

    Args:
        path: An index directory, or a root with one per pool (``augret index build --all``).
        pool: The pool to take from a root (default: ``union``, or the only one).

    Raises:
        DataNotFoundError: No index there, or no index of ``pool``.
        ConfigError: Several pools and none chosen.
    """
    dirs = index_dirs(path)
    if pool is not None:
        if pool not in dirs:
            raise DataNotFoundError(f"{path}: no index of pool {pool!r} (have {sorted(dirs)})")
        return dirs[pool]
    if len(dirs) == 1:
        return next(iter(dirs.values()))
    if UNION in dirs:
        return dirs[UNION]
    raise ConfigError(f"{path} holds indexes of several pools {sorted(dirs)}; choose one "
                      "(--pool)")


def _embedding_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``meta.json`` of the embedding directory an index was built from (``{}`` when it
    is not at hand)."""
    root = meta.get("embedding_dir")
    if not root:
        return {}
    try:
        return EmbeddingDir(root).meta
    except (OSError, DataNotFoundError, DataFormatError):
        return {}


#: MLLM spec fields that shape a query's input, restored from the index's record.
_MLLM_INPUT_KEYS = ("min_image_tokens", "max_image_tokens", "max_text_tokens", "padding_side")


def load_index_encoder(meta: dict[str, Any], *, name: str | None = None, device: str = "auto",
                       precision: str = "auto") -> Any:
    """The encoder that embedded a dense index, as its ``meta.json`` records it.

    Args:
        meta: The index's ``meta.json``.
        name: Use this encoder name or checkpoint instead of the recorded one.
        device: ``auto``, ``cpu``, ``cuda``...
        precision: ``auto``, ``fp32``, ``fp16``, ``bf16``.

    Raises:
        ConfigError: The index records no encoder and none is given.
    """
    from augret.encode import load_encoder

    recorded = meta.get("encoder")
    recorded_name = recorded.get("name") if isinstance(recorded, dict) else recorded
    if name and recorded_name and name != recorded_name:
        log.warning("the index was embedded with %r; encoding queries with %r", recorded_name,
                    name)
    name = name or recorded_name
    if not isinstance(name, str) or not name:
        raise ConfigError("the index's meta.json names no encoder; pass one (--encoder)")
    cfg = _embedding_meta(meta).get("config") or {}
    backbone = recorded.get("backbone") if isinstance(recorded, dict) else None
    if isinstance(backbone, dict) and backbone.get("kind") == "mllm" and name == recorded_name:
        # the budgets the index was embedded with (they may differ from the name's defaults)
        options = {k: backbone[k] for k in _MLLM_INPUT_KEYS if k in backbone}
        return load_encoder(name, device=device, precision=precision, **options)
    return load_encoder(name, device=device, precision=precision, backbone=cfg.get("backbone"),
                        context_length=cfg.get("context_length"))


def _packaged_instructions() -> InstructionTable:
    ref = resources.files("augret.data.resources").joinpath("query_instructions.tsv")
    with resources.as_file(ref) as path:
        return read_instructions(path)


class Searcher:
    """Searches one index (dense or BM25) or two (hybrid) with ad-hoc queries.

    Build one with :meth:`open`; the constructor takes ready parts.

    Args:
        catalog: The indexed items' records.
        dense: A :class:`~augret.index.dense.DenseIndex` (needs ``encoder``).
        bm25: A :class:`~augret.index.bm25.BM25Index`.
        encoder: The dense index's encoder.
        enhancer: Query-time enhancement (``None``: queries are searched as given).
        instructions: UniIR's instruction table (for queries that name a task).
        instruction_mode: ``first`` (prompt_1 of the task) or ``none`` (no instruction;
            the dense index was embedded without them). Random instructions need a qid and
            are not used for ad-hoc queries.
        rrf_k: The hybrid RRF constant.
        hybrid_depth: Results taken from each index before fusion.
        max_pixels: Largest accepted query image (width × height).

    Raises:
        ConfigError: No index, a dense index without encoder, or dimensions that disagree.
    """

    def __init__(self, *, catalog: Catalog, dense: Any = None, bm25: Any = None,
                 encoder: Any = None, enhancer: QueryEnhancer | None = None,
                 instructions: InstructionTable | None = None,
                 instruction_mode: str = "first", rrf_k: float = 60.0,
                 hybrid_depth: int = 100, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if dense is None and bm25 is None:
            raise ConfigError("a Searcher needs a dense or a BM25 index")
        if dense is not None and encoder is None:
            raise ConfigError("a dense index needs its encoder")
        if dense is not None and encoder.dim != dense.dim:
            raise ConfigError(f"the encoder embeds {encoder.dim} dimensions, the index holds "
                              f"{dense.dim}")
        if instruction_mode not in ("first", "random", "none"):
            raise ConfigError(f"unknown instruction mode {instruction_mode!r}")
        self.catalog = catalog
        self.dense = dense
        self.bm25 = bm25
        self.encoder = encoder
        self.enhancer = enhancer
        self.instructions = instructions
        self.instruction_mode = instruction_mode
        self.rrf_k = rrf_k
        self.hybrid_depth = hybrid_depth
        self.max_pixels = max_pixels
        self._lock = threading.Lock()

    @classmethod
    def open(cls, index_dir: str | Path, *, bm25_dir: str | Path | None = None,
             pool: str | None = None, data_dir: str | Path | None = None,
             encoder: Any = None, device: str = "auto", precision: str = "auto",
             enhancer: QueryEnhancer | None = None, gpu: str = "auto",
             **options: Any) -> Searcher:
        """Open an index directory (or a root of them) for ad-hoc search.

        Args:
            index_dir: A dense or BM25 index directory, or a root of one per pool.
            bm25_dir: A BM25 index (directory or root) to fuse with a dense ``index_dir``:
                hybrid search. A Milvus index there is searched by text (its BM25
                function), so ``bm25_dir=index_dir`` makes a Milvus index hybrid alone.
            pool: The pool to take from a root (default: ``union``, or the only one).
            data_dir: The M-BEIR directory of the pool files (default: as recorded in the
                index's ``meta.json``).
            encoder: An encoder, or a name/checkpoint overriding the recorded one.
            device: Encoder device, also the search device of a flat16 index (``auto``:
                the GPUs when present).
            precision: Encoder precision.
            enhancer: Query-time enhancement.
            gpu: FAISS GPU use (``auto``, ``on``, ``off``).
            **options: Passed to the constructor (``rrf_k``, ``hybrid_depth``,
                ``max_pixels``).

        Raises:
            DataNotFoundError: Missing index or pool files.
            ConfigError: Two indexes of the same kind, or an unusable encoder.
        """
        dense = bm25 = None
        for second, path in enumerate([index_dir] + ([bm25_dir] if bm25_dir is not None
                                                      else [])):
            where = pick_index(path, pool)
            index = load_index(where, gpu=gpu, device=search_device(device))
            if second and hasattr(index, "lexical"):
                index = index.lexical()  # a Milvus index: BM25 over its own texts
            is_bm25 = index.meta.get("kind") == "bm25"
            if (bm25 if is_bm25 else dense) is not None:
                raise ConfigError(f"hybrid search needs one dense and one BM25 index; both "
                                  f"are {'BM25' if is_bm25 else 'dense'}")
            if is_bm25:
                bm25 = index
            else:
                dense = index
        if dense is not None and bm25 is not None and dense.pool != bm25.meta.get("pool"):
            log.warning("hybrid of different pools: dense %r, BM25 %r", dense.pool,
                        bm25.meta.get("pool"))
        data = MBEIRDir(data_dir) if data_dir is not None else None
        main = dense if dense is not None else bm25
        ids = main.ids if bm25 is None or dense is None else np.union1d(dense.ids, bm25.ids)
        catalog = Catalog(ids, pool_files(main.meta, data), data)
        mode = "none"
        if dense is not None:
            if encoder is None or isinstance(encoder, str):
                encoder = load_index_encoder(dense.meta, name=encoder, device=device,
                                             precision=precision)
            mode = str(_embedding_meta(dense.meta).get("instruction") or "first")
        table = None
        if mode != "none":
            table = (catalog.data.instructions() if catalog.data.instructions_file()
                     else _packaged_instructions())
        log.info("serving %s (%d items)%s", main, len(catalog),
                 f" fused with {bm25}" if dense is not None and bm25 is not None else "")
        return cls(catalog=catalog, dense=dense, bm25=bm25, encoder=encoder, enhancer=enhancer,
                   instructions=table, instruction_mode=mode, **options)

    # ---- description ---------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``dense``, ``bm25`` or ``hybrid``."""
        if self.dense is not None and self.bm25 is not None:
            return "hybrid"
        return "dense" if self.dense is not None else "bm25"

    def describe(self) -> dict[str, Any]:
        """What is served: retriever kind, pool, item count, encoder, enhancer."""
        main = self.dense if self.dense is not None else self.bm25
        return {"retriever": self.kind, "pool": main.meta.get("pool"),
                "items": len(self.catalog),
                "encoder": getattr(self.encoder, "name", None),
                "instruction_mode": self.instruction_mode,
                "enhancer": self.enhancer.describe() if self.enhancer is not None else None}

    # ---- steps ---------------------------------------------------------------------------
    def _prompt(self, q: AdhocQuery, modality: str) -> str | None:
        if q.instruction and q.instruction.strip():
            return q.instruction.strip()
        if q.task is None or self.instruction_mode == "none" or self.instructions is None:
            return None
        t = eval_task(q.task)
        for query_modality in dict.fromkeys((modality, t.task.query_modality)):
            try:
                return self.instructions.choose(t.dataset.id, query_modality,
                                                t.task.cand_modality, mode="first")
            except KeyError:
                continue
        return None

    def prepare(self, query: AdhocQuery) -> _Prepared:
        """Check a query, decode its image, enhance it and choose its instruction.

        Raises:
            ConfigError: No text and no image, an unknown task or modality.
            DataNotFoundError: An image path that does not exist.
            BadImage, UnsupportedImage, ImageTooLarge: Unusable image bytes.
        """
        query.check()
        data = query.image
        if isinstance(data, (str, Path)):
            try:
                data = Path(data).read_bytes()
            except OSError as exc:
                raise DataNotFoundError(f"cannot read query image {data}: "
                                        f"{exc.strerror or exc}") from None
        # the mode stays as stored: the encoder converts it as it converts indexed images
        image = decode_image(data, max_pixels=self.max_pixels, formats=ACCEPTED_FORMATS,
                             name="query image", extra="serve") if data is not None else None
        text = query.text if query.text and query.text.strip() else None
        enhanced = self.enhancer.enhance(text, data) if self.enhancer is not None else None
        rewritten = enhanced.text if enhanced is not None else text
        modality = modality_of(text, "image" if image is not None else None)
        return _Prepared(query, image, rewritten, enhanced, self._prompt(query, modality))

    def embed(self, queries: Sequence[AdhocQuery | _Prepared], *, batch_size: int = 32
              ) -> np.ndarray:
        """The dense query vectors (float32; MLLM embedders' L2-normalised), as the index's
        embedder makes them for the same text, image and instruction."""
        if self.encoder is None:
            raise ConfigError("this Searcher has no dense index and no encoder")
        prepared = [q if isinstance(q, _Prepared) else self.prepare(q) for q in queries]
        items = [p.dense_item(self.encoder.separate_instruction) for p in prepared]
        with self._lock:
            return self.encoder.encode_queries(items, batch_size=batch_size)

    # ---- search --------------------------------------------------------------------------
    def search(self, query: AdhocQuery | str, k: int = 10) -> QueryResult:
        """Top-``k`` items of one query (a bare string is a text query)."""
        if isinstance(query, str):
            query = AdhocQuery(text=query)
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[AdhocQuery], k: int = 10, *,
                    batch_size: int = 32) -> list[QueryResult]:
        """Top-``k`` items of each query; dense queries are embedded in batches.

        Raises:
            ConfigError: ``k`` < 1 or an unusable query (see :meth:`prepare`); a BM25-only
                searcher given a query with no text.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        t0 = time.perf_counter()
        prepared = [self.prepare(q) for q in queries]
        if self.kind == "bm25":
            blank = [p for p in prepared if not p.rewritten]
            if blank:
                raise ConfigError("a BM25 index searches text: this query has none (add text, "
                                  "or enhance image queries with --enhancer-model)")
        depth = k if self.kind != "hybrid" else max(k, self.hybrid_depth)
        rankings = self._rank(prepared, depth, batch_size)
        out = []
        for p, ranking in zip(prepared, rankings, strict=True):
            ranking = ranking[:k]
            records = self.catalog.records([i for i, _ in ranking])
            hits = [Hit(i, r + 1, float(s), rec.txt if rec else None,
                        rec.modality if rec else None,
                        self.catalog.image_path(rec) if rec else None)
                    for r, ((i, s), rec) in enumerate(zip(ranking, records, strict=True))]
            enh = None if p.enhanced is None else {
                "route": p.enhanced.route, "status": p.enhanced.status, "error": p.enhanced.error}
            out.append(QueryResult(p.query.text, p.rewritten, p.query.task,
                                   format_string(p.prompt) if p.prompt else None, enh, hits,
                                   p.query.qid))
        per_query = (time.perf_counter() - t0) / max(1, len(out))
        return [replace(r, seconds=per_query) for r in out]

    def _rank(self, prepared: list[_Prepared], depth: int, batch_size: int
              ) -> list[list[tuple[str, float]]]:
        """Per query, ``(id, score)`` best first."""
        from augret.index.fusion import fuse_runs

        qids = [f"q{i}" for i in range(len(prepared))]
        dense_run = bm25_run = None
        if self.dense is not None:
            vectors = self.embed(prepared, batch_size=batch_size)
            dense_run = self._by_modality(prepared, qids, lambda rows, mod: self.dense.search(
                vectors[rows], min(depth, max(1, self.dense.ntotal)), modalities=mod))
        if self.bm25 is not None:
            texts = [p.rewritten for p in prepared]
            bm25_run = self._by_modality(prepared, qids, lambda rows, mod: self.bm25.search(
                [texts[i] for i in rows], min(depth, max(1, len(self.bm25))), modalities=mod))
        runs = [r for r in (dense_run, bm25_run) if r is not None]
        if len(runs) == 2:
            fused = fuse_runs([_to_run(r, qids) for r in runs], k=self.rrf_k, depth=depth,
                              tag="hybrid")
            index = fused.qid_index
            return [fused.ranking(q) if q in index else [] for q in qids]
        return [runs[0][q] for q in qids]

    @staticmethod
    def _by_modality(prepared: list[_Prepared], qids: list[str], search: Any
                     ) -> dict[str, list[tuple[str, float]]]:
        """Search the queries grouped by their modality filter; rankings by qid."""
        groups: dict[str | None, list[int]] = {}
        for i, p in enumerate(prepared):
            groups.setdefault(p.query.modality, []).append(i)
        rankings: dict[str, list[tuple[str, float]]] = {}
        for mod, rows in groups.items():
            res = search(np.asarray(rows), mod)
            for j, row in enumerate(rows):
                keep = res.rows[j] >= 0
                rankings[qids[row]] = [(str(i), float(s)) for i, s in
                                       zip(res.ids[j][keep], res.scores[j][keep], strict=True)]
        return rankings

    def close(self) -> None:
        """Release the enhancer (backend and store)."""
        if self.enhancer is not None:
            self.enhancer.close()


def _to_run(rankings: dict[str, list[tuple[str, float]]], qids: list[str]) -> Any:
    """Rankings as an :class:`augret.evaluate.Run` (order kept), for fusion."""
    from augret.evaluate.runs import Run

    vocab: dict[str, int] = {}
    width = max((len(r) for r in rankings.values()), default=0)
    docs = np.full((len(qids), width), -1, dtype=np.int64)
    scores = np.zeros((len(qids), width))
    for row, q in enumerate(qids):
        for col, (i, s) in enumerate(rankings[q]):
            docs[row, col] = vocab.setdefault(i, len(vocab))
            scores[row, col] = s
    return Run(qids, docs, scores, list(vocab))
