"""``augret embed``: embed an M-BEIR directory with a retriever encoder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from augret.cli.options import RAY_FLAGS, ConfigArgs, config_command, flag, load_engine_config


def _pools(value: str) -> list[str] | str:
    return [] if value.strip().lower() in ("", "none") else value


@config_command(config="augret.encode.config:EmbedConfig", flags=(
    flag("--encoder"), flag("--split"),
    flag("--pools", convert=_pools, note="'none' for queries only."),
    flag("--no-queries", key="queries", value=False, help="Embed pools only."),
    flag("--tasks"), flag("--instruction"), flag("--batch-size"), flag("--shard-size"),
    flag("--device"), flag("--precision"), flag("--backbone"), flag("--context-length"),
    flag("--on-missing-image"), flag("--overwrite"), flag("--engine"), *RAY_FLAGS))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Embedding directory (resumed when it holds the same config).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print meta.json.")
def embed(data_dir: Path, out_dir: Path, config: ConfigArgs, no_progress: bool,
          as_json: bool) -> None:
    """Embed the query files and candidate pools of DATA_DIR (raw or enhanced) into --out.

    Writes fp16 shards with aligned id files and meta.json (docs/formats.md); re-running
    the same command resumes at the first incomplete shard. With --engine ray a pool of Ray
    actors embeds whole shards and this process writes them in order: the same files, and
    either engine resumes the other's directory. Workers read the data by the same paths
    (a shared file system on a cluster).
    """
    from augret.encode import embed_dir

    cfg = load_engine_config(config)
    meta = embed_dir(data_dir, out_dir, cfg, progress=not no_progress)
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    norm = "normalised" if meta.get("normalized") else "un-normalised"
    table = Table(title=f"{out_dir}: {cfg.encoder} (dim {meta['dim']}, fp16, {norm})")
    for col in ("entry", "rows", "shards", "truncated", "skipped"):
        table.add_column(col, justify="left" if col == "entry" else "right")
    for name, e in meta["entries"].items():
        table.add_row(name, str(e["rows"]), str(e["shards"]), str(e["truncated"]),
                      str(e["skipped"]))
    console = Console()
    console.print(table)
    run = meta.get("run") or {}
    stages = run.get("stages") or {}
    if stages:
        where = (f"ray, {run['workers']} worker(s), {run['gpus']:g} GPU"
                 if run.get("engine") == "ray" else f"local, {run.get('gpus', 0):g} GPU")
        rates = ", ".join(f"{name} {s['rows_per_s']:.1f} rows/s" for name, s in stages.items())
        console.print(f"{where}: {rates}", soft_wrap=True)
    if meta.get("union"):
        console.print(f"union = {' + '.join(meta['union'])}", soft_wrap=True)
