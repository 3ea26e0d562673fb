"""BM25: index build and query time of augret's BM25Index on N short synthetic texts.

Texts are 4-16 words drawn from a Zipf-like vocabulary (caption-sized). Measures augret's
tokenize + build, save, load and search (numpy and, when installed, numba scoring), and the
same steps with raw bm25s (``bm25s.tokenize`` + ``BM25.index`` + ``retrieve``) for
augret's overhead as a ratio.

    .venv/bin/python benchmarks/bench_bm25.py --n 1000000
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import resource
import tempfile
import time
from pathlib import Path

import bm25s
import numpy as np
from rich.console import Console
from rich.table import Table

from augret.index.bm25 import BM25Index


def make_texts(n: int, vocab: int, rng: np.random.Generator) -> list[str]:
    words = np.array([f"w{i}" for i in range(vocab)])
    p = 1.0 / np.arange(1, vocab + 1) ** 1.05
    p /= p.sum()
    lengths = rng.integers(4, 17, n)
    tokens = words[rng.choice(vocab, lengths.sum(), p=p)]
    cuts = np.cumsum(lengths)[:-1]
    return [" ".join(t) for t in np.split(tokens, cuts)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="Documents.")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--vocab", type=int, default=50_000)
    args = ap.parse_args()
    console = Console(width=160)
    rng = np.random.default_rng(0)
    texts, secs = timed(lambda: make_texts(args.n, args.vocab, rng))
    queries = make_texts(args.queries, args.vocab, rng)
    queries = [" ".join(q.split()[:4]) for q in queries]
    ids = [f"1:{i}" for i in range(args.n)]
    console.print(f"{args.n:,} texts generated in {secs:.1f}s")
    backends = ["numpy"] + (["numba"] if importlib.util.find_spec("numba") else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index, b_aug = timed(lambda: BM25Index.build(texts, ids, progress=False))
        _, save = timed(lambda index=index: index.save(Path(tmp) / "i"))
        del index
        gc.collect()

        def raw_build():
            tok = bm25s.tokenize(texts, stopwords="en", show_progress=False)
            model = bm25s.BM25()
            model.index(tok, show_progress=False)
            return model

        model, b_raw = timed(raw_build)
        for backend in backends:
            loaded, load = timed(lambda b=backend: BM25Index.load(Path(tmp) / "i", backend=b))
            loaded.search(queries[:5], args.k)  # numba compiles on first use
            _, s_aug = timed(lambda i=loaded: i.search(queries, args.k))
            del loaded
            gc.collect()
            model.backend = backend
            qtok = bm25s.tokenize(queries[:5], stopwords="en", show_progress=False)
            model.retrieve(qtok, k=args.k, show_progress=False)

            def raw_search(m=model):
                qt = bm25s.tokenize(queries, stopwords="en", show_progress=False)
                return m.retrieve(qt, k=args.k, show_progress=False)

            _, s_raw = timed(raw_search)
            rows.append((backend, b_aug, b_raw, save, load, s_aug, s_raw))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    table = Table(title=f"BM25 over {args.n:,} short texts ({args.vocab:,}-word vocabulary), "
                        f"{args.queries:,} queries, k={args.k}, peak RSS {peak:.1f} GB",
                  caption="x = augret / raw bm25s (1.00: no overhead); build = tokenize + "
                          "index; search includes query tokenisation")
    for col in ("scoring", "build s", "raw build s", "build x", "save s", "load s", "QPS",
                "raw QPS", "search x"):
        table.add_column(col, justify="left" if col == "scoring" else "right")
    for backend, b_aug, b_raw, save, load, s_aug, s_raw in rows:
        table.add_row(backend, f"{b_aug:.1f}", f"{b_raw:.1f}", f"{b_aug / b_raw:.2f}",
                      f"{save:.1f}", f"{load:.1f}", f"{args.queries / s_aug:,.0f}",
                      f"{args.queries / s_raw:,.0f}", f"{s_aug / s_raw:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
