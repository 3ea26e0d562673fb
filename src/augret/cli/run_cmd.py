"""``augret mbeir run``: embed → index → retrieve → run files → the M-BEIR table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.command("run")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output directory (stages whose inputs did not change are reused).")
@click.option("--encoder", default=None,
              help="Encoder name or checkpoint (dense and hybrid retrievers), as for "
                   "augret embed.")
@click.option("--enhanced-queries", "queries_dir", type=click.Path(path_type=Path),
              default=None, help="Directory of the query files [default: DATA_DIR].")
@click.option("--enhanced-corpus", "corpus_dir", type=click.Path(path_type=Path),
              default=None, help="Directory of the candidate pools [default: DATA_DIR].")
@click.option("--pools", default=None, help="local, union or local,union [default: both].")
@click.option("--retriever", type=click.Choice(["dense", "bm25", "hybrid"]), default=None,
              help="dense (FAISS; the default), bm25, or hybrid (reciprocal rank fusion).")
@click.option("--tasks", default=None, help="Only these tasks, e.g. cirr_task7,oven_task8.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML RunConfig (nested 'index' and 'bm25' sections); flags win.")
@click.option("--instruction", type=click.Choice(["first", "random", "none"]), default=None,
              help="Query instructions [default: first].")
@click.option("--index-kind", type=click.Choice(["flat", "ivf", "hnsw", "ivfpq", "pq"]),
              default=None, help="Dense index kind [default: flat, exact as UniIR].")
@click.option("--k", type=int, default=None,
              help="Run depth [default: each task's deepest metric].")
@click.option("--filter-modality", is_flag=True, default=None,
              help="Keep only candidates of the task's modality (UniIR does not).")
@click.option("--rrf-k", type=float, default=None, help="Hybrid RRF constant [default: 60].")
@click.option("--metrics", default=None, help="Extra metrics, e.g. mrr@10,ndcg@10.")
@click.option("--batch-size", type=int, default=None)
@click.option("--workers", type=int, default=None, help="Image-decoding workers.")
@click.option("--device", default=None, help="auto (default), cpu, cuda...")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default=None)
@click.option("--force", is_flag=True, help="Run every stage even when up to date.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json"]),
              default="markdown", show_default=True, help="How to print the table.")
def run(data_dir: Path, out_dir: Path, queries_dir: Path | None, corpus_dir: Path | None,
        config_file: Path | None, index_kind: str | None, force: bool, no_progress: bool,
        fmt: str, **flags: Any) -> None:
    """Embed (or reuse) → index → retrieve → evaluate DATA_DIR; print the M-BEIR table.

    Queries come from --enhanced-queries and candidates from --enhanced-corpus (both
    default to DATA_DIR); qrels from DATA_DIR. Run files, the table (markdown, CSV, JSON)
    and each stage's config and input fingerprint are written to --out.
    """
    from augret.config import load_config
    from augret.pipeline import RunConfig, run_mbeir

    cfg = load_config(RunConfig, config_file, {**flags, "index.kind": index_kind})
    report = run_mbeir(data_dir, out_dir, cfg, queries_dir=queries_dir, corpus_dir=corpus_dir,
                       force=force, progress=not no_progress)
    status = ", ".join(f"{name} {s.status}" for name, s in report.stages.items())
    click.echo(f"stages: {status}", err=True)
    click.echo(f"run files: {report.run_dir}", err=True)
    if fmt == "markdown":
        click.echo(report.table)
    else:
        click.echo((out_dir / ("table.csv" if fmt == "csv" else "table.json")).read_text("utf-8"))
