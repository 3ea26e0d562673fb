"""Batch ad-hoc search: a JSONL file of queries in, a JSONL file of results (and a run) out.

Each input line is an object with any of ``qid``, ``text``, ``image`` (a path, relative to
the input file's folder unless absolute), ``task``, ``instruction`` and ``modality``. M-BEIR
query lines (``qid``, ``query_txt``, ``query_img_path``) are accepted too; their images are
resolved against ``image_root`` (default: the input file's folder).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from augret.data.jsonl import atomic_writer, iter_jsonl
from augret.errors import AugretError, ConfigError, DataFormatError
from augret.serve.query import AdhocQuery
from augret.serve.searcher import Searcher

__all__ = ["read_queries", "search_file"]

log = logging.getLogger(__name__)

_KEYS = {"qid", "text", "image", "task", "instruction", "modality"}
_MBEIR_KEYS = {"query_txt", "query_img_path"}


def _opt_str(obj: dict[str, Any], key: str, path: Path, line: int) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise DataFormatError(f"expected a string, got {type(value).__name__}", path=path,
                              line=line, field=key)
    return value


def read_queries(path: str | Path, *, image_root: str | Path | None = None
                 ) -> Iterator[AdhocQuery]:
    """Stream the queries of a JSONL file (see the module docstring).

    Raises:
        DataFormatError: A line is not an object of the accepted fields; it names the line.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise DataFormatError("expected a JSON object", path=path, line=line)
        mbeir = bool(_MBEIR_KEYS & obj.keys())
        text_key, image_key = ("query_txt", "query_img_path") if mbeir else ("text", "image")
        image = _opt_str(obj, image_key, path, line)
        if not mbeir:
            unknown = sorted(set(obj) - _KEYS)
            if unknown:
                raise DataFormatError(f"unknown field(s) {unknown}; accepted: {sorted(_KEYS)}",
                                      path=path, line=line)
        qid = obj.get("qid")
        yield AdhocQuery(text=_opt_str(obj, text_key, path, line),
                         image=(root / image) if image else None,
                         task=None if mbeir else _opt_str(obj, "task", path, line),
                         instruction=None if mbeir else _opt_str(obj, "instruction", path, line),
                         modality=None if mbeir else _opt_str(obj, "modality", path, line),
                         qid=str(qid) if qid is not None else f"q{line}")


def search_file(searcher: Searcher, queries: str | Path, out: str | Path, *, k: int = 10,
                batch_size: int = 32, run: str | Path | None = None,
                image_root: str | Path | None = None) -> int:
    """Search every query of a JSONL file.

    Args:
        searcher: The searcher.
        queries: The query file.
        out: The result file: one JSON object per query (``qid``, ``query``, ``hits``).
        k: Hits per query.
        batch_size: Queries searched (and embedded) together.
        run: Also write a TREC run file (6 columns) here.
        image_root: Folder image paths are relative to (default: the query file's).

    Returns:
        The number of queries searched.

    Raises:
        ConfigError: Two queries share a qid (with ``run``).
    """
    from augret.evaluate.runs import Run, write_run

    rankings: dict[str, dict[str, float]] = {}
    n = 0
    batch: list[AdhocQuery] = []
    with atomic_writer(Path(out)) as f:
        def flush() -> None:
            try:
                results = searcher.search_many(batch, k, batch_size=batch_size)
            except AugretError:
                log.error("%s: the batch of queries %s failed", queries,
                          ", ".join(str(q.qid) for q in batch))
                raise
            for res in results:
                f.write(json.dumps(res.to_dict(), ensure_ascii=False) + "\n")
                if run is not None:
                    if res.qid in rankings:
                        raise ConfigError(f"qid {res.qid!r} occurs twice in {queries}")
                    rankings[str(res.qid)] = {h.id: h.score for h in res.hits}
            batch.clear()

        for q in read_queries(queries, image_root=image_root):
            batch.append(q)
            n += 1
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    if run is not None:
        write_run(Path(run), Run.from_dict(rankings, depth=k))
    log.info("searched %d queries from %s into %s", n, queries, out)
    return n
