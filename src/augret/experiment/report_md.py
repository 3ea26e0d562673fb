"""The markdown of the experiment report (see :mod:`augret.experiment.report`)."""

from __future__ import annotations

from typing import Any

from augret.data.ids import MBEIR_TEST_TASKS

__all__ = ["render_markdown"]

_POOL_TITLES = {
    "local": "Local pools (M-BEIR_local)",
    "union": "Union pool (all local pools present together; 5.6M on full M-BEIR)",
}


def _ms(stats: dict[str, Any] | None) -> str:
    """``mean ± sd`` (``mean`` for one run; ``–`` when missing)."""
    if not stats or stats.get("mean") is None:
        return "–"
    sd = stats.get("sd")
    return f"{stats['mean']:.1f}" + (f" ± {sd:.1f}" if sd is not None else "")


def _delta(comp: dict[str, Any] | None, scale: float = 100.0) -> str:
    if not comp:
        return ""
    return f" ({scale * comp['delta']:+.1f}{'*' if comp['effect'] else ''})"


def _seed_values(values: list[float | None], *, signed: bool = False) -> str:
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return " / ".join("–" if v is None else fmt.format(v) for v in values)


def _tasks(data: dict[str, Any], pool: str) -> list[Any]:
    rows = {n: c["rows"] for n, c in data["conditions"].items()}
    return [t for t in MBEIR_TEST_TASKS if any(f"{t.name}/{pool}" in r for r in rows.values())]


def _pool_table(pool: str, data: dict[str, Any]) -> str:
    names = list(data["conditions"])
    tasks = _tasks(data, pool)
    if not tasks:
        return ""
    comps = {n: {c["task"]: c for c in cs if c["pool"] == pool}
             for n, cs in data["comparisons"].items()}
    head = ["#", "Task", "Dataset", "Metric", *names]
    lines = [f"## {_POOL_TITLES[pool]}", "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join(["---:", "---", "---", "---"] + ["---:"] * len(names)) + "|"]
    for t in tasks:
        cells = [str(t.task.paper_number), t.task.short, t.dataset.name, t.reported_metric]
        for n in names:
            stats = data["conditions"][n]["rows"].get(f"{t.name}/{pool}")
            cells.append(_ms(stats) + (_delta(comps.get(n, {}).get(t.name)) if stats else ""))
        lines.append("| " + " | ".join(cells) + " |")
    avg = ["", "**Average**", "", ""]
    for n in names:
        c = data["conditions"][n]
        label = c["table"]["average"]["label"].removeprefix("Average").strip()
        stats = {"mean": c["mean"][pool], "sd": c["sd"][pool]}
        comp = (data["average_comparisons"].get(n) or {}).get(pool)
        text = _ms(stats) + (_delta(comp, 1.0) if stats["mean"] is not None else "")
        avg.append(f"**{text}**" + (f" {label}" if label and stats["mean"] is not None else ""))
    lines.append("| " + " | ".join(avg) + " |")
    lines.append("")
    return "\n".join(lines)


def _seeds_table(data: dict[str, Any]) -> str:
    lines = ["## Seeds", "",
             "Each training seed's table averages (a condition without a trained encoder has "
             "one run), and their mean ± sd.", "",
             "| Condition | Seeds | Local per seed | Local mean ± sd | Union per seed | "
             "Union mean ± sd |", "|---|---|---:|---:|---:|---:|"]
    for name, c in data["conditions"].items():
        seeds = ", ".join("–" if e["seed"] is None else str(e["seed"]) for e in c["seeds"])
        cells = [name, seeds]
        for pool in ("local", "union"):
            cells += [_seed_values([e[pool] for e in c["seeds"]]),
                      _ms({"mean": c["mean"][pool], "sd": c["sd"][pool]})]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def _comparison_tables(data: dict[str, Any]) -> str:
    base = data["baseline"]
    out = ["## Comparisons with the baseline", "",
           f"Paired {data['test']} test on per-query scores of the reported metric, each "
           f"query's score averaged over a condition's seeds ({data['n_samples']:,} samples, "
           f"seed {data['seed']}, two-sided), one test per row without multiple-comparison "
           f"correction. Per-seed Δ pairs the runs of equal seeds (a condition with one run "
           f"is paired with each seed of the other). `*` marks an effect: p < "
           f"{data['alpha']:g} and the same sign in each of at least {data['min_seeds']} "
           "seeds.", ""]
    for name, cs in data["comparisons"].items():
        avg = (data["average_comparisons"].get(name) or {})
        out += [f"### {name} vs {base}", ""]
        for pool in ("local", "union"):
            a = avg.get(pool)
            if a:
                out.append(f"- {pool} average: {a['a']:.1f} → {a['b']:.1f}, Δ "
                           f"{a['delta']:+.1f}{'*' if a['effect'] else ''} (per seed "
                           f"{_seed_values(a['seed_deltas'], signed=True)}; "
                           f"p = {a['p_value']:.3g})")
        out += ["", "| Task | Dataset | Pool | Metric | " + f"{base} | {name} | Δ | p | "
                "Δ per seed | queries |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in cs:
            t = next(x for x in MBEIR_TEST_TASKS if x.name == c["task"])
            star = "*" if c["effect"] else ""
            per_seed = _seed_values([100 * d for d in c["seed_deltas"]], signed=True)
            out.append(f"| {t.task.paper_number} {t.task.short} | {t.dataset.name} | "
                       f"{c['pool']} | {c['metric']} | {100 * c['a']:.1f} | {100 * c['b']:.1f} "
                       f"| {100 * c['delta']:+.1f}{star} | {c['p_value']:.3g} | {per_seed} | "
                       f"{c['num_queries']:,} |")
        out.append("")
    return "\n".join(out)


def _condition_tables(data: dict[str, Any]) -> str:
    lines = ["## Per-condition tables", "",
             "Each seed's value (seeds in the order of the Seeds table), then mean ± sd.", ""]
    for name, c in data["conditions"].items():
        lines += [f"### {name}", "", "| # | Task | Dataset | Metric | Local | Union |",
                  "|---:|---|---|---|---:|---:|"]
        for t in MBEIR_TEST_TASKS:
            cells = []
            for pool in ("local", "union"):
                stats = c["rows"].get(f"{t.name}/{pool}")
                if not stats:
                    cells.append("–")
                elif stats["n"] > 1:
                    cells.append(f"{_seed_values(stats['seeds'])} → {_ms(stats)}")
                else:
                    cells.append(_ms(stats))
            if cells != ["–", "–"]:
                lines.append(f"| {t.task.paper_number} | {t.task.short} | {t.dataset.name} | "
                             f"{t.reported_metric} | {cells[0]} | {cells[1]} |")
        avg = [_ms({"mean": c["mean"][p], "sd": c["sd"][p]}) for p in ("local", "union")]
        lines += [f"|  | **{c['table']['average']['label']}** |  |  | **{avg[0]}** | "
                  f"**{avg[1]}** |", ""]
    return "\n".join(lines)


def render_markdown(data: dict[str, Any]) -> str:
    """The whole ``report.md`` from the content of ``results.json``."""
    lines = [f"# {data['title']}", ""]
    for notice in data.get("notices", []):
        lines += [f"> **{notice}**", ""]
    if data.get("answers"):
        lines += ["## In short", ""]
        for i, a in enumerate(data["answers"], 1):
            lines += [f"{i}. **{a['question']}** {a['answer']}", ""]
    lines += [f"Generated {data['created']} by augret. Values are the paper's reported metric × "
              "100 (hit@5, UniIR's \"Recall@5\"; hit@10 for Fashion200K and FashionIQ), "
              "mean ± sd over training seeds where a condition has several; averages are "
              "unweighted means of the rows present.", ""]
    system = any(c.get("system") for c in data["conditions"].values())  # experiment reports
    lines += ["## Conditions", "",
              f"| Condition |{' System |' if system else ''} Description | Seeds | "
              "Run directory | Qrels from |", "|---|---|---|---|---|" + ("---|" if system else "")]
    for name, c in data["conditions"].items():
        cells = [f"{name}{' ← baseline' if name == data['baseline'] else ''}"]
        cells += [c.get("system") or ""] if system else []
        seeds = ", ".join(str(e["seed"]) for e in c["seeds"] if e["seed"] is not None) or "–"
        run_dir = (f"`{c['run_dir']}`" if not c.get("seed_runs") else
                   "<br>".join(f"`{d}`" for d in c["seed_runs"].values()))
        cells += [c.get("description") or "", seeds, run_dir, f"`{c['data_dir']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if data["baseline"]:
        lines += [f"Cells of other conditions show (Δ vs {data['baseline']}); `*`: an effect, "
                  f"p < {data['alpha']:g} in a paired {data['test']} test on seed-averaged "
                  f"per-query scores and the same sign in every seed (at least "
                  f"{data['min_seeds']}).", ""]
    for pool in ("local", "union"):
        block = _pool_table(pool, data)
        if block:
            lines.append(block)
    lines.append(_seeds_table(data))
    for plot in data.get("plots", []):
        lines += [f"![{plot}]({plot})", ""]
    if data["ablations"]:
        lines += ["## Ablation questions", ""]
        for a in data["ablations"].values():
            lines += [f"### {a['question']} ({a['condition']} vs {a['baseline']})", "",
                      a["answer"], ""]
    if data["comparisons"]:
        lines.append(_comparison_tables(data))
    lines.append(_condition_tables(data))
    if data["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in data["notes"]] + [""]
    return "\n".join(lines)
