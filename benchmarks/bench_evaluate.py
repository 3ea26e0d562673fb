"""Benchmark ``augret.evaluate.evaluate`` against UniIR's per-query Recall@k loop.

Builds a synthetic run (``--queries`` × ``--depth``) and qrels, scores hit@1/5/10 both with the
vectorised evaluator and with a transcription of UniIR's ``compute_recall_at_k`` (a Python
loop over queries with sets, ``mbeir_retriever.py``), checks that every per-query value
agrees, and prints the times and the speed-up. ``--io`` also times writing and reading the
run as a UniIR 7-column file.

    python benchmarks/bench_evaluate.py --queries 200000 --depth 50
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from augret.evaluate import Run, evaluate, read_run, write_run

KS = (1, 5, 10)


def compute_recall_at_k(relevant_docs: list[str], retrieved: list[str], k: int) -> float:
    """UniIR's hit-based "Recall@k" (``docs/mbeir.md``), as UniIR writes it."""
    if not relevant_docs:
        return 0.0
    top_k_retrieved_indices_set = set(retrieved[:k])
    relevant_docs_set = set(relevant_docs)
    if relevant_docs_set.intersection(top_k_retrieved_indices_set):
        return 1.0
    return 0.0


def synthetic(n_queries: int, depth: int, n_docs: int, seed: int):
    """A run (as arrays) and qrels; ~60% of queries have a positive in the top 1.5 × depth."""
    rng = np.random.default_rng(seed)
    vocab = [f"{d % 10}:{d}" for d in range(n_docs)]
    step = 7919  # prime, coprime with n_docs unless it divides it: rows hold distinct docs
    base = rng.integers(0, n_docs, size=n_queries)
    docs = (base[:, None] + np.arange(depth) * step) % n_docs
    scores = -np.sort(-rng.random((n_queries, depth)), axis=1)
    qids = [f"{i % 10}:{i + 1}" for i in range(n_queries)]
    hit_rank = rng.integers(0, int(depth * 1.5), size=n_queries)
    n_pos = rng.integers(1, 4, size=n_queries)
    extra = rng.integers(0, n_docs, size=(n_queries, 3))
    qrels: dict[str, dict[str, int]] = {}
    for i, qid in enumerate(qids):
        pos = [vocab[d] for d in extra[i, : n_pos[i]]]
        if rng.random() < 0.6 and hit_rank[i] < depth:
            pos[0] = vocab[docs[i, hit_rank[i]]]
        qrels[qid] = dict.fromkeys(pos, 1)
    return qids, docs, scores, vocab, qrels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=200_000)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--docs", type=int, default=1_000_000, help="document vocabulary size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--io", action="store_true", help="also time write_run / read_run")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    qids, docs, scores, vocab, qrels = synthetic(args.queries, args.depth, args.docs, args.seed)
    t_synth = time.perf_counter() - t0

    t0 = time.perf_counter()
    run = Run(qids, docs, scores, vocab)
    t_build = time.perf_counter() - t0

    metrics = [f"hit@{k}" for k in KS]
    t0 = time.perf_counter()
    ours = evaluate(qrels, run, metrics, per_query=True)
    t_cold = time.perf_counter() - t0  # includes the run's did -> code index (built once)
    t0 = time.perf_counter()
    ours = evaluate(qrels, run, metrics, per_query=True)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    evaluate(qrels, run, "hit@1,hit@5,hit@10,recall@10,precision@10,mrr@10,ndcg@10,map@10")
    t_full = time.perf_counter() - t0

    # UniIR's inputs: retrieved did lists per query and positive lists per qid (not timed)
    retrieved = [[vocab[c] for c in row] for row in docs.tolist()]
    qrel = {q: [d for d, r in j.items() if r > 0] for q, j in qrels.items()}
    t0 = time.perf_counter()
    loop = {f"hit@{k}": [] for k in KS}
    for i, qid in enumerate(qids):
        relevant_docs = qrel[qid]
        for k in KS:
            loop[f"hit@{k}"].append(compute_recall_at_k(relevant_docs, retrieved[i], k))
    loop_means = {m: sum(v) / len(v) for m, v in loop.items()}
    t_loop = time.perf_counter() - t0

    agree = all(np.array_equal(ours.per_query[m], np.asarray(loop[m])) for m in metrics)
    agree = agree and all(abs(ours.metrics[m] - loop_means[m]) < 1e-12 for m in metrics)

    rows = [
        ("synthetic data (not timed below)", t_synth),
        ("Run from arrays (rank check)", t_build),
        ("augret evaluate hit@1,5,10 (first call)", t_cold),
        ("augret evaluate hit@1,5,10", t_ours),
        ("augret evaluate 8 metrics", t_full),
        ("UniIR loop hit@1,5,10 (sets)", t_loop),
    ]
    if args.io:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "run.txt"
            t0 = time.perf_counter()
            write_run(path, run, tag="bench", task_ids=0)
            rows.append((f"write_run UniIR 7-col ({path.stat().st_size / 1e6:.0f} MB)",
                         time.perf_counter() - t0))
            t0 = time.perf_counter()
            back = read_run(path)
            rows.append(("read_run UniIR 7-col", time.perf_counter() - t0))
            agree = agree and evaluate(qrels, back, metrics).metrics == ours.metrics

    print(f"{args.queries:,} queries × top-{args.depth}, {args.docs:,} documents")
    print(f"{'step':<44}{'seconds':>10}")
    print("-" * 54)
    for name, secs in rows:
        print(f"{name:<44}{secs:>10.3f}")
    print("-" * 54)
    print(f"{'speed-up (UniIR loop / augret evaluate)':<44}{t_loop / t_ours:>9.1f}×")
    print("means: " + ", ".join(f"{m}={ours.metrics[m]:.4f}" for m in metrics))
    print(f"per-query agreement with the UniIR loop: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
