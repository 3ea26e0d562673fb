"""The experiment report: per-condition M-BEIR tables, deltas against the baseline with paired
significance, bar charts and cautious answers to the paper's two ablation questions.

``write_report(out_dir, {"baseline": {"run_dir": ..., "data_dir": ...}, ...})`` evaluates each
condition's run directory (``<task>_<local|union>.run`` files, see
:mod:`augret.evaluate.rundir`) against the qrels of its data directory and writes::

    OUT/report.md          tables (local, union), comparisons, ablation answers
    OUT/results.json       every number in the report, unrounded
    OUT/conditions.json    the inputs ({name: {run_dir, data_dir, description[, system]}}):
                           re-run with ``augret report OUT``
    OUT/plots/bars_<pool>.png, OUT/plots/delta_<pool>.png
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augret.data.ids import eval_task
from augret.data.jsonl import atomic_writer, read_json, write_json
from augret.errors import ConfigError, DataFormatError
from augret.evaluate.compare import Comparison, compare_results
from augret.evaluate.metrics import EvalResult
from augret.evaluate.rundir import evaluate_run_dir
from augret.evaluate.table import POOLS, MBEIRTable, build_table

__all__ = ["ABLATIONS", "CONDITIONS_FILE", "Report", "ablation_answer", "load_conditions",
           "write_report"]

log = logging.getLogger(__name__)

CONDITIONS_FILE = "conditions.json"
KNOWLEDGE = ("webqa", "oven", "infoseek")
COMPOSITIONAL = ("cirr", "fashioniq")

#: The paper's two ablation questions: (condition compared with the baseline, what it varies,
#: the datasets the paper expects to gain, their description).
ABLATIONS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "corpus": ("corpus_enhanced", "corpus enhancement", KNOWLEDGE,
               "knowledge-intensive tasks (OVEN, InfoSeek, WebQA)"),
    "query": ("query_enhanced", "query enhancement", COMPOSITIONAL,
              "compositional modification tasks (CIRR, FashionIQ)"),
}


@dataclass
class Report:
    """What :func:`write_report` wrote.

    Attributes:
        out_dir: The report directory.
        markdown: ``report.md``.
        results: ``results.json``.
        plots: The PNG files.
        data: The content of ``results.json``.
    """

    out_dir: Path
    markdown: Path
    results: Path
    plots: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def load_conditions(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a ``conditions.json`` (``{name: {"run_dir": ..., "data_dir": ...}}``); relative
    paths are taken from the file's folder.

    Raises:
        DataNotFoundError: The file is absent.
        ConfigError: It is not such a mapping.
    """
    path = Path(path)
    try:
        data = read_json(path)
    except DataFormatError as exc:
        raise ConfigError(str(exc)) from None
    if not all(isinstance(v, dict) and "run_dir" in v for v in data.values()):
        raise ConfigError(f"{path}: expected {{name: {{\"run_dir\": ..., \"data_dir\": ...}}}}")
    out = {}
    for name, spec in data.items():
        out[name] = {k: (str(path.parent / v) if k.endswith("_dir") and v and
                         not Path(v).is_absolute() else v) for k, v in spec.items()}
    return out


def _normalise(conditions: Mapping[str, Any], data_dir: str | Path | None
               ) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, spec in conditions.items():
        spec = {"run_dir": spec} if isinstance(spec, (str, Path)) else dict(spec)
        if "run_dir" not in spec:
            raise ConfigError(f"condition {name!r}: no run_dir")
        spec.setdefault("data_dir", data_dir)
        if spec["data_dir"] is None:
            raise ConfigError(f"condition {name!r}: no data_dir (qrels) given")
        out[name] = {k: str(v) if isinstance(v, Path) else v for k, v in spec.items()}
    if not out:
        raise ConfigError("no condition to report")
    return out


def _compare(base: Mapping[tuple[str, str], EvalResult],
             other: Mapping[tuple[str, str], EvalResult], *, test: str, n_samples: int,
             seed: int, notes: list[str], name: str) -> list[Comparison]:
    out = []
    missing = [f"{t} ({p})" for t, p in base if (t, p) not in other]
    if missing:
        notes.append(f"{name} has no run for {', '.join(missing)}: those rows are not compared")
    for key in [k for k in base if k in other]:
        task, pool = key
        try:
            out += compare_results(base[key], other[key],
                                   metrics=[eval_task(task).reported_metric], test=test,
                                   n_samples=n_samples, seed=seed, task=task, pool=pool)
        except ConfigError as exc:
            notes.append(f"{name} vs baseline, {task} ({pool}): not compared ({exc})")
    return out


def ablation_answer(key: str, comparisons: list[Comparison], *, baseline: str,
                    alpha: float) -> dict[str, Any]:
    """Answer one ablation question from a condition's comparisons with the baseline.

    Only rows with p < ``alpha`` count as gains or losses; the text says how many rows were
    tested, that tests are per row and uncorrected, and how the result relates to the paper.
    """
    condition, what, expected, expected_text = ABLATIONS[key]

    def row(c: Comparison) -> dict[str, Any]:
        t = eval_task(c.task or "")
        return {"task": c.task, "pool": c.pool, "dataset": t.dataset.name,
                "paper_task": t.task.paper_number, "delta": 100 * c.delta, "p_value": c.p_value}

    gains = [row(c) for c in comparisons if c.delta > 0 and c.p_value < alpha]
    losses = [row(c) for c in comparisons if c.delta < 0 and c.p_value < alpha]

    def fmt(rows: list[dict[str, Any]]) -> str:
        return "; ".join(f"{r['dataset']} task {r['paper_task']} ({r['pool']}, "
                         f"{r['delta']:+.1f}, p = {r['p_value']:.3g})" for r in rows)

    n = len(comparisons)
    lines = [f"Compared {condition} with {baseline} on {n} table row(s) (task × pool)."]
    if gains:
        lines.append(f"{what.capitalize()} is associated with significantly higher scores "
                     f"(p < {alpha:g}) on {len(gains)} of {n} row(s): {fmt(gains)}.")
    else:
        lines.append(f"No row shows a significant gain from {what} (p < {alpha:g}).")
    if losses:
        lines.append(f"Significantly lower on {len(losses)} row(s): {fmt(losses)}.")
    on_expected = [g for g in gains if eval_task(g["task"]).dataset.slug in expected]
    tested_expected = [c for c in comparisons if eval_task(c.task or "").dataset.slug in expected]
    if tested_expected:
        lines.append(f"The paper reports that {what} chiefly helps {expected_text}; here "
                     f"{len(on_expected)} of the {len(tested_expected)} row(s) of those tasks "
                     "gain significantly.")
    else:
        lines.append(f"None of the {expected_text} the paper names was evaluated, so its claim "
                     "cannot be checked here.")
    lines.append("Each row is a separate paired test without multiple-comparison correction, "
                 "on one run per condition: read these as indications, not conclusions.")
    return {"question": f"Which tasks gain from {what}?", "condition": condition,
            "baseline": baseline, "alpha": alpha, "rows_compared": n, "gains": gains,
            "losses": losses, "expected": list(expected), "answer": " ".join(lines)}


def write_report(out_dir: str | Path, conditions: Mapping[str, Any], baseline: str | None =
                 "baseline", *, data_dir: str | Path | None = None, test: str = "randomization",
                 n_samples: int = 10_000, seed: int = 0, alpha: float = 0.05,
                 plots: bool = True, title: str = "M-BEIR results") -> Report:
    """Evaluate the conditions' run directories and write the report.

    Args:
        out_dir: Where ``report.md``, ``results.json``, ``conditions.json`` and ``plots/`` go.
        conditions: ``{name: {"run_dir": ..., "data_dir": ..., "description": ...}}`` (a bare
            run directory is accepted as the value when ``data_dir`` is given; an optional
            ``system`` line, e.g. the retriever and views, gets its own column). Order is
            kept. Every condition is compared with the baseline; the ablation answers use
            only the paper's conditions named in :data:`ABLATIONS`.
        baseline: The condition the others are compared with (absent: no comparison).
        data_dir: The qrels' data directory for conditions that do not name one.
        test: ``randomization`` (default) or ``bootstrap``.
        n_samples: Samples of the paired test.
        seed: Seed of the test.
        alpha: Significance level for "gain" in the ablation answers and the ``*`` marks.
        plots: Write the PNG charts (needs matplotlib, extra ``plot``).
        title: Report title.

    Raises:
        ConfigError: No condition, or one without a run or data directory.
        DataNotFoundError: A directory is missing, or a run directory holds no run file.
    """
    specs = _normalise(conditions, data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    results: dict[str, dict[tuple[str, str], EvalResult]] = {}
    tables: dict[str, MBEIRTable] = {}
    for name, spec in specs.items():
        results[name] = evaluate_run_dir(spec["data_dir"], spec["run_dir"], per_query=True)
        tables[name] = build_table(results[name])
    has_base = baseline is not None and baseline in results
    if baseline is not None and not has_base:
        notes.append(f"baseline {baseline!r} is not among the conditions: no comparison")
    comparisons: dict[str, list[Comparison]] = {}
    if has_base:
        for name in specs:
            if name != baseline:
                comparisons[name] = _compare(results[baseline], results[name], test=test,
                                             n_samples=n_samples, seed=seed, notes=notes,
                                             name=name)
    ablations = {key: ablation_answer(key, comparisons[cond], baseline=str(baseline),
                                      alpha=alpha)
                 for key, (cond, *_rest) in ABLATIONS.items() if cond in comparisons}
    data: dict[str, Any] = {
        "title": title, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "baseline": baseline if has_base else None,
        "test": test, "n_samples": n_samples, "seed": seed, "alpha": alpha,
        "conditions": {n: {**specs[n], "table": tables[n].to_dict(),
                           "results": {f"{t}/{p}": r.to_dict()
                                       for (t, p), r in results[n].items()}}
                       for n in specs},
        "comparisons": {n: [c.to_dict() for c in cs] for n, cs in comparisons.items()},
        "average_deltas": {n: {p: _avg_delta(tables[str(baseline)], tables[n], p)
                               for p in POOLS} for n in comparisons},
        "ablations": ablations, "notes": notes,
    }
    written: list[Path] = []
    if plots:
        written = _plots(out / "plots", tables, comparisons, alpha, str(baseline))
    data["plots"] = [str(p.relative_to(out)) for p in written]
    from augret.experiment.report_md import render_markdown

    with atomic_writer(out / "report.md") as f:
        f.write(render_markdown(data, tables, comparisons))
    write_json(out / "results.json", data)
    write_json(out / CONDITIONS_FILE, specs)
    log.info("report written to %s", out / "report.md")
    return Report(out, out / "report.md", out / "results.json", written, data)


def _avg_delta(a: MBEIRTable, b: MBEIRTable, pool: str) -> float | None:
    """Delta of the averages over the rows both tables have for ``pool`` (×100)."""
    va = {r.task.name: r.value(pool) for r in a.rows if r.value(pool) is not None}
    vb = {r.task.name: r.value(pool) for r in b.rows if r.value(pool) is not None}
    common = [t for t in va if t in vb]
    if not common:
        return None
    return sum(vb[t] - va[t] for t in common) / len(common)  # type: ignore[operator]


def _plots(folder: Path, tables: Mapping[str, MBEIRTable],
           comparisons: Mapping[str, list[Comparison]], alpha: float,
           baseline: str) -> list[Path]:
    from augret.experiment.plots import grouped_bars

    written = []
    for pool in POOLS:
        tasks = [t for t in _task_order(tables) if any(
            r.task.name == t and r.value(pool) is not None for tb in tables.values()
            for r in tb.rows)]
        if not tasks:
            continue
        labels = [_label(t) for t in tasks]
        colors = {n: i for i, n in enumerate(tables)}
        series = {n: [_value(tb, t, pool) for t in tasks] for n, tb in tables.items()}
        written.append(grouped_bars(folder / f"bars_{pool}.png", labels, series,
                                    title=f"M-BEIR {pool} pools: reported metric per task",
                                    ylabel="hit@k × 100 (R@5; R@10 Fashion200K/FashionIQ)",
                                    colors=colors))
        if comparisons:
            deltas, marks = {}, {}
            for n, cs in comparisons.items():
                by = {c.task: c for c in cs if c.pool == pool}
                deltas[n] = [100 * by[t].delta if t in by else None for t in tasks]
                marks[n] = [t in by and by[t].p_value < alpha for t in tasks]
            if any(v is not None for vs in deltas.values() for v in vs):
                written.append(grouped_bars(
                    folder / f"delta_{pool}.png", labels, deltas,
                    title=f"Δ vs {baseline} ({pool}); * p < {alpha:g} (paired test)",
                    ylabel="Δ hit@k × 100", marks=marks, colors=colors, zero_line=True))
    return written


def _task_order(tables: Mapping[str, MBEIRTable]) -> list[str]:
    from augret.data.ids import MBEIR_TEST_TASKS

    present = {r.task.name for tb in tables.values() for r in tb.rows}
    return [t.name for t in MBEIR_TEST_TASKS if t.name in present]


def _label(task: str) -> str:
    t = eval_task(task)
    return f"{t.task.paper_number}. {t.dataset.name} {t.task.short}"


def _value(table: MBEIRTable, task: str, pool: str) -> float | None:
    for r in table.rows:
        if r.task.name == task:
            return r.value(pool)
    return None
