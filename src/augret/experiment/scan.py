"""Scan the files of one enhancement stage: routes, de-duplicated generation keys, missing images.

A generation key is what the enhancement store is keyed by, less what is fixed in a run
(model, prompt set, decoding): the route, the text sent (routes that send text) and the image
sent (routes that send an image). Images are identified by the SHA-256 of their bytes, as
the store does, so a file copied to several places is generated once; ``fast`` mode uses the
resolved path instead (no image is read; copies count separately). Missing images are keyed
by path in both modes and reported.

Memory stays bounded whatever the data size: records are streamed, distinct keys cost 8 bytes
each (:class:`~augret.experiment._unique.UniqueCounter`) and the path→digest cache is capped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from augret.data.mbeir import MBEIRDir, iter_candidates, iter_queries
from augret.data.records import Candidate, Query
from augret.enhance.policy import Policy, route
from augret.experiment._unique import UniqueCounter, key_hash

__all__ = ["KeyScanner", "RouteCount", "StageScan"]

log = logging.getLogger(__name__)

_CHUNK = 2048
_CACHE_MAX = 1 << 17


@dataclass
class RouteCount:
    """Rows of one route in a stage, and its distinct generation keys."""

    rows: int = 0
    unique: int = 0
    new_unique: int = 0
    missing_rows: int = 0


@dataclass
class StageScan:
    """What one ``(split, side)`` stage holds.

    Attributes:
        split: The split.
        side: ``queries`` or ``candidates``.
        files: Per file: path (relative to the data dir), rows, passthrough, generate.
        rows: Rows read.
        passthrough: Rows without an image (unchanged).
        generate: Rows routed to the VLM (including those whose image is missing).
        by_route: Per generating route.
        unique_keys: Distinct generation keys of the stage.
        new_unique_keys: Of those, the ones no earlier stage of the plan had.
        unique_images: Distinct images sent by the stage.
        missing_image_rows: Generating rows whose image file is absent or unreadable.
        missing_images: Distinct missing image paths.
        missing_examples: A few missing paths.
    """

    split: str
    side: str
    files: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    passthrough: int = 0
    generate: int = 0
    by_route: dict[str, RouteCount] = field(default_factory=dict)
    unique_keys: int = 0
    new_unique_keys: int = 0
    unique_images: int = 0
    missing_image_rows: int = 0
    missing_images: int = 0
    missing_examples: list[str] = field(default_factory=list)


def _chunks(it: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(it)
    while chunk := list(islice(it, size)):
        yield chunk


def _sha256_file(path: Path) -> str | None:
    """SHA-256 of a file's bytes; ``None`` when it is missing, unreadable or empty."""
    h = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
                size += len(block)
    except OSError:
        return None
    return h.hexdigest() if size else None


class KeyScanner:
    """Scans stages one after the other, de-duplicating keys within and across stages.

    Args:
        data: The data directory (images resolve against its image root).
        policy: The enhancement policy (routes and budgets).
        fast: Identify images by path, without reading them.
        workers: Threads reading and hashing images (bytes mode).
    """

    def __init__(self, data: MBEIRDir, policy: Policy, *, fast: bool = False,
                 workers: int = 8) -> None:
        self.data = data
        self.policy = policy
        self.fast = fast
        self.workers = max(1, workers)
        self.keys: dict[str, UniqueCounter] = {}  # per route, over all stages so far
        self.images = UniqueCounter()
        self.missing = UniqueCounter()
        self._cache: dict[str, tuple[str, bool]] = {}

    # ---- images ------------------------------------------------------------------------
    def _image_key(self, rel: str) -> tuple[str, bool]:
        """``(key, missing)`` of an image path as stored in a record."""
        hit = self._cache.get(rel)
        if hit is not None:
            return hit
        path = self.data.resolve_image(rel)
        if self.fast:
            missing = not path.is_file()
            out = (f"path:{os.path.normpath(path)}", missing)
        else:
            digest = _sha256_file(path)
            missing = digest is None
            out = (f"path:{os.path.normpath(path)}", True) if missing else (f"sha256:{digest}",
                                                                            False)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[rel] = out
        return out

    def _image_keys(self, pool: ThreadPoolExecutor, rels: list[str]) -> dict[str, tuple[str, bool]]:
        todo = list(dict.fromkeys(rels))
        if self.fast or len(todo) < 4:
            return {r: self._image_key(r) for r in todo}
        return dict(zip(todo, pool.map(self._image_key, todo), strict=True))

    # ---- stages ------------------------------------------------------------------------
    def scan(self, split: str, side: str, files: list[Path]) -> StageScan:
        """Scan one stage's files (``side``: ``queries`` or ``candidates``)."""
        out = StageScan(split, side)
        stage_keys: dict[str, UniqueCounter] = {}
        stage_images, stage_missing = UniqueCounter(), UniqueCounter()
        reader = iter_queries if side == "queries" else iter_candidates
        with ThreadPoolExecutor(self.workers) as pool:
            for path in files:
                counts = {"rows": 0, "passthrough": 0, "generate": 0, "missing_image_rows": 0}
                for chunk in _chunks(reader(path), _CHUNK):
                    self._scan_chunk(pool, chunk, out, counts, stage_keys, stage_images,
                                     stage_missing)
                try:
                    rel = str(path.relative_to(self.data.root))
                except ValueError:
                    rel = str(path)
                out.files.append({"file": rel, **counts})
                log.info("%s: %s", rel, counts)
        for name, counter in stage_keys.items():
            rc = out.by_route[name]
            rc.unique = len(counter)
            rc.new_unique = self.keys.setdefault(name, UniqueCounter()).update(counter)
        out.unique_keys = sum(rc.unique for rc in out.by_route.values())
        out.new_unique_keys = sum(rc.new_unique for rc in out.by_route.values())
        out.unique_images = len(stage_images)
        out.missing_images = len(stage_missing)
        self.images.update(stage_images)
        self.missing.update(stage_missing)
        return out

    def _scan_chunk(self, pool: ThreadPoolExecutor, chunk: list[Query | Candidate],
                    out: StageScan, counts: dict[str, int], stage_keys: dict[str, UniqueCounter],
                    stage_images: UniqueCounter, stage_missing: UniqueCounter) -> None:
        routed = [(rec, route(rec, self.policy)) for rec in chunk]
        images = self._image_keys(pool, [rec.image_path or "" for rec, r in routed
                                         if r.send_image])
        for rec, r in routed:
            counts["rows"] += 1
            out.rows += 1
            if not r.generates:
                counts["passthrough"] += 1
                out.passthrough += 1
                continue
            counts["generate"] += 1
            out.generate += 1
            rc = out.by_route.setdefault(r.kind, RouteCount())
            rc.rows += 1
            image_key = None
            if r.send_image:
                image_key, missing = images[rec.image_path or ""]
                stage_images.add(key_hash(image_key))
                if missing:
                    rc.missing_rows += 1
                    counts["missing_image_rows"] += 1
                    out.missing_image_rows += 1
                    stage_missing.add(key_hash(image_key))
                    if len(out.missing_examples) < 5 and image_key not in out.missing_examples:
                        out.missing_examples.append(image_key.removeprefix("path:"))
            text = rec.text if r.send_text else None
            stage_keys.setdefault(r.kind, UniqueCounter()).add(key_hash(r.kind, text, image_key))

