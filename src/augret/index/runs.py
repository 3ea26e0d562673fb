"""Search every query task against its pool's index and write run files.

Local runs search a task's queries in the index of its local pool (``mscoco_task{0,3}_test``
for MSCOCO); union runs search them in the ``union`` index. Files are
``<task>_<local|union>.run``: UniIR's 7-column TREC lines with the task id, depth the task's
deepest metric (10, or 50 for Fashion200K and FashionIQ) unless configured. The run directory
also holds ``search_config.yaml`` and ``runs.json`` (what produced each file; a file whose
inputs and config did not change is not searched again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret.config import config_hash, write_resolved
from augret.data.ids import default_depth, local_pool, target_modality, task_id
from augret.data.mbeir import RUN_POOLS, UNION, MBEIRDir, parse_run_file_name, run_file_name
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.evaluate.runs import Run, write_run
from augret.formats.embeddings import EmbeddingDir, EmbeddingEntry, is_embedding_dir
from augret.formats.fingerprint import fingerprint, read_run_manifest, write_run_manifest
from augret.formats.indexes import index_dirs, read_meta
from augret.index.config import SearchConfig
from augret.index.search import SearchResult
from augret.index.vectors import VectorSet

__all__ = [
    "default_depth",
    "local_pool",
    "search_bm25_tasks",
    "search_dense_tasks",
    "search_entry",
    "search_to_run_dir",
    "write_runs",
]

log = logging.getLogger(__name__)

def write_runs(out_dir: str | Path, runs: Mapping[tuple[str, str], Run]) -> dict[
        tuple[str, str], Path]:
    """Write each run as ``<task>_<pool>.run`` (7 columns when the run has task ids).

    A run without a single result (e.g. BM25 over a pool without text) is not written (a run
    file cannot be empty); a warning names it.
    """
    out_dir = Path(out_dir)
    out = {}
    for (task, pool), run in runs.items():
        if not (run.docs >= 0).any():
            log.warning("%s (%s): no query found any candidate; no run file written", task,
                        pool)
            continue
        path = out_dir / run_file_name(task, pool)
        write_run(path, run)
        out[task, pool] = path
    return out


def _concat(results: list[SearchResult]) -> SearchResult:
    return SearchResult(ids=np.concatenate([r.ids for r in results]),
                        scores=np.concatenate([r.scores for r in results]),
                        rows=np.concatenate([r.rows for r in results]))


def search_entry(index: Any, entry: EmbeddingEntry, *, k: int, batch_size: int = 1024,
                 modalities: str | Iterable[str] | None = None, tag: str | None = None,
                 task: int | None = None) -> Run:
    """Search every query of an embedding entry (streamed shard by shard) into a run.

    Args:
        index: A :class:`~augret.index.DenseIndex`.
        entry: A ``queries/<task>`` entry.
        k: Depth.
        batch_size: Queries per FAISS call.
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


def _plan(index_path: str | Path, tasks: Sequence[str], pools: Sequence[str]
          ) -> dict[Path, list[tuple[str, str]]]:
    dirs = index_dirs(index_path)
    plan: dict[Path, list[tuple[str, str]]] = {}
    for pool in pools:
        if pool not in RUN_POOLS:
            raise ConfigError(f"pool must be 'local' or 'union', got {pool!r}")
        for task in tasks:
            name = UNION if pool == "union" else local_pool(task)
            if name in dirs:
                plan.setdefault(dirs[name], []).append((task, pool))
            elif len(dirs) > 1 or pool == "union":
                log.info("no %s index for %s; skipped", name, task)
    if not plan:
        raise DataNotFoundError(f"{index_path}: no index matches the tasks {list(tasks)} "
                                f"(pools {list(pools)}; indexes: {sorted(dirs)})")
    return plan


def _encoder_name(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    return value if isinstance(value, str) else None


def _tag(cfg: SearchConfig, meta: Mapping[str, Any]) -> str:
    return cfg.tag or f"augret_{meta.get('kind', 'dense')}"


def search_dense_tasks(emb_dir: str | Path, index_path: str | Path,
                       cfg: SearchConfig | None = None, *, pools: Sequence[str] = RUN_POOLS,
                       tasks: Sequence[str] | None = None, skip: Mapping[str, str] | None = None,
                       ) -> dict[tuple[str, str], tuple[Run, str]]:
    """Search the query entries of an embedding directory in dense indexes.

    Args:
        emb_dir: The embedding directory (its ``queries/<task>`` entries).
        index_path: An index directory or a root of them (``<pool>/``, ``union/``).
        cfg: Search settings.
        pools: ``local`` and/or ``union``.
        tasks: Query entries to search (default: all).
        skip: ``{run file name: fingerprint}`` of runs already written; a run whose
            fingerprint is unchanged is not searched again.

    Returns:
        ``{(task, pool): (run, fingerprint)}`` for the runs searched.

    Raises:
        DataFormatError: Query and index dimensions differ.
        ConfigError: The queries' encoder is not the index's.
    """
    from augret.index.dense import DenseIndex

    cfg = cfg or SearchConfig()
    emb = EmbeddingDir(emb_dir)
    tasks = list(tasks) if tasks else emb.names("queries")
    for t in tasks:
        if not emb.has("queries", t):
            raise DataNotFoundError(f"{emb.root}: no query entry queries/{t}")
    out: dict[tuple[str, str], tuple[Run, str]] = {}
    for index_dir, todo in _plan(index_path, tasks, pools).items():
        meta = read_meta(index_dir)
        if meta["kind"] == "bm25":
            raise ConfigError(f"{index_dir} is a BM25 index; search it with an M-BEIR "
                              "directory of query texts")
        a, b = _encoder_name(emb.encoder), _encoder_name(meta.get("encoder"))
        if a and b and a != b:
            raise ConfigError(f"queries embedded with {a!r} but {index_dir} indexes {b!r}")
        todo_fp = {}
        for task, pool in todo:
            entry = emb.entry("queries", task)
            fp = fingerprint(meta.get("fingerprint"), meta.get("created"), entry.fingerprint,
                             config_hash(cfg, scope="dense"),
                             cfg.k or default_depth(task))
            if skip and skip.get(run_file_name(task, pool)) == fp:
                log.info("%s is up to date; not searched again", run_file_name(task, pool))
                continue
            todo_fp[task, pool] = (entry, fp)
        if not todo_fp:
            continue
        index = DenseIndex.load(index_dir, gpu=cfg.gpu, nprobe=cfg.nprobe,
                                ef_search=cfg.ef_search)
        for (task, pool), (entry, fp) in todo_fp.items():
            if entry.dim != index.dim:
                raise DataFormatError(f"queries of dimension {entry.dim} for an index of "
                                      f"dimension {index.dim}", path=entry.path)
            depth = cfg.k or default_depth(task)
            mods = target_modality(task) if cfg.filter_modality else None
            run = search_entry(index, entry, k=depth, batch_size=cfg.batch_size,
                               modalities=mods, tag=_tag(cfg, meta), task=task_id(task))
            log.info("%s (%s): %d queries searched in %s", task, pool, len(run), index_dir)
            out[task, pool] = (run, fp)
        del index
    return out


def search_bm25_tasks(data_dir: str | Path, index_path: str | Path,
                      cfg: SearchConfig | None = None, *, pools: Sequence[str] = RUN_POOLS,
                      tasks: Sequence[str] | None = None,
                      query_field: str = "query_txt",
                      skip: Mapping[str, str] | None = None,
                      ) -> dict[tuple[str, str], tuple[Run, str]]:
    """Search the test queries of an M-BEIR directory in BM25 indexes.

    The query text is ``query_field`` (``query_txt``: after enhancement, the rewritten
    query; ``query_txt_raw`` the original) with no instruction prefix. Arguments and result
    as :func:`search_dense_tasks`.
    """
    from augret.index.bm25 import BM25Index

    cfg = cfg or SearchConfig()
    data = MBEIRDir(data_dir)
    present = {tf.task.name: tf.queries for tf in data.tasks()}
    tasks = list(tasks) if tasks else list(present)
    for t in tasks:
        if t not in present:
            raise DataNotFoundError(f"{data.root}: no test query file for {t!r}")
    out: dict[tuple[str, str], tuple[Run, str]] = {}
    for index_dir, todo in _plan(index_path, tasks, pools).items():
        meta = read_meta(index_dir)
        if meta["kind"] != "bm25":
            raise ConfigError(f"{index_dir} is a dense index; search it with an embedding "
                              "directory")
        index: BM25Index | None = None
        for task, pool in todo:
            qfile = present[task]
            st = qfile.stat()
            fp = fingerprint(meta.get("fingerprint"), meta.get("created"), str(qfile),
                             st.st_size, st.st_mtime, query_field,
                             config_hash(cfg),
                             cfg.k or default_depth(task))
            if skip and skip.get(run_file_name(task, pool)) == fp:
                log.info("%s is up to date; not searched again", run_file_name(task, pool))
                continue
            index = index or BM25Index.load(index_dir)
            qids, texts = [], []
            for q in data.iter_queries(task):
                qids.append(q.id)
                text = q.field_text(query_field)
                texts.append(text if isinstance(text, str) else None)
            depth = cfg.k or default_depth(task)
            mods = target_modality(task) if cfg.filter_modality else None
            res = index.search(texts, depth, batch_size=cfg.batch_size, modalities=mods,
                               threads=cfg.threads)
            out[task, pool] = (res.to_run(qids, task_ids=task_id(task), tag=_tag(cfg, meta)),
                               fp)
            log.info("%s (%s): %d queries searched in %s", task, pool, len(qids), index_dir)
        del index
    return out


def search_to_run_dir(queries: str | Path, index_path: str | Path, out_dir: str | Path,
                      cfg: SearchConfig | None = None, *, pools: Sequence[str] = RUN_POOLS,
                      tasks: Sequence[str] | None = None, query_field: str = "query_txt",
                      force: bool = False) -> dict[tuple[str, str], Path]:
    """Search and write run files: dense indexes with an embedding directory, BM25 indexes
    with an M-BEIR directory.

    Args:
        queries: An embedding directory (dense) or an M-BEIR directory (BM25).
        index_path: An index directory or a root of them.
        out_dir: The run directory.
        cfg: Search settings.
        pools: ``local`` and/or ``union``.
        tasks: Tasks to search (default: all present).
        query_field: BM25 query text field.
        force: Search again even where ``runs.json`` says a run is up to date.

    Returns:
        Every run file of this call's tasks and pools by ``(task, pool)``.
    """
    cfg = cfg or SearchConfig()
    queries, out_dir = Path(queries), Path(out_dir)
    manifest: dict[str, Any] = {} if force else read_run_manifest(out_dir)
    skip = {name: v["fingerprint"] for name, v in manifest.items()
            if isinstance(v, dict) and (out_dir / name).is_file()}
    kinds = {read_meta(d)["kind"] == "bm25" for d in index_dirs(index_path).values()}
    if len(kinds) > 1:
        raise ConfigError(f"{index_path} mixes BM25 and dense indexes; search them apart")
    if kinds.pop():
        if is_embedding_dir(queries):
            raise ConfigError(f"{index_path} holds BM25 indexes, which search query texts: "
                              f"give the M-BEIR directory, not the embedding directory "
                              f"{queries}")
        found = search_bm25_tasks(queries, index_path, cfg, pools=pools, tasks=tasks,
                                  query_field=query_field, skip=skip)
    else:
        if not is_embedding_dir(queries):
            raise DataNotFoundError(f"{queries}: not an embedding directory (meta.json and "
                                    "queries/)")
        found = search_dense_tasks(queries, index_path, cfg, pools=pools, tasks=tasks,
                                   skip=skip)
    written = write_runs(out_dir, {key: run for key, (run, _) in found.items()})
    for key, (run, fp) in found.items():
        if key not in written:
            continue
        manifest[run_file_name(*key)] = {"fingerprint": fp, "queries": len(run),
                                    "depth": run.depth, "index": str(index_path),
                                    "source": str(queries)}
    write_resolved(cfg, out_dir, "search_config.yaml")
    write_run_manifest(out_dir, manifest)
    wanted = set(tasks) if tasks else None
    out = {}
    for name in sorted(manifest):
        task, pool = parse_run_file_name(name) or ("", "")
        if pool in pools and (wanted is None or task in wanted) and (out_dir / name).is_file():
            out[task, pool] = out_dir / name
    return out
