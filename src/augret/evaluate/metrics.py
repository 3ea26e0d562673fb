"""Vectorised ranking metrics over a :class:`~augret.evaluate.runs.Run` and qrels.

Definitions (``rel`` = relevance > 0; ``R`` = the number of relevant documents in the qrels):

* ``hit@k``: 1 if any relevant document is in the top k, else 0. This is UniIR's "Recall@k"
  and trec_eval's ``success.k``.
* ``recall@k``: relevant documents in the top k / R (trec_eval ``recall.k``).
* ``precision@k``: relevant documents in the top k / k (trec_eval ``P.k``).
* ``mrr@k``: 1 / rank of the first relevant document if it is within k, else 0.
* ``ndcg@k``: linear gain (the relevance value), ``1/log2(rank+1)`` discount, normalised by
  the ideal ranking of the judged documents cut at k (trec_eval ``ndcg_cut.k``).
* ``map@k``: the sum of precision at each relevant rank ≤ k, divided by R
  (trec_eval ``map_cut.k``).

The evaluated queries are the qrels' queries with at least one relevant document, in qrels
order; those absent from the run score 0, and run queries absent from the qrels are ignored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.qrels import Qrels, read_qrels
from augret.errors import ConfigError, DataFormatError
from augret.evaluate.runs import Run, read_run

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_NAMES",
    "EvalResult",
    "MetricSpec",
    "evaluate",
    "parse_metrics",
]

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = ("hit", "recall", "precision", "mrr", "ndcg", "map")
DEFAULT_METRICS = "hit@1,hit@5,hit@10,recall@5,mrr@10,ndcg@10"
_SPEC = re.compile(r"^([a-z]+)@([0-9]+)$")

QrelsLike = Qrels | Mapping[str, Mapping[str, float]] | str | Path
RunLike = Run | Mapping[str, Mapping[str, float]] | str | Path


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric name and its cut-off, e.g. ``hit@5``."""

    name: str
    k: int

    def __str__(self) -> str:
        return f"{self.name}@{self.k}"


def parse_metrics(metrics: str | Iterable[str]) -> list[MetricSpec]:
    """Parse ``"hit@1,ndcg@10"`` or ``["hit@1", "ndcg@10"]`` (case-insensitive, deduplicated).

    Raises:
        ConfigError: A name is unknown, a cut-off is missing or not positive, or none is given.
    """
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    specs: list[MetricSpec] = []
    for item in items:
        text = str(item).strip().lower()
        if not text:
            continue
        m = _SPEC.match(text)
        if m is None or m.group(1) not in METRIC_NAMES or int(m.group(2)) < 1:
            raise ConfigError(
                f"unknown metric {str(item).strip()!r}; valid: "
                + ", ".join(f"{n}@k" for n in METRIC_NAMES) + " (k a positive integer)"
            )
        spec = MetricSpec(m.group(1), int(m.group(2)))
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ConfigError("no metric given; valid: " + ", ".join(f"{n}@k" for n in METRIC_NAMES))
    return specs


@dataclass(frozen=True)
class EvalResult:
    """Scores of one run against one qrels.

    Attributes:
        num_queries: Evaluated queries (qrels queries with a relevant document).
        metrics: Mean per metric over those queries, unrounded, keyed like ``"hit@5"``.
        qids: The evaluated queries, in qrels order.
        per_query: Per-metric arrays aligned with ``qids`` (empty unless requested).
        num_unranked: Evaluated queries that the run does not contain (they score 0).
    """

    num_queries: int
    metrics: dict[str, float]
    qids: list[str] = field(repr=False)
    per_query: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    num_unranked: int = 0

    def to_dict(self) -> dict[str, Any]:
        """``{"num_queries": N, "metrics": {...}}`` (JSON-ready)."""
        return {"num_queries": self.num_queries, "metrics": dict(self.metrics)}

    def iter_per_query(self) -> Iterator[dict[str, Any]]:
        """One ``{"qid": ..., "<metric>": value, ...}`` dict per evaluated query."""
        names = list(self.per_query)
        columns = [self.per_query[n].tolist() for n in names]
        for i, qid in enumerate(self.qids):
            yield {"qid": qid, **{n: col[i] for n, col in zip(names, columns, strict=True)}}


def evaluate(
    qrels: QrelsLike,
    run: RunLike,
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    *,
    per_query: bool = False,
    depth: int | None = None,
) -> EvalResult:
    """Score a run against qrels, all queries at once with numpy.

    Args:
        qrels: An :class:`augret.data.Qrels`, a ``{qid: {did: relevance}}`` mapping, or a
            qrels file.
        run: A :class:`Run`, a ``{qid: {did: score}}`` mapping, or a run file.
        metrics: Metric names (see :func:`parse_metrics`), a list or a comma-separated string.
        per_query: Keep per-query scores in :attr:`EvalResult.per_query`.
        depth: Score only the first ``depth`` documents of each query.

    Returns:
        The means (and per-query scores when asked).

    Raises:
        ConfigError: An unknown metric.
        DataFormatError: The qrels hold no query with a relevant document.
    """
    specs = parse_metrics(metrics)
    if depth is not None and depth < 1:
        raise ConfigError(f"depth must be a positive integer, got {depth}")
    judgments = _judgments(qrels)
    run = run if isinstance(run, Run) else (
        read_run(run) if isinstance(run, (str, Path)) else Run.from_dict(run))
    qids, pq, dids, rels = _positives(judgments)
    if not qids:
        raise DataFormatError("the qrels hold no query with a relevant (relevance > 0) document",
                              path=qrels if isinstance(qrels, (str, Path)) else None)
    kmax = max(s.k for s in specs) if depth is None else min(max(s.k for s in specs), depth)
    rows = np.fromiter(map(run.qid_index.get, qids, repeat(-1)), dtype=np.int64,
                       count=len(qids))
    gains = _gain_matrix(run, rows, pq, dids, rels, kmax)
    scores = _score(specs, gains, pq, rels, len(qids))
    unranked = int((rows < 0).sum())
    if unranked:
        log.debug("%d of %d evaluated queries are absent from the run", unranked, len(qids))
    means = {str(s): float(v.mean()) for s, v in zip(specs, scores, strict=True)}
    per = {str(s): v for s, v in zip(specs, scores, strict=True)} if per_query else {}
    return EvalResult(len(qids), means, qids, per, unranked)


def _judgments(qrels: QrelsLike) -> Mapping[str, Mapping[str, float]]:
    if isinstance(qrels, Qrels):
        return qrels.judgments
    if isinstance(qrels, (str, Path)):
        return read_qrels(qrels).judgments
    return qrels


def _positives(
    judgments: Mapping[str, Mapping[str, float]],
) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Queries with a positive, and the flat (query index, did, relevance) of positives."""
    values = list(judgments.values())
    counts = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    total = int(counts.sum())
    dids = list(chain.from_iterable(values))
    rels = np.fromiter(chain.from_iterable(d.values() for d in values), dtype=np.float64,
                       count=total)
    owner = np.repeat(np.arange(len(values)), counts)
    keep = rels > 0
    has = np.bincount(owner[keep], minlength=len(values)) > 0
    qids = list(compress(judgments, has.tolist()))
    pq = (np.cumsum(has) - 1)[owner[keep]]
    if not keep.all():
        dids = list(compress(dids, keep.tolist()))
    return qids, pq, dids, rels[keep]


def _gain_matrix(run: Run, rows: np.ndarray, pq: np.ndarray, dids: list[str],
                 rels: np.ndarray, kmax: int) -> np.ndarray:
    """``(len(rows), min(kmax, depth))`` relevance of each ranked document (0 if not relevant)."""
    vindex = run.vocab_index
    codes = np.fromiter(map(vindex.get, dids, repeat(-1)), dtype=np.int64, count=len(dids))
    width = len(run.vocab) + 1
    known = codes >= 0
    keys = pq[known] * width + codes[known]
    order = np.argsort(keys)
    keys, krels = keys[order], rels[known][order]
    if len(run):
        docs = run.docs[:, :kmax][np.maximum(rows, 0)]
        docs[rows < 0] = -1
    else:
        docs = np.full((len(rows), 0), -1, dtype=np.int64)
    ranked = np.arange(len(rows), dtype=np.int64)[:, None] * width + docs
    if keys.size == 0:
        return np.zeros(docs.shape)
    at = np.minimum(np.searchsorted(keys, ranked), keys.size - 1)
    hit = (keys[at] == ranked) & (docs >= 0)
    return np.where(hit, krels[at], 0.0)


def _score(specs: list[MetricSpec], gains: np.ndarray, pq: np.ndarray, rels: np.ndarray,
           n: int) -> list[np.ndarray]:
    if gains.shape[1] == 0:  # nothing ranked: one empty column keeps the shapes simple
        gains = np.zeros((n, 1))
    width = gains.shape[1]
    rel = gains > 0
    cum = np.cumsum(rel, axis=1)
    npos = np.bincount(pq, minlength=n).astype(np.float64)
    first = np.where(rel.any(axis=1), rel.argmax(axis=1) + 1, np.iinfo(np.int64).max)
    disc = 1.0 / np.log2(np.arange(2, max(s.k for s in specs) + 2))
    ideal = _ideal_dcg(pq, rels, n, disc) if any(s.name == "ndcg" for s in specs) else None
    out = []
    for s in specs:
        kk = min(s.k, width)
        found = cum[:, kk - 1].astype(np.float64) if kk else np.zeros(n)
        if s.name == "hit":
            v = (found > 0).astype(np.float64)
        elif s.name == "recall":
            v = found / npos
        elif s.name == "precision":
            v = found / s.k
        elif s.name == "mrr":
            v = np.where(first <= s.k, 1.0 / first, 0.0)
        elif s.name == "ndcg":
            dcg = gains[:, :kk] @ disc[:kk]
            v = np.divide(dcg, ideal[:, s.k - 1], out=np.zeros(n), where=ideal[:, s.k - 1] > 0)
        else:  # map
            prec = cum[:, :kk] / np.arange(1, kk + 1)
            v = (prec * rel[:, :kk]).sum(axis=1) / npos
        out.append(v)
    return out


def _ideal_dcg(pq: np.ndarray, rels: np.ndarray, n: int, disc: np.ndarray) -> np.ndarray:
    """``(n, len(disc))``: column j holds the ideal DCG at cut-off j+1."""
    kmax = disc.size
    order = np.lexsort((-rels, pq))
    q, r = pq[order], rels[order]
    counts = np.bincount(q, minlength=n)
    rank = np.arange(q.size) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = rank < kmax
    ideal = np.zeros((n, kmax))
    ideal[q[keep], rank[keep]] = r[keep] * disc[rank[keep]]
    return np.cumsum(ideal, axis=1)
