"""The M-BEIR results table: 16 rows in UniIR's order, local and union pools side by side.

Each row shows the paper's reported metric ×100 (hit@5; hit@10 for ``fashion200k_task0``,
``fashion200k_task3`` and ``fashioniq_task7``). The average is the unweighted mean of the
rows present, computed from unrounded values; with fewer than 16 rows its label says so
(e.g. ``"Average (2/16 tasks)"``), so a partial table never passes for the benchmark average.

:func:`uniir_tsv` writes UniIR's ``final_tsv/eval_results_*.tsv`` layout.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from augret.data.ids import MBEIR_TEST_TASKS, EvalTask, eval_task
from augret.errors import ConfigError
from augret.evaluate.metrics import EvalResult

__all__ = ["FORMATS", "POOLS", "MBEIRTable", "TableRow", "build_table", "render", "uniir_tsv"]

POOLS: tuple[str, ...] = ("local", "union")
FORMATS: tuple[str, ...] = ("markdown", "csv", "json", "uniir-tsv")
TSV_HEADER = ("TaskID", "Task", "Dataset", "Split", "Metric", "CandPool", "Value",
              "UnionPool", "UnionValue")
Results = Mapping[tuple[str, str], "EvalResult | float"]


@dataclass(frozen=True)
class TableRow:
    """One (dataset, task) row; values are ×100, ``None`` where that pool was not evaluated."""

    task: EvalTask
    local: float | None
    union: float | None

    @property
    def metric(self) -> str:
        """The reported metric of the row, e.g. ``"hit@5"``."""
        return self.task.reported_metric

    def value(self, pool: str) -> float | None:
        """The row's value for ``pool``."""
        return self.local if pool == "local" else self.union


@dataclass(frozen=True)
class MBEIRTable:
    """Rows present, in UniIR's order (see :func:`build_table`)."""

    rows: tuple[TableRow, ...]

    def count(self, pool: str) -> int:
        """Rows with a value for ``pool``."""
        return sum(r.value(pool) is not None for r in self.rows)

    def average(self, pool: str) -> float | None:
        """Unweighted mean over the rows with a value for ``pool`` (×100), or ``None``."""
        values = [v for r in self.rows if (v := r.value(pool)) is not None]
        return sum(values) / len(values) if values else None

    @property
    def average_label(self) -> str:
        """``"Average"`` only for all 16 rows in both pools; otherwise the counts."""
        total = len(MBEIR_TEST_TASKS)
        counts = {p: self.count(p) for p in POOLS if self.count(p)}
        if not counts:
            return f"Average (0/{total} tasks)"
        if len(set(counts.values())) == 1:
            n = next(iter(counts.values()))
            return "Average" if n == total else f"Average ({n}/{total} tasks)"
        return "Average (" + ", ".join(f"{p} {n}/{total}" for p, n in counts.items()) + " tasks)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: unrounded ×100 values, plus the average and its row counts."""
        rows = [
            {
                "task": r.task.name,
                "paper_task": r.task.task.paper_number,
                "task_short": r.task.task.short,
                "dataset": r.task.dataset.name,
                "metric": r.metric,
                "local": r.local,
                "union": r.union,
            }
            for r in self.rows
        ]
        average = {"label": self.average_label}
        for p in POOLS:
            average[p] = self.average(p)
            average[f"{p}_tasks"] = self.count(p)
        return {"scale": 100, "rows": rows, "average": average}

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def _cells(self, decimals: int) -> list[list[str]]:
        def fmt(v: float | None) -> str:
            return "" if v is None else f"{v:.{decimals}f}"

        body = [[str(r.task.task.paper_number), r.task.task.short, r.task.dataset.name, r.metric,
                 fmt(r.local), fmt(r.union)] for r in self.rows]
        body.append(["", self.average_label, "", "", fmt(self.average("local")),
                     fmt(self.average("union"))])
        return body

    def to_markdown(self, decimals: int = 1) -> str:
        """A markdown table (values ×100, ``decimals`` places; ``–`` where missing)."""
        body = self._cells(decimals)
        lines = ["| # | Task | Dataset | Metric | Local | Union |",
                 "|" + "|".join(["---:", "---", "---", "---", "---:", "---:"]) + "|"]
        for i, cells in enumerate(body):
            cells = [c if c or j in (0, 2, 3) else "–" for j, c in enumerate(cells)]
            if i == len(body) - 1:
                cells = [f"**{c}**" if c else c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self, decimals: int = 2) -> str:
        """CSV with a header; the last row (``name`` "average") is the average."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", "paper_task", "task", "dataset", "metric", "local", "union"])
        names = [r.task.name for r in self.rows] + ["average"]
        for name, cells in zip(names, self._cells(decimals), strict=True):
            writer.writerow([name, *cells])
        return buf.getvalue()


def _check_keys(results: Mapping[tuple[str, str], Any]) -> None:
    for key in results:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ConfigError(f"result keys must be (task name, pool) pairs, got {key!r}")
        name, pool = key
        try:
            eval_task(name)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        if pool not in POOLS:
            raise ConfigError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")


def build_table(results: Results) -> MBEIRTable:
    """Build the table from ``{(task name, pool): EvalResult or fraction}``.

    Args:
        results: Per ``(task name, "local" | "union")``, an :class:`EvalResult` holding the
            task's reported metric, or directly that metric's value as a fraction in [0, 1].

    Raises:
        ConfigError: An unknown task or pool, or a result without the reported metric.
    """
    _check_keys(results)
    rows = []
    for task in MBEIR_TEST_TASKS:
        values = []
        for pool in POOLS:
            res = results.get((task.name, pool))
            if res is None:
                values.append(None)
            elif isinstance(res, EvalResult):
                if task.reported_metric not in res.metrics:
                    raise ConfigError(f"{task.name} ({pool}): result lacks "
                                      f"{task.reported_metric}")
                values.append(100.0 * res.metrics[task.reported_metric])
            else:
                values.append(100.0 * float(res))
        if values != [None, None]:
            rows.append(TableRow(task, values[0], values[1]))
    return MBEIRTable(tuple(rows))


def uniir_tsv(results: Mapping[tuple[str, str], EvalResult], *, split: str = "test") -> str:
    """UniIR's TSV summary: one line per task and ``Recall@k`` of its config, sorted by task id
    then UniIR's dataset order, values rounded to 4 decimals (UniIR's "Recall" is hit@k).

    A task evaluated only on the union gets empty ``CandPool``/``Value`` cells; one evaluated
    only locally gets empty ``UnionPool``/``UnionValue`` cells, as UniIR writes them.

    Raises:
        ConfigError: A result lacks one of its task's ``hit@k`` (k in the task's metric ks).
    """
    _check_keys(results)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_HEADER)
    for task in MBEIR_TEST_TASKS:  # already sorted by task id, then UniIR's dataset order
        local, union = results.get((task.name, "local")), results.get((task.name, "union"))
        if local is None and union is None:
            continue
        mode = f"{task.task.query_modality} -> {task.task.cand_modality}"
        for k in task.metric_ks:
            metric = f"hit@{k}"
            cells: list[Any] = [task.task.id, mode, task.name, split, f"Recall@{k}"]
            for pool_name, res in ((task.pool, local), ("union", union)):
                if res is None:
                    cells += ["", ""]
                    continue
                if not isinstance(res, EvalResult) or metric not in res.metrics:
                    raise ConfigError(f"{task.name}: the UniIR TSV needs {metric} results")
                cells += [pool_name, round(res.metrics[metric], 4)]
            writer.writerow(cells)
    return buf.getvalue()


def render(results: Mapping[tuple[str, str], EvalResult], fmt: str = "markdown") -> str:
    """The table of ``results`` in one of :data:`FORMATS`."""
    if fmt == "uniir-tsv":
        return uniir_tsv(results)
    table = build_table(results)
    if fmt == "markdown":
        return table.to_markdown()
    if fmt == "csv":
        return table.to_csv()
    if fmt == "json":
        return table.to_json()
    raise ConfigError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")
