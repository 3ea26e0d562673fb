"""``augret enhance``: VLM enhancement of an M-BEIR directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from augret.cli.options import RAY_FLAGS, ConfigArgs, config_command, flag, load_engine_config


@config_command(config="augret.enhance.config:EnhanceConfig", flags=(
    flag("--split"), flag("--side"), flag("--backend"), flag("--model"), flag("--revision"),
    flag("--base-url"), flag("--mode"), flag("--files"), flag("--store"), flag("--prompts"),
    flag("--query-tokens"), flag("--candidate-tokens"), flag("--batch-size"),
    flag("--max-pixels"), flag("--overlong"), flag("--retry-failed"),
    flag("--engine", note="See docs/scaling.md."), *RAY_FLAGS,
    flag("--temperature"), flag("--seed")))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output directory (an enhanced M-BEIR directory).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def enhance(data_dir: Path, out_dir: Path, config: ConfigArgs, no_progress: bool,
            as_json: bool) -> None:
    """Rewrite queries and caption candidates of DATA_DIR with a VLM into --out."""
    from augret.enhance import enhance as run

    cfg = load_engine_config(config)
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
    for col in ("file", "total", "attempts", "generated", "cached", "passed", "failed",
                "truncated", "tok/s"):
        table.add_column(col, justify="right" if col != "file" else "left", overflow="fold")
    for name, c in report["files"].items():
        tps = c["output_tokens"] / c["seconds"] if c["seconds"] else 0.0
        # under ray the files only assemble; generation throughput is the ray line above
        rate = "-" if engine.get("name") == "ray" else f"{tps:.0f}"
        table.add_row(name, str(c["total"]), str(c.get("attempts", "-")), str(c["generated"]),
                      str(c["cached"]), str(c["passed_through"]), str(c["failed"]),
                      str(c.get("truncated", "-")), rate)
    console = Console()
    console.print(table)
    run = report.get("last_run")
    if run:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(run["failed_by_reason"].items()))
        console.print(f"this run: {run['attempts']} generation attempt(s), "
                      f"{run['generated']} succeeded; {run['failed']} failed row(s)"
                      + (f" ({reasons})" if reasons else "")
                      + f"; {run['truncated']} truncated")
    if report.get("simulated"):
        click.echo(f"note: {report['simulated']}")
