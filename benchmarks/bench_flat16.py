"""flat16 against FAISS flat on the CPU: the same vectors and queries, side by side in one run.

Writes N random clustered float16 vectors as an embedding directory (augret's own writer),
builds the FAISS ``flat`` index (float32 in RAM) and the ``flat16`` index (hard links to the
shards) of it, and searches the same queries in both, alternately, ``--repeat`` times. Reports
the build and best search times (wall and process CPU seconds), their ratio, and whether the
results agree (ranks equal up to ties, the largest score difference).

    .venv/bin/python benchmarks/bench_flat16.py                    # 1M x 768, 1000 queries
    .venv/bin/python benchmarks/bench_flat16.py --n 50000 --queries 100 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from augret.formats.embeddings import EntryWriter, write_meta
from augret.index import IndexConfig, build_indexes, load_index


def write_embeddings(root: Path, n: int, dim: int, *, shard: int = 50_000, seed: int = 0,
                     centers: int = 1000) -> None:
    """Random clustered float16 vectors as ``pools/bench`` of an embedding directory."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centers, dim), dtype=np.float32)
    writer = EntryWriter(root / "pools" / "bench", {"bench": n}, shard_size=shard, dim=dim)
    for i, start in enumerate(range(0, n, shard)):
        m = min(shard, n - start)
        x = middle[rng.integers(0, centers, m)]
        x += 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
        writer.write_shard(i, x.astype(np.float16), [f"1:{j}" for j in range(start, start + m)],
                           {"rows": m})
    writer.finish({"source": "random"})
    write_meta(root, {"encoder": {"name": "random"}, "dim": dim, "dtype": "float16",
                      "data_dir": None, "config_hash": "bench", "entries": {}})


def machine() -> str:
    """CPU model, cores and library versions."""
    import faiss

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores visible, numpy {np.__version__}, "
            f"faiss {faiss.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def compare(a, b, atol: float) -> dict:
    """Ranks equal up to ties: same scores per rank, same rows above the k-th score."""
    diff = float(np.abs(a.scores - b.scores).max())
    floor = np.minimum(a.scores[:, -1], b.scores[:, -1])[:, None] + atol
    above = all(set(ra[sa > f]) == set(rb[sb > f]) for ra, sa, rb, sb, f in
                zip(a.rows, a.scores, b.rows, b.scores, floor, strict=True))
    return {"same_rank": float((a.rows == b.rows).mean()), "max_score_diff": diff,
            "equal_up_to_ties": bool(above and diff <= atol)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1024, help="Queries per search call.")
    ap.add_argument("--block-mb", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--dir", type=Path, default=None, help="Work directory (default: temp).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_embeddings(root / "emb", args.n, args.dim)
        write_s = time.perf_counter() - t0
        builds = {}
        for kind in ("flat", "flat16"):
            _, wall, cpu = timed(lambda kind=kind: build_indexes(
                root / "emb", root / kind, IndexConfig(kind=kind), pool="bench",
                progress=False))
            builds[kind] = (wall, cpu)
        flat = load_index(root / "flat", gpu="off")
        f16 = load_index(root / "flat16", device="cpu", block_mb=args.block_mb)
        rng = np.random.default_rng(1)
        q = np.load(root / "emb" / "pools" / "bench" / "shard_00000.npy")[
            rng.choice(min(args.n, 50_000), args.queries)].astype(np.float32)
        q += 0.3 * rng.standard_normal(q.shape, dtype=np.float32)
        best: dict[str, tuple[float, float]] = {}
        results = {}
        for _ in range(args.repeat):
            for kind, index in (("flat", flat), ("flat16", f16)):
                res, wall, cpu = timed(lambda index=index: index.search(
                    q, args.k, batch_size=args.batch))
                results[kind] = res
                if kind not in best or wall < best[kind][0]:
                    best[kind] = (wall, cpu)
        agree = compare(results["flat16"], results["flat"], args.atol)
    out = {"n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k,
           "batch": args.batch, "block_mb": args.block_mb, "repeat": args.repeat,
           "write_s": round(write_s, 1), "machine": machine(),
           "build": {k: {"wall_s": round(w, 2), "cpu_s": round(c, 2)}
                     for k, (w, c) in builds.items()},
           "search": {k: {"wall_s": round(w, 2), "cpu_s": round(c, 2),
                          "queries_per_s": round(args.queries / w, 1)}
                      for k, (w, c) in best.items()},
           "ratio_wall": round(best["flat16"][0] / best["flat"][0], 3),
           "ratio_cpu": round(best["flat16"][1] / best["flat"][1], 3),
           "agreement": agree}
    if args.json:
        print(json.dumps(out))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"exact search on the CPU: {args.n:,} x {args.dim} vectors, "
                        f"{args.queries:,} queries, k={args.k}, batch {args.batch}, best of "
                        f"{args.repeat} (flat16 block {args.block_mb} MiB)")
    for col in ("index", "build wall s", "build CPU s", "search wall s", "search CPU s",
                "queries/s"):
        table.add_column(col, justify="left" if col == "index" else "right")
    for kind in ("flat", "flat16"):
        b, s = out["build"][kind], out["search"][kind]
        table.add_row(kind, f"{b['wall_s']:.2f}", f"{b['cpu_s']:.2f}", f"{s['wall_s']:.2f}",
                      f"{s['cpu_s']:.2f}", f"{s['queries_per_s']:,.1f}")
    console = Console()
    console.print(table)
    console.print(f"flat16 / flat search time: {out['ratio_wall']:.3f} (wall), "
                  f"{out['ratio_cpu']:.3f} (CPU)", highlight=False)
    console.print(f"agreement: ranks equal {agree['same_rank']:.4f}, max |score diff| "
                  f"{agree['max_score_diff']:.2e}, equal up to ties: "
                  f"{agree['equal_up_to_ties']}", highlight=False)
    console.print(f"machine: {out['machine']}", highlight=False)


if __name__ == "__main__":
    main()
