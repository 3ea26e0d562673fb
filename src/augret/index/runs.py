"""Search every query task against its pool's index and write run files.

Local runs search a task's queries in the index of its local pool (``mscoco_task{0,3}_test``
for MSCOCO); union runs search them in the ``union`` index. Files are
``<task>_<local|union>.run``: UniIR's 7-column TREC lines with the task id, depth the task's
deepest metric (10, or 50 for Fashion200K and FashionIQ) unless configured. The run directory
also holds ``search_config.yaml`` and ``runs.json`` (what produced each file; a file whose
inputs and config did not change is not searched again).

The indexes' backend (:mod:`augret.index.backends`) says which queries they search: an
embedding directory's query entries (dense) or an M-BEIR directory's query texts (BM25).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from augret.config import write_resolved
from augret.data.ids import default_depth, local_pool, target_modality
from augret.data.mbeir import RUN_POOLS, UNION, parse_run_file_name, run_file_name
from augret.errors import ConfigError, DataNotFoundError
from augret.evaluate.runs import Run, write_run
from augret.formats.fingerprint import fingerprint, read_run_manifest, write_run_manifest
from augret.formats.indexes import index_dirs, read_meta
from augret.index.backends import IndexBackend, backend_of
from augret.index.config import SearchConfig
from augret.index.queries import QuerySource

__all__ = ["search_tasks", "search_to_run_dir", "write_runs"]

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


def _tag(cfg: SearchConfig, meta: Mapping[str, Any]) -> str:
    return cfg.tag or f"augret_{meta.get('kind', 'dense')}"


def search_tasks(source: QuerySource, backend: IndexBackend, index_path: str | Path,
                 cfg: SearchConfig | None = None, *, pools: Sequence[str] = RUN_POOLS,
                 tasks: Sequence[str] | None = None, skip: Mapping[str, str] | None = None,
                 ) -> dict[tuple[str, str], tuple[Run, str]]:
    """Search the tasks of ``source`` in the indexes at ``index_path`` (all of ``backend``).

    Args:
        source: The queries (:mod:`augret.index.queries`).
        backend: The indexes' backend.
        index_path: An index directory or a root of them (``<pool>/``, ``union/``).
        cfg: Search settings.
        pools: ``local`` and/or ``union``.
        tasks: Tasks to search (default: all of ``source``).
        skip: ``{run file name: fingerprint}`` of runs already written; a run whose
            fingerprint is unchanged is not searched again.

    Returns:
        ``{(task, pool): (run, fingerprint)}`` for the runs searched.

    Raises:
        DataFormatError: Query and index dimensions differ.
        ConfigError: The queries cannot search an index (e.g. another encoder).
    """
    cfg = cfg or SearchConfig()
    tasks = source.tasks(tasks)
    out: dict[tuple[str, str], tuple[Run, str]] = {}
    for index_dir, todo in _plan(index_path, tasks, pools).items():
        meta = read_meta(index_dir)
        source.check_index(index_dir, meta)
        fps = {}
        for task, pool in todo:
            fp = fingerprint(meta.get("fingerprint"), meta.get("created"),
                             *source.key(task, cfg), cfg.k or default_depth(task))
            if skip and skip.get(run_file_name(task, pool)) == fp:
                log.info("%s is up to date; not searched again", run_file_name(task, pool))
                continue
            fps[task, pool] = fp
        if not fps:
            continue
        index = backend.load(index_dir, gpu=cfg.gpu, nprobe=cfg.nprobe,
                             ef_search=cfg.ef_search, device=cfg.device,
                             block_mb=cfg.block_mb)
        for (task, pool), fp in fps.items():
            mods = target_modality(task) if cfg.filter_modality else None
            run = source.run(index, task, depth=cfg.k or default_depth(task), cfg=cfg,
                             modalities=mods, tag=_tag(cfg, meta))
            log.info("%s (%s): %d queries searched in %s", task, pool, len(run), index_dir)
            out[task, pool] = (run, fp)
        del index
    return out


def _backend(index_path: str | Path) -> IndexBackend:
    """The one backend of the indexes at ``index_path``.

    Raises:
        ConfigError: The indexes are of several backends.
    """
    backends: dict[str, IndexBackend] = {}
    for directory in index_dirs(index_path).values():
        backend = backend_of(read_meta(directory), path=directory)
        backends[backend.name] = backend
    if len(backends) > 1:
        raise ConfigError(f"{index_path} mixes {' and '.join(sorted(backends))} indexes; "
                          "search them apart")
    return next(iter(backends.values()))


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
    backend = _backend(index_path)
    source = backend.queries(queries, field=query_field, index_path=index_path)
    found = search_tasks(source, backend, index_path, cfg, pools=pools, tasks=tasks,
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
