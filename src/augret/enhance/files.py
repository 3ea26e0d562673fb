"""Which files of an M-BEIR directory an enhancement run reads and what it links unchanged."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from augret.data.mbeir import DATA_FOLDERS, MBEIRDir

__all__ = ["link_untouched", "select_files"]


def _query_files(d: MBEIRDir, split: str) -> list[Path]:
    files = d.split_files(split)
    if split in ("train", "val"):
        files += d.split_files(f"union_{split}")
    return files


def _candidate_files(d: MBEIRDir, split: str) -> list[Path]:
    other = {"test": "_val_cand_pool", "val": "_test_cand_pool"}.get(split)
    files = []
    if other is not None:
        files = [p for p in d.local_pools().values() if not p.name.endswith(f"{other}.jsonl")]
    union = d.global_pool_file(split)
    if union is not None:
        files.append(union)
    return files


def select_files(d: MBEIRDir, split: str, side: str,
                 pattern: str | list[str] | None) -> list[tuple[Path, str]]:
    """``(file, side)`` pairs to enhance, sorted; ``side`` is ``queries`` or ``candidates``.

    ``pattern``: a glob or a list of globs on the path relative to ``d`` or the file name.
    """
    picked: list[tuple[Path, str]] = []
    if side in ("queries", "both"):
        picked += [(p, "queries") for p in _query_files(d, split)]
    if side in ("candidates", "both"):
        picked += [(p, "candidates") for p in _candidate_files(d, split)]
    if pattern:
        globs = [pattern] if isinstance(pattern, str) else pattern
        picked = [(p, s) for p, s in picked
                  if any(fnmatch.fnmatch(str(p.relative_to(d.root)), g)
                         or fnmatch.fnmatch(p.name, g) for g in globs)]
    return sorted(picked)


def link_untouched(d: MBEIRDir, out_root: Path, produced: set[Path]) -> int:
    """Symlink every data file of ``d`` that the run did not produce into ``out_root``.

    Qrels, instructions and files of other splits or sides stay available, so the output is
    a complete data directory. Images are not linked: ``augret.json`` points at them.
    Returns the number of links made.
    """
    made = 0
    for top in DATA_FOLDERS:
        base = d.root / top
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if not path.is_file():
                continue
            rel = path.relative_to(d.root)
            target = out_root / rel
            if rel in produced or target.exists() or target.is_symlink():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path.resolve(), target)
            made += 1
    return made
