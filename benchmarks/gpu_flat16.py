"""flat16 on GPUs: exact search of M-BEIR's union size, time and peak GPU memory.

Random float16 candidates (5.6M by default, M-BEIR's union) are generated on the GPUs, the
candidates sharded across every visible GPU (or ``--devices``), and resident there in float16;
190K random queries (M-BEIR's test queries) are searched at depth 50 with augret's torch
engine (:class:`augret.index.torchsearch.TorchEngine`: float32 blocks, full-precision float32
products, per-block top-k merged). Per dimension it reports the search time, queries/s and
peak GPU memory, and checks a sample of queries against a brute-force float32 search of the
same vectors (equal up to ties). Random vectors measure speed only.

    python benchmarks/gpu_flat16.py                                  # 5.6M x {768, 3584}
    python benchmarks/gpu_flat16.py --dims 4096 --batch 8192 --block-mb 8192
    python benchmarks/gpu_flat16.py --devices cpu --n 4000 --queries 300 --dims 16,32 --batch 128
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from augret.index.torchsearch import TorchEngine


def shares(n: int, dim: int, devices: list[str], seed: int) -> list[torch.Tensor]:
    """Random float16 rows, generated on each device in chunks (no host copy)."""
    out = []
    bounds = np.linspace(0, n, len(devices) + 1).round().astype(int)
    for i, dev in enumerate(devices):
        rows = int(bounds[i + 1] - bounds[i])
        gen = torch.Generator(device=dev).manual_seed(seed + i)
        t = torch.empty((rows, dim), dtype=torch.float16, device=dev)
        step = max(1, (1 << 28) // dim)
        for start in range(0, rows, step):
            chunk = torch.randn((min(step, rows - start), dim), generator=gen, device=dev)
            t[start: start + len(chunk)] = chunk.half()
        out.append(t)
    return out


def brute_force(tensors: list[torch.Tensor], q: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of a few queries by one float32 product per share (a reference)."""
    parts_s, parts_r, offset = [], [], 0
    for t in tensors:
        qq = torch.from_numpy(q).to(t.device)
        s = torch.empty((len(q), len(t)), device=t.device)
        step = max(1, (1 << 27) // t.shape[1])
        for start in range(0, len(t), step):
            x = t[start: start + step].float()
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)
            s[:, start: start + len(x)] = qq @ x.T
        v, i = torch.topk(s, min(k, len(t)), dim=1)
        parts_s.append(v.cpu().numpy())
        parts_r.append(i.cpu().numpy() + offset)
        offset += len(t)
    s, r = np.concatenate(parts_s, 1), np.concatenate(parts_r, 1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1)


def agree(s1: np.ndarray, r1: np.ndarray, s2: np.ndarray, r2: np.ndarray, atol: float
          ) -> dict:
    """Rank-by-rank agreement and score differences of two top-k results."""
    same = float((r1 == r2).mean())
    diff = float(np.abs(s1 - s2).max())
    floor = np.minimum(s1[:, -1], s2[:, -1])[:, None] + atol
    above = all(set(a[sa > f]) == set(b[sb > f])
                for a, sa, b, sb, f in zip(r1, s1, r2, s2, floor, strict=True))
    return {"same_rank": same, "max_score_diff": diff,
            "equal_up_to_ties": bool(above and diff <= atol)}


def run(dim: int, args: argparse.Namespace, devices: list[str]) -> dict:
    cuda = devices[0].startswith("cuda")
    if cuda:
        for d in devices:
            torch.cuda.reset_peak_memory_stats(d)
    t0 = time.perf_counter()
    tensors = shares(args.n, dim, devices, args.seed)
    if cuda:
        torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    engine = TorchEngine.from_tensors(tensors, block_bytes=args.block_mb << 20)
    rng = np.random.default_rng(args.seed)
    q = rng.standard_normal((args.queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scores = np.empty((args.queries, args.k), np.float32)
    rows = np.empty((args.queries, args.k), np.int64)
    t0 = time.perf_counter()
    for start in range(0, args.queries, args.batch):
        s, r = engine.search(q[start: start + args.batch], args.k)
        scores[start: start + len(s)], rows[start: start + len(s)] = s, r
    secs = time.perf_counter() - t0
    peak = [torch.cuda.max_memory_allocated(d) / 2**30 for d in devices] if cuda else []
    check = min(args.check, args.queries)
    pick = rng.choice(args.queries, check, replace=False)
    ref_s, ref_r = brute_force(tensors, q[pick], args.k)
    del engine, tensors
    if cuda:
        torch.cuda.empty_cache()
    return {"dim": dim, "candidates": args.n, "queries": args.queries, "k": args.k,
            "devices": devices, "batch": args.batch, "block_mb": args.block_mb,
            "generate_s": round(gen_s, 2), "search_s": round(secs, 2),
            "queries_per_s": round(args.queries / secs, 1),
            "peak_gib_per_device": [round(p, 2) for p in peak],
            "resident_gib": round(args.n * dim * 2 / 2**30, 2),
            "check": {"queries": check,
                      **agree(scores[pick], rows[pick], ref_s, ref_r, args.atol)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5_600_000, help="Candidates.")
    ap.add_argument("--dims", default="768,3584", help="Comma-separated dimensions.")
    ap.add_argument("--queries", type=int, default=190_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16_384, help="Queries per engine call.")
    ap.add_argument("--block-mb", type=int, default=4096, help="Block budget per device.")
    ap.add_argument("--devices", default=None,
                    help="Comma-separated torch devices (default: every visible GPU).")
    ap.add_argument("--check", type=int, default=64, help="Queries checked by brute force.")
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="Print JSON only.")
    args = ap.parse_args()
    devices = (args.devices.split(",") if args.devices else
               [f"cuda:{i}" for i in range(torch.cuda.device_count())])
    if not devices:
        raise SystemExit("no GPU visible; pass --devices cpu for a CPU run")
    results = [run(int(d), args, devices) for d in args.dims.split(",")]
    info = {"torch": torch.__version__,
            "gpus": [torch.cuda.get_device_name(d) for d in devices if d.startswith("cuda")],
            "results": results}
    if args.json:
        print(json.dumps(info))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"flat16 torch engine, {args.n:,} random candidates, "
                        f"{args.queries:,} queries, k={args.k} on {', '.join(devices)} "
                        f"({', '.join(info['gpus']) or 'CPU'}; torch {torch.__version__})")
    for col in ("dim", "resident GiB", "search s", "queries/s", "peak GiB per device",
                "checked", "same rank", "max |Δscore|", "equal up to ties"):
        table.add_column(col, justify="right")
    for r in results:
        c = r["check"]
        table.add_row(str(r["dim"]), f"{r['resident_gib']:.2f}", f"{r['search_s']:.1f}",
                      f"{r['queries_per_s']:,.0f}",
                      ", ".join(f"{p:.1f}" for p in r["peak_gib_per_device"]) or "-",
                      str(c["queries"]), f"{c['same_rank']:.4f}", f"{c['max_score_diff']:.1e}",
                      str(c["equal_up_to_ties"]))
    Console().print(table)


if __name__ == "__main__":
    main()
