"""A static, offline HTML page that puts two systems' results side by side.

For the queries whose per-query score changed most between system A and system B (wins and
losses interleaved) and for a seeded random sample of the others, the page shows the query
image and text (raw, and the VLM rewrite when an enhanced directory is given), the top-k of A
and of B with thumbnails and text, relevant results highlighted, and the ground truth with
its rank in each system. Images are embedded as downscaled JPEG thumbnails (base64), so the
single file opens anywhere; once ``max_bytes`` of thumbnails is reached, later images are
left out and say so.

Example::

    write_viewer("view.html", "M-BEIR", "runs/baseline", "runs/fully_enhanced",
                 enhanced_dir="M-BEIR-enhanced", label_a="baseline", label_b="enhanced")
"""

from __future__ import annotations

import base64
import io
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augret._lazy import require
from augret.data.ids import eval_task
from augret.data.lookup import PoolLookup
from augret.data.mbeir import MBEIRDir, iter_queries
from augret.data.records import Candidate, Query
from augret.errors import BadImage, ConfigError, DataNotFoundError
from augret.evaluate.rundir import evaluate_run_dir, find_run_files
from augret.evaluate.runs import Run, read_run
from augret.images import decode_image, read_image_file

__all__ = ["ViewerSummary", "select_queries", "write_viewer"]

log = logging.getLogger(__name__)

_TIEBREAK = "mrr@1000"


@dataclass
class ViewerSummary:
    """What :func:`write_viewer` wrote.

    Attributes:
        path: The HTML file.
        changed: Most-changed queries shown.
        sampled: Sampled queries shown.
        thumbnails: Images embedded.
        omitted: Images left out (missing, unreadable, or over the size cap).
        bytes: Size of the page.
    """

    path: Path
    changed: int = 0
    sampled: int = 0
    thumbnails: int = 0
    omitted: int = 0
    bytes: int = 0


@dataclass
class _Entry:
    task: str
    qid: str
    a: float
    b: float
    tie: float  # B - A of the tie-break metric (reciprocal rank)
    section: str = "sampled"

    @property
    def delta(self) -> float:
        return self.b - self.a


def select_queries(entries: list[Any], *, changed: int, sampled: int, seed: int = 0
                   ) -> tuple[list[Any], list[Any]]:
    """Pick the most-changed entries (wins and losses interleaved) and a seeded sample of the
    rest. Entries need ``delta`` and ``tie`` attributes; ``|delta|``, then ``|tie|`` rank them.
    """
    rng = random.Random(seed)
    keyed = [(abs(e.delta), abs(e.tie), rng.random(), e) for e in entries]
    moved = sorted((k for k in keyed if k[0] > 0 or k[1] > 0), key=lambda k: k[:3],
                   reverse=True)
    wins = [k[3] for k in moved if (k[3].delta, k[3].tie) > (0, 0)]
    losses = [k[3] for k in moved if (k[3].delta, k[3].tie) < (0, 0)]
    top: list[Any] = []
    while len(top) < changed and (wins or losses):
        for side in (wins, losses):
            if side and len(top) < changed:
                top.append(side.pop(0))
    chosen = {id(e) for e in top}
    rest = [e for e in entries if id(e) not in chosen]
    sample = rng.sample(rest, min(sampled, len(rest)))
    return top, sample


class _Thumbs:
    """Downscaled JPEG data URIs with a total byte budget."""

    def __init__(self, px: int, max_bytes: int) -> None:
        self.px, self.left = px, max_bytes
        self.cache: dict[Path, str | None] = {}
        self.embedded = self.omitted = 0
        require("PIL.Image", "plot")  # fail before any work when Pillow is missing

    def __call__(self, path: Path | None) -> str | None:
        if path is None:
            return None
        if path in self.cache:
            return self.cache[path]
        uri = None
        try:
            img = decode_image(read_image_file(path), name=str(path), extra="plot")
            img = img.convert("RGB")
            img.thumbnail((self.px, self.px))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=72)
            data = base64.b64encode(buf.getvalue()).decode("ascii")
            if len(data) <= self.left:
                uri = f"data:image/jpeg;base64,{data}"
                self.left -= len(data)
                self.embedded += 1
        except (BadImage, OSError, ValueError):
            pass
        if uri is None:
            self.omitted += 1
        self.cache[path] = uri
        return uri


def _queries(d: MBEIRDir | None, task: str, qids: set[str]) -> dict[str, Query]:
    if d is None:
        return {}
    path = d.query_file(task)
    if path is None:
        return {}
    return {q.qid: q for q in iter_queries(path) if q.qid in qids}


def _lookup(d: MBEIRDir | None, pool: str, tasks: Iterable[str]) -> PoolLookup | None:
    if d is None:
        return None
    if pool == "union":
        files = d.union_pool_files()
    else:
        files = list(dict.fromkeys(p for t in tasks if (p := d.pool_file(eval_task(t).pool))))
    return PoolLookup(files) if files else None


def _get(lookup: PoolLookup | None, dids: list[str]) -> dict[str, Candidate]:
    if lookup is None or not dids:
        return {}
    known = [d for d, ok in zip(dids, lookup.contains_many(dids), strict=True) if ok]
    return dict(zip(known, lookup.get_many(known), strict=True))


def write_viewer(out_html: str | Path, data_dir: str | Path, run_dir_a: str | Path,
                 run_dir_b: str | Path, *, enhanced_dir: str | Path | None = None,
                 label_a: str = "A", label_b: str = "B", pool: str = "local",
                 tasks: Iterable[str] | None = None, changed: int = 12, sampled: int = 8,
                 k: int = 5, seed: int = 0, thumb_px: int = 112,
                 max_bytes: int = 6_000_000, title: str | None = None,
                 notice: str | None = None) -> ViewerSummary:
    """Write the side-by-side page of two run directories.

    Args:
        out_html: The HTML file to write.
        data_dir: The raw M-BEIR directory (qrels, raw query text, candidates, images).
        run_dir_a: System A's run files (``<task>_<pool>.run``).
        run_dir_b: System B's.
        enhanced_dir: An enhanced directory: query rewrites (``query_txt`` vs
            ``query_txt_raw``) and candidate captions are shown from it.
        label_a: Name of system A.
        label_b: Name of system B.
        pool: ``local`` or ``union`` runs.
        tasks: Only these tasks (default: every task both systems ran).
        changed: Most-changed queries to show.
        sampled: Randomly sampled other queries to show.
        k: Results shown per system.
        seed: Seed of the sample and of tie-breaks.
        thumb_px: Longest side of the thumbnails.
        max_bytes: Budget of embedded thumbnail data (the page stays openable).
        title: Page title.
        notice: A banner under the title (e.g. that the enhanced text is simulated).

    Raises:
        ConfigError: Bad ``pool`` or ``k``, or the systems share no task.
        DataNotFoundError: A directory or run file is missing.
    """
    if pool not in ("local", "union"):
        raise ConfigError(f"pool must be 'local' or 'union', got {pool!r}")
    if k < 1:
        raise ConfigError(f"k must be positive, got {k}")
    data = MBEIRDir(data_dir)
    enhanced = MBEIRDir(enhanced_dir) if enhanced_dir is not None else None
    res_a = evaluate_run_dir(data.root, run_dir_a, metrics=[_TIEBREAK], per_query=True)
    res_b = evaluate_run_dir(data.root, run_dir_b, metrics=[_TIEBREAK], per_query=True)
    wanted = set(tasks) if tasks is not None else None
    keys = [key for key in res_a if key in res_b and key[1] == pool
            and (wanted is None or key[0] in wanted)]
    if not keys:
        raise ConfigError(f"{run_dir_a} and {run_dir_b} share no {pool} run of the chosen tasks")
    entries, means = [], {}
    for task, _ in keys:
        a, b = res_a[task, pool], res_b[task, pool]
        if a.qids != b.qids:
            raise ConfigError(f"{task}: the two systems were evaluated on different queries")
        m = eval_task(task).reported_metric
        means[task] = (a.metrics[m], b.metrics[m], int(np.sum(b.per_query[m] > a.per_query[m])),
                       int(np.sum(b.per_query[m] < a.per_query[m])), a.num_queries)
        tie = b.per_query[_TIEBREAK] - a.per_query[_TIEBREAK]
        entries += [_Entry(task, q, float(x), float(y), float(t)) for q, x, y, t in
                    zip(a.qids, a.per_query[m], b.per_query[m], tie, strict=True)]
    top, sample = select_queries(entries, changed=changed, sampled=sampled, seed=seed)
    for e in top:
        e.section = "changed"
    shown = top + sorted(sample, key=lambda e: ([t for t, _ in keys].index(e.task), e.qid))
    ctx = _Context(data, enhanced, pool, k, _Thumbs(thumb_px, max_bytes), label_a, label_b,
                   notice)
    ctx.load(shown, run_dir_a, run_dir_b)
    from augret.experiment.viewer_html import render_page

    html = render_page(ctx, shown, means, title or f"{label_a} vs {label_b} ({pool} pools)")
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, "utf-8")
    summary = ViewerSummary(out, len(top), len(sample), ctx.thumbs.embedded, ctx.thumbs.omitted,
                            out.stat().st_size)
    log.info("viewer written to %s (%d queries, %.1f MB)", out, len(shown), summary.bytes / 1e6)
    return summary


@dataclass
class _Context:
    """Everything the page needs about the shown queries."""

    data: MBEIRDir
    enhanced: MBEIRDir | None
    pool: str
    k: int
    thumbs: _Thumbs
    label_a: str
    label_b: str
    notice: str | None = None
    runs: dict[tuple[str, str], Run] = field(default_factory=dict)
    raw_queries: dict[str, Query] = field(default_factory=dict)
    enh_queries: dict[str, Query] = field(default_factory=dict)
    cands: dict[str, Candidate] = field(default_factory=dict)
    enh_cands: dict[str, Candidate] = field(default_factory=dict)
    positives: dict[str, list[str]] = field(default_factory=dict)

    def load(self, shown: list[_Entry], run_dir_a: str | Path, run_dir_b: str | Path) -> None:
        tasks = list(dict.fromkeys(e.task for e in shown))
        for system, run_dir in (("a", run_dir_a), ("b", run_dir_b)):
            files = find_run_files(run_dir)
            for t in tasks:
                if (t, self.pool) not in files:
                    raise DataNotFoundError(f"{run_dir}: no {self.pool} run for {t}")
                self.runs[system, t] = read_run(files[t, self.pool], depth=self.k)
        dids: list[str] = []
        for t in tasks:
            qids = {e.qid for e in shown if e.task == t}
            self.raw_queries.update(_queries(self.data, t, qids))
            self.enh_queries.update(_queries(self.enhanced, t, qids))
            qrels = self.data.qrels(t)
            for q in qids:
                self.positives[q] = qrels.positives(q)
                dids += self.positives[q][:3]
                for system in ("a", "b"):
                    dids += [d for d, _ in self.runs[system, t].ranking(q)]
        dids = list(dict.fromkeys(dids))
        self.cands = _get(_lookup(self.data, self.pool, tasks), dids)
        self.enh_cands = _get(_lookup(self.enhanced, self.pool, tasks), dids)

    def image(self, rel: str | None) -> str | None:
        """The thumbnail data URI of a record's image path."""
        return self.thumbs(self.data.resolve_image(rel)) if rel else None

    def ranking(self, system: str, task: str, qid: str) -> list[tuple[str, float]]:
        return self.runs[system, task].ranking(qid)[: self.k]
