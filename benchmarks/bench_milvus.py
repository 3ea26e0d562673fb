"""The milvus backend (Milvus Lite) against FAISS exact on the same vectors, side by side.

Writes N clustered random vectors as an fp16 embedding directory (one pool, shards of
``--shard-size``), then builds the exact index of each backend through augret
(``build_indexes``: FAISS ``flat``; Milvus ``flat``, a Milvus Lite database, no text search)
and searches both through ``load_index``: a batch of ``--queries`` queries (``--batch``
per request), for QPS, and ``--single`` queries one request each, for the latency p50 and
p99. Prints build rows/s, QPS and latencies of both and Milvus / FAISS as ratios, and how
many queries got the same top-k ids from both. The backends run one after the other in one
process, so the ratios come from the same machine and load. Both compute with one thread
(``OMP_NUM_THREADS`` and OpenBLAS's, unless the environment sets them): on a shared machine,
FAISS's OpenMP threads wait on each other far longer than a query takes.

    .venv/bin/python benchmarks/bench_milvus.py --n 1000000 --dim 768
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy and FAISS start their thread pools

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from augret.index import IndexConfig, build_indexes, load_index  # noqa: E402
from augret.index.config import MilvusConfig  # noqa: E402


def write_embeddings(root: Path, n: int, dim: int, shard: int, centers: np.ndarray,
                     rng: np.random.Generator) -> None:
    """An embedding directory (docs/formats.md) with one pool entry of clustered vectors."""
    folder = root / "pools" / "bench"
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
                                                   "shard_size": shard, "dim": dim}))
    (root / "queries").mkdir()
    (root / "meta.json").write_text(json.dumps({"encoder": {"name": "bench"}, "dim": dim,
                                                "dtype": "float16", "union": ["pools/bench"]}))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(index_dir: Path, q: np.ndarray, k: int, batch: int, single: int) -> dict:
    """Batch QPS and single-query latencies of one index directory."""
    index = load_index(index_dir, gpu="off")
    index.search(q[:1], k)  # warm-up
    res, secs = timed(lambda: index.search(q, k, batch_size=batch))
    lat = []
    for i in range(single):
        _, s = timed(lambda i=i: index.search(q[i: i + 1], k))
        lat.append(s)
    return {"ids": res.ids, "qps": len(q) / secs, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99))}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores (shared; load average "
            f"{os.getloadavg()[0]:.1f}), {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            f"{os.environ['OMP_NUM_THREADS']} thread(s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="Indexed vectors.")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000, help="Queries of the QPS batch.")
    ap.add_argument("--batch", type=int, default=100, help="Queries per search request.")
    ap.add_argument("--single", type=int, default=20, help="Single-query latency samples.")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--insert-rows", type=int, default=2000, help="Rows per Milvus insert.")
    ap.add_argument("--shard-size", type=int, default=50_000)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--tmp", default=None, help="Scratch directory (default: system temp).")
    args = ap.parse_args()
    import faiss
    import milvus_lite
    import pymilvus

    console = Console(width=140)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    q = centers[rng.integers(0, args.clusters, args.queries)]
    q = (q + 0.5 * rng.standard_normal(q.shape, dtype=np.float32)).astype(np.float32)
    results = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        emb = Path(tmp) / "emb"
        _, secs = timed(lambda: write_embeddings(emb, args.n, args.dim, args.shard_size,
                                                 centers, rng))
        console.print(f"wrote {args.n:,} x {args.dim} fp16 in {secs:.1f}s")
        configs = {"FAISS": IndexConfig(kind="flat", gpu="off"),
                   "Milvus Lite": MilvusConfig(kind="flat", text_search=False,
                                               insert_rows=args.insert_rows,
                                               recall_queries=0)}
        for name, cfg in configs.items():
            out = Path(tmp) / name.replace(" ", "_")
            _, build = timed(lambda cfg=cfg, out=out: build_indexes(
                emb, out, cfg, pool="union", modalities=False, progress=False))
            console.print(f"{name}: built in {build:.1f}s")
            results[name] = {"build": args.n / build, **measure(out, q, args.k, args.batch,
                                                                  args.single)}
            console.print(f"{name}: searched")
            gc.collect()
    faiss_r, milvus_r = results["FAISS"], results["Milvus Lite"]
    same = float(np.mean([set(a) == set(b) for a, b in zip(faiss_r["ids"], milvus_r["ids"],
                                                              strict=True)]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    table = Table(title=f"{args.n:,} x {args.dim} clustered vectors, exact (flat), k={args.k}; "
                        f"peak RSS {peak:.1f} GB",
                  caption=f"{machine()}; faiss {faiss.__version__}, pymilvus "
                          f"{pymilvus.__version__}, milvus-lite {milvus_lite.__version__}. "
                          f"QPS: {args.queries:,} queries, {args.batch} per request; latency: "
                          f"{args.single} single-query requests. Same top-{args.k} ids for "
                          f"{same:.1%} of the queries.")
    for col in ("measure", "FAISS", "Milvus Lite", "Milvus / FAISS"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    table.add_row("build rows/s", f"{faiss_r['build']:,.0f}", f"{milvus_r['build']:,.0f}",
                  f"{milvus_r['build'] / faiss_r['build']:.4f}")
    table.add_row("query QPS (batched)", f"{faiss_r['qps']:,.1f}", f"{milvus_r['qps']:,.2f}",
                  f"{milvus_r['qps'] / faiss_r['qps']:.4f}")
    for p in ("p50", "p99"):
        table.add_row(f"single-query latency {p} (ms)", f"{faiss_r[p] * 1e3:,.1f}",
                      f"{milvus_r[p] * 1e3:,.1f}", f"{milvus_r[p] / faiss_r[p]:,.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
