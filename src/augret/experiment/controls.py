"""The negative control of the enhancement experiment: enhanced texts shuffled across items.

``shuffle_enhanced`` copies files of an enhanced directory (``augret enhance``'s output,
replace mode) with every enhanced row's text taken from another row of the same file and
route. The texts keep their distribution (length, vocabulary, style) but lose their link to
the item, so a retriever trained and evaluated on them (the ``shuffled_control`` condition,
``enhance_mode: shuffled``) must not beat the raw baseline; if it does, something other than
the content of the enhanced text is driving the gains.

Memory stays bounded: the first pass keeps only the byte offsets of the enhanced rows, the
second reads each donor row by its offset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.jsonl import atomic_writer
from augret.data.mbeir import MBEIRDir, write_layout
from augret.enhance.files import link_untouched
from augret.formats import stable_hash

__all__ = ["shuffle_enhanced"]


def _text_key(row: dict[str, Any]) -> tuple[str, str]:
    return ("query_txt", "qid") if "qid" in row else ("txt", "did")


def _enhanced_offsets(path: Path) -> dict[str, list[int]]:
    """Byte offsets of the rows whose enhancement succeeded, per route."""
    out: dict[str, list[int]] = {}
    with path.open("rb") as f:
        offset = 0
        for line in f:
            if line.strip():
                info = json.loads(line).get("enhancement") or {}
                if info.get("status") == "ok":
                    out.setdefault(str(info.get("task")), []).append(offset)
            offset += len(line)
    return out


def _donors(offsets: dict[str, list[int]], rng: np.random.Generator) -> dict[int, int]:
    """Row offset -> the offset of the row whose text it takes: a random cycle per route, so
    no row keeps its own text when its route has two rows or more."""
    donor: dict[int, int] = {}
    for route in sorted(offsets):
        rows = np.asarray(offsets[route], dtype=np.int64)
        order = rows[rng.permutation(len(rows))]
        for a, b in zip(order, np.roll(order, -1), strict=True):
            donor[int(a)] = int(b)
    return donor


def _shuffle_file(src: Path, dst: Path, seed: int, rel: str) -> dict[str, int]:
    rng = np.random.default_rng([seed, int(stable_hash(rel)[:8], 16)])
    donor = _donors(_enhanced_offsets(src), rng)
    counts = {"rows": 0, "shuffled": 0}
    with src.open("rb") as f, src.open("rb") as donors, atomic_writer(dst) as out:
        offset = 0
        for line in f:
            here, offset = offset, offset + len(line)
            if not line.strip():
                continue
            row = json.loads(line)
            counts["rows"] += 1
            if here in donor:
                donors.seek(donor[here])
                other = json.loads(donors.readline())
                text_field, id_field = _text_key(row)
                row[text_field] = other[text_field]
                row["enhancement"] = {**row["enhancement"], "control": "shuffled",
                                      "text_from": other.get(id_field)}
                counts["shuffled"] += 1
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return counts


def shuffle_enhanced(enhanced_dir: str | Path, out_dir: str | Path, files: list[str], *,
                     data_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write the shuffled control of ``files`` of an enhanced directory into ``out_dir``.

    Args:
        enhanced_dir: An ``augret enhance`` output (replace mode).
        out_dir: The control's directory: the shuffled files, the data directory's other
            files linked, and ``augret.json`` pointing at the same images.
        files: Paths, relative to ``enhanced_dir``, of the files to shuffle.
        data_dir: The raw data directory ``enhanced_dir`` was made from (its other files are
            linked, so ``out_dir`` is a complete data directory).
        seed: Seed of the permutations (each file's also depends on its path).

    Returns:
        ``{"files": {rel: {"rows": n, "shuffled": m}}, "seed": seed}``.
    """
    src, out = Path(enhanced_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, int]] = {}
    for rel in files:
        target = out / rel
        if target.is_symlink():  # linked by an earlier stage: replaced by the shuffled copy
            os.unlink(target)
        done[rel] = _shuffle_file(src / rel, target, seed, rel)
    raw = MBEIRDir(data_dir)
    link_untouched(raw, out, {Path(r) for r in files})
    write_layout(out, {"image_root": str(raw.image_root.resolve()),
                       "source": str(raw.root.resolve()),
                       "control": f"enhanced texts of {src.resolve()} shuffled across items "
                                  f"(seed {seed})"})
    return {"files": done, "seed": seed}
