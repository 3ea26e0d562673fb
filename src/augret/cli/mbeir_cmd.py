"""``augret mbeir ...``: M-BEIR directory commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from augret.cli import evaluate_cmd, experiment_cmd, run_cmd, validate_cmd
from augret.cli.options import ConfigArgs, config_command, flag


@click.group()
def mbeir() -> None:
    """Inspect, validate, sample and score M-BEIR directories."""


mbeir.add_command(validate_cmd.validate)
mbeir.add_command(evaluate_cmd.table)
mbeir.add_command(run_cmd.run)
mbeir.add_command(experiment_cmd.download)


@mbeir.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(data_dir: Path, split: str, as_json: bool) -> None:
    """List the test tasks present in DATA_DIR and the files of each."""
    from augret.data import MBEIRDir

    d = MBEIRDir(data_dir)
    rows = [
        {
            "task": tf.task.name,
            "paper_task": tf.task.task.paper_number,
            "modalities": tf.task.task.short,
            "queries": str(tf.queries),
            "pool": str(tf.pool) if tf.pool else None,
            "qrels": str(tf.qrels) if tf.qrels else None,
        }
        for tf in d.tasks(split)
    ]
    extra = {
        "local_pools": sorted(d.local_pools()),
        "union_pool_files": [str(p) for p in d.union_pool_files()],
        "instructions": str(d.instructions_file()) if d.instructions_file() else None,
        "train_file": str(d.train_file()) if d.train_file() else None,
    }
    if as_json:
        click.echo(json.dumps({"root": str(d.root), "tasks": rows, **extra}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{d.root} ({len(rows)}/16 {split} tasks present)")
    for col in ("task", "paper task", "modalities", "pool", "qrels"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["task"], str(r["paper_task"]), r["modalities"],
                      "yes" if r["pool"] else "absent", "yes" if r["qrels"] else "absent")
    console = Console()
    console.print(table)
    console.print(f"local pools: {', '.join(extra['local_pools']) or 'none'}")
    console.print(f"train file: {extra['train_file'] or 'absent'}")


@config_command("sample", group=mbeir, config="augret.experiment.config:SampleConfig",
                flags=(flag("--seed"), flag("--reps"), flag("--train-reps")))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Directory to write the sample into.")
def sample(out_dir: Path, config: ConfigArgs) -> None:
    """Render the license-clean shapes-world sample as an M-BEIR directory.

    Its texts leave out what its images show, as M-BEIR's do; scenes.jsonl holds the ground
    truth of every image (what `augret enhance --backend reference` answers from).
    """
    from augret.data.sample import SCENES_FILE, write_sample

    cfg = config.load()
    s = write_sample(out_dir, seed=cfg.seed, reps=cfg.reps, train_reps=cfg.train_reps)
    click.echo(f"wrote {s.root}: {s.images} images (ground truth in {SCENES_FILE}), queries "
               f"{s.queries}, pools {s.pools}")


@mbeir.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.argument("dids", nargs=-1, required=True)
@click.option("--pool", default=None, help="Local pool stem; default: the test union pool.")
def get(data_dir: Path, dids: tuple[str, ...], pool: str | None) -> None:
    """Print the candidate records of DIDS as JSON lines (offset-indexed, no full scan)."""
    from augret.data import MBEIRDir
    from augret.data.lookup import PoolLookup
    from augret.errors import DataNotFoundError

    d = MBEIRDir(data_dir)
    if pool is not None:
        path = d.pool_file(pool)
        if path is None:
            raise DataNotFoundError(f"{d.root}: no local pool {pool!r}")
        files = [path]
    else:
        files = d.union_pool_files()
    lookup = PoolLookup(files)
    missing = [x for x in dids if x not in lookup]
    if missing:
        raise DataNotFoundError(f"not in the pool: {', '.join(missing)}")
    for cand in lookup.get_many(list(dids)):
        click.echo(json.dumps(cand.to_dict(), ensure_ascii=False))
