"""``augret mbeir validate`` and ``augret collection import``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from augret.errors import ValidationFailed

if TYPE_CHECKING:
    from augret.data.validate import ValidationReport


@click.command("validate")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, help="Split of the query/qrels files.")
@click.option("--no-images", is_flag=True, help="Do not check that image files exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--max-examples", type=click.IntRange(min=0), default=20, show_default=True,
              help="Findings listed per kind and file (all are counted).")
def validate(directory: Path, split: str, no_images: bool, as_json: bool,
             max_examples: int) -> None:
    """Check an M-BEIR DIRECTORY (any subset of tasks, or an imported collection).

    Exits non-zero when an error is found; warnings alone pass.
    """
    from augret.data.validate import validate_mbeir

    report = validate_mbeir(directory, split=split, check_images=not no_images,
                            max_examples=max_examples)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _print_report(report)
    if not report.ok:
        raise ValidationFailed(report.summary())


def _print_report(report: ValidationReport) -> None:
    from rich.console import Console
    from rich.table import Table

    from augret.data.validate import findings_by_kind

    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: do not squeeze paths into 80 columns
        console.width = max(console.width, 160)
    console.print(f"[bold]{report.root}[/bold] (split {report.split})", markup=True)
    console.print(f"tasks present ({len(report.tasks_present)}/16): "
                  f"{', '.join(report.tasks_present) or 'none'}", markup=False)
    console.print(f"local pools ({len(report.pools_present)}): "
                  f"{', '.join(report.pools_present) or 'none'}", markup=False)
    table = Table(show_footer=True)
    total = report.total
    for col, foot, justify in (("file", "total", "left"), ("role", "", "left"),
                               ("lines", f"{total.lines:,}", "right"),
                               ("records", f"{total.records:,}", "right"),
                               ("errors", f"{total.errors:,}", "right"),
                               ("warnings", f"{total.warnings:,}", "right"),
                               ("missing images", f"{total.missing_images:,}", "right")):
        table.add_column(col, footer=foot, justify=justify,  # type: ignore[arg-type]
                         overflow="fold")
    for f in report.files:
        table.add_row(f.file, f.role, f"{f.lines:,}", f"{f.records:,}",
                      f"[red]{f.errors:,}[/red]" if f.errors else "0",
                      f"[yellow]{f.warnings:,}[/yellow]" if f.warnings else "0",
                      f"{f.missing_images:,}")
    if report.files:
        console.print(table)
    if report.tasks:
        tasks = Table(title="tasks")
        for col in ("task", "queries", "judged qids", "qrels rows", "pool", "pool size"):
            tasks.add_column(col, overflow="fold")
        for t in report.tasks:
            tasks.add_row(t.name, *(("-" if v is None else f"{v:,}" if isinstance(v, int) else v)
                                    for v in (t.queries, t.qrels_queries, t.qrels_rows,
                                              t.pool, t.pool_size)))
        console.print(tasks)
    for severity, kind, count, examples in findings_by_kind(report):
        colour = "red" if severity == "error" else "yellow"
        console.print(f"[{colour}]{severity}[/{colour}] [bold]{kind}[/bold]: {count:,}")
        for f in examples:
            console.print(f"  {f}", markup=False, soft_wrap=True)
        if count > len(examples):
            console.print(f"  ... {count - len(examples):,} more", markup=False)
    colour = "green" if report.ok else "red"
    console.print(f"[{colour}]{report.summary()}[/{colour}] ({report.seconds:.1f}s)",
                  soft_wrap=True)


@click.group("collection")
def collection() -> None:
    """Users' own collections (folders of images, JSONL or CSV of items)."""


@collection.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="M-BEIR layout directory to write.")
@click.option("--name", default="mycollection", show_default=True, help="Collection name.")
@click.option("--captions", type=click.Choice(["sidecar", "none"]), default="sidecar",
              show_default=True, help="Folders: use foo.txt as the caption of foo.jpg.")
@click.option("--text-column", default="text", show_default=True, help="Tables: text key.")
@click.option("--image-column", default="image", show_default=True, help="Tables: image key.")
@click.option("--id-column", default="id", show_default=True, help="Tables: id key.")
@click.option("--dataset-id", type=int, default=100, show_default=True,
              help="Dataset id prefix of generated ids.")
@click.option("--image-root", type=click.Path(path_type=Path), default=None,
              help="Tables: the folder image paths are relative to (default: the table's "
                   "folder).")
def import_(source: Path, out_dir: Path, name: str, captions: str, text_column: str,
            image_column: str, id_column: str, dataset_id: int,
            image_root: Path | None) -> None:
    """Import SOURCE (a folder of images, or a .jsonl/.csv/.tsv of items) into --out."""
    from augret.data.collections import import_collection

    result = import_collection(source, out_dir, name=name, captions=captions,
                               text_column=text_column, image_column=image_column,
                               id_column=id_column, dataset_id=dataset_id,
                               image_root=image_root)
    s = result.stats
    mods = ", ".join(f"{m}: {n:,}" for m, n in sorted(s.modalities.items()))
    click.echo(f"imported {s.items:,} items ({mods}) from {result.source}")
    click.echo(f"pool: {result.pool_file}")
    click.echo(f"images resolve from: {result.image_root}")
    click.echo(f"ids: {s.ids_generated:,} generated, {s.ids_mapped:,} mapped, "
               f"{s.ids_given:,} given, {s.collisions:,} collision(s) resolved")
    click.echo(f"check it with: augret mbeir validate {out_dir}")
