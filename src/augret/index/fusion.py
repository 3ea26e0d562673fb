"""Reciprocal rank fusion (RRF) of runs, e.g. dense + BM25 into a hybrid run.

``score(q, d) = Σ_i w_i / (k + rank_i(q, d))`` with 1-based ranks; a document absent from
run ``i`` gets nothing from it (Cormack et al., 2009, with per-run weights).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from augret.data.mbeir import run_file_name
from augret.errors import ConfigError, DataNotFoundError
from augret.evaluate.rundir import find_run_files
from augret.evaluate.runs import Run, read_run, write_run

__all__ = ["fuse_run_dirs", "fuse_runs"]

log = logging.getLogger(__name__)


def fuse_runs(runs: Sequence[Run], weights: Sequence[float] | None = None, k: float = 60,
              *, depth: int | None = None, tag: str | None = "rrf") -> Run:
    """Fuse ranked runs by weighted reciprocal rank.

    Args:
        runs: The runs (each ranked best first).
        weights: One weight per run (default: all 1).
        k: The RRF constant (60 in the original paper).
        depth: Documents kept per query (default: the deepest input run).
        tag: The fused run's tag.

    Returns:
        The fused run: queries of any input run (in first-seen order), documents by fused
        score; ties keep the order in which documents were first met (run 0 first).

    Raises:
        ConfigError: No runs, weights of the wrong length or negative, ``k`` < 0.
    """
    if not runs:
        raise ConfigError("fuse_runs needs at least one run")
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(runs):
        raise ConfigError(f"{len(weights)} weights for {len(runs)} runs")
    if any(w < 0 for w in weights) or k < 0:
        raise ConfigError("RRF weights and k must be non-negative")
    depth = depth or max(r.depth for r in runs)
    qids: dict[str, int] = {}
    vocab: dict[str, int] = {}
    task_ids: dict[str, int] = {}
    rows, codes, values = [], [], []
    for run, w in zip(runs, weights, strict=True):
        qrow = np.array([qids.setdefault(q, len(qids)) for q in run.qids], dtype=np.int64)
        vmap = np.array([vocab.setdefault(d, len(vocab)) for d in run.vocab], dtype=np.int64)
        for q, t in run.task_ids.items():
            task_ids.setdefault(q, t)
        real = run.docs >= 0
        ranks = np.broadcast_to(np.arange(1, run.depth + 1), run.docs.shape)
        rows.append(np.broadcast_to(qrow[:, None], run.docs.shape)[real])
        codes.append(vmap[run.docs[real]])
        values.append(w / (k + ranks[real]))
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    code = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    value = np.concatenate(values) if values else np.zeros(0)
    n_vocab = max(1, len(vocab))
    key = row * n_vocab + code
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    fused = np.bincount(inverse.ravel(), weights=value, minlength=len(uniq))
    u_row, u_code = uniq // n_vocab, uniq % n_vocab
    order = np.lexsort((first, -fused, u_row))  # by query, score desc, first met
    u_row, u_code, fused = u_row[order], u_code[order], fused[order]
    counts = np.bincount(u_row, minlength=len(qids))
    col = np.arange(len(u_row)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = col < depth
    width = min(depth, int(counts.max()) if counts.size else 0)
    docs = np.full((len(qids), width), -1, dtype=np.int64)
    scores = np.full((len(qids), width), np.nan)
    docs[u_row[keep], col[keep]] = u_code[keep]
    scores[u_row[keep], col[keep]] = fused[keep]
    return Run(list(qids), docs, scores, list(vocab), task_ids=task_ids or None, tag=tag)


def fuse_run_dirs(run_dirs: Sequence[str | Path], out_dir: str | Path,
                  weights: Sequence[float] | None = None, k: float = 60, *,
                  depth: int | None = None) -> dict[tuple[str, str], Path]:
    """Fuse the run files of several run directories, (task, pool) by (task, pool).

    Every (task, pool) present in any directory is fused from the directories that have it
    (a warning names the pairs some directories lack, e.g. BM25 over a pool without text).
    Output files keep the ``<task>_<local|union>.run`` names.

    Returns:
        The written files by ``(task, pool)``.

    Raises:
        ConfigError: Weights of the wrong length.
        DataNotFoundError: No run file in any directory.
    """
    weights = [1.0] * len(run_dirs) if weights is None else list(weights)
    if len(weights) != len(run_dirs):
        raise ConfigError(f"{len(weights)} weights for {len(run_dirs)} run directories")
    found = [find_run_files(d) for d in run_dirs]
    keys = list(dict.fromkeys(key for f in found for key in f))
    partial = [key for key in keys if not all(key in f for f in found)]
    if partial:
        log.warning("not in every run directory (fused from those that have them): %s",
                    ", ".join(f"{t} ({p})" for t, p in partial))
    if not keys:
        raise DataNotFoundError("the run directories hold no run file")
    out_dir = Path(out_dir)
    written = {}
    for key in keys:
        have = [(f[key], w) for f, w in zip(found, weights, strict=True) if key in f]
        fused = fuse_runs([read_run(p) for p, _ in have], [w for _, w in have], k, depth=depth)
        path = out_dir / run_file_name(*key)
        write_run(path, fused)
        written[key] = path
    return written
