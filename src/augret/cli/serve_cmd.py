"""``augret serve`` (the search service) and ``augret query`` (ad-hoc search from the shell)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from augret.cli.options import ConfigArgs, Flag, config_command, flag
from augret.errors import ConfigError

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _searcher_flags(prefix: str) -> tuple[Flag, ...]:
    """Flags shared by ``serve`` and ``query``: what to search and how to enhance."""
    p = prefix
    return (
        flag("--bm25", key=f"{p}bm25_dir"), flag("--pool", key=f"{p}pool"),
        flag("--data", key=f"{p}data_dir"), flag("--encoder", key=f"{p}encoder"),
        flag("--device", key=f"{p}device"), flag("--rrf-k", key=f"{p}rrf_k"),
        flag("--max-pixels", key=f"{p}max_pixels"),
        flag("--enhancer-backend", key=f"{p}enhance.backend"),
        flag("--enhancer-model", key=f"{p}enhance.model",
             note="Query-time enhancement is off unless this, --enhancer-config or an "
                  "enhance section turns it on."),
        flag("--enhancer-base-url", key=f"{p}enhance.base_url"),
        flag("--store", key=f"{p}enhance.store"),
    )


def _enhancer_config_option(fn: Any) -> Any:
    return click.option("--enhancer-config", type=click.Path(path_type=Path), default=None,
                        help="YAML EnhanceConfig (as for augret enhance) of query-time "
                             "enhancement; --set and flags win.")(fn)


def _load(config: ConfigArgs, prefix: str, enhancer_config: Path | None) -> Any:
    """The resolved config; the enhancer flags other than the model apply only when
    something turned enhancement on."""
    from augret.config import read_yaml

    base = {f"{prefix}enhance": read_yaml(enhancer_config)} if enhancer_config else None
    held = [f"{prefix}enhance.{k}" for k in ("backend", "base_url", "store")]
    cfg = config.load(base=base, skip=held)
    if (cfg.searcher if prefix else cfg).enhance is not None:
        return config.load(base=base)
    if any(k in config.flags for k in held[:2]):
        raise ConfigError("--enhancer-backend/--enhancer-base-url need --enhancer-model "
                          "(or --enhancer-config)")
    return cfg


def _searcher(index_dir: Path, cfg: Any) -> Any:
    from augret.serve import Searcher

    enhancer = None
    if cfg.enhance is not None:
        from augret.serve.enhancer import QueryEnhancer

        enhancer = QueryEnhancer(cfg.enhance)
    return Searcher.open(index_dir, bm25_dir=cfg.bm25_dir, pool=cfg.pool,
                         data_dir=cfg.data_dir, encoder=cfg.encoder, device=cfg.device,
                         enhancer=enhancer, rrf_k=cfg.rrf_k, max_pixels=cfg.max_pixels)


def _mb(value: float) -> int:
    return int(value * 1024 * 1024)


@config_command(config="augret.serve.config:ServeConfig", flags=(
    *_searcher_flags("searcher."), flag("--host"), flag("--port"),
    flag("--api-key", envvar="AUGRET_API_KEY",
         note="Also read from $AUGRET_API_KEY."),
    flag("--cors-origin", key="cors_origins", multiple=True,
         note="Repeatable."),
    flag("--max-k"),
    flag("--max-upload-mb", key="max_upload_bytes", convert=_mb,
         help="Largest query image file, in MB.", show=lambda b: f"{b / 2**20:g}"),
    flag("--log-level")))
@click.argument("index_dir", type=click.Path(path_type=Path))
@_enhancer_config_option
def serve(index_dir: Path, config: ConfigArgs, enhancer_config: Path | None) -> None:
    """Serve INDEX_DIR over HTTP: the search API and a web page at /.

    INDEX_DIR is a dense or BM25 index directory, or a root of one per pool (the union pool
    is served by default). Dense queries are embedded with the encoder recorded in the
    index; --enhancer-model turns on query-time enhancement through the same policy,
    prompts and generation store as `augret enhance`.
    """
    from augret.serve.app import serve as run_server

    cfg = _load(config, "searcher.", enhancer_config)
    if cfg.host not in _LOOPBACK and not cfg.api_key:
        log.warning("listening on %s without an API key: anyone who can reach it can search",
                    cfg.host)
    searcher = _searcher(index_dir, cfg.searcher)
    try:
        run_server(searcher, cfg)
    finally:
        searcher.close()


@config_command(config="augret.serve.config:SearcherConfig", flags=_searcher_flags(""))
@click.argument("index_dir", type=click.Path(path_type=Path))
@_enhancer_config_option
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
def query(index_dir: Path, config: ConfigArgs, enhancer_config: Path | None, text: str | None,
          image: Path | None, task: str | None, instruction: str | None, modality: str | None,
          query_file: Path | None, out_file: Path | None, run_file: Path | None, k: int,
          as_json: bool) -> None:
    """Search INDEX_DIR with one query (--text and/or --image) or a file of them (--file)."""
    from augret.serve import AdhocQuery

    if query_file is not None:
        if out_file is None:
            raise ConfigError("--file needs --out")
        if text or image:
            raise ConfigError("give --file or --text/--image, not both")
    elif out_file is not None or run_file is not None:
        raise ConfigError("--out and --run go with --file")
    searcher = _searcher(index_dir, _load(config, "", enhancer_config))
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
