"""``augret mbeir run``: embed → index → retrieve → run files → the M-BEIR table."""

from __future__ import annotations

from pathlib import Path

import click

from augret.cli.options import ConfigArgs, config_command, flag


@config_command("run", config="augret.pipeline.config:RunConfig", flags=(
    flag("--encoder"), flag("--pools"), flag("--retriever"), flag("--tasks"),
    flag("--instruction"), flag("--index-kind", key="index.kind"), flag("--k"),
    flag("--filter-modality"), flag("--rrf-k"), flag("--metrics"), flag("--batch-size"),
    flag("--workers"), flag("--device"), flag("--precision"), flag("--backend"),
    flag("--milvus-uri", key="milvus.uri")))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output directory (stages whose inputs did not change are reused).")
@click.option("--enhanced-queries", "queries_dir", type=click.Path(path_type=Path),
              default=None, help="Directory of the query files [default: DATA_DIR].")
@click.option("--enhanced-corpus", "corpus_dir", type=click.Path(path_type=Path),
              default=None, help="Directory of the candidate pools [default: DATA_DIR].")
@click.option("--force", is_flag=True, help="Run every stage even when up to date.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json"]),
              default="markdown", show_default=True, help="How to print the table.")
def run(data_dir: Path, out_dir: Path, queries_dir: Path | None, corpus_dir: Path | None,
        config: ConfigArgs, force: bool, no_progress: bool, fmt: str) -> None:
    """Embed (or reuse) → index → retrieve → evaluate DATA_DIR; print the M-BEIR table.

    Queries come from --enhanced-queries and candidates from --enhanced-corpus (both
    default to DATA_DIR); qrels from DATA_DIR. Run files, the table (markdown, CSV, JSON)
    and each stage's config and input fingerprint are written to --out.
    """
    from augret.pipeline import run_mbeir

    cfg = config.load()
    report = run_mbeir(data_dir, out_dir, cfg, queries_dir=queries_dir, corpus_dir=corpus_dir,
                       force=force, progress=not no_progress)
    status = ", ".join(f"{name} {s.status}" for name, s in report.stages.items())
    click.echo(f"stages: {status}", err=True)
    click.echo(f"run files: {report.run_dir}", err=True)
    if fmt == "markdown":
        click.echo(report.table)
        from augret.encode import is_random_init

        if cfg.dense and is_random_init(str(cfg.encoder)):
            click.echo(f"note: {cfg.encoder} is a randomly initialised test model; these "
                       "numbers are meaningless.")
    else:
        click.echo((out_dir / ("table.csv" if fmt == "csv" else "table.json")).read_text("utf-8"))
