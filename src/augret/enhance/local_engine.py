"""The local engine: plan, generate and assemble chunk by chunk in this process.

Per file, a background thread plans the next chunk (reads, hashes and decodes its images,
looks it up in the store) while the model generates the current one; each chunk's missing
generations are made in batches, one per content key, and committed batch by batch; the
chunk is then assembled. A key that another chunk generated or attempted meanwhile is not
attempted again: its rows take that outcome. An image that does not decode is that key's
attempt (a deterministic failure, as a ray worker reports it).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from augret.enhance.assemble import assemble_file
from augret.enhance.backends.base import GenerationResult
from augret.enhance.context import EngineRun, InputFile, RunContext
from augret.enhance.generate import AbortWatch, Outcome, commit
from augret.enhance.item import item_request
from augret.enhance.plan import Item, plan_chunk, read_items
from augret.errors import BackendError

__all__ = ["LocalEngine"]


def _undecodable(ctx: RunContext, items: list[Item]) -> None:
    """Commit the first row of each key whose image did not decode as its attempt."""
    heads: dict[str, Item] = {}
    for it in items:
        if it.status == "pending" and it.error_kind == "corrupt_image" and it.key:
            heads.setdefault(it.key, it)
    if heads:
        done = ctx.ledger.attempted(list(heads))
        new = [h for k, h in heads.items() if k not in done]
        commit(ctx, [Outcome(h.key or "", h.route, GenerationResult(None, h.error),
                             input_kind="corrupt_image") for h in new])


def generate_chunk(ctx: RunContext, items: list[Item], watch: AbortWatch) -> None:
    """Make the chunk's missing generations (one per key) in batches, committing each."""
    _undecodable(ctx, items)
    heads: dict[str, Item] = {}
    for it in items:
        if it.pending:
            heads.setdefault(it.key, it)  # type: ignore[arg-type]
    if not heads:
        return
    # the chunk was planned while the previous one generated: keys committed or attempted
    # since then take that outcome
    keys = list(heads)
    done = set(ctx.store.get_many(keys)) | ctx.ledger.attempted(keys)
    todo = [h for k, h in heads.items() if k not in done]
    size = ctx.cfg.batch_size
    for i in range(0, len(todo), size):
        batch = todo[i: i + size]
        requests = [item_request(ctx.prompts, h.route, h.record.text,  # type: ignore[union-attr]
                                 h.image, h.record.id)  # type: ignore[union-attr]
                    for h in batch]
        results = ctx.backend.generate(requests, ctx.params)
        if len(results) != len(requests):
            raise BackendError(f"backend {ctx.backend.name} returned {len(results)} results "
                               f"for {len(requests)} requests")
        outcomes = [Outcome(h.key or "", h.route, r) for h, r in zip(batch, results, strict=True)]
        commit(ctx, outcomes)
        watch.observe(outcomes)
        for h in batch:
            h.image = None


def _chunks(ctx: RunContext, path: Path, side: str, watch: AbortWatch) -> Iterator[list[Item]]:
    """The file's chunks, each planned one chunk ahead and generated."""
    size = max(ctx.cfg.batch_size * 4, 32)
    with ThreadPoolExecutor(1) as ahead:
        chunks = read_items(ctx, path, side, size)
        future: Future | None = None
        nxt = next(chunks, None)
        if nxt is not None:
            future = ahead.submit(plan_chunk, ctx, nxt, decode=True)
        while future is not None:
            items = future.result()
            nxt = next(chunks, None)
            future = ahead.submit(plan_chunk, ctx, nxt, decode=True) if nxt is not None else None
            generate_chunk(ctx, items, watch)
            yield items


class LocalEngine:
    """Runs the model in this process (``engine: local``)."""

    name = "local"
    loads_model = True

    def run(self, ctx: RunContext, files: list[InputFile], progress: Any) -> EngineRun:
        """Plan, generate and assemble each file in turn, streaming by chunks."""
        watch = AbortWatch(ctx.cfg.abort_after_failed_batches, "batches")
        done = [((path, side), assemble_file(ctx, path, side, _chunks(ctx, path, side, watch),
                                             progress))
                for path, side in files]
        return EngineRun(done, {"name": self.name})
