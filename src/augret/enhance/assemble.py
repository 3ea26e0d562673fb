"""The assemble phase: each file's rows written in input order, with their outcomes and counts.

Every row's outcome comes from the plan (store hits, recorded failures, invalid rows,
unreadable images), the run ledger (what this run attempted, and how that went) and the
store (what another chunk or file generated meanwhile). A file is written to a temporary
file that replaces the output only when it is complete. Counts reconcile per file:
generated + cached + passed_through + failed = total, and failed is the sum of
failed_by_reason; attempts counts the generations this run attempted for the file's rows
(one per content key per run), of which ``generated`` succeeded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from augret.data.jsonl import atomic_writer, iter_jsonl
from augret.data.text import format_string
from augret.enhance.context import RunContext
from augret.enhance.plan import Item, count_lines

__all__ = ["FAILURES_FILE", "FileCounts", "assemble_file", "merge_failures", "output_row",
           "resolve"]

FAILURES_FILE = "enhance_failures.jsonl"
NO_OUTCOME = "no generation outcome in this run"


@dataclass
class FileCounts:
    """Per-file outcome counts of one run.

    Attributes:
        total: Rows.
        generated: Rows whose generation this run made (one per content key).
        cached: Rows whose text came from the store or from an earlier row of the run.
        passed_through: Rows the policy leaves unchanged.
        failed: Rows that kept their original text.
        failed_by_reason: ``failed`` by failure kind.
        attempts: Generations this run attempted for the file's rows (``generated`` of them
            succeeded).
        truncated: Rows whose text is an over-long output cut to the word budget.
        output_tokens: Output tokens of the generated rows.
        seconds: Time spent assembling the file.
    """

    total: int = 0
    generated: int = 0
    cached: int = 0
    passed_through: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    truncated: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: FileCounts) -> None:
        for k, v in asdict(other).items():
            if isinstance(v, dict):
                mine = getattr(self, k)
                for reason, n in v.items():
                    mine[reason] = mine.get(reason, 0) + n
            else:
                setattr(self, k, getattr(self, k) + v)

    def count(self, item: Item) -> None:
        """Count one resolved row."""
        self.total += 1
        self.attempts += item.attempted
        if item.error is not None:
            self.failed += 1
            kind = item.error_kind or "backend_error"
            self.failed_by_reason[kind] = self.failed_by_reason.get(kind, 0) + 1
        elif item.route.kind == "passthrough":
            self.passed_through += 1
        elif item.status == "generated":
            self.generated += 1
            self.output_tokens += item.tokens
        else:
            self.cached += 1
        self.truncated += item.error is None and item.truncated


def resolve(ctx: RunContext, items: list[Item]) -> None:
    """Settle the outcome of every row of a chunk once its generations are committed.

    Pending rows take their key's stored text (``cached``); the first row of each key
    attempted in this run counts the attempt and, when it succeeded, is ``generated``; rows
    of keys that failed in this run take the failure.
    """
    pending = [it for it in items if it.pending]
    if pending:
        hits = ctx.store.get_many([it.key for it in pending])  # type: ignore[misc]
        for it in pending:
            hit = hits.get(it.key)  # type: ignore[arg-type]
            if hit is not None:
                it.text, it.truncated, it.status = hit.text, hit.truncated, "cached"
    keyed = [it for it in items if it.route.generates and it.key is not None]
    taken = ctx.ledger.take([it.key for it in keyed])  # type: ignore[misc]
    for it in keyed:
        attempt = taken.pop(it.key, None)  # type: ignore[arg-type]
        if attempt is None:
            continue
        it.attempted = True
        if attempt.reason is None and it.status == "cached":
            it.status, it.tokens = "generated", attempt.tokens
    left = [it for it in items if it.pending]
    if left:
        failed = ctx.ledger.failures([it.key for it in left])  # type: ignore[misc]
        for it in left:
            attempt = failed.get(it.key)  # type: ignore[arg-type]
            if attempt is None:
                it.fail("backend_error", NO_OUTCOME)
            else:
                it.fail(attempt.kind or "backend_error", attempt.reason or NO_OUTCOME)
    for it in items:
        it.image = None


def output_row(ctx: RunContext, item: Item) -> dict[str, Any]:
    """The output row of a resolved item: the record with its enhanced text and an
    ``enhancement`` object."""
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
        info.update(status="failed", error=item.error, kind=item.error_kind)
    else:
        text = item.text or ""
        if ctx.cfg.mode == "append" and original:
            text = f"{format_string(original)} {text}"
        row[txt_key] = format_string(text)
        info.update(status="ok", model=ctx.backend.model_id, revision=ctx.backend.revision,
                    prompt_version=ctx.prompts.id, mode=ctx.cfg.mode,
                    params={**ctx.params.as_dict(), "max_new_tokens": item.route.max_new_tokens})
        if item.truncated:
            info["truncated"] = True
        if getattr(ctx.backend, "simulated", False):
            info["simulated"] = True  # from ground-truth records, not a model
    row["enhancement"] = info
    return row


def _record_failure(ctx: RunContext, row: dict[str, Any]) -> None:
    ctx.failures.write(json.dumps(row, ensure_ascii=False) + "\n")


def assemble_file(ctx: RunContext, path: Path, side: str, chunks: Iterable[list[Item]],
                  progress: Any) -> FileCounts:
    """Write one file's output from its planned (and generated) chunks.

    Args:
        ctx: The run.
        path: The source file.
        side: ``queries`` or ``candidates``.
        chunks: The file's rows in input order, in chunks whose generations are committed
            by the time each chunk is yielded.
        progress: The rich progress display (a task per file).

    Returns:
        The file's counts.
    """
    counts = FileCounts()
    start = time.perf_counter()
    rel = str(path.relative_to(ctx.data.root))
    task = progress.add_task(rel, total=count_lines(path), rate="")
    with atomic_writer(ctx.out_root / rel) as out:
        for items in chunks:
            resolve(ctx, items)
            for it in items:
                counts.count(it)
                if it.error is not None:
                    _record_failure(ctx, {
                        "file": rel, "line": it.line,
                        "id": it.record.id if it.record is not None else None,
                        "task": it.route.kind if it.record is not None else None,
                        "kind": it.error_kind, "error": it.error})
                if it.record is not None:
                    out.write(json.dumps(output_row(ctx, it), ensure_ascii=False) + "\n")
            elapsed = time.perf_counter() - start
            progress.update(task, advance=len(items), rate=(
                f"{counts.total / elapsed:.1f} items/s, "
                f"{counts.output_tokens / elapsed:.0f} tok/s"))
    counts.seconds = time.perf_counter() - start
    return counts


def merge_failures(ctx: RunContext, files_done: set[str]) -> None:
    """Write ``enhance_failures.jsonl``: earlier runs' failures of files this run did not
    touch, then this run's. Call after :meth:`RunContext.close`."""
    path = ctx.out_root / FAILURES_FILE
    new = Path(ctx.failures.name)
    with atomic_writer(path) as out:
        if path.is_file():
            for _, row in iter_jsonl(path, allow_empty=True, on_error=lambda e: None):
                if row.get("file") not in files_done:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        with new.open("r", encoding="utf-8") as f:
            for line in f:
                out.write(line)
    new.unlink()
