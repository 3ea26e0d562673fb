"""Peak memory of a flat16 search, measured in a fresh process.

Writes N random float16 vectors as an embedding directory, builds the flat16 index (hard
links), then, in a child process: loads the index, resets the kernel's peak-RSS mark, and
searches ``--queries`` queries on the CPU with a ``--block-mb`` block while a thread samples
its anonymous and file-backed resident memory. The bound a search must keep::

    peak RSS <= RSS after loading + float16 index size + block budget + top-k buffers

(file-backed pages of the memory-mapped shards count in RSS; anonymous memory, where a float32
copy would live, grows by at most the block). ``--faiss`` also measures FAISS flat (float32
in RAM) in another child, for comparison.

    .venv/bin/python benchmarks/rss_flat16.py                      # 2M x 768
    .venv/bin/python benchmarks/rss_flat16.py --n 200000 --queries 50 --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def status() -> dict[str, int]:
    """Resident memory fields of /proc/self/status, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in _FIELDS:
            out[key] = int(value.split()[0]) * 1024
    return out


def child(index_dir: str, kind: str, queries: int, k: int, block_mb: int, batch: int) -> None:
    """Load and search in this process; print the memory figures as JSON."""
    import numpy as np

    from augret.index import load_index

    if kind == "flat16":
        index = load_index(index_dir, device="cpu", block_mb=block_mb)
    else:
        from augret.index.dense import build_pool_index

        index = build_pool_index(index_dir, None, pool="bench", progress=False)
    q = np.random.default_rng(0).standard_normal((queries, index.dim), dtype=np.float32)
    loaded = status()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the search's own peak
        reset = True
    except OSError:
        reset = False
    peak = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = status()
            for key in peak:
                peak[key] = max(peak[key], now[key])
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    index.search(q, k, batch_size=batch)
    secs = time.perf_counter() - t0
    done.set()
    sampler.join()
    end = status()
    print(json.dumps({"kind": kind, "loaded": loaded, "peak_rss": end["VmHWM"],
                      "hwm_reset": reset, "peak_anon": max(peak["RssAnon"], end["RssAnon"]),
                      "peak_file": max(peak["RssFile"], end["RssFile"]),
                      "search_s": round(secs, 2)}))


def measure(args: argparse.Namespace, root: Path, kind: str) -> dict:
    target = root / "flat16" if kind == "flat16" else root / "emb"
    out = subprocess.run([sys.executable, __file__, "--child", str(target), "--kind", kind,
                          "--queries", str(args.queries), "--k", str(args.k),
                          "--block-mb", str(args.block_mb), "--batch", str(args.batch)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--block-mb", type=int, default=256)
    ap.add_argument("--faiss", action="store_true", help="Also measure FAISS flat.")
    ap.add_argument("--dir", type=Path, default=None, help="Work directory (default: temp).")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="flat16", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.kind, args.queries, args.k, args.block_mb, args.batch)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from augret.index import IndexConfig, build_indexes
    from bench_flat16 import write_embeddings

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        write_embeddings(root / "emb", args.n, args.dim)
        build_indexes(root / "emb", root / "flat16", IndexConfig(kind="flat16"), pool="bench",
                      progress=False)
        index_bytes = sum(p.stat().st_size for p in (root / "flat16" / "vectors").iterdir())
        runs = [measure(args, root, "flat16")]
        if args.faiss:
            runs.append(measure(args, root, "flat"))
    block = args.block_mb << 20
    buffers = args.queries * args.k * 12 + args.batch * args.dim * 8
    f16 = runs[0]
    bound = f16["loaded"]["VmRSS"] + index_bytes + block + buffers
    out = {"n": args.n, "dim": args.dim, "queries": args.queries, "block_bytes": block,
           "index_bytes": index_bytes, "topk_and_query_bytes": buffers, "bound": bound,
           "within_bound": f16["peak_rss"] <= bound,
           "anon_growth": f16["peak_anon"] - f16["loaded"]["RssAnon"], "runs": runs}
    if args.json:
        print(json.dumps(out))
        return
    gib = 2**30
    print(f"{args.n:,} x {args.dim} float16 index: {index_bytes / gib:.2f} GiB; block budget "
          f"{block / gib:.2f} GiB; {args.queries} queries, k={args.k}")
    for r in runs:
        print(f"  {r['kind']:6s}: RSS after load {r['loaded']['VmRSS'] / gib:.2f} GiB, peak RSS "
              f"{r['peak_rss'] / gib:.2f} GiB (anonymous {r['peak_anon'] / gib:.2f}, "
              f"file-backed {r['peak_file'] / gib:.2f}), search {r['search_s']:.1f} s")
    print(f"  bound for flat16: {bound / gib:.2f} GiB (after load + index + block + buffers): "
          f"{'kept' if out['within_bound'] else 'EXCEEDED'}; anonymous growth during the "
          f"search {out['anon_growth'] / gib:.3f} GiB")


if __name__ == "__main__":
    main()
