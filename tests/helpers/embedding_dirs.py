"""Synthetic embedding directories written by hand, following docs/formats.md exactly.

Imported by the ``test_index_*`` modules. The writer is kept independent of
:mod:`augret.formats.embeddings` so that a reader bug cannot hide behind a matching writer
bug.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ENCODER = {"name": "test-encoder", "config": {"model": "random"}}


def write_entry(root: Path, group: str, name: str, vectors: np.ndarray, ids: Sequence[str], *,
                shard_size: int = 64, source: str | None = None) -> Path:
    """Write ``<root>/<group>/<name>/`` with fp16 shards, id files and ``entry.json`` last."""
    folder = root / group / name
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors, dtype=np.float16)
    assert len(vectors) == len(ids)
    n_shards = 0
    for i, start in enumerate(range(0, len(ids), shard_size)):
        np.save(folder / f"shard_{i:05d}.npy", vectors[start: start + shard_size])
        (folder / f"shard_{i:05d}.ids.txt").write_text(
            "".join(f"{x}\n" for x in ids[start: start + shard_size]), "utf-8")
        n_shards += 1
    info: dict = {"rows": len(ids), "shards": n_shards, "shard_size": shard_size,
                  "truncated": 0, "skipped": 0}
    if source is not None:
        st = os.stat(source)
        info["source"] = {"path": str(source), "size": st.st_size, "mtime": st.st_mtime}
    (folder / "entry.json").write_text(json.dumps(info), "utf-8")
    return folder


def write_meta(root: Path, dim: int, *, data_dir: str | None = None,
               union: Sequence[str] | None = None) -> None:
    """Write the embedding directory's ``meta.json`` and ``config.yaml``."""
    root.mkdir(parents=True, exist_ok=True)
    meta = {"encoder": ENCODER, "dim": dim, "dtype": "float16", "normalized": False,
            "data_dir": data_dir, "config_hash": "0123456789abcdef", "entries": {},
            "union": list(union) if union is not None else None}
    (root / "meta.json").write_text(json.dumps(meta), "utf-8")
    (root / "config.yaml").write_text("encoder: test-encoder\n", "utf-8")


def clustered(rng: np.random.Generator, n: int, dim: int, *, centers: int = 50,
              noise: float = 0.35) -> np.ndarray:
    """Random vectors around ``centers`` random directions (float32)."""
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] + noise * rng.standard_normal((n, dim)).astype(
        np.float32)
    return x


def dids(dataset: int, n: int, start: int = 1) -> list[str]:
    """M-BEIR-style candidate ids ``"<dataset>:<i>"``."""
    return [f"{dataset}:{i}" for i in range(start, start + n)]


def brute_force(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-k with NumPy over the fp16 values the directory stores (queries as given)."""
    b = base.astype(np.float16).astype(np.float32)
    q = np.array(queries, dtype=np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    s = q @ b.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order
