"""The ray engine of ``augret enhance`` against the single-process runner (tiny VLM, CPU).

The same input (the shapes sample's test split, queries and candidates, ``--reps`` copies of
its images so there is work to share) is enhanced four times, each with an empty store:
the local runner (one torch thread, like one Ray worker), and the ray engine with 1 and with
2 workers (one CPU each) on a local Ray instance. Reported: wall time, generated rows/s, the
2-vs-1-worker scaling ratio, and the ray engine's per-row overhead against the local runner
(its Ray start-up, plan and assembly passes included). The tiny model's text is meaningless;
the work and the bookkeeping are real. On a machine with as many cores as workers + 1 the
scaling is meaningful; on a busy 2-core machine expect less.

    .venv/bin/python benchmarks/bench_enhance_ray.py [--reps 2] [--tokens 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from augret.data.sample import write_sample
from augret.enhance import EnhanceConfig, enhance
from augret.ray_resources import RayResources


def one(data: Path, out: Path, tokens: int, **engine) -> tuple[float, dict]:
    cfg = EnhanceConfig(model="tiny", query_tokens=tokens, candidate_tokens=tokens,
                        batch_size=8, workers=2, store=out / "store.sqlite", **engine)
    start = time.perf_counter()
    report = enhance(data, out / "enh", cfg, progress=False)
    return time.perf_counter() - start, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2, help="sample size multiplier")
    ap.add_argument("--tokens", type=int, default=16, help="output tokens per item")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the local runner gets what one Ray worker gets
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_sample(data, reps=args.reps)
        runs = [("local runner", {}),
                ("ray, 1 worker", {"engine": "ray", "ray": RayResources(workers=1)}),
                ("ray, 2 workers", {"engine": "ray", "ray": RayResources(workers=2)})]
        outputs = []
        for name, engine in runs:
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            seconds, report = one(data, out, args.tokens, **engine)
            lr = report["last_run"]
            gen = report.get("engine", {}).get("stages", {}).get("generate")
            rows.append({"run": name, "total": lr["total"], "generated": lr["generated"],
                         "seconds": seconds, "rows_per_s": lr["total"] / seconds,
                         "generated_per_s": lr["generated"] / seconds,
                         "generate_stage_rows_per_s": gen["rows_per_s"] if gen else None})
            outputs.append(sorted((p.relative_to(out / "enh"), p.read_bytes())
                                  for p in (out / "enh").rglob("*.jsonl")))
    same = all(o == outputs[0] for o in outputs)
    local, one_w, two_w = rows
    summary = {
        "identical_output": same,
        "scaling_2_vs_1_workers": one_w["seconds"] / two_w["seconds"],
        "generate_stage_scaling": (two_w["generate_stage_rows_per_s"]
                                   / one_w["generate_stage_rows_per_s"]),
        "ray_overhead_ms_per_row": 1000 * (one_w["seconds"] - local["seconds"]) / local["total"],
    }
    if args.json:
        print(json.dumps({"runs": rows, "summary": summary}, indent=2))
        return
    table = Table(title=f"enhance: local runner vs ray engine ({local['total']} rows, "
                        f"{local['generated']} generations, tiny VLM, CPU)")
    for col in ("run", "seconds", "rows/s", "generated/s", "generate stage rows/s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in rows:
        stage = r["generate_stage_rows_per_s"]
        table.add_row(r["run"], f"{r['seconds']:.1f}", f"{r['rows_per_s']:.1f}",
                      f"{r['generated_per_s']:.2f}", f"{stage:.2f}" if stage else "-")
    Console().print(table)
    Console().print(
        f"identical output: {summary['identical_output']}; 2 vs 1 workers: "
        f"{summary['scaling_2_vs_1_workers']:.2f}x end to end, "
        f"{summary['generate_stage_scaling']:.2f}x in the generate stage; ray engine "
        f"overhead vs local: {summary['ray_overhead_ms_per_row']:.1f} ms/row")


if __name__ == "__main__":
    main()
