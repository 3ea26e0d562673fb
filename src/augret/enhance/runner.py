"""The enhancement runner: stream an M-BEIR directory through the policy, store and backend.

Per file: rows are read in chunks; a background thread reads, hashes and decodes the images
of the next chunk while the model works on the current one; outputs already in the store are
reused; the rest are generated in batches and committed to the store batch by batch; rows are
written in input order to a temporary file that replaces the output only when the file is
complete. A failed row keeps its original text, is recorded with its reason, and is retried
on the next run. Counts reconcile: generated + cached + passed_through + failed = total.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from augret.config import config_to_dict, write_resolved
from augret.data.jsonl import atomic_writer, iter_jsonl, read_json, write_json
from augret.data.mbeir import MBEIRDir, write_layout
from augret.data.records import Candidate, Query
from augret.data.text import format_string
from augret.enhance.backends.base import Backend, GenerationParams, GenerationResult
from augret.enhance.config import EnhanceConfig
from augret.enhance.files import link_untouched, select_files
from augret.enhance.images import image_digest, load_image
from augret.enhance.item import (
    backend_identity,
    clean_output,
    item_generation,
    item_key,
    item_request,
    make_backend,
    output_problem,
)
from augret.enhance.policy import Policy, Route, route
from augret.enhance.prompts import PromptSet, load_prompts
from augret.enhance.store import GenerationStore
from augret.errors import BackendError, BadImage, DataFormatError
from augret.images import read_image_file
from augret.progress import progress_bar

__all__ = ["FileCounts", "enhance"]

log = logging.getLogger(__name__)
REPORT_FILE = "enhance_report.json"
FAILURES_FILE = "enhance_failures.jsonl"


@dataclass
class FileCounts:
    """Per-file outcome counts of one run."""

    total: int = 0
    generated: int = 0
    cached: int = 0
    passed_through: int = 0
    failed: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: FileCounts) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class _Item:
    line: int
    record: Query | Candidate | None
    route: Route
    error: str | None = None
    key: str | None = None
    image: Any = None
    text: str | None = None  # generated text (cleaned)
    status: str = "pending"  # generated | cached | passthrough | failed
    tokens: int = 0  # output tokens of a generated item


@dataclass
class _Context:
    cfg: EnhanceConfig
    data: MBEIRDir
    backend: Backend
    store: GenerationStore
    prompts: PromptSet
    policy: Policy
    params: GenerationParams
    pool: ThreadPoolExecutor
    failures: IO[str]
    failed_batches: int = 0
    # "local": generate here; "plan": keys and store hits only (the ray engine's first pass);
    # "assemble": the ray workers generated everything: outcomes come from ``ledger``
    mode: str = "local"
    ledger: Any = None


def _prepare_one(ctx: _Context, item: _Item) -> None:
    """Read and hash the image (if sent) and compute the store key. Runs in a worker."""
    rec, r = item.record, item.route
    assert rec is not None
    digest = None
    if r.send_image:
        path = ctx.data.resolve_image(rec.image_path or "")
        try:
            data = read_image_file(path)
        except BadImage as exc:
            item.error = str(exc)
            return
        digest = image_digest(data)
        item.image = data  # decoded later, only if it must be generated
    item.key = item_key(backend=ctx.backend, prompts=ctx.prompts, params=ctx.params, route=r,
                        max_pixels=ctx.cfg.max_pixels, text=rec.text,
                        image_sha256=digest)


def _decode_one(ctx: _Context, item: _Item) -> None:
    try:
        item.image = load_image(item.image, max_pixels=ctx.cfg.max_pixels,
                                name=item.record.image_path or "")
    except BadImage as exc:
        item.error, item.image = str(exc), None


def _prepare(ctx: _Context, items: list[_Item]) -> list[_Item]:
    """Keys, store hits and decoded images of one chunk (runs ahead of the model)."""
    work = [it for it in items if it.route.generates and it.error is None]
    list(ctx.pool.map(lambda it: _prepare_one(ctx, it), work))
    keyed = [it for it in work if it.key is not None and it.error is None]
    hits = ctx.store.get_many([it.key for it in keyed])
    fresh = ctx.ledger.take_fresh(list(hits)) if ctx.mode == "assemble" else {}
    first: set[str] = set()
    to_decode = []
    for it in keyed:
        if it.key in hits:
            it.text, it.status, it.image = hits[it.key].text, "cached", None
            if it.key in fresh:  # generated by a ray worker in this run: its first item
                it.status, it.tokens = "generated", fresh.pop(it.key)
        elif ctx.mode != "local":
            it.image = None  # nothing is generated in this process
        elif it.key not in first and it.route.send_image:
            first.add(it.key)
            to_decode.append(it)
        elif it.key in first:
            it.image = None  # a duplicate of an item generated in this chunk
    list(ctx.pool.map(lambda it: _decode_one(ctx, it), to_decode))
    failed = {it.key: it.error for it in to_decode if it.error is not None}
    for it in keyed:  # duplicates share their head's decoding failure
        if it.status == "pending" and it.key in failed:
            it.error = failed[it.key]
    return items


def _watch_failures(ctx: _Context, all_failed: bool, last_error: str | None,
                    unit: str = "batches") -> None:
    """Abort (resumably) when whole batches keep failing at the model: the backend is down."""
    ctx.failed_batches = ctx.failed_batches + 1 if all_failed else 0
    limit = ctx.cfg.abort_after_failed_batches
    if limit and ctx.failed_batches >= limit:
        raise BackendError(
            f"{ctx.failed_batches} consecutive {unit} failed entirely (last error: "
            f"{last_error}); stopping. Finished generations are stored: rerun to resume.")


def _call_backend(ctx: _Context, heads: list[_Item]) -> list[GenerationResult]:
    requests = [
        item_request(ctx.prompts, h.route, h.record.text,  # type: ignore[union-attr]
                     h.image, h.record.id)  # type: ignore[union-attr]
        for h in heads
    ]
    results = ctx.backend.generate(requests, ctx.params)
    if len(results) != len(requests):
        raise BackendError(f"backend {ctx.backend.name} returned {len(results)} results "
                           f"for {len(requests)} requests")
    _watch_failures(ctx, all(r.error for r in results), results[-1].error if results else None)
    return results


def _generate(ctx: _Context, items: list[_Item]) -> None:
    """Generate the chunk's missing outputs, batch by batch, committing each batch."""
    pending: dict[str, list[_Item]] = {}
    for it in items:
        if it.route.generates and it.status == "pending" and it.error is None:
            pending.setdefault(it.key, []).append(it)  # type: ignore[arg-type]
    if pending and ctx.mode == "local":
        # this chunk was looked up while the previous one generated: take its late hits
        for key, hit in ctx.store.get_many(list(pending)).items():
            for it in pending.pop(key):
                it.text, it.status, it.image = hit.text, "cached", None
    groups = list(pending.values())
    for i in range(0, len(groups), ctx.cfg.batch_size):
        batch = groups[i: i + ctx.cfg.batch_size]
        heads = [g[0] for g in batch]
        if ctx.mode == "assemble":  # not in the store: the ray workers' recorded failures
            reasons = ctx.ledger.failures([h.key for h in heads])
            results = [GenerationResult(None, reasons.get(h.key or "", "no output from the "
                                                          "ray workers")) for h in heads]
        else:
            results = _call_backend(ctx, heads)
        stored = []
        for group, res in zip(batch, results, strict=True):
            reason = res.error or output_problem(group[0].route, res.text,
                                                 ctx.cfg.overlong_factor)
            for n, it in enumerate(group):
                it.image = None
                if reason is not None:
                    it.error = reason
                    continue
                it.text = clean_output(res.text or "")
                it.status = "generated" if n == 0 else "cached"
                it.tokens = res.output_tokens if n == 0 else 0
            if reason is None:
                stored.append(item_generation(group[0].key or "", res, backend=ctx.backend,
                                              prompts=ctx.prompts, params=ctx.params,
                                              route=group[0].route))
        ctx.store.put_many(stored)


def _output_row(ctx: _Context, item: _Item) -> dict[str, Any]:
    rec = item.record
    assert rec is not None
    row = rec.to_dict()
    txt_key, raw_key = rec.TEXT_FIELD, rec.RAW_TEXT_FIELD
    original = row.get(txt_key)
    row.setdefault(raw_key, original)
    info: dict[str, Any] = {"task": item.route.kind}
    if item.route.kind == "passthrough":
        info["status"] = "passthrough"
    elif item.error is not None:
        info.update(status="failed", error=item.error)
    else:
        text = item.text or ""
        if ctx.cfg.mode == "append" and original:
            text = f"{format_string(original)} {text}"
        row[txt_key] = format_string(text)
        info.update(status="ok", model=ctx.backend.model_id, revision=ctx.backend.revision,
                    prompt_version=ctx.prompts.id, mode=ctx.cfg.mode,
                    params={**ctx.params.as_dict(), "max_new_tokens": item.route.max_new_tokens})
    row["enhancement"] = info
    return row


def _chunks(ctx: _Context, path: Path, side: str, size: int) -> Iterator[list[_Item]]:
    parse = Query.from_dict if side == "queries" else Candidate.from_dict
    bad: list[DataFormatError] = []
    chunk: list[_Item] = []
    for number, obj in iter_jsonl(path, on_error=bad.append, allow_empty=True):
        while bad:
            err = bad.pop(0)
            chunk.append(_Item(err.line or 0, None, Route("passthrough"), error=err.reason))
        try:
            rec = parse(obj)
            chunk.append(_Item(number, rec, route(rec, ctx.policy)))
        except DataFormatError as exc:
            reason = f"field '{exc.field}': {exc.reason}" if exc.field else exc.reason
            chunk.append(_Item(number, None, Route("passthrough"), error=reason))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    for err in bad:
        chunk.append(_Item(err.line or 0, None, Route("passthrough"), error=err.reason))
    if chunk:
        yield chunk


def _record_failure(ctx: _Context, row: dict[str, Any]) -> None:
    ctx.failures.write(json.dumps(row, ensure_ascii=False) + "\n")


def _merge_failures(path: Path, new: Path, files_done: set[str]) -> None:
    """Keep earlier runs' failures of files this run did not touch, then this run's."""
    with atomic_writer(path) as out:
        if path.is_file():
            for _, row in iter_jsonl(path, allow_empty=True, on_error=lambda e: None):
                if row.get("file") not in files_done:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        with new.open("r", encoding="utf-8") as f:
            for line in f:
                out.write(line)


def _count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def _enhance_file(ctx: _Context, path: Path, side: str, out_path: Path, progress) -> FileCounts:
    counts = FileCounts()
    start = time.perf_counter()
    rel = str(path.relative_to(ctx.data.root))
    task = progress.add_task(rel, total=_count_lines(path), rate="")
    chunk_size = max(ctx.cfg.batch_size * 4, 32)
    with atomic_writer(out_path) as out, ThreadPoolExecutor(1) as ahead:
        chunks = _chunks(ctx, path, side, chunk_size)
        future: Future | None = None
        nxt = next(chunks, None)
        if nxt is not None:
            future = ahead.submit(_prepare, ctx, nxt)
        while future is not None:
            items = future.result()
            nxt = next(chunks, None)
            future = ahead.submit(_prepare, ctx, nxt) if nxt is not None else None
            _generate(ctx, items)
            for it in items:
                counts.total += 1
                if it.record is None:
                    counts.failed += 1
                    _record_failure(ctx, {"file": rel, "line": it.line, "id": None,
                                          "task": None, "error": it.error})
                    continue
                if it.route.kind == "passthrough":
                    counts.passed_through += 1
                elif it.error is not None:
                    counts.failed += 1
                    _record_failure(ctx, {
                        "file": rel, "line": it.line,
                        "id": it.record.id if it.record is not None else None,
                        "task": it.route.kind, "error": it.error})
                elif it.status == "generated":
                    counts.generated += 1
                    counts.output_tokens += it.tokens
                else:
                    counts.cached += 1
                out.write(json.dumps(_output_row(ctx, it), ensure_ascii=False) + "\n")
            elapsed = time.perf_counter() - start
            progress.update(task, advance=len(items), rate=(
                f"{counts.total / elapsed:.1f} items/s, "
                f"{counts.output_tokens / elapsed:.0f} tok/s"))
    counts.seconds = time.perf_counter() - start
    return counts


def _ray_resources(cfg: EnhanceConfig) -> Any:
    return None if cfg.engine == "local" else cfg.ray


def enhance(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: EnhanceConfig | None = None,
    *,
    backend: Backend | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Enhance an M-BEIR directory into an enhanced M-BEIR directory.

    Args:
        data_dir: Source directory (raw or already enhanced).
        out_dir: Output directory: enhanced files in the same layout, untouched files linked,
            ``augret.json`` pointing at the source images, ``enhance_report.json``,
            ``enhance_failures.jsonl`` and ``enhance_config.yaml``.
        cfg: Run configuration (defaults: the paper's policy, Qwen3-VL-8B, transformers).
        backend: A ready backend (otherwise built from ``cfg``).
        progress: Show a rich progress bar.

    Returns:
        The report: per-file counts, totals, tokens/s, model and prompt version.
    """
    cfg = cfg or EnhanceConfig()
    src = MBEIRDir(data_dir)
    out_root = Path(out_dir)
    if out_root.resolve() == src.root.resolve():
        from augret.errors import ConfigError

        raise ConfigError("the output directory must differ from the data directory")
    files = select_files(src, cfg.split, cfg.side, cfg.files)
    if not files:
        log.warning("no %s files of split %r matched in %s", cfg.side, cfg.split, src.root)
    ray_res = _ray_resources(cfg)
    if ray_res is not None and backend is not None:
        from augret.errors import ConfigError

        raise ConfigError("the ray engine builds a backend in each worker from the config; "
                          "pass no backend object")
    own_backend = backend is None
    if backend is None:  # the ray engine loads the model in its workers, not here
        backend = make_backend(cfg) if ray_res is None else backend_identity(cfg)
    policy = Policy(cfg.query_tokens, cfg.candidate_tokens, cfg.query_caption_words,
                    cfg.candidate_caption_words, cfg.query_text_words)
    store = GenerationStore(cfg.store)
    out_root.mkdir(parents=True, exist_ok=True)
    new_failures = out_root / f".{FAILURES_FILE}.run"
    ctx = _Context(cfg, src, backend, store, load_prompts(cfg.prompts), policy,
                   GenerationParams(cfg.temperature, cfg.top_p, cfg.seed),
                   ThreadPoolExecutor(max(1, cfg.workers)),
                   new_failures.open("w", encoding="utf-8"))
    report_path = out_root / REPORT_FILE
    report = read_json(report_path) if report_path.is_file() else {}
    per_file: dict[str, Any] = report.get("files", {})
    started = time.perf_counter()
    run_counts = FileCounts()
    engine: dict[str, Any] = {"name": "local"}
    try:
        with progress_bar("description", "bar", "count", "rate", "remaining",
                          transient=False, enabled=progress) as bar:
            if ray_res is not None:
                from augret.enhance.ray_engine import generate_on_ray

                engine = generate_on_ray(ctx, [p for p, _ in files], [s for _, s in files],
                                         ray_res, out_root, bar)
            for path, side in files:
                rel = path.relative_to(src.root)
                counts = _enhance_file(ctx, path, side, out_root / rel, bar)
                per_file[str(rel)] = {"side": side, **asdict(counts)}
                run_counts.add(counts)
                log.info("%s: %s", rel, asdict(counts))
    finally:
        ctx.pool.shutdown()
        ctx.failures.close()
        store.close()
        if ctx.ledger is not None:
            ctx.ledger.close()
        if own_backend:
            backend.close()
    link_untouched(src, out_root, {p.relative_to(src.root) for p, _ in files})
    write_layout(out_root, {"image_root": str(src.image_root.resolve()),
                            "source": str(src.root.resolve())})
    seconds = time.perf_counter() - started
    report = {
        "model": backend.model_id, "revision": backend.revision, "backend": backend.name,
        "prompt_version": ctx.prompts.id, "mode": cfg.mode, "store": str(store.path),
        "engine": engine,
        "files": per_file,
        "last_run": {**asdict(run_counts), "seconds": seconds,
                     "items_per_s": run_counts.total / seconds if seconds else 0.0,
                     "tokens_per_s": run_counts.output_tokens / seconds if seconds else 0.0},
        "config": config_to_dict(cfg),
    }
    write_json(report_path, report, newline=False)
    _merge_failures(out_root / FAILURES_FILE, new_failures,
                    {str(p.relative_to(src.root)) for p, _ in files})
    new_failures.unlink()
    write_resolved(cfg, out_root, "enhance_config.yaml")
    return report
