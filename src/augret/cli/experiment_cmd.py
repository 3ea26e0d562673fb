"""``augret plan``, ``augret mbeir download``, ``augret report`` and ``augret view``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from augret.cli.options import ConfigArgs, config_command
from augret.errors import ConfigError


def _console():
    from rich.console import Console

    return Console()


@config_command(config="augret.experiment.config:ExperimentConfig", positional=True)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="M-BEIR directory (overrides data_dir of the config).")
@click.option("--fast", is_flag=True,
              help="Identify images by path instead of hashing their bytes (no image is read).")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="Plan JSON (default: <output_dir>/plan.json of the config).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (no tables).")
def plan(config: ConfigArgs, data_dir: Path | None, fast: bool, out_file: Path | None,
         as_json: bool) -> None:
    """Count what the experiment in CONFIG.yaml (or --config) will process and estimate its
    GPU-hours.

    From the data alone (no model): rows per split and side, rows needing generation,
    distinct generation keys after de-duplication (images hashed by content, or by path with
    --fast), missing images, expected output tokens, embeddings, index memory, training
    samples and GPU-hours at the throughputs of the config's `planning` section.
    """
    from augret.experiment.plan import plan as make_plan

    cfg = config.load()
    p = make_plan(cfg, data_dir=data_dir, fast=fast, config_path=config.path)
    path = p.write_json(out_file or Path(cfg.output_dir) / "plan.json")
    if as_json:
        click.echo(json.dumps(p.to_dict(), indent=2))
        return
    console = _console()
    p.print(console)
    console.print(f"plan written to {path}", highlight=False)


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="The M-BEIR directory to fill (created; re-running resumes).")
@click.option("--tasks", default="all", show_default=True,
              help="Comma-separated test tasks (cirr_task7) or datasets (oven), or 'all'.")
@click.option("--no-local", is_flag=True, help="Skip the tasks' local pools.")
@click.option("--union", is_flag=True, help="Also the union test pool (5.6M, 2.4 GB).")
@click.option("--train", is_flag=True, help="Also the union training file and pool.")
@click.option("--val", is_flag=True, help="Also the union validation file and pool.")
@click.option("--images", is_flag=True,
              help="Also the image archive (4 parts, ~170 GB): verified, then extracted.")
@click.option("--no-extract", is_flag=True, help="Fetch and verify the parts only.")
@click.option("--delete-parts", is_flag=True, help="Delete the parts after extraction.")
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="A local directory laid out like the hub repository (instead of the hub).")
@click.option("--repo", "repo_id", default="TIGER-Lab/M-BEIR", show_default=True,
              help="Hub dataset repository.")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.option("--checksums", "checksum_file", type=click.Path(path_type=Path), default=None,
              help="sha256sum-style file for the image parts (else the hub's LFS digests).")
@click.option("--dry-run", is_flag=True, help="Only list the files.")
def download(out_dir: Path, tasks: str, no_local: bool, union: bool, train: bool, val: bool,
             images: bool, no_extract: bool, delete_parts: bool, source: Path | None,
             repo_id: str, revision: str | None, checksum_file: Path | None,
             dry_run: bool) -> None:
    """Fetch M-BEIR (TIGER-Lab/M-BEIR on the Hugging Face hub) into --out.

    Each chosen task brings its test queries, local pool and qrels, plus the instruction
    file. Offline, pass --source with a copy of the repository.
    """
    from augret.data.download import download as fetch

    names = [t for t in tasks.split(",") if t.strip()]
    if not names:
        raise ConfigError("--tasks is empty")
    r = fetch(out_dir, names, local=not no_local, union=union, train=train, val=val,
              images=images, extract=not no_extract, keep_parts=not delete_parts,
              source=source, repo_id=repo_id, revision=revision, checksum_file=checksum_file,
              dry_run=dry_run)
    if dry_run:
        click.echo(f"would fetch {len(r.files)} file(s) from {r.source} into {out_dir}:")
        for f in r.files:
            click.echo(f"  {f}")
        return
    click.echo(f"{out_dir}: {len(r.files)} file(s) from {r.source}"
               + (f"; verified {len(r.verified)} part(s)" if r.verified else "")
               + (f"; {len(r.unverified)} part(s) without a checksum" if r.unverified else "")
               + (f"; extracted {r.extracted} archive member(s)" if r.extracted else ""))


def _parse_condition(text: str) -> tuple[str, dict[str, str]]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"--condition {text!r}: expected NAME=RUN_DIR[@DATA_DIR]")
    run_dir, _, data_dir = rest.partition("@")
    spec = {"run_dir": run_dir}
    if data_dir:
        spec["data_dir"] = data_dir
    return name, spec


@click.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("-c", "--condition", "conditions", multiple=True,
              help="NAME=RUN_DIR[@DATA_DIR], repeatable, in table order (default: "
                   "OUT_DIR/conditions.json).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Data directory (qrels) of conditions that name none.")
@click.option("--baseline", default="baseline", show_default=True)
@click.option("--test", type=click.Choice(["randomization", "bootstrap"]),
              default="randomization", show_default=True)
@click.option("--samples", default=10_000, show_default=True, help="Samples of the test.")
@click.option("--alpha", default=0.05, show_default=True, help="Significance level.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG charts.")
@click.option("--title", default="M-BEIR results", show_default=True)
def report(out_dir: Path, conditions: tuple[str, ...], data_dir: Path | None, baseline: str,
           test: str, samples: int, alpha: float, no_plots: bool, title: str) -> None:
    """Write OUT_DIR/report.md, results.json and plots/ from the conditions' run directories.

    Each condition's run files are scored against the qrels; other conditions are compared
    with --baseline row by row (paired test), and the paper's ablation questions (corpus vs
    query enhancement) are answered when those conditions are present. Conditions trained
    with several seeds (``seed_runs`` in conditions.json, as ``augret experiment`` writes
    it) are averaged over their seeds, and a difference is called an effect only when it
    holds in every seed.
    """
    from augret.experiment.report import (
        CONDITIONS_FILE,
        load_conditions,
        load_notices,
        write_report,
    )

    notices: list[str] = []
    if conditions:
        specs = dict(_parse_condition(c) for c in conditions)
    else:
        specs = load_conditions(out_dir / CONDITIONS_FILE)
        notices = load_notices(out_dir / CONDITIONS_FILE)
    r = write_report(out_dir, specs, baseline, data_dir=data_dir, test=test, n_samples=samples,
                     alpha=alpha, plots=not no_plots, title=title, notices=notices)
    click.echo(f"wrote {r.markdown}, {r.results}" + (f" and {len(r.plots)} plot(s)"
                                                     if r.plots else ""))


@click.command()
@click.argument("out_html", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="The raw M-BEIR directory (qrels, queries, candidates, images).")
@click.option("--a", "run_a", required=True, type=click.Path(path_type=Path),
              help="System A's run directory.")
@click.option("--b", "run_b", required=True, type=click.Path(path_type=Path),
              help="System B's run directory.")
@click.option("--enhanced", "enhanced_dir", type=click.Path(path_type=Path), default=None,
              help="Enhanced directory: show query rewrites and candidate captions.")
@click.option("--label-a", default="A", show_default=True)
@click.option("--label-b", default="B", show_default=True)
@click.option("--pool", type=click.Choice(["local", "union"]), default="local",
              show_default=True)
@click.option("--tasks", default=None, help="Comma-separated task names.")
@click.option("--changed", default=12, show_default=True, help="Most-changed queries.")
@click.option("--sampled", default=8, show_default=True, help="Random other queries.")
@click.option("-k", "k", default=5, show_default=True, help="Results per system.")
@click.option("--seed", default=0, show_default=True)
def view(out_html: Path, data_dir: Path, run_a: Path, run_b: Path, enhanced_dir: Path | None,
         label_a: str, label_b: str, pool: str, tasks: str | None, changed: int, sampled: int,
         k: int, seed: int) -> None:
    """Write a static HTML page comparing two systems query by query (images embedded)."""
    from augret.experiment.viewer import write_viewer

    s = write_viewer(out_html, data_dir, run_a, run_b, enhanced_dir=enhanced_dir,
                     label_a=label_a, label_b=label_b, pool=pool,
                     tasks=tasks.split(",") if tasks else None, changed=changed,
                     sampled=sampled, k=k, seed=seed)
    click.echo(f"wrote {s.path}: {s.changed} most-changed + {s.sampled} sampled queries, "
               f"{s.thumbnails} thumbnails, {s.bytes / 1e6:.1f} MB")
