"""Dense search: augret's indexes against raw FAISS built directly on the same vectors.

Writes N clustered random vectors as an fp16 embedding entry (shards of ``--shard-size``),
then for each index kind builds it twice: with augret (streamed from the shards, float32 +
L2 normalisation per batch, ids kept as strings) and with raw FAISS (``index_factory`` on the
whole normalised float32 array). Reports build time, search QPS and recall@k against exact
search for both, and augret's overhead as a ratio (augret / raw; 1.00 = none). The two are
built one after the other, so peak memory stays near one index plus the float32 array
(1M × 768: about 6.5 GB).

    .venv/bin/python benchmarks/bench_index.py --n 1000000 --kinds flat,ivf,hnsw
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from augret.formats.embeddings import EmbeddingEntry
from augret.index import IndexConfig
from augret.index._faiss import default_nlist
from augret.index.dense import build_index
from augret.index.vectors import VectorSet


def write_entry(folder: Path, n: int, dim: int, shard: int, centers: np.ndarray,
                rng: np.random.Generator) -> None:
    """Clustered vectors as fp16 shards + id files + entry.json (docs/formats.md)."""
    folder.mkdir(parents=True)
    shards = 0
    for i, start in enumerate(range(0, n, shard)):
        m = min(shard, n - start)
        x = centers[rng.integers(0, len(centers), m)]
        x = x + 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
        np.save(folder / f"shard_{i:05d}.npy", x.astype(np.float16))
        (folder / f"shard_{i:05d}.ids.txt").write_text(
            "".join(f"1:{j}\n" for j in range(start, start + m)))
        shards += 1
    (folder / "entry.json").write_text(json.dumps({"rows": n, "shards": shards,
                                                   "shard_size": shard}))


def raw_vectors(entry: EmbeddingEntry) -> np.ndarray:
    """The entry as one normalised float32 array, the way a FAISS user would load it."""
    x = np.concatenate([np.asarray(s.load(), dtype=np.float32) for s in entry.shards])
    faiss.normalize_L2(x)
    return x


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k
                          for a, b in zip(found, truth, strict=True)]))


def best(fn, repeat: int = 3):
    """The result of ``fn`` and its fastest time over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        out, secs = timed(fn)
        times.append(secs)
    return out, min(times)


def interleaved(fa, fb, repeat: int = 3):
    """Results and best times of two functions timed alternately (fair under shifting load)."""
    ta, tb = [], []
    for _ in range(repeat):
        a, secs = timed(fa)
        ta.append(secs)
        b, secs = timed(fb)
        tb.append(secs)
    return (a, b), (min(ta), min(tb))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="Indexed vectors.")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kinds", default="flat,ivf,hnsw", help="Comma-separated index kinds.")
    ap.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4·√n).")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef-search", type=int, default=128)
    ap.add_argument("--train-size", type=int, default=100_000)
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--tmp", default=None, help="Scratch directory (default: system temp).")
    args = ap.parse_args()
    console = Console(width=160)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        entry_dir = Path(tmp) / "emb" / "pools" / "bench"
        _, secs = timed(lambda: write_entry(entry_dir, args.n, args.dim, args.shard_size,
                                            centers, rng))
        console.print(f"wrote {args.n:,} x {args.dim} fp16 in {secs:.1f}s")
        entry = EmbeddingEntry(entry_dir)
        q = centers[rng.integers(0, args.clusters, args.queries)]
        q = (q + 0.5 * rng.standard_normal(q.shape, dtype=np.float32)).astype(np.float32)
        faiss.normalize_L2(q)
        x = raw_vectors(entry)
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(x)
        truth = flat.search(q, args.k)[1]
        del flat, x
        gc.collect()
        nlist = args.nlist or default_nlist(args.n)
        rows = []
        for kind in args.kinds.split(","):
            cfg = IndexConfig(kind=kind, nlist=nlist, nprobe=args.nprobe, hnsw_m=args.hnsw_m,
                              ef_construction=args.ef_construction, ef_search=args.ef_search,
                              train_size=args.train_size, recall_queries=0, gpu="off")
            index, b_aug = timed(lambda cfg=cfg, kind=kind: build_index(
                VectorSet.from_entries([entry]), Path(tmp) / kind, cfg, progress=False))
            (res, _), (s_aug, s_same) = interleaved(
                lambda index=index: index.search(q, args.k, batch_size=4096),
                lambda index=index: index.index.search(q, args.k))
            r_aug = recall(res.rows, truth, args.k)
            factory = index.meta["factory"]
            del index, res
            gc.collect()

            def raw_build(factory=factory, kind=kind):
                xs = raw_vectors(entry)
                idx = faiss.index_factory(args.dim, factory, faiss.METRIC_INNER_PRODUCT)
                if kind == "hnsw":
                    idx.hnsw.efConstruction = args.ef_construction
                if not idx.is_trained:
                    sample = np.sort(np.random.default_rng(0).choice(
                        args.n, min(args.n, args.train_size), replace=False))
                    idx.train(xs[sample])
                idx.add(xs)
                return idx

            raw, b_raw = timed(raw_build)
            if kind in ("ivf", "ivfpq"):
                faiss.extract_index_ivf(raw).nprobe = args.nprobe
            if kind == "hnsw":
                raw.hnsw.efSearch = args.ef_search
            (_, ids), s_raw = best(lambda raw=raw: raw.search(q, args.k))
            r_raw = recall(ids, truth, args.k)
            del raw
            gc.collect()
            rows.append((kind, factory, b_aug, b_raw, s_aug, s_raw, s_same, r_aug, r_raw))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    table = Table(title=f"{args.n:,} x {args.dim} clustered vectors, {args.queries:,} queries, "
                        f"k={args.k}, {faiss.omp_get_max_threads()} threads, peak RSS "
                        f"{peak:.1f} GB",
                  caption="x = augret / raw (1.00: no overhead); wrapper x = augret's search "
                          "against FAISS search on the very same index object; search times "
                          "are the best of 3")
    for col in ("kind", "factory", "build s", "raw build s", "build x", "QPS", "raw QPS",
                "search x", "wrapper x", f"R@{args.k}", f"raw R@{args.k}"):
        table.add_column(col, justify="left" if col in ("kind", "factory") else "right")
    for kind, factory, b_aug, b_raw, s_aug, s_raw, s_same, r_aug, r_raw in rows:
        table.add_row(kind, factory, f"{b_aug:.2f}", f"{b_raw:.2f}", f"{b_aug / b_raw:.2f}",
                      f"{args.queries / s_aug:,.0f}", f"{args.queries / s_raw:,.0f}",
                      f"{s_aug / s_raw:.2f}", f"{s_aug / s_same:.2f}", f"{r_aug:.4f}",
                      f"{r_raw:.4f}")
    console.print(table)


if __name__ == "__main__":
    main()
