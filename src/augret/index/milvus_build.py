"""Build the ``milvus`` backend: one collection for every pool of a build, streamed in batches.

The pools' embedding entries are streamed shard by shard into one collection, ``insert_rows``
rows per insert call; an id held by several entries (a local pool and the union) is one row
listing both pools, with the vector of the first entry that holds it (the union's entries
come first). The rows' modality, text and image path come from the pool files.

Resuming: before each insert call, ``milvus_build.json`` records how far the build is
certainly done (``confirmed``: every earlier row is in the collection) and how far it may
have reached (``check_until``: no later row was ever sent). A rerun after a kill, even
SIGKILL, skips the confirmed rows, asks the collection which rows of the uncertain stretch
it holds, inserts only the others and goes on: every id is inserted exactly once. The
collection carries the build's fingerprint and owner (the index root) as properties: a
rerun of the same build resumes it, a new config of the same index root replaces it, and a
collection of anyone else is only replaced with ``force``.

Layout (see ``docs/formats.md``)::

    ROOT/                   the index root (or, with one pool, its index directory)
      milvus.db/            the Milvus Lite database, when no URI is given
      milvus_build.json     while a build runs: the resume record
      <pool>/meta.json      per pool: uri, collection, filter, ... (written last)
      <pool>/ids.txt        the pool's ids
      <pool>/config.yaml    the resolved MilvusConfig
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augret import __version__
from augret._lazy import require
from augret.config import config_hash, config_to_dict, write_resolved
from augret.data.jsonl import read_json_or_none, write_json
from augret.data.lookup import PoolLookup
from augret.data.mbeir import UNION
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.formats.embeddings import EmbeddingDir, EmbeddingEntry
from augret.formats.fingerprint import stable_hash
from augret.formats.indexes import begin_write, read_meta, write_ids, write_meta
from augret.index._faiss import default_nlist
from augret.index.config import MilvusConfig
from augret.index.milvus import MilvusIndex, target_of
from augret.index.milvus_db import (
    FIELDS,
    FINGERPRINT_KEY,
    MAX_TEXT_BYTES,
    OWNER_KEY,
    Collection,
    Target,
    is_lite,
    pool_filter,
)
from augret.index.pools import (
    check_unique,
    embedding_source_meta,
    entry_pool_files,
    pool_entries,
)
from augret.index.recall import exact_topk, recall_at_k
from augret.index.vectors import VectorSet, l2_normalize
from augret.progress import track

__all__ = ["LITE_FILE", "RECORD_FILE", "build_milvus_indexes", "build_milvus_pool"]

log = logging.getLogger(__name__)

LITE_FILE = "milvus.db"
RECORD_FILE = "milvus_build.json"
_MAX_IMAGE_PATH = 4096
_INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}


# ---- what goes into the collection -------------------------------------------------------------
@dataclass
class _Plan:
    """The rows of a build: which entries, which rows of each, which pools each id is in."""

    pools: dict[str, list[EmbeddingEntry]]
    entries: list[EmbeddingEntry] = field(default_factory=list)
    ids: dict[str, list[str]] = field(default_factory=dict)
    keep: dict[str, np.ndarray] = field(default_factory=dict)
    members: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    dim: int = 0

    def pool_ids(self, pool: str) -> list[str]:
        return [i for e in self.pools[pool] for i in self.ids[e.key]]


def _plan(emb: EmbeddingDir, pools: list[str]) -> _Plan:
    plan = _Plan({name: pool_entries(emb, name) for name in pools})
    order = ([UNION] if UNION in pools else []) + [p for p in pools if p != UNION]
    for pool in order:
        for e in plan.pools[pool]:
            if e.key not in plan.ids:
                plan.entries.append(e)
                plan.ids[e.key] = e.read_ids()
    dims = {e.dim for e in plan.entries}
    if len(dims) != 1:
        raise DataFormatError(f"the pools' entries have different dimensions: {sorted(dims)}")
    plan.dim = dims.pop()
    for bit, pool in enumerate(pools):
        entries = plan.pools[pool]
        check_unique(plan.pool_ids(pool), [e.key for e in entries], [e.rows for e in entries])
        for e in entries:
            for i in plan.ids[e.key]:
                plan.members[i] = plan.members.get(i, 0) | (1 << bit)
    seen: set[str] = set()
    for e in plan.entries:
        keep = np.zeros(len(plan.ids[e.key]), dtype=bool)
        for j, i in enumerate(plan.ids[e.key]):
            if i not in seen:
                seen.add(i)
                keep[j] = True
        plan.keep[e.key] = keep
    plan.rows = len(seen)
    if plan.rows == 0:
        raise DataFormatError("nothing to index: the pools hold no vectors")
    return plan


def _chunks(plan: _Plan, size: int, start: int, normalize: bool
            ) -> Iterator[tuple[int, list[str], np.ndarray]]:
    """``(position, ids, float32 vectors)`` of the collection's rows from ``start`` on, in
    chunks of ``size`` rows (chunk boundaries at ``start + i * size``)."""
    pos = 0
    buf_ids: list[str] = []
    buf_vec: list[np.ndarray] = []

    def flush() -> tuple[int, list[str], np.ndarray]:
        vectors = np.concatenate(buf_vec)
        out = (pos - len(buf_ids), list(buf_ids),
               l2_normalize(vectors) if normalize else np.ascontiguousarray(vectors,
                                                                             np.float32))
        buf_ids.clear()
        buf_vec.clear()
        return out

    for e in plan.entries:
        keep, ids, first = plan.keep[e.key], plan.ids[e.key], 0
        for shard in e.shards:
            rows = np.flatnonzero(keep[first: first + shard.rows])
            skip = min(len(rows), max(0, start - pos))
            pos += skip
            rows = rows[skip:]
            array = shard.load() if len(rows) else None
            while len(rows):
                take = rows[: size - len(buf_ids)]
                rows = rows[len(take):]
                buf_ids.extend(ids[first + j] for j in take.tolist())
                buf_vec.append(np.asarray(array[take], dtype=np.float32))  # type: ignore[index]
                pos += len(take)
                if len(buf_ids) == size:
                    yield flush()
            first += shard.rows
    if buf_ids:
        yield flush()


class _Records:
    """Modality, text and image path of each id, from the pool files (empty without them)."""

    def __init__(self, lookup: PoolLookup | None, text_field: str) -> None:
        self.lookup, self.text_field, self.truncated = lookup, text_field, 0

    def rows(self, ids: list[str], vectors: np.ndarray, pools: list[list[str]]
             ) -> list[dict[str, Any]]:
        records = self.lookup.get_many(ids) if self.lookup is not None else [None] * len(ids)
        out = []
        for i, v, p, rec in zip(ids, vectors, pools, records, strict=True):
            text = rec.field_text(self.text_field) if rec is not None else None
            text = text if isinstance(text, str) else ""
            raw = text.encode("utf-8")
            if len(raw) > MAX_TEXT_BYTES:
                text = raw[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")
                self.truncated += 1
            image = (rec.img_path or "") if rec is not None else ""
            if len(image.encode("utf-8")) > _MAX_IMAGE_PATH:
                raise DataFormatError(f"candidate {i}: image path longer than "
                                      f"{_MAX_IMAGE_PATH} bytes")
            out.append({FIELDS["id"]: i, FIELDS["modality"]: rec.modality if rec else "",
                        FIELDS["pools"]: p, FIELDS["text"]: text, FIELDS["image"]: image,
                        FIELDS["vector"]: v})
        return out


# ---- the collection ------------------------------------------------------------------------
def _analyzer(cfg: MilvusConfig) -> dict[str, Any]:
    filters: list[Any] = ["lowercase"]
    if cfg.stop_words:
        filters.append({"type": "stop", "stop_words": list(cfg.stop_words)})
    return {"tokenizer": "standard", "filter": filters}


def _schema(cfg: MilvusConfig, plan: _Plan, pools: list[str]) -> Any:
    pymilvus = require("pymilvus", "milvus")
    dtype = pymilvus.DataType
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    id_len = max(64, max(len(i.encode("utf-8")) for i in plan.members))
    schema.add_field(FIELDS["id"], dtype.VARCHAR, is_primary=True, max_length=id_len)
    schema.add_field(FIELDS["modality"], dtype.VARCHAR, max_length=16)
    schema.add_field(FIELDS["pools"], dtype.ARRAY, element_type=dtype.VARCHAR,
                     max_capacity=max(1, len(pools)),
                     max_length=max(64, *(len(p.encode("utf-8")) for p in pools)))
    text = {"enable_analyzer": True, "analyzer_params": _analyzer(cfg)} if cfg.text_search \
        else {}
    schema.add_field(FIELDS["text"], dtype.VARCHAR, max_length=MAX_TEXT_BYTES, **text)
    schema.add_field(FIELDS["image"], dtype.VARCHAR, max_length=_MAX_IMAGE_PATH)
    schema.add_field(FIELDS["vector"], dtype.FLOAT_VECTOR, dim=plan.dim)
    if cfg.text_search:
        schema.add_field(FIELDS["sparse"], dtype.SPARSE_FLOAT_VECTOR)
        schema.add_function(pymilvus.Function(
            name="bm25", function_type=pymilvus.FunctionType.BM25,
            input_field_names=[FIELDS["text"]], output_field_names=[FIELDS["sparse"]]))
    return schema


def _vector_params(cfg: MilvusConfig, rows: int) -> dict[str, Any]:
    if cfg.kind == "hnsw":
        return {"M": cfg.hnsw_m, "efConstruction": cfg.ef_construction}
    if cfg.kind == "ivf":
        return {"nlist": min(65_536, cfg.nlist or default_nlist(rows))}
    return {}


def _create_indexes(col: Collection, cfg: MilvusConfig, rows: int) -> None:
    pymilvus = require("pymilvus", "milvus")
    have = set(col.call("list indexes", "list_indexes", col.name) or [])
    params = pymilvus.MilvusClient.prepare_index_params()
    wanted = 0
    # the build parameters travel as one JSON "params" entry, which Milvus servers and
    # Milvus Lite both read (Lite ignores the flattened keys recent pymilvus sends)
    if FIELDS["vector"] not in have:
        params.add_index(field_name=FIELDS["vector"], index_name=FIELDS["vector"],
                         index_type=_INDEX_TYPES[cfg.kind], metric_type="IP",
                         params={"params": _vector_params(cfg, rows)})
        wanted += 1
    if cfg.text_search and FIELDS["sparse"] not in have:
        params.add_index(field_name=FIELDS["sparse"], index_name=FIELDS["sparse"],
                         index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                         params={"params": {"bm25_k1": cfg.k1, "bm25_b": cfg.b}})
        wanted += 1
    if wanted:
        col.call("create the indexes", "create_index", col.name, params, sync=False)


def _create(col: Collection, cfg: MilvusConfig, plan: _Plan, pools: list[str],
            properties: dict[str, str]) -> None:
    col.call("create", "create_collection", col.name, schema=_schema(cfg, plan, pools),
             properties=properties)
    info = col.describe()
    if cfg.text_search and not info.get("functions"):
        version = col.server_version()
        col.call("drop", "drop_collection", col.name)
        raise ConfigError(f"{col.target}: the server ({version}) ignored the BM25 function: "
                          "text search needs Milvus >= 2.5 or Milvus Lite. Build without it "
                          "(--set text_search=false) for dense search only")


def _open_collection(col: Collection, cfg: MilvusConfig, plan: _Plan, pools: list[str],
                     fp: str, owner: str, force: bool) -> bool:
    """Create the collection, or keep it to resume. Returns whether it is new."""
    props = {FINGERPRINT_KEY: fp, OWNER_KEY: owner}
    if col.exists():
        info = col.describe()
        have = info.get("properties") or {}
        ours = have.get(OWNER_KEY) == owner
        if ours and have.get(FINGERPRINT_KEY) == fp and not force:
            dim = col.vector_dim(info)
            if dim != plan.dim:
                raise DataFormatError(f"{col.target} holds vectors of dimension {dim}, these "
                                      f"embeddings have {plan.dim}")
            log.info("resuming the build of %s", col.target)
            return False
        if not (ours or force):
            dim = col.vector_dim(info)
            what = "another augret build" if have.get(FINGERPRINT_KEY) else \
                "a collection augret did not build"
            dims = f" of dimension {dim} (these embeddings: {plan.dim})" if dim != plan.dim \
                else ""
            raise ConfigError(f"{col.target} exists and holds {what}{dims}; pass --force to "
                              "replace it, or name another collection (--collection)")
        log.info("replacing %s (%s)", col.target,
                 "forced" if force else "an earlier build of this index")
        col.call("drop", "drop_collection", col.name)
    _create(col, cfg, plan, pools, props)
    return True


def _wait_indexed(col: Collection, timeout: float) -> None:
    """Wait until the server has indexed every row (a Lite database indexes at once)."""
    deadline = time.monotonic() + timeout
    for name in col.call("list indexes", "list_indexes", col.name) or []:
        while True:
            info = col.call("describe the index", "describe_index", col.name, name)
            if str(info.get("state", "Finished")) == "Finished" or time.monotonic() > deadline:
                break
            time.sleep(0.5)


# ---- the build ------------------------------------------------------------------------------
def _default_collection(root: Path) -> str:
    name = re.sub(r"\W", "_", root.resolve().name, flags=re.ASCII).strip("_") or "index"
    return f"augret_{name}"[:255]


def _target(cfg: MilvusConfig, root: Path) -> Target:
    uri = cfg.uri or str(root / LITE_FILE)
    if "@" in uri.partition("://")[2].partition("/")[0]:
        raise ConfigError(f"the uri holds credentials; give them in ${cfg.token_env} instead "
                          "(meta.json records the uri, never the token)")
    if is_lite(uri):
        if not uri.endswith(".db"):
            raise ConfigError(f"uri {uri!r}: a Milvus Lite database path ends in .db; a server "
                              "URI starts with http:// or https://")
        uri = str(Path(uri).resolve())
    return Target(uri, cfg.collection or _default_collection(root), cfg.token_env,
                  cfg.timeout)


def _meta_uri(target: Target, directory: Path) -> str:
    """The URI as ``meta.json`` records it: a Lite file relative to the index directory."""
    if target.lite:
        return os.path.relpath(target.uri, directory.resolve())
    return target.uri


def _fingerprint(cfg: MilvusConfig, plan: _Plan, pools: list[str], records: bool) -> str:
    return stable_hash([config_hash(cfg), [[e.key, e.fingerprint, e.rows] for e in
                                           plan.entries],
                        {p: [e.key for e in plan.pools[p]] for p in pools}, plan.dim, records])


def _up_to_date(targets: dict[str, Path], fp: str, target: Target
                ) -> dict[str, MilvusIndex] | None:
    out = {}
    for pool, directory in targets.items():
        try:
            meta = read_meta(directory)
        except (DataNotFoundError, DataFormatError):
            return None
        if meta.get("backend") != "milvus" or meta.get("fingerprint") != fp or \
                target_of(meta, directory).uri != target.uri or \
                meta.get("collection") != target.collection:
            return None
        try:
            out[pool] = MilvusIndex.load(directory)
        except (DataNotFoundError, DataFormatError) as exc:
            log.info("%s: %s; building again", directory, exc)
            return None
    return out


def _insert(col: Collection, plan: _Plan, pools: list[str], records: _Records,
            cfg: MilvusConfig, root: Path, record: dict[str, Any], progress: bool) -> None:
    confirmed, check_until = int(record["confirmed"]), int(record["check_until"])
    names = {bits: [p for b, p in enumerate(pools) if bits >> b & 1]
             for bits in set(plan.members.values())}
    with track(f"inserting into {col.name}", plan.rows, enabled=progress) as advance:
        advance(confirmed)
        for pos, ids, vectors in _chunks(plan, cfg.insert_rows, confirmed, cfg.normalize):
            end = pos + len(ids)
            if pos < check_until:  # a stretch an interrupted run may have reached
                held = col.present(ids)
                keep = [j for j, i in enumerate(ids) if i not in held]
                if held:
                    log.info("rows %d-%d: %d already in the collection", pos, end, len(held))
                ids, vectors = [ids[j] for j in keep], vectors[keep]
            write_json(root / RECORD_FILE, {**record, "confirmed": pos,
                                            "check_until": max(check_until, end)})
            if ids:
                rows = records.rows(ids, vectors, [names[plan.members[i]] for i in ids])
                col.call("insert", "insert", col.name, rows)
            check_until = max(check_until, end)
            advance(end - pos)
    write_json(root / RECORD_FILE, {**record, "confirmed": plan.rows,
                                    "check_until": plan.rows})


def _measure_recall(indexes: dict[str, MilvusIndex], plan: _Plan, cfg: MilvusConfig
                    ) -> dict[str, Any]:
    pool = UNION if UNION in indexes else max(indexes, key=lambda p: indexes[p].ntotal)
    vectors = VectorSet.from_entries(plan.pools[pool])
    n = len(vectors)
    rng = np.random.default_rng(cfg.seed + 1)
    rows = np.sort(rng.choice(n, size=min(n, cfg.recall_queries), replace=False))
    queries = vectors.take(rows, normalize=cfg.normalize)
    k = min(cfg.recall_k, n)
    t0 = time.perf_counter()
    _, exact = exact_topk(vectors, queries, k, normalize=cfg.normalize)
    t1 = time.perf_counter()
    approx = indexes[pool].search(queries, k, normalize=False).rows
    t2 = time.perf_counter()
    value = recall_at_k(approx, exact, k)
    log.info("recall@%d of Milvus %s against exact search: %.4f (%d queries, pool %s)", k,
             cfg.kind, value, len(rows), pool)
    return {"k": k, "queries": len(rows), "recall": round(value, 4), "pool": pool,
            "nprobe": indexes[pool].nprobe, "ef_search": indexes[pool].ef_search,
            "exact_seconds": round(t1 - t0, 3), "approx_seconds": round(t2 - t1, 3),
            "sample": "indexed vectors as queries (seeded)"}


def build_milvus_indexes(emb_dir: str | Path, targets: dict[str, Path], *, root: str | Path,
                         cfg: MilvusConfig | None = None, modalities: bool | None = None,
                         data_dir: str | Path | None = None, force: bool = False,
                         progress: bool = True) -> dict[str, MilvusIndex]:
    """Build one collection holding the pools of an embedding directory, and their index
    directories.

    Args:
        emb_dir: The embedding directory.
        targets: The index directory of each pool (a local pool name or ``union``).
        root: Where the Milvus Lite database (without ``cfg.uri``) and the resume record go.
        cfg: The collection's parameters.
        modalities: Store each candidate's modality, text and image path: ``True`` requires
            the pool files, ``None`` stores them when the pool files are found, ``False``
            never.
        data_dir: Where the pool files are (default: the embedding directory's).
        force: Rebuild even when up to date, and replace a collection of another build.
        progress: Show progress bars.

    Returns:
        The indexes by pool.

    Raises:
        IndexUnavailable: The database cannot be reached.
        ConfigError: A collection of another build is in the way, or the server cannot
            run the BM25 function.
        DataNotFoundError: No such pool, or ``modalities=True`` without pool files.
        DataFormatError: Duplicate ids within a pool, mixed dimensions, a collection whose
            row count disagrees after the build.
    """
    cfg = cfg or MilvusConfig()
    root = Path(root)
    emb = EmbeddingDir(emb_dir)
    pools = list(targets)
    plan = _plan(emb, pools)
    files = None if modalities is False else entry_pool_files(
        plan.entries, data_dir=data_dir or emb.data_dir, emb_root=emb.root)
    if files is None and modalities:
        raise DataNotFoundError(f"no pool files found for the records of {pools}; pass the "
                                "M-BEIR directory (--data)")
    fp = _fingerprint(cfg, plan, pools, files is not None)
    target = _target(cfg, root)
    if not force and (done := _up_to_date(targets, fp, target)) is not None:
        log.info("%s is up to date (same entries and config); not rebuilt", root)
        return done
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    col = Collection(target, replicas=cfg.replicas)
    owner = stable_hash(str(root.resolve()))
    new = _open_collection(col, cfg, plan, pools, fp, owner, force)
    for directory in targets.values():
        begin_write(directory)
    _create_indexes(col, cfg, plan.rows)
    col.load()
    record = {"fingerprint": fp, "uri": target.uri, "collection": target.collection}
    old = read_json_or_none(root / RECORD_FILE) or {}
    if new:
        record.update(confirmed=0, check_until=0)
    elif all(old.get(k) == v for k, v in record.items()):
        record.update(confirmed=int(old.get("confirmed", 0)),
                      check_until=int(old.get("check_until", plan.rows)))
    else:  # no record of how far it got: ask about every row
        record.update(confirmed=0, check_until=plan.rows)
    lookup = PoolLookup(files) if files is not None else None
    if lookup is None:
        log.warning("no pool files: the collection holds no modality, text or image path")
    records = _Records(lookup, cfg.text_field)
    log.info("inserting %d rows (%d pools, dimension %d) into %s", plan.rows, len(pools),
             plan.dim, target)
    _insert(col, plan, pools, records, cfg, root, record, progress)
    if records.truncated:
        log.warning("%d candidate texts cut to Milvus's %d bytes", records.truncated,
                    MAX_TEXT_BYTES)
    col.call("flush", "flush", col.name)
    rows = col.count()
    if rows != plan.rows:
        raise DataFormatError(f"{target} holds {rows} rows after the build, which inserted "
                              f"{plan.rows} distinct ids: another writer changed it; rebuild "
                              "with --force")
    _wait_indexed(col, cfg.timeout)
    return _finish(col, plan, pools, targets, cfg, {"fingerprint": fp, "owner": owner},
                   files is not None, emb, data_dir, root, t0)


def _finish(col: Collection, plan: _Plan, pools: list[str], targets: dict[str, Path],
            cfg: MilvusConfig, build: dict[str, str], records: bool, emb: EmbeddingDir,
            data_dir: str | Path | None, root: Path, t0: float) -> dict[str, MilvusIndex]:
    pymilvus = require("pymilvus", "milvus")
    vector_params = _vector_params(cfg, plan.rows)
    params = {"index_type": _INDEX_TYPES[cfg.kind], "metric_type": "IP", **vector_params}
    if cfg.kind == "ivf":
        params["nprobe"] = min(cfg.nprobe, vector_params["nlist"])
    if cfg.kind == "hnsw":
        params["ef_search"] = cfg.ef_search
    version = col.server_version()
    indexes = {}
    for pool in pools:
        directory = targets[pool]
        ids = plan.pool_ids(pool)
        write_ids(directory, ids)
        meta: dict[str, Any] = {
            "backend": "milvus", "kind": cfg.kind, "pool": pool,
            "uri": _meta_uri(col.target, directory), "collection": col.name,
            "token_env": cfg.token_env,
            "filter": None if len(ids) == plan.rows else pool_filter(pool),
            "metric": "inner_product", "normalized": cfg.normalize, "dimension": plan.dim,
            "count": len(ids), "collection_rows": plan.rows, "encoder": emb.encoder,
            "params": params, "modalities": records,
            "text_search": cfg.text_search and records,
            "text": {"field": cfg.text_field, "analyzer": _analyzer(cfg),
                     "k1": cfg.k1, "b": cfg.b} if cfg.text_search else None,
            "sources": [{"entry": e.key, "rows": e.rows, "fingerprint": e.fingerprint}
                        for e in plan.pools[pool]],
            "recall": None, "config": config_to_dict(cfg), **build,
            "server_version": version,
            "pymilvus_version": getattr(pymilvus, "__version__", None),
            "augret_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **embedding_source_meta(emb, data_dir),
        }
        indexes[pool] = MilvusIndex(col, meta, path=directory, ids=ids)
    if cfg.kind != "flat" and cfg.recall_queries > 0:
        recall = _measure_recall(indexes, plan, cfg)
        for index in indexes.values():
            index.meta["recall"] = recall
    seconds = round(time.perf_counter() - t0, 3)
    for pool, index in indexes.items():
        index.meta["build_seconds"] = seconds
        write_resolved(cfg, targets[pool])
        write_meta(targets[pool], index.meta)
    (root / RECORD_FILE).unlink(missing_ok=True)
    return indexes


def build_milvus_pool(emb_dir: str | Path, out_dir: str | Path, *, pool: str,
                      **options: Any) -> MilvusIndex:
    """Build one pool into its own collection, with ``out_dir`` as the root (see
    :func:`build_milvus_indexes` for the options)."""
    return build_milvus_indexes(emb_dir, {pool: Path(out_dir)}, root=out_dir, **options)[pool]
