"""The markdown of the experiment report (see :mod:`augret.experiment.report`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from augret.data.ids import MBEIR_TEST_TASKS
from augret.evaluate.compare import Comparison
from augret.evaluate.table import MBEIRTable

__all__ = ["render_markdown"]

_POOL_TITLES = {
    "local": "Local pools (M-BEIR_local)",
    "union": "Union pool (all local pools present together; 5.6M on full M-BEIR)",
}


def _cell(value: float | None, comp: Comparison | None, alpha: float) -> str:
    if value is None:
        return "–"
    if comp is None:
        return f"{value:.1f}"
    star = "*" if comp.p_value < alpha else ""
    return f"{value:.1f} ({100 * comp.delta:+.1f}{star})"


def _pool_table(pool: str, tables: Mapping[str, MBEIRTable],
                comparisons: Mapping[str, list[Comparison]], data: dict[str, Any]) -> str:
    names = list(tables)
    rows = {n: {r.task.name: r for r in t.rows} for n, t in tables.items()}
    tasks = [t for t in MBEIR_TEST_TASKS
             if any(t.name in rows[n] and rows[n][t.name].value(pool) is not None for n in names)]
    if not tasks:
        return ""
    comps = {n: {c.task: c for c in cs if c.pool == pool} for n, cs in comparisons.items()}
    head = ["#", "Task", "Dataset", "Metric", *names]
    lines = [f"## {_POOL_TITLES[pool]}", "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join(["---:", "---", "---", "---"] + ["---:"] * len(names)) + "|"]
    for t in tasks:
        cells = [str(t.task.paper_number), t.task.short, t.dataset.name, t.reported_metric]
        for n in names:
            r = rows[n].get(t.name)
            cells.append(_cell(r.value(pool) if r else None, comps.get(n, {}).get(t.name),
                               data["alpha"]))
        lines.append("| " + " | ".join(cells) + " |")
    avg = ["", "**Average**", "", ""]
    for n in names:
        v = tables[n].average(pool)
        d = data["average_deltas"].get(n, {}).get(pool)
        label = tables[n].average_label.removeprefix("Average").strip()
        text = "–" if v is None else f"{v:.1f}" + (f" ({d:+.1f})" if d is not None else "")
        avg.append(f"**{text}**" + (f" {label}" if label and v is not None else ""))
    lines.append("| " + " | ".join(avg) + " |")
    lines.append("")
    return "\n".join(lines)


def _comparison_tables(data: dict[str, Any], comparisons: Mapping[str, list[Comparison]]) -> str:
    base = data["baseline"]
    out = ["## Comparisons with the baseline", "",
           f"Paired {data['test']} test on per-query scores of the reported metric "
           f"({data['n_samples']:,} samples, seed {data['seed']}, two-sided), one test per row "
           f"without multiple-comparison correction; `*` marks p < {data['alpha']:g}.", ""]
    for name, cs in comparisons.items():
        out += [f"### {name} vs {base}", "",
                "| Task | Dataset | Pool | Metric | " + f"{base} | {name} | Δ | p | queries |",
                "|---|---|---|---|---:|---:|---:|---:|---:|"]
        for c in cs:
            t = next(x for x in MBEIR_TEST_TASKS if x.name == c.task)
            star = "*" if c.p_value < data["alpha"] else ""
            out.append(f"| {t.task.paper_number} {t.task.short} | {t.dataset.name} | {c.pool} | "
                       f"{c.metric} | {100 * c.a:.1f} | {100 * c.b:.1f} | "
                       f"{100 * c.delta:+.1f}{star} | {c.p_value:.3g} | {c.num_queries:,} |")
        out.append("")
    return "\n".join(out)


def render_markdown(data: dict[str, Any], tables: Mapping[str, MBEIRTable],
                    comparisons: Mapping[str, list[Comparison]]) -> str:
    """The whole ``report.md``."""
    lines = [f"# {data['title']}", "", f"Generated {data['created']} by augret. Values are the "
             "paper's reported metric × 100 (hit@5, UniIR's \"Recall@5\"; hit@10 for Fashion200K "
             "and FashionIQ); averages are unweighted means of the rows present.", ""]
    system = any(c.get("system") for c in data["conditions"].values())  # experiment reports
    lines += ["## Conditions", "",
              f"| Condition |{' System |' if system else ''} Description | Run directory | "
              "Qrels from |", "|---|---|---|---|" + ("---|" if system else "")]
    for name, c in data["conditions"].items():
        cells = [f"{name}{' ← baseline' if name == data['baseline'] else ''}"]
        cells += [c.get("system") or ""] if system else []
        cells += [c.get("description") or "", f"`{c['run_dir']}`", f"`{c['data_dir']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if data["baseline"]:
        lines += [f"Cells of other conditions show (Δ vs {data['baseline']}); `*`: p < "
                  f"{data['alpha']:g} in a paired {data['test']} test.", ""]
    for pool in ("local", "union"):
        block = _pool_table(pool, tables, comparisons, data)
        if block:
            lines.append(block)
    for plot in data.get("plots", []):
        lines += [f"![{plot}]({plot})", ""]
    if data["ablations"]:
        lines += ["## Ablation questions", ""]
        for a in data["ablations"].values():
            lines += [f"### {a['question']} ({a['condition']} vs {a['baseline']})", "",
                      a["answer"], ""]
    if comparisons:
        lines.append(_comparison_tables(data, comparisons))
    lines += ["## Per-condition tables", ""]
    for name, table in tables.items():
        lines += [f"### {name}", "", table.to_markdown()]
    if data["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in data["notes"]] + [""]
    return "\n".join(lines)
