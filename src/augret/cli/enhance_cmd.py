"""``augret enhance``: VLM enhancement of an M-BEIR directory."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output directory (an enhanced M-BEIR directory).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML file overlaid on the defaults; flags win.")
@click.option("--split", default=None, help="test (default), val or train.")
@click.option("--side", type=click.Choice(["queries", "candidates", "both"]), default=None)
@click.option("--backend", type=click.Choice(["transformers", "openai", "vllm"]), default=None)
@click.option("--model", default=None,
              help="Hub id, local path or tiny (random weights: meaningless text).")
@click.option("--revision", default=None)
@click.option("--base-url", default=None, help="Server URL of the openai backend.")
@click.option("--mode", type=click.Choice(["replace", "append"]), default=None)
@click.option("--files", default=None, help="Glob on file paths/names to restrict the run.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Generation store (default: the per-user cache).")
@click.option("--prompts", default=None, help="Prompt set name or YAML file.")
@click.option("--query-tokens", type=int, default=None, help="Output budget of queries.")
@click.option("--candidate-tokens", type=int, default=None, help="Output budget of candidates.")
@click.option("--batch-size", type=int, default=None)
@click.option("--max-pixels", type=int, default=None)
@click.option("--workers", type=int, default=None,
              help="Image decoding threads; with --engine ray: Ray workers, one model each.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="local (this process, the default) or ray (a Ray Data pipeline; the same "
                   "output). See docs/scaling.md.")
@click.option("--address", "ray_address", default=None,
              help="Ray cluster address (default: start a local Ray or join $RAY_ADDRESS).")
@click.option("--gpus-per-worker", type=float, default=None,
              help="GPUs each Ray worker reserves (0 on CPU).")
@click.option("--cpus-per-worker", type=float, default=None,
              help="CPUs each Ray worker reserves.")
@click.option("--temperature", type=float, default=None, help="0 = greedy (default).")
@click.option("--seed", type=int, default=None)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def enhance(data_dir: Path, out_dir: Path, config_file: Path | None, no_progress: bool,
            as_json: bool, **flags: object) -> None:
    """Rewrite queries and caption candidates of DATA_DIR with a VLM into --out."""
    from augret.config import load_config
    from augret.enhance import EnhanceConfig
    from augret.enhance import enhance as run

    workers = flags.pop("workers")
    cfg = load_config(EnhanceConfig, config_file, flags)
    if workers is not None:  # the flag means Ray workers under the ray engine
        field = "ray_workers" if cfg.engine == "ray" else "workers"
        cfg = load_config(EnhanceConfig, config_file, {**flags, field: workers})
    report = run(data_dir, out_dir, cfg, progress=not no_progress)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out_dir}: {report['model']} ({report['prompt_version']})")
    engine = report.get("engine", {})
    if engine.get("name") == "ray":
        gen = engine["stages"]["generate"]
        click.echo(f"ray: {engine['workers']} worker(s), {engine['gpus']:g} GPU; generated "
                   f"{gen['rows']} at {gen['rows_per_s']:.2f} rows/s, "
                   f"{gen['tokens_per_s']:.0f} tok/s")
    for col in ("file", "total", "generated", "cached", "passed", "failed", "tok/s"):
        table.add_column(col, justify="right" if col != "file" else "left", overflow="fold")
    for name, c in report["files"].items():
        tps = c["output_tokens"] / c["seconds"] if c["seconds"] else 0.0
        # under ray the files only assemble; generation throughput is the ray line above
        rate = "-" if engine.get("name") == "ray" else f"{tps:.0f}"
        table.add_row(name, str(c["total"]), str(c["generated"]), str(c["cached"]),
                      str(c["passed_through"]), str(c["failed"]), rate)
    Console().print(table)
