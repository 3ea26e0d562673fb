"""The search service: ad-hoc search (:class:`Searcher`), the HTTP API and the web page.

* :class:`Searcher`: one query (text and/or image, optional task instruction and candidate
  modality) against a dense, BM25 or hybrid index, with optional query-time enhancement
  through the same policy, prompts, store and backends as ``augret enhance``.
* :func:`create_app`: the FastAPI app (``POST /search``, ``GET /items/{id}/image``,
  ``GET /healthz`` and the page at ``/``) around a Searcher; :func:`serve` runs it with
  uvicorn.

fastapi and uvicorn are imported only by the app (``pip install 'augret[serve]'``).
"""

from __future__ import annotations

from typing import Any

from augret.serve.config import SearcherConfig, ServeConfig
from augret.serve.enhancer import Enhanced, QueryEnhancer
from augret.serve.query import AdhocQuery, Hit, QueryResult
from augret.serve.searcher import Searcher

__all__ = [
    "AdhocQuery",
    "Enhanced",
    "Hit",
    "QueryEnhancer",
    "QueryResult",
    "Searcher",
    "SearcherConfig",
    "ServeConfig",
    "create_app",
    "search_file",
    "serve",
]


def __getattr__(name: str) -> Any:  # the web layer loads fastapi only when asked for
    if name in ("create_app", "serve"):
        from augret.serve import app

        return getattr(app, name)
    if name == "search_file":
        from augret.serve.batch import search_file

        return search_file
    raise AttributeError(f"module 'augret.serve' has no attribute {name!r}")
