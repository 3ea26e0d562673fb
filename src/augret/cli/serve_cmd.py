"""``augret serve`` (the search service) and ``augret query`` (ad-hoc search from the shell)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from augret.errors import ConfigError

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _index_options(fn: Any) -> Any:
    """Options shared by ``serve`` and ``query``: what to search and how to enhance."""
    options = [
        click.argument("index_dir", type=click.Path(path_type=Path)),
        click.option("--bm25", "bm25_dir", type=click.Path(path_type=Path), default=None,
                     help="A BM25 index (or root) to fuse with the dense INDEX_DIR: hybrid "
                          "search (reciprocal rank fusion)."),
        click.option("--pool", default=None,
                     help="Pool to serve from an index root [default: union, or the only "
                          "one]."),
        click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
                     help="M-BEIR directory of the pool files [default: as recorded in the "
                          "index]."),
        click.option("--encoder", default=None,
                     help="Query encoder name or checkpoint [default: the index's]."),
        click.option("--device", default="auto", show_default=True,
                     help="Encoder device: auto, cpu, cuda..."),
        click.option("--rrf-k", type=float, default=60.0, show_default=True,
                     help="Hybrid RRF constant."),
        click.option("--max-pixels", type=int, default=40_000_000, show_default=True,
                     help="Largest accepted query image (width x height)."),
        click.option("--enhancer-backend",
                     type=click.Choice(["transformers", "openai", "vllm"]), default=None,
                     help="Query-time enhancement backend [default: transformers]."),
        click.option("--enhancer-model", default=None,
                     help="Query-time enhancement VLM (hub id, path or tiny preset); "
                          "enhancement is off without it (or --enhancer-config)."),
        click.option("--enhancer-base-url", default=None,
                     help="Server URL of the openai backend."),
        click.option("--enhancer-config", type=click.Path(path_type=Path), default=None,
                     help="YAML EnhanceConfig (as for augret enhance); flags win."),
        click.option("--store", type=click.Path(path_type=Path), default=None,
                     help="Generation store shared with augret enhance [default: the "
                          "per-user cache]."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _enhancer(backend: str | None, model: str | None, base_url: str | None,
              config_file: Path | None, store: Path | None) -> Any:
    if model is None and config_file is None:
        if backend or base_url:
            raise ConfigError("--enhancer-backend/--enhancer-base-url need --enhancer-model "
                              "(or --enhancer-config)")
        return None
    from augret.config import load_config
    from augret.enhance import EnhanceConfig
    from augret.serve.enhancer import QueryEnhancer

    cfg = load_config(EnhanceConfig, config_file, {"backend": backend, "model": model,
                                                   "base_url": base_url, "store": store})
    return QueryEnhancer(cfg)


def _searcher(index_dir: Path, bm25_dir: Path | None, pool: str | None,
              data_dir: Path | None, encoder: str | None, device: str, rrf_k: float,
              max_pixels: int, enhancer_backend: str | None, enhancer_model: str | None,
              enhancer_base_url: str | None, enhancer_config: Path | None,
              store: Path | None) -> Any:
    from augret.serve import Searcher

    enhancer = _enhancer(enhancer_backend, enhancer_model, enhancer_base_url, enhancer_config,
                         store)
    return Searcher.open(index_dir, bm25_dir=bm25_dir, pool=pool, data_dir=data_dir,
                         encoder=encoder, device=device, enhancer=enhancer, rrf_k=rrf_k,
                         max_pixels=max_pixels)


@click.command()
@_index_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (loopback only by default).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--api-key", envvar="AUGRET_API_KEY", default=None,
              help="Require this key on /search and /items (X-API-Key or Bearer); also "
                   "read from $AUGRET_API_KEY.")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow this origin cross-site (repeatable); CORS is off without it.")
@click.option("--max-k", type=int, default=100, show_default=True,
              help="Largest k a request may ask for.")
@click.option("--max-upload-mb", type=float, default=10.0, show_default=True,
              help="Largest query image file.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="uvicorn's log level.")
def serve(host: str, port: int, api_key: str | None, cors_origins: tuple[str, ...],
          max_k: int, max_upload_mb: float, log_level: str, **opts: Any) -> None:
    """Serve INDEX_DIR over HTTP: the search API and a web page at /.

    INDEX_DIR is a dense or BM25 index directory, or a root of one per pool (the union pool
    is served by default). Dense queries are embedded with the encoder recorded in the
    index; --enhancer-model turns on query-time enhancement through the same policy,
    prompts and generation store as `augret enhance`.
    """
    from augret.serve.app import ServeSettings
    from augret.serve.app import serve as run_server

    if host not in _LOOPBACK and not api_key:
        log.warning("listening on %s without an API key: anyone who can reach it can search",
                    host)
    settings = ServeSettings(max_k=max_k, default_k=min(10, max_k),
                             max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                             api_key=api_key, cors_origins=tuple(cors_origins))
    searcher = _searcher(**opts)
    try:
        run_server(searcher, settings, host=host, port=port, log_level=log_level)
    finally:
        searcher.close()


@click.command()
@_index_options
@click.option("--text", default=None, help="Query text.")
@click.option("--image", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Query image file.")
@click.option("--task", default=None, help="M-BEIR task whose instruction to use.")
@click.option("--instruction", default=None, help="A free-text instruction instead.")
@click.option("--modality", type=click.Choice(["text", "image", "image,text"]), default=None,
              help="Keep only candidates of this modality.")
@click.option("--file", "query_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="JSONL file of queries (text, image, task, ...) to search "
                                 "in batch.")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="With --file: the JSONL results file.")
@click.option("--run", "run_file", type=click.Path(path_type=Path), default=None,
              help="With --file: also write a TREC run file.")
@click.option("-k", "--k", "k", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def query(text: str | None, image: Path | None, task: str | None, instruction: str | None,
          modality: str | None, query_file: Path | None, out_file: Path | None,
          run_file: Path | None, k: int, as_json: bool, **opts: Any) -> None:
    """Search INDEX_DIR with one query (--text and/or --image) or a file of them (--file)."""
    from augret.serve import AdhocQuery

    if query_file is not None:
        if out_file is None:
            raise ConfigError("--file needs --out")
        if text or image:
            raise ConfigError("give --file or --text/--image, not both")
    elif out_file is not None or run_file is not None:
        raise ConfigError("--out and --run go with --file")
    searcher = _searcher(**opts)
    try:
        if query_file is not None:
            from augret.serve.batch import search_file

            n = search_file(searcher, query_file, out_file, k=k, run=run_file)
            click.echo(f"searched {n} queries into {out_file}")
            return
        res = searcher.search(AdhocQuery(text=text, image=image, task=task,
                                         instruction=instruction, modality=modality), k)
    finally:
        searcher.close()
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
        return
    _show(res)


def _show(res: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"query: {res.original!r} → searched as {res.rewritten!r}"
                  + (f" ({res.enhancement['route']}: {res.enhancement['status']})"
                     if res.enhancement else ""))
    table = Table()
    for col in ("rank", "id", "score", "modality", "text / image"):
        table.add_column(col, overflow="fold")
    for h in res.hits:
        table.add_row(str(h.rank), h.id, f"{h.score:.4f}", h.modality or "",
                      h.text or (str(h.image_path) if h.image_path else ""))
    console.print(table)
