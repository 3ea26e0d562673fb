"""``augret index {build,bm25,info,fuse}`` and ``augret search``: indexes and run files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from augret.cli.options import ConfigArgs, config_command, flag
from augret.errors import ConfigError


def _console():
    from rich.console import Console

    return Console()


def _target(pool: str | None, union: bool, all_: bool) -> str | None:
    """The single pool to build, or ``None`` for every pool (``--all`` or no flag)."""
    if sum([pool is not None, union, all_]) > 1:
        raise ConfigError("give at most one of --pool, --union and --all")
    return "union" if union else pool


def _show_built(dirs: dict[str, Path]) -> None:
    from rich.table import Table

    from augret.formats.indexes import read_meta

    table = Table(title="indexes")
    for col in ("pool", "kind", "rows", "dim", "recall", "seconds", "directory"):
        table.add_column(col, justify="right" if col in ("rows", "dim", "recall", "seconds")
                         else "left", overflow="fold")
    for pool, path in dirs.items():
        meta = read_meta(path)
        rec = meta.get("recall")
        kind = f"{meta['backend']} {meta['kind']}" if meta.get("backend") else meta["kind"]
        table.add_row(pool, kind, f"{meta.get('count', 0):,}",
                      str(meta.get("dimension", "-")),
                      f"{rec['recall']:.4f}@{rec['k']}" if rec else "-",
                      f"{meta.get('build_seconds', 0):.1f}", str(path))
    _console().print(table)


def _memory_cells(meta: dict, path: Path) -> list[str]:
    """The fp32, fp16, RAM, mapped, GPU and per-GPU cells of an index (vectors only)."""
    from augret.experiment.plan_render import human_bytes
    from augret.formats.indexes import payload_path
    from augret.index.backends import backend_of

    backend = backend_of(meta, path=path)
    if backend.memory is None:  # e.g. BM25: its files, loaded
        payload = payload_path(path, meta["kind"])
        files = payload.rglob("*") if payload.is_dir() else [payload]
        return ["-", "-", human_bytes(sum(f.stat().st_size for f in files if f.is_file())),
                "-", "-", "-"]
    m = backend.memory(meta, path)
    return [human_bytes(m.fp32 or 0), human_bytes(m.fp16 or 0), human_bytes(m.ram),
            human_bytes(m.mapped) if m.mapped else "-",
            "-" if m.gpu is None else human_bytes(m.gpu),
            human_bytes(m.gpu_per_device) if m.gpu_per_device else "-"]


def _show_memory(dirs: dict[str, Path]) -> None:
    from rich.table import Table

    from augret.formats.indexes import read_meta

    table = Table(title="search memory of the vectors (RAM: a CPU search; mapped: read from "
                        "the index directory through the page cache, never copied; GPU: all "
                        "GPUs together, +/GPU: each GPU's block)")
    for col in ("pool", "fp32", "fp16", "RAM", "mapped", "GPU", "+/GPU"):
        table.add_column(col, justify="left" if col == "pool" else "right",
                         overflow="fold" if col == "pool" else "ellipsis")
    for pool, path in dirs.items():
        table.add_row(pool, *_memory_cells(read_meta(path), path))
    _console().print(table)


@click.group()
def index() -> None:
    """Build dense (FAISS, flat16 or Milvus) and BM25 indexes; fuse run directories."""


@config_command("build", group=index, config="augret.index.config:IndexConfig", flags=(
    flag("--kind"), flag("--nlist"), flag("--nprobe"), flag("--hnsw-m"),
    flag("--ef-construction"), flag("--ef-search"), flag("--pq-m"), flag("--pq-nbits"),
    flag("--train-size"), flag("--recall-queries"), flag("--recall-k"), flag("--seed"),
    flag("--gpu")))
@click.argument("emb_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Index directory (with --pool/--union) or root of one per pool.")
@click.option("--pool", default=None, help="Index one pools/<NAME> entry.")
@click.option("--union", is_flag=True, help="Index the union pool.")
@click.option("--all", "all_", is_flag=True,
              help="Every local pool into OUT/<pool>/ and the union into OUT/union/ "
                   "(the default).")
@click.option("--modalities/--no-modalities", default=None,
              help="Store candidate modalities for filtering [default: when the pool files "
                   "are found].")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="M-BEIR directory of the pool files (default: the embedding meta's).")
@click.option("--force", is_flag=True, help="Rebuild even when up to date.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--backend", default="faiss", show_default=True,
              help="faiss (index files), flat16 (the exact kind over float16 shards: "
                   "kind=flat16), or milvus: one Milvus collection for every pool, with BM25 "
                   "over the candidate texts (--config/--set take MilvusConfig keys then).")
@click.option("--uri", default=None,
              help="With --backend milvus: the server (http://HOST:19530; its token from "
                   "$MILVUS_TOKEN) or a Milvus Lite file (*.db) [default: OUT/milvus.db].")
@click.option("--collection", default=None,
              help="With --backend milvus: the collection [default: augret_<OUT name>].")
def build(emb_dir: Path, out_dir: Path, pool: str | None, union: bool, all_: bool,
          config: ConfigArgs, modalities: bool | None, data_dir: Path | None,
          force: bool, no_progress: bool, backend: str, uri: str | None,
          collection: str | None) -> None:
    """Build dense indexes (FAISS kinds, the exact flat16, or a Milvus collection) from the
    pool entries of EMB_DIR."""
    from augret.index.backends import BACKENDS
    from augret.index.build import build_indexes

    chosen = BACKENDS.get(backend)
    if chosen is None or backend == "bm25":
        raise ConfigError(f"--backend {backend!r}: use one of "
                          f"{[n for n in BACKENDS if n != 'bm25']} (BM25: augret index bm25)")
    given = {k: v for k, v in (("uri", uri), ("collection", collection)) if v is not None}
    if given and backend != "milvus":
        raise ConfigError("--uri and --collection go with --backend milvus")
    if backend == "flat16":
        given["kind"] = "flat16"  # IndexConfig's kind names the backend
    if "backend" in {f.name for f in dataclasses.fields(chosen.config)}:
        given["backend"] = backend  # a config class several backends share names its backend
    config = dataclasses.replace(config, cls=chosen.config, flags={**config.flags, **given})
    dirs = build_indexes(emb_dir, out_dir, config.load(), pool=_target(pool, union, all_),
                         modalities=modalities, data_dir=data_dir, force=force,
                         progress=not no_progress)
    _show_built(dirs)


@config_command("bm25", group=index, config="augret.index.config:BM25Config", flags=(
    flag("--k1"), flag("--b"), flag("--method"), flag("--stopwords"), flag("--stemmer"),
    flag("--text-field")))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Index directory (with --pool/--union) or root of one per pool.")
@click.option("--pool", default=None, help="Index one local pool (file stem).")
@click.option("--union", is_flag=True, help="Index the union pool.")
@click.option("--all", "all_", is_flag=True,
              help="Every local pool into OUT/<pool>/ and the union into OUT/union/ "
                   "(the default).")
@click.option("--force", is_flag=True, help="Rebuild even when up to date.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def bm25(data_dir: Path, out_dir: Path, pool: str | None, union: bool, all_: bool,
         config: ConfigArgs, force: bool, no_progress: bool) -> None:
    """Build BM25 indexes over the candidate texts of DATA_DIR (an M-BEIR directory)."""
    from augret.index.build import build_indexes

    dirs = build_indexes(data_dir, out_dir, config.load(), pool=_target(pool, union, all_),
                         force=force, progress=not no_progress)
    _show_built(dirs)


@index.command("info")
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print meta.json as JSON.")
def info(index_dir: Path, as_json: bool) -> None:
    """Describe INDEX_DIR (an index directory or a root of them), with the memory a search
    of each index needs: the vectors as float32 and float16, the RAM of a CPU search (flat16:
    one block, plus the float16 vectors memory-mapped from disk) and the GPU memory of a GPU
    search."""
    from augret.formats.indexes import index_dirs, read_meta

    dirs = index_dirs(index_dir)
    if as_json:
        click.echo(json.dumps({p: read_meta(d) for p, d in dirs.items()}, indent=2))
        return
    _show_built(dirs)
    _show_memory(dirs)


@index.command("fuse")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory of the fused runs.")
@click.option("--weights", default=None, help="Comma-separated weight per run directory.")
@click.option("--rrf-k", type=float, default=60, show_default=True, help="RRF constant.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Documents per query [default: the deepest input].")
def fuse(run_dirs: tuple[Path, ...], out_dir: Path, weights: str | None, rrf_k: float,
         depth: int | None) -> None:
    """Reciprocal rank fusion of RUN_DIRS (e.g. dense and BM25) into --out."""
    from augret.index.fusion import fuse_run_dirs

    w = None
    if weights:
        try:
            w = [float(x) for x in weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights must be comma-separated numbers, got {weights!r}"
                              ) from None
    written = fuse_run_dirs(run_dirs, out_dir, w, rrf_k, depth=depth)
    _console().print(f"{len(written)} fused run file(s) in {out_dir}")


@config_command(config="augret.index.config:SearchConfig", flags=(
    flag("--k"), flag("--batch-size"), flag("--filter-modality"), flag("--nprobe"),
    flag("--ef-search"), flag("--gpu"), flag("--device"), flag("--block-mb"),
    flag("--threads"), flag("--tag")))
@click.argument("queries", type=click.Path(path_type=Path))
@click.option("--index", "index_path", required=True, type=click.Path(path_type=Path),
              help="Index directory or root of them (<pool>/, union/).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory: <task>_<local|union>.run files.")
@click.option("--pool", type=click.Choice(["local", "union", "both"]), default="both",
              show_default=True, help="Which runs to produce.")
@click.option("--task", "tasks", multiple=True, help="Only these tasks (repeatable).")
@click.option("--query-field", type=click.Choice(["query_txt", "query_txt_raw"]),
              default="query_txt", show_default=True, help="BM25 query text.")
@click.option("--force", is_flag=True, help="Search again even when runs are up to date.")
def search(queries: Path, index_path: Path, out_dir: Path, pool: str, tasks: tuple[str, ...],
           config: ConfigArgs, query_field: str, force: bool) -> None:
    """Search QUERIES in --index and write run files to --out.

    QUERIES is an embedding directory for dense indexes, or an M-BEIR directory (query
    texts) for BM25 indexes.
    """
    from augret.index.runs import search_to_run_dir

    cfg = config.load()
    pools = ("local", "union") if pool == "both" else (pool,)
    written = search_to_run_dir(queries, index_path, out_dir, cfg, pools=pools,
                                tasks=tasks or None, query_field=query_field, force=force)
    from rich.table import Table

    table = Table(title=f"runs in {out_dir}")
    for col in ("task", "pool", "file"):
        table.add_column(col)
    for (task, p), path in written.items():
        table.add_row(task, p, path.name)
    _console().print(table)
