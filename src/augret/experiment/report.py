"""The experiment report: per-condition M-BEIR tables (mean ± sd over training seeds), deltas
against the baseline with paired significance and per-seed signs, bar charts, cautious
answers to the paper's ablation questions and a short plain answer to its three questions.

``write_report(out_dir, {"baseline": {"run_dir": ..., "data_dir": ...}, ...})`` evaluates each
condition's run directory (``<task>_<local|union>.run`` files, see
:mod:`augret.evaluate.rundir`), or one run directory per training seed (``seed_runs``),
against the qrels of its data directory and writes::

    OUT/report.md          the short answers, tables, comparisons, ablation answers, seeds
    OUT/results.json       every number in the report, unrounded
    OUT/conditions.json    the inputs ({name: {run_dir, data_dir, description[, system,
                           seed_runs]}}, and "_notices"): re-run with ``augret report OUT``
    OUT/plots/bars_<pool>.png, OUT/plots/delta_<pool>.png

Differences are called effects only under the rule of :mod:`augret.experiment.seeds`:
significant on seed-averaged per-query scores *and* of one sign in every seed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.ids import eval_task
from augret.data.jsonl import atomic_writer, read_json, write_json
from augret.errors import ConfigError, DataFormatError
from augret.evaluate.compare import Comparison, compare_results, paired_test
from augret.evaluate.metrics import EvalResult
from augret.evaluate.rundir import evaluate_run_dir
from augret.evaluate.table import POOLS, build_table
from augret.experiment.seeds import (
    MIN_SEEDS,
    consistent_sign,
    is_effect,
    mean_result,
    mean_sd,
    seed_pairs,
)

__all__ = ["ABLATIONS", "CONDITIONS_FILE", "Report", "ablation_answer", "load_conditions",
           "load_notices", "write_report"]

log = logging.getLogger(__name__)

CONDITIONS_FILE = "conditions.json"
KNOWLEDGE = ("webqa", "oven", "infoseek")
COMPOSITIONAL = ("cirr", "fashioniq")
_NOTICES = "_notices"

#: The paper's two ablation questions: (condition compared with the baseline, what it varies,
#: the datasets the paper expects to gain, their description).
ABLATIONS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "corpus": ("corpus_enhanced", "corpus enhancement", KNOWLEDGE,
               "knowledge-intensive tasks (OVEN, InfoSeek, WebQA)"),
    "query": ("query_enhanced", "query enhancement", COMPOSITIONAL,
              "compositional modification tasks (CIRR, FashionIQ)"),
}

Key = tuple[str, str]  # (task, pool)
Seed = int | None


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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return read_json(path)
    except DataFormatError as exc:
        raise ConfigError(str(exc)) from None


def load_conditions(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a ``conditions.json`` (``{name: {"run_dir": ..., "data_dir": ...}}``); relative
    paths are taken from the file's folder. Keys starting with ``_`` are not conditions.

    Raises:
        DataNotFoundError: The file is absent.
        ConfigError: It is not such a mapping.
    """
    path = Path(path)
    data = {k: v for k, v in _read_json(path).items() if not k.startswith("_")}
    if not all(isinstance(v, dict) and "run_dir" in v for v in data.values()):
        raise ConfigError(f"{path}: expected {{name: {{\"run_dir\": ..., \"data_dir\": ...}}}}")

    def local(v: str | None) -> str | None:
        return str(path.parent / v) if v and not Path(v).is_absolute() else v

    out: dict[str, dict[str, Any]] = {}
    for name, spec in data.items():
        out[name] = {k: (local(v) if k.endswith("_dir") else v) for k, v in spec.items()}
        if isinstance(spec.get("seed_runs"), dict):
            out[name]["seed_runs"] = {s: local(v) for s, v in spec["seed_runs"].items()}
    return out


def load_notices(path: str | Path) -> list[str]:
    """The report notices kept in a ``conditions.json`` (empty when it has none)."""
    data = _read_json(Path(path))
    notices = data.get(_NOTICES, [])
    return [str(n) for n in notices] if isinstance(notices, list) else []


def _normalise(conditions: Mapping[str, Any], data_dir: str | Path | None
               ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, spec in conditions.items():
        spec = {"run_dir": spec} if isinstance(spec, (str, Path)) else dict(spec)
        if "run_dir" not in spec and spec.get("seed_runs"):
            spec["run_dir"] = next(iter(spec["seed_runs"].values()))
        if "run_dir" not in spec:
            raise ConfigError(f"condition {name!r}: no run_dir")
        spec.setdefault("data_dir", data_dir)
        if spec["data_dir"] is None:
            raise ConfigError(f"condition {name!r}: no data_dir (qrels) given")
        if spec.get("seed_runs"):
            spec["seed_runs"] = {str(s): str(d) for s, d in spec["seed_runs"].items()}
        out[name] = {k: str(v) if isinstance(v, Path) else v for k, v in spec.items()}
    if not out:
        raise ConfigError("no condition to report")
    return out


def _runs(spec: Mapping[str, Any]) -> dict[Seed, str]:
    """Seed → run directory of a condition (``{None: run_dir}`` without seeds)."""
    seeded = spec.get("seed_runs")
    if not seeded:
        return {None: spec["run_dir"]}
    return {int(s) if str(s).lstrip("-").isdigit() else s: d for s, d in seeded.items()}


class _ConditionResults:
    """One condition's results: per seed, and averaged over its seeds."""

    def __init__(self, name: str, spec: Mapping[str, Any], notes: list[str]) -> None:
        self.name = name
        self.seeds: dict[Seed, dict[Key, EvalResult]] = {
            s: evaluate_run_dir(spec["data_dir"], d, per_query=True)
            for s, d in _runs(spec).items()}
        keys = [k for k in next(iter(self.seeds.values()))
                if all(k in r for r in self.seeds.values())]
        dropped = {k for r in self.seeds.values() for k in r} - set(keys)
        if dropped:
            notes.append(f"{name}: " + ", ".join(f"{t} ({p})" for t, p in sorted(dropped))
                         + " not run for every seed: left out")
        self.mean = {k: mean_result([r[k] for r in self.seeds.values()]) for k in keys}
        self.table = build_table(self.mean)
        self.seed_tables = {s: build_table({k: r[k] for k in keys})
                            for s, r in self.seeds.items()}

    @property
    def seeded(self) -> bool:
        return any(s is not None for s in self.seeds)

    def averages(self) -> dict[str, Any]:
        """Per seed: the table averages; beside them their mean and sd (×100)."""
        per_seed = [{"seed": s, **{p: t.average(p) for p in POOLS}}
                    for s, t in self.seed_tables.items()]
        stats = {p: mean_sd([e[p] for e in per_seed]) for p in POOLS}
        return {"seeds": per_seed, "mean": {p: stats[p]["mean"] for p in POOLS},
                "sd": {p: stats[p]["sd"] for p in POOLS}}

    def rows(self) -> dict[str, Any]:
        """Per ``task/pool``: each seed's value, mean and sd (×100)."""
        out = {}
        for task, pool in self.mean:
            m = eval_task(task).reported_metric
            values = [100 * r[task, pool].metrics[m] for r in self.seeds.values()]
            out[f"{task}/{pool}"] = {"seeds": values, **mean_sd(values)}
        return out


def _row_deltas(base: _ConditionResults, other: _ConditionResults, key: Key) -> list[float]:
    m = eval_task(key[0]).reported_metric
    return [other.seeds[sb][key].metrics[m] - base.seeds[sa][key].metrics[m]
            for sa, sb in seed_pairs(base.seeds, other.seeds)]


def _compare(base: _ConditionResults, other: _ConditionResults, *, test: str, n_samples: int,
             seed: int, alpha: float, notes: list[str]) -> list[dict[str, Any]]:
    """Row by row: the paired test on seed-averaged per-query scores and the per-seed deltas."""
    out = []
    missing = [f"{t} ({p})" for t, p in base.mean if (t, p) not in other.mean]
    if missing:
        notes.append(f"{other.name} has no run for {', '.join(missing)}: those rows are not "
                     "compared")
    for key in [k for k in base.mean if k in other.mean]:
        task, pool = key
        try:
            (c,) = compare_results(base.mean[key], other.mean[key],
                                   metrics=[eval_task(task).reported_metric], test=test,
                                   n_samples=n_samples, seed=seed, task=task, pool=pool)
        except ConfigError as exc:
            notes.append(f"{other.name} vs baseline, {task} ({pool}): not compared ({exc})")
            continue
        deltas = _row_deltas(base, other, key)
        out.append({**c.to_dict(), "seed_deltas": deltas,
                    "consistent": consistent_sign(deltas),
                    "effect": is_effect(c.p_value, deltas, alpha)})
    return out


def _average_comparison(a: _ConditionResults, b: _ConditionResults, pool: str, *, test: str,
                        n_samples: int, seed: int, alpha: float) -> dict[str, Any] | None:
    """``b`` vs ``a`` on the unweighted average of the rows both have for ``pool`` (×100).

    The paired test runs on every query of those rows, each weighted by 1 / its row's query
    count, so its statistic is the difference of the averages.
    """
    keys = [k for k in a.mean if k[1] == pool and k in b.mean]
    if not keys:
        return None
    xa, xb = [], []
    for key in keys:
        m = eval_task(key[0]).reported_metric
        ra, rb = a.mean[key], b.mean[key]
        if ra.qids != rb.qids:
            return None
        xa.append(ra.per_query[m] / len(ra.qids))
        xb.append(rb.per_query[m] / len(rb.qids))
    p = paired_test(np.concatenate(xa), np.concatenate(xb), test=test, n_samples=n_samples,
                    seed=seed)

    def avg(c: _ConditionResults, s: Seed) -> float:
        r = c.seeds[s]
        return 100 * sum(r[k].metrics[eval_task(k[0]).reported_metric] for k in keys) / len(keys)

    pairs = seed_pairs(a.seeds, b.seeds)
    deltas = [avg(b, sb) - avg(a, sa) for sa, sb in pairs]
    mean_a = float(np.mean([avg(a, s) for s in a.seeds]))
    mean_b = float(np.mean([avg(b, s) for s in b.seeds]))
    return {"rows": len(keys), "a": mean_a, "b": mean_b, "delta": mean_b - mean_a,
            "p_value": p, "seed_deltas": deltas, "seeds": len(pairs),
            "consistent": consistent_sign(deltas),
            "effect": is_effect(p, deltas, alpha)}


def ablation_answer(key: str, comparisons: Sequence[Comparison | Mapping[str, Any]], *,
                    baseline: str, alpha: float) -> dict[str, Any]:
    """Answer one ablation question from a condition's row comparisons with the baseline.

    Rows count as gains or losses only when they are effects (:func:`~augret.experiment.
    seeds.is_effect`: p < ``alpha`` on seed-averaged scores and one sign in every seed, over
    at least two seeds); a comparison without ``seed_deltas`` is one run per condition, where
    training noise is not measured and nothing is called an effect. The text says how many
    rows were tested, that tests are per row and uncorrected, and how the result relates to
    the paper.
    """
    condition, what, expected, expected_text = ABLATIONS[key]
    rows = [c.to_dict() if isinstance(c, Comparison) else dict(c) for c in comparisons]
    for r in rows:
        r.setdefault("seed_deltas", [r["delta"]])
        r["effect"] = is_effect(r["p_value"], r["seed_deltas"], alpha)

    def row(c: dict[str, Any]) -> dict[str, Any]:
        t = eval_task(c["task"])
        return {"task": c["task"], "pool": c["pool"], "dataset": t.dataset.name,
                "paper_task": t.task.paper_number, "delta": 100 * c["delta"],
                "p_value": c["p_value"], "seed_deltas": [100 * d for d in c["seed_deltas"]]}

    gains = [row(c) for c in rows if c["effect"] and c["delta"] > 0]
    losses = [row(c) for c in rows if c["effect"] and c["delta"] < 0]
    unsure = [row(c) for c in rows if not c["effect"] and c["p_value"] < alpha]
    seeds = min((len(c["seed_deltas"]) for c in rows), default=0)

    def fmt(items: list[dict[str, Any]]) -> str:
        return "; ".join(f"{r['dataset']} task {r['paper_task']} ({r['pool']}, "
                         f"{r['delta']:+.1f}, p = {r['p_value']:.3g})" for r in items)

    n = len(rows)
    lines = [f"Compared {condition} with {baseline} on {n} table row(s) (task × pool)"
             + (f", {seeds} training seeds." if seeds >= MIN_SEEDS else
                ", one training run per condition.")]
    if seeds < MIN_SEEDS:
        lines.append(f"{len(unsure)} row(s) differ at p < {alpha:g}"
                     + (f" ({fmt(unsure)})" if unsure else "")
                     + ", but with one run per condition training noise is not measured, so "
                       "no difference is called an effect; train with several seeds "
                       "(`seeds: [0, 1, 2]`) to tell.")
    else:
        if gains:
            lines.append(f"{what.capitalize()} has an effect (p < {alpha:g} on seed-averaged "
                         f"scores and higher in every seed) on {len(gains)} of {n} row(s): "
                         f"{fmt(gains)}.")
        else:
            lines.append(f"No row shows an effect of {what} (p < {alpha:g} and higher in "
                         "every seed).")
        if losses:
            lines.append(f"Lower in every seed, p < {alpha:g}, on {len(losses)} row(s): "
                         f"{fmt(losses)}.")
        if unsure:
            lines.append(f"{len(unsure)} more row(s) reach p < {alpha:g} but change sign "
                         f"between seeds, so training noise could explain them: {fmt(unsure)}.")
    on_expected = [g for g in gains if eval_task(g["task"]).dataset.slug in expected]
    tested_expected = [c for c in rows if eval_task(c["task"]).dataset.slug in expected]
    if tested_expected:
        lines.append(f"The paper reports that {what} chiefly helps {expected_text}; here "
                     f"{len(on_expected)} of the {len(tested_expected)} row(s) of those tasks "
                     "gain.")
    else:
        lines.append(f"None of the {expected_text} the paper names was evaluated, so its claim "
                     "cannot be checked here.")
    lines.append("Each row is a separate paired test without multiple-comparison correction.")
    return {"question": f"Which tasks gain from {what}?", "condition": condition,
            "baseline": baseline, "alpha": alpha, "rows_compared": n, "seeds": seeds,
            "gains": gains, "losses": losses, "not_effects": unsure,
            "expected": list(expected), "answer": " ".join(lines)}


def write_report(out_dir: str | Path, conditions: Mapping[str, Any], baseline: str | None =
                 "baseline", *, data_dir: str | Path | None = None, test: str = "randomization",
                 n_samples: int = 10_000, seed: int = 0, alpha: float = 0.05,
                 plots: bool = True, title: str = "M-BEIR results",
                 notices: Sequence[str] = ()) -> Report:
    """Evaluate the conditions' run directories and write the report.

    Args:
        out_dir: Where ``report.md``, ``results.json``, ``conditions.json`` and ``plots/`` go.
        conditions: ``{name: {"run_dir": ..., "data_dir": ..., "description": ...}}`` (a bare
            run directory is accepted as the value when ``data_dir`` is given; an optional
            ``system`` line, e.g. the retriever and views, gets its own column; an optional
            ``seed_runs`` maps each training seed to its run directory). Order is kept. Every
            condition is compared with the baseline; the ablation answers use only the
            paper's conditions named in :data:`ABLATIONS`.
        baseline: The condition the others are compared with (absent: no comparison).
        data_dir: The qrels' data directory for conditions that do not name one.
        test: ``randomization`` (default) or ``bootstrap``.
        n_samples: Samples of the paired test.
        seed: Seed of the test.
        alpha: Significance level of the effect rule (and the ``*`` marks).
        plots: Write the PNG charts (needs matplotlib, extra ``plot``).
        title: Report title.
        notices: Lines shown first (e.g. that the VLM is simulated, or random).

    Raises:
        ConfigError: No condition, or one without a run or data directory.
        DataNotFoundError: A directory is missing, or a run directory holds no run file.
    """
    specs = _normalise(conditions, data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    conds = {name: _ConditionResults(name, spec, notes) for name, spec in specs.items()}
    has_base = baseline is not None and baseline in conds
    if baseline is not None and not has_base:
        notes.append(f"baseline {baseline!r} is not among the conditions: no comparison")
    kw: dict[str, Any] = {"test": test, "n_samples": n_samples, "seed": seed, "alpha": alpha}
    comparisons: dict[str, list[dict[str, Any]]] = {}
    averages: dict[str, dict[str, Any]] = {}
    if has_base:
        base = conds[str(baseline)]
        for name, c in conds.items():
            if name != baseline:
                comparisons[name] = _compare(base, c, notes=notes, **kw)
                averages[name] = {p: _average_comparison(base, c, p, **kw) for p in POOLS}
    contrasts = {}
    if "inference_only" in conds and "fully_enhanced" in conds:  # the paper's second question
        contrasts["inference_only vs fully_enhanced"] = {
            p: _average_comparison(conds["fully_enhanced"], conds["inference_only"], p, **kw)
            for p in POOLS}
    ablations = {key: ablation_answer(key, comparisons[cond], baseline=str(baseline),
                                      alpha=alpha)
                 for key, (cond, *_rest) in ABLATIONS.items() if cond in comparisons}
    data: dict[str, Any] = {
        "title": title, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "notices": list(notices), "baseline": baseline if has_base else None,
        "test": test, "n_samples": n_samples, "seed": seed, "alpha": alpha,
        "min_seeds": MIN_SEEDS,
        "conditions": {n: {**specs[n], "table": c.table.to_dict(), **c.averages(),
                           "rows": c.rows(),
                           "results": {f"{t}/{p}": r.to_dict() for (t, p), r in c.mean.items()}}
                       for n, c in conds.items()},
        "comparisons": comparisons,
        "average_deltas": {n: {p: (a[p] or {}).get("delta") for p in POOLS}
                           for n, a in averages.items()},
        "average_comparisons": averages, "contrasts": contrasts,
        "ablations": ablations, "notes": notes,
    }
    from augret.experiment.answers import plain_answers

    data["answers"] = plain_answers(data)
    written: list[Path] = []
    if plots:
        written = _plots(out / "plots", conds, comparisons, str(baseline))
    data["plots"] = [str(p.relative_to(out)) for p in written]
    from augret.experiment.report_md import render_markdown

    with atomic_writer(out / "report.md") as f:
        f.write(render_markdown(data))
    write_json(out / "results.json", data)
    write_json(out / CONDITIONS_FILE, {**specs, **({_NOTICES: list(notices)} if notices else {})})
    log.info("report written to %s", out / "report.md")
    return Report(out, out / "report.md", out / "results.json", written, data)


def _plots(folder: Path, conds: Mapping[str, _ConditionResults],
           comparisons: Mapping[str, list[dict[str, Any]]], baseline: str) -> list[Path]:
    from augret.experiment.plots import grouped_bars

    written = []
    for pool in POOLS:
        tasks = [t for t in _task_order(conds) if any((t, pool) in c.mean
                                                       for c in conds.values())]
        if not tasks:
            continue
        labels = [_label(t) for t in tasks]
        colors = {n: i for i, n in enumerate(conds)}
        rows = {n: c.rows() for n, c in conds.items()}
        series = {n: [rows[n].get(f"{t}/{pool}", {}).get("mean") for t in tasks] for n in conds}
        errors = {n: [rows[n].get(f"{t}/{pool}", {}).get("sd") for t in tasks] for n in conds}
        seeded = any(c.seeded for c in conds.values())
        written.append(grouped_bars(folder / f"bars_{pool}.png", labels, series,
                                    title=f"M-BEIR {pool} pools: reported metric per task"
                                          + (" (mean ± sd over seeds)" if seeded else ""),
                                    ylabel="hit@k × 100 (R@5; R@10 Fashion200K/FashionIQ)",
                                    colors=colors, errors=errors))
        if comparisons:
            deltas, marks = {}, {}
            for n, cs in comparisons.items():
                by = {c["task"]: c for c in cs if c["pool"] == pool}
                deltas[n] = [100 * by[t]["delta"] if t in by else None for t in tasks]
                marks[n] = [t in by and by[t]["effect"] for t in tasks]
            if any(v is not None for vs in deltas.values() for v in vs):
                written.append(grouped_bars(
                    folder / f"delta_{pool}.png", labels, deltas,
                    title=f"Δ vs {baseline} ({pool}); * effect: p < α on seed-averaged scores "
                          "and one sign in every seed", ylabel="Δ hit@k × 100", marks=marks,
                    colors=colors, zero_line=True))
    return written


def _task_order(conds: Mapping[str, _ConditionResults]) -> list[str]:
    from augret.data.ids import MBEIR_TEST_TASKS

    present = {t for c in conds.values() for t, _ in c.mean}
    return [t.name for t in MBEIR_TEST_TASKS if t.name in present]


def _label(task: str) -> str:
    t = eval_task(task)
    return f"{t.task.paper_number}. {t.dataset.name} {t.task.short}"

