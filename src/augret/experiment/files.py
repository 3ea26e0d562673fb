"""Which data files an experiment's enhancement stage reads (shared by ``augret plan`` and
``augret experiment``, so the plan counts what the run enhances)."""

from __future__ import annotations

from pathlib import Path

from augret.data.mbeir import MBEIRDir
from augret.enhance.files import select_files
from augret.experiment.config import ExperimentConfig

__all__ = ["stage_files"]


def _eval_files(cfg: ExperimentConfig, data: MBEIRDir, split: str, side: str) -> set[Path]:
    """The files the selected tasks read on the evaluated split."""
    tasks = [t for t in data.tasks(split) if t.task.name in set(cfg.tasks or [])]
    if side == "queries":
        return {t.queries for t in tasks}
    files: set[Path] = set()
    if "local" in cfg.pools:
        files |= {t.pool for t in tasks if t.pool is not None}
    if "union" in cfg.pools and split == "test":  # every task searches the whole union
        files |= set(data.union_pool_files())
    return files


def _train_files(cfg: ExperimentConfig, data: MBEIRDir, side: str) -> list[Path]:
    """The training split's files that training reads (recipe overrides, else the layout's
    union training file and pool)."""
    key = "data.train_file" if side == "queries" else "data.train_pool"
    given = cfg.training.overrides.get(key)
    if given:
        return [p if p.is_absolute() else data.root / p
                for p in (Path(s.strip()) for s in str(given).split(","))]
    default = data.train_file() if side == "queries" else data.train_pool_file()
    return [default] if default is not None else []


def stage_files(cfg: ExperimentConfig, data: MBEIRDir, split: str, side: str) -> list[Path]:
    """The files an enhancement stage must enhance, sorted.

    As ``augret enhance`` selects them (``cfg.enhance.files`` applies), narrowed to what the
    experiment reads: on the evaluated split, when ``cfg.tasks`` is set, those tasks' query
    files and the pools they search (their local pools; with the ``union`` pool the union's
    files, :meth:`MBEIRDir.union_pool_files`, since each task searches all of it); on the
    training split the files training reads (UniIR's union training file and pool, or the
    recipe's ``data.train_file`` / ``data.train_pool`` overrides) when present: the
    per-dataset files the union training file was built from are not read, and the union file
    cannot be split by task.

    Args:
        cfg: The experiment config.
        data: The raw data directory.
        split: The split (``cfg.splits.eval`` or ``cfg.splits.train``).
        side: ``queries`` or ``candidates``.
    """
    files = [p for p, _ in select_files(data, split, side, cfg.enhance.files)]
    if cfg.tasks and split == cfg.splits.eval:
        wanted = _eval_files(cfg, data, split, side)
        files = [p for p in files if p in wanted]
    elif split == cfg.splits.train:
        used = [p for p in _train_files(cfg, data, side) if p in files]
        if used:
            files = sorted(used)
    return files
