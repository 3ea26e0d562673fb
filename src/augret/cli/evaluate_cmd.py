"""``augret evaluate``, ``augret compare`` and ``augret mbeir table``: scoring run files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from augret.errors import ConfigError

DEFAULT_METRICS = "hit@1,hit@5,hit@10,recall@5,mrr@10,ndcg@10"  # = evaluate.DEFAULT_METRICS
FORMATS = ("markdown", "csv", "json", "uniir-tsv")  # = evaluate.table.FORMATS


def _console():
    from rich.console import Console

    return Console()


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--qrels", required=True, type=click.Path(path_type=Path),
              help="Qrels file (4 or 5 columns).")
@click.option("--metrics", default=DEFAULT_METRICS, show_default=True,
              help="Comma-separated: hit@k, recall@k, precision@k, mrr@k, ndcg@k, map@k.")
@click.option("--depth", type=click.IntRange(min=1), help="Score only the top DEPTH results.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object {"num_queries": N, "metrics": {...}}.')
@click.option("--per-query", "per_query_out", type=click.Path(path_type=Path),
              help="Also write per-query scores to this JSONL file.")
def evaluate(run: Path, qrels: Path, metrics: str, depth: int | None, as_json: bool,
             per_query_out: Path | None) -> None:
    """Score RUN (TREC, UniIR 7-column or JSON run file) against QRELS.

    hit@k is UniIR's "Recall@k" (any relevant document in the top k); recall@k divides by
    the number of relevant documents. Means are over the qrels' queries with a relevant
    document; queries missing from the run score 0.
    """
    from augret.data.jsonl import write_jsonl
    from augret.evaluate import evaluate as evaluate_run
    from augret.evaluate import read_run

    result = evaluate_run(qrels, read_run(run), metrics, per_query=per_query_out is not None,
                          depth=depth)
    if per_query_out is not None:
        write_jsonl(per_query_out, result.iter_per_query())
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    from rich.table import Table

    table = Table(title=run.name)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console = _console()
    console.print(table)
    note = f"{result.num_queries} queries"
    if result.num_unranked:
        note += f"; {result.num_unranked} absent from the run (scored 0)"
    console.print(note, soft_wrap=True)


@click.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--qrels", type=click.Path(path_type=Path),
              help="Qrels file, when RUN_A and RUN_B are run files.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path),
              help="M-BEIR directory, when RUN_A and RUN_B are run directories.")
@click.option("--metrics", default=None,
              help=f"Metrics to compare [default: {DEFAULT_METRICS} for files; each task's "
                   "reported metric for directories].")
@click.option("--test", type=click.Choice(["randomization", "bootstrap"]),
              default="randomization", show_default=True, help="Paired significance test.")
@click.option("--samples", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Random samples of the test.")
@click.option("--seed", default=0, show_default=True, help="Seed of the test.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compare(run_a: Path, run_b: Path, qrels: Path | None, data_dir: Path | None,
            metrics: str | None, test: str, samples: int, seed: int, as_json: bool) -> None:
    """Compare two runs (or two M-BEIR run directories): B - A deltas and paired p-values.

    With two run files give --qrels; with two run directories (named as for
    `augret mbeir table`) give --data, and rows are the (task, pool) pairs in both.
    """
    from augret.evaluate import evaluate as evaluate_run
    from augret.evaluate import parse_metrics, read_run
    from augret.evaluate.compare import compare_results, compare_tables
    from augret.evaluate.rundir import evaluate_run_dir

    kwargs = {"test": test, "n_samples": samples, "seed": seed}
    if run_a.is_dir() and run_b.is_dir():
        if data_dir is None:
            raise ConfigError("comparing run directories needs --data M-BEIR_DIR")
        extra = [str(s) for s in parse_metrics(metrics)] if metrics else None
        a = evaluate_run_dir(data_dir, run_a, metrics=extra, per_query=True)
        b = evaluate_run_dir(data_dir, run_b, metrics=extra, per_query=True)
        rows = compare_tables(a, b, metrics=extra, **kwargs)
        if not rows:
            raise ConfigError("the two run directories share no (task, pool) run")
    else:
        if qrels is None:
            raise ConfigError("comparing run files needs --qrels QRELS")
        wanted = metrics or DEFAULT_METRICS
        a_res = evaluate_run(qrels, read_run(run_a), wanted, per_query=True)
        b_res = evaluate_run(qrels, read_run(run_b), wanted, per_query=True)
        rows = compare_results(a_res, b_res, **kwargs)
    if as_json:
        click.echo(json.dumps({"a": str(run_a), "b": str(run_b), "test": test,
                               "samples": samples, "seed": seed,
                               "rows": [r.to_dict() for r in rows]}))
        return
    from rich.table import Table

    table = Table()
    by_row = rows[0].task is not None
    cols = (["task", "pool"] if by_row else []) + ["metric", "queries", "A", "B", "B - A", "p"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("task", "pool", "metric") else "right")
    for r in rows:
        star = " *" if r.p_value < 0.05 else ""
        cells = [r.metric, str(r.num_queries), f"{r.a:.4f}", f"{r.b:.4f}", f"{r.delta:+.4f}",
                 f"{r.p_value:.4f}{star}"]
        table.add_row(*(([r.task or "", r.pool or ""] if by_row else []) + cells))
    console = _console()
    console.print(table)
    console.print(f"A: {run_a}\nB: {run_b}\n{test} test, {samples} samples, seed {seed}; "
                  "* p < 0.05", soft_wrap=True, highlight=False)


@click.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="markdown",
              show_default=True, help="Output format (uniir-tsv: UniIR's eval_results TSV).")
@click.option("--out", type=click.Path(path_type=Path), help="Write here instead of stdout.")
def table(data_dir: Path, run_dir: Path, fmt: str, out: Path | None) -> None:
    """Score the run files of RUN_DIR against DATA_DIR's qrels as the M-BEIR table.

    Run files are named <task>_<local|union>.run (e.g. cirr_task7_union.run; .txt, .trec and
    .json also work) or as UniIR names them, mbeir_<task>_<single|union>_pool_test_k<k>_run.txt,
    in RUN_DIR or RUN_DIR/run_files. Values are hit@5 ×100 (hit@10 for Fashion200K and
    FashionIQ); the average is labelled with its row count when fewer than 16 rows are present.
    """
    from augret.data.jsonl import atomic_writer
    from augret.evaluate.rundir import evaluate_run_dir
    from augret.evaluate.table import render

    text = render(evaluate_run_dir(data_dir, run_dir), fmt)
    if out is None:
        click.echo(text, nl=False)
        return
    with atomic_writer(out) as f:
        f.write(text)
    click.echo(f"wrote {out}", err=True)
