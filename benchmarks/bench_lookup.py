"""did -> record lookup: offset index (augret) against a dict of all records.

Writes a synthetic M-BEIR-like pool, then measures build time, traced memory per line and
random-lookup latency of :class:`augret.data.lookup.PoolLookup` and of the naive approach
(every record parsed into a dict in memory).

    .venv/bin/python benchmarks/bench_lookup.py --lines 500000
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from rich.console import Console
from rich.table import Table

from augret.data import iter_candidates
from augret.data.lookup import PoolLookup

WORDS = ("red", "blue", "shiny", "dress", "sleeve", "tower", "bridge", "museum", "river",
         "painting", "cat", "dog")


def write_pool(path: Path, lines: int) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        for n in range(1, lines + 1):
            txt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
            img = f"mbeir_images/x/{n}.jpg" if n % 2 else None
            mod = "image,text" if img else "text"
            f.write(json.dumps({"txt": txt, "img_path": img, "modality": mod,
                                "did": f"{n % 10}:{n}", "src_content": None}) + "\n")


def measure(build):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    obj = build()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return obj, seconds, current, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=300_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "pool.jsonl"
        write_pool(pool, args.lines)
        size_mb = pool.stat().st_size / 1e6
        dids = [f"{n % 10}:{n}" for n in random.Random(1).sample(range(1, args.lines + 1),
                                                                  min(args.lookups, args.lines))]
        rows = []
        lookup, secs, cur, peak = measure(lambda: PoolLookup([pool], cache=False))
        t0 = time.perf_counter()
        for d in dids:
            lookup.get(d)
        per = (time.perf_counter() - t0) / len(dids)
        rows.append(("augret PoolLookup", secs, cur, peak, per))
        del lookup
        naive, secs, cur, peak = measure(lambda: {c.did: c for c in iter_candidates(pool)})
        t0 = time.perf_counter()
        for d in dids:
            naive[d]
        per = (time.perf_counter() - t0) / len(dids)
        rows.append(("dict of records", secs, cur, peak, per))
    table = Table(title=f"{args.lines:,} lines ({size_mb:.0f} MB), {len(dids):,} random lookups")
    for col in ("method", "build s", "held MB", "B/line", "peak MB", "lookup µs"):
        table.add_column(col, justify="right")
    for name, secs, cur, peak, per in rows:
        table.add_row(name, f"{secs:.2f}", f"{cur / 1e6:.1f}", f"{cur / args.lines:.0f}",
                      f"{peak / 1e6:.1f}", f"{per * 1e6:.1f}")
    console = Console()
    console.print(table)
    ratio = rows[1][2] / max(rows[0][2], 1)
    console.print(f"memory held: dict / offset index = {ratio:.0f}x; extrapolated to the 5.6M "
                  f"union: {rows[0][2] / args.lines * 5.6e6 / 1e6:.0f} MB vs "
                  f"{rows[1][2] / args.lines * 5.6e6 / 1e9:.1f} GB")


if __name__ == "__main__":
    main()
