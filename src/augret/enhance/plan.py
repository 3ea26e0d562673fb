"""The plan phase: rows read in chunks, routed, keyed and looked up in the generation store.

Every engine plans the same way, so every engine computes the same keys and finds the same
store hits and recorded failures; what is left ``pending`` is what the engine has to
generate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augret.data.jsonl import iter_jsonl
from augret.data.records import Candidate, Query
from augret.enhance.context import RunContext
from augret.enhance.images import image_digest, load_image
from augret.enhance.item import item_key
from augret.enhance.policy import Route, route
from augret.errors import BadImage, DataFormatError
from augret.images import read_image_file

__all__ = ["Item", "count_lines", "plan_chunk", "read_items"]


@dataclass
class Item:
    """One input row on its way through plan → generate → assemble.

    Attributes:
        line: Its line number in the file.
        record: The parsed record (``None`` when the row is invalid).
        route: Its policy route.
        error: Why the row fails (``None`` while it does not).
        error_kind: The failure's kind (:data:`augret.enhance.outputs.FAILURE_KINDS`).
        key: Its content key (once planned, for rows that generate).
        image: The image bytes once keyed; the decoded image while it waits to be generated.
        text: The generated text (checked), once known.
        truncated: The text was cut to the word budget.
        status: ``pending``, ``generated`` (the row whose key this run generated),
            ``cached`` (a store hit, or a later row of a key generated in this run) or
            ``recorded`` (a deterministic failure recorded in the store).
        attempted: The first row of a key this run attempted to generate.
        tokens: Output tokens of a ``generated`` row.
    """

    line: int
    record: Query | Candidate | None
    route: Route
    error: str | None = None
    error_kind: str | None = None
    key: str | None = None
    image: Any = None
    text: str | None = None
    truncated: bool = False
    status: str = "pending"
    attempted: bool = False
    tokens: int = 0

    def fail(self, kind: str, reason: str) -> None:
        """Mark the row failed."""
        self.error_kind, self.error, self.image = kind, reason, None

    @property
    def pending(self) -> bool:
        """Whether the row still waits for its generation's outcome."""
        return (self.route.generates and self.status == "pending" and self.error is None
                and self.key is not None)


def count_lines(path: Path) -> int:
    """The number of lines of a file (for progress totals)."""
    n = 0
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def _invalid(line: int, reason: str) -> Item:
    return Item(line, None, Route("passthrough"), error=reason, error_kind="invalid_row")


def read_items(ctx: RunContext, path: Path, side: str, size: int) -> Iterator[list[Item]]:
    """The rows of ``path`` in chunks of ``size``, parsed and routed; an invalid row becomes an
    item with its reason.

    Args:
        ctx: The run.
        path: A query file or candidate pool.
        side: ``queries`` or ``candidates``.
        size: Rows per chunk.
    """
    parse = Query.from_dict if side == "queries" else Candidate.from_dict
    bad: list[DataFormatError] = []
    chunk: list[Item] = []
    for number, obj in iter_jsonl(path, on_error=bad.append, allow_empty=True):
        while bad:
            err = bad.pop(0)
            chunk.append(_invalid(err.line or 0, err.reason))
        try:
            rec = parse(obj)
            chunk.append(Item(number, rec, route(rec, ctx.policy)))
        except DataFormatError as exc:
            chunk.append(_invalid(number, f"field '{exc.field}': {exc.reason}" if exc.field
                                  else exc.reason))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    for err in bad:
        chunk.append(_invalid(err.line or 0, err.reason))
    if chunk:
        yield chunk


def _key_one(ctx: RunContext, item: Item) -> None:
    """Read and hash the image (if sent) and compute the store key. Runs in a worker."""
    rec, r = item.record, item.route
    assert rec is not None
    digest = None
    if r.send_image:
        path = ctx.data.resolve_image(rec.image_path or "")
        try:
            data = read_image_file(path)
        except BadImage as exc:
            item.fail("missing_image", str(exc))
            return
        digest = image_digest(data)
        item.image = data  # decoded later, only if it must be generated
    item.key = item_key(backend=ctx.backend, prompts=ctx.prompts, params=ctx.params, route=r,
                        rules=ctx.rules, max_pixels=ctx.cfg.max_pixels, text=rec.text,
                        image_sha256=digest)


def _decode_one(ctx: RunContext, item: Item) -> None:
    assert item.record is not None
    try:
        item.image = load_image(item.image, max_pixels=ctx.cfg.max_pixels,
                                name=item.record.image_path or "")
    except BadImage as exc:
        item.fail("corrupt_image", str(exc))


def plan_chunk(ctx: RunContext, items: list[Item], *, decode: bool) -> list[Item]:
    """Key one chunk and look it up in the store.

    Store hits become ``cached``; keys with a recorded deterministic failure fail with its
    reason (``recorded``), unless the run retries failures.

    Args:
        ctx: The run.
        items: The chunk (changed in place).
        decode: Decode the image of the first pending row of each key, ready to be sent to
            a model in this process (a decoding failure fails every row of the chunk with
            that key); otherwise the image bytes are dropped (the engine's workers read them).

    Returns:
        ``items``.
    """
    work = [it for it in items if it.route.generates and it.error is None]
    list(ctx.pool.map(lambda it: _key_one(ctx, it), work))
    keyed = [it for it in work if it.key is not None and it.error is None]
    keys = [it.key for it in keyed if it.key is not None]
    hits = ctx.store.get_many(keys)
    recorded = ({} if ctx.cfg.retry_failed else
                ctx.store.get_failures([k for k in keys if k not in hits]))
    heads: set[str] = set()
    to_decode = []
    for it in keyed:
        if it.key in hits:
            hit = hits[it.key]
            it.text, it.truncated, it.status, it.image = hit.text, hit.truncated, "cached", None
        elif it.key in recorded:
            failure = recorded[it.key]
            it.fail(failure.kind, failure.reason)
            it.status = "recorded"
        elif decode and it.key not in heads and it.route.send_image:
            heads.add(it.key)  # type: ignore[arg-type]
            to_decode.append(it)
        else:
            it.image = None  # decoded for its key's first row, or not decoded here
    list(ctx.pool.map(lambda it: _decode_one(ctx, it), to_decode))
    failed = {it.key: it.error for it in to_decode if it.error is not None}
    for it in keyed:  # a key's rows share its first row's decoding failure
        if it.status == "pending" and it.error is None and it.key in failed:
            it.fail("corrupt_image", failed[it.key])  # type: ignore[arg-type]
    return items
