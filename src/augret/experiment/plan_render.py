"""Rich tables of a :class:`~augret.experiment.plan.Plan`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from augret.experiment.plan import Plan

__all__ = ["human_bytes", "render_plan"]


def human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _n(v: float) -> str:
    return f"{v:,.0f}"


def _h(v: float) -> str:
    return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"


def render_plan(p: Plan, console: Any = None) -> None:
    """Print the plan's tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    cfg = p.config
    console.print(f"[bold]Plan of {cfg['name']!r}[/bold] on {p.data_dir} "
                  f"(images identified by {'path' if p.mode == 'fast' else 'content'})")

    t = Table(title="Enhancement stages (distinct keys after de-duplication)")
    for col in ("split", "side", "files", "rows", "pass-through", "generate", "distinct keys",
                "new distinct", "missing images (rows / files)"):
        t.add_column(col, justify="left" if col in ("split", "side") else "right")
    for s in p.stages:
        t.add_row(s.split, s.side, str(len(s.files)), _n(s.rows), _n(s.passthrough),
                  _n(s.generate), _n(s.unique_keys), _n(s.new_unique_keys),
                  f"{_n(s.missing_image_rows)} / {_n(s.missing_images)}")
    console.print(t)

    t = Table(title="Generation by route")
    for col in ("route", "rows", "distinct keys", "mean tokens", "budget", "expected tokens",
                "upper bound", "GPU-hours"):
        t.add_column(col, justify="left" if col == "route" else "right")
    for name, r in p.routes.items():
        t.add_row(name, _n(r["rows"]), _n(r["unique"]), _n(r["mean_tokens"]),
                  _n(r["budget_tokens"]), _n(r["expected_tokens"]), _n(r["max_tokens"]),
                  _h(r["gpu_hours"]))
    e = p.enhancement
    t.add_row("[bold]total", _n(e["generate"]), _n(e["unique_keys"]), "", "",
              _n(e["expected_output_tokens"]), _n(e["max_output_tokens"]),
              _h(p.gpu_hours["enhancement"]))
    console.print(t)

    t = Table(title=f"Embeddings ({p.embedding['encoder']}, dim {p.embedding['dim']})")
    for col in ("encoder", "side", "view", "rows", "dim", "items/s", "GPU-hours"):
        t.add_column(col, justify="left" if col in ("encoder", "side", "view") else "right")
    for s in p.embedding["sets"]:
        t.add_row(s["encoder"], s["side"], s["view"], _n(s["rows"]),
                  str(s["dim"]) if s["dim"] else "?", _n(s["items_per_s"]),
                  _h(s["gpu_hours"]))
    console.print(t)

    t = Table(title=f"Exact indexes (vectors + ids; kind {p.index['kind']}): flat holds "
                    "float32 in RAM, flat16 maps float16 from disk")
    for col in ("encoder", "view", "pool", "conditions", "rows", "flat", "flat16",
                "largest flat", "largest flat16"):
        t.add_column(col, justify="left" if col in ("encoder", "view", "pool", "conditions")
                     else "right")
    for i in p.index["indexes"]:
        t.add_row(i["encoder"], i["view"], i["pool"], ", ".join(i.get("conditions", [])),
                  _n(i["rows"]), human_bytes(i["bytes"]), human_bytes(i["fp16_bytes"]),
                  human_bytes(i["largest_index_bytes"]), human_bytes(i["largest_fp16_bytes"]))
    console.print(t)
    machine = p.index.get("machine") or {}
    if machine:
        gpus = machine.get("gpu_bytes") or []
        console.print(f"compared with {machine['source']}: "
                      f"{human_bytes(machine['ram_bytes']) if machine.get('ram_bytes') else '?'}"
                      f" RAM, " + (f"{len(gpus)} GPU(s) of {human_bytes(min(gpus))}" if gpus
                                   else "no GPU"), highlight=False)

    tr = p.training
    if tr.get("runs"):
        t = Table(title=f"Training ({_n(tr['train_queries'])} queries per epoch)")
        for col in ("training run", "conditions", "seeds", "epochs", "samples per seed",
                    "samples/s", "GPU-hours"):
            t.add_column(col, justify="left" if col in ("training run", "conditions", "seeds")
                         else "right")
        for r in tr["runs"]:
            seeds = ", ".join("recipe" if s is None else str(s) for s in r.get("seeds", [None]))
            t.add_row(r["view"], ", ".join(r["conditions"]), seeds, str(r["epochs"]),
                      _n(r["samples"]), _n(r["samples_per_s"]), _h(r["gpu_hours"]))
        console.print(t)

    thr = cfg["planning"]["throughput"]
    t = Table(title=f"GPU-hours (per GPU: {_n(thr['vlm_output_tokens_per_s'])} VLM tokens/s, "
                    f"{_n(thr['embed_items_per_s'])} embeddings/s "
                    f"({_n(thr['mllm_embed_items_per_s'])} MLLM), "
                    f"{_n(thr['train_samples_per_s'])} training samples/s "
                    f"({_n(thr['mllm_train_samples_per_s'])} MLLM))")
    t.add_column("stage")
    t.add_column("GPU-hours", justify="right")
    for k in ("enhancement", "embedding", "training", "total"):
        t.add_row(k, _h(p.gpu_hours[k]))
    t.add_row(f"wall clock on {cfg['gpus']} GPUs", _h(p.gpu_hours["wall_hours"]))
    t.add_row("enhancement at full budgets", _h(e["gpu_hours_max"]))
    console.print(t)
    for note in p.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    for warning in p.warnings:
        console.print(f"[red]warning:[/red] {warning}")
