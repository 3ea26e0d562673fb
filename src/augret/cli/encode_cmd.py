"""``augret embed``: embed an M-BEIR directory with a retriever encoder."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _pools(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [] if value.strip().lower() in ("", "none") else value


@click.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--encoder", default=None,
              help="Registered name (clip_sf-vit-l-14, clip_sf-vit-b-32, tiny, ...), "
                   "open_clip:MODEL[:TAG], hf:ID_OR_PATH, a UniIR .pth or an augret "
                   "checkpoint / training output directory.  [default: clip_sf-vit-l-14]")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Embedding directory (resumed when it holds the same config).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML file overlaid on the defaults; flags win.")
@click.option("--split", default=None, help="Query split: test (default), val...")
@click.option("--pools", default=None,
              help="Comma-separated: local, union; 'none' for queries only.  [default: local]")
@click.option("--no-queries", is_flag=True, default=None, help="Embed pools only.")
@click.option("--tasks", default=None, help="Only these tasks, e.g. cirr_task7,oven_task8.")
@click.option("--instruction", type=click.Choice(["first", "random", "none"]), default=None,
              help="Query instruction: prompt_1 (default), seeded random, or none.")
@click.option("--batch-size", type=int, default=None)
@click.option("--shard-size", type=int, default=None, help="Rows per shard [default: 50000].")
@click.option("--workers", type=int, default=None,
              help="--engine local: image-decoding data loader workers; --engine ray: Ray "
                   "actors, each holding one encoder (and decoding its images in "
                   "cpus-per-worker - 1 processes).  [default: 4]")
@click.option("--device", default=None,
              help="auto (default), cpu, cuda, cuda:1... (--engine ray: auto is cuda when "
                   "--gpus-per-worker > 0, else cpu).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default=None,
              help="auto: fp16 autocast on CUDA (UniIR), fp32 on CPU.")
@click.option("--backbone", default=None,
              help="open_clip architecture of a UniIR .pth (default: inferred from shapes).")
@click.option("--context-length", type=int, default=None,
              help="Text context length (at most the model's).")
@click.option("--on-missing-image", type=click.Choice(["skip", "error", "drop"]), default=None,
              help="skip (recorded in skipped.jsonl; default), error, or drop the image.")
@click.option("--overwrite", is_flag=True, default=None,
              help="Replace an output directory made with another config.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="local: this process (default); ray: a Ray Data pool of --workers "
                   "encoder actors, output byte-identical to local.")
@click.option("--address", default=None,
              help="--engine ray: Ray cluster address (auto, ray://HOST:10001); default: "
                   "$RAY_ADDRESS or a local Ray instance.")
@click.option("--gpus-per-worker", type=float, default=None,
              help="--engine ray: GPUs each actor reserves [default: 0, CPU actors].")
@click.option("--cpus-per-worker", type=float, default=None,
              help="--engine ray: CPUs each actor reserves (its torch threads) [default: 1].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print meta.json.")
def embed(data_dir: Path, out_dir: Path, config_file: Path | None, no_progress: bool,
          as_json: bool, no_queries: bool | None, pools: str | None, **flags: object) -> None:
    """Embed the query files and candidate pools of DATA_DIR (raw or enhanced) into --out.

    Writes fp16 shards with aligned id files and meta.json (docs/formats.md); re-running
    the same command resumes at the first incomplete shard. With --engine ray a pool of Ray
    actors embeds whole shards and this process writes them in order: the same files, and
    either engine resumes the other's directory. Workers read the data by the same paths
    (a shared file system on a cluster).
    """
    from augret.config import load_config
    from augret.encode import EmbedConfig, embed_dir

    flags["queries"] = False if no_queries else None
    flags["pools"] = _pools(pools)
    cfg = load_config(EmbedConfig, config_file, flags)
    meta = embed_dir(data_dir, out_dir, cfg, progress=not no_progress)
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out_dir}: {cfg.encoder} (dim {meta['dim']}, fp16, un-normalised)")
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
