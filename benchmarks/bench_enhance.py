"""Enhancement runner benchmarks (tiny VLM on CPU; its text is meaningless, the work is real).

(a) pipeline overhead: the runner against calling the backend directly on the same items
    (every image distinct, so both paths generate the same batches). The two paths alternate
    ``--repeats`` times after a warm-up of each; the table shows the median, the spread and
    the process CPU time (all threads) of each path, and the runner / direct ratio: the median
    of the ratios of adjacent runs. Wall time moves with other processes' load on a shared
    machine; CPU time much less, so its ratio is the stable measure of the runner's own work
    (the runner also overlaps image reading and decoding with the model, which wall time
    rewards on an idle machine);
(b) peak memory for 1x and 10x the items (each run in its own process; must stay flat);
(c) de-duplication: a pool whose images repeat across pools is generated once per image.

    .venv/bin/python benchmarks/bench_enhance.py [--items-reps 8] [--repeats 9] [--tokens 16]
        [--backend fake --item-delay 0.03]   # a fixed per-item model time instead of the VLM
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from augret.data import MBEIRDir, iter_candidates
from augret.data.jsonl import write_jsonl
from augret.data.sample import write_sample
from augret.enhance import EnhanceConfig, enhance, load_prompts, route
from augret.enhance.backends import GenerationParams, GenerationRequest, get_backend
from augret.enhance.images import load_image
from augret.images import read_image_file

POOL = "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def direct(data: Path, backend, tokens: int, batch: int) -> float:
    """Seconds to read, decode and generate every image of the pool without the runner."""
    d = MBEIRDir(data)
    prompts = load_prompts()
    start = time.perf_counter()
    cands = list(iter_candidates(data / POOL))
    for i in range(0, len(cands), batch):
        reqs = []
        for c in cands[i: i + batch]:
            r = route(c)
            img = load_image(read_image_file(d.resolve_image(c.img_path)))
            reqs.append(GenerationRequest(prompts.messages(r, None), img, tokens))
        backend.generate(reqs, GenerationParams())
    return time.perf_counter() - start


def runner(data: Path, out: Path, backend, tokens: int, batch: int) -> tuple[float, dict]:
    cfg = EnhanceConfig(side="candidates", files="*mscoco_task0*", candidate_tokens=tokens,
                        batch_size=batch, store=out / "store.sqlite")
    start = time.perf_counter()
    report = enhance(data, out / "enh", cfg, backend=backend, progress=False)
    return time.perf_counter() - start, report


def peak_rss_mb(data: Path, out: Path, tokens: int) -> tuple[float, int]:
    """Run the CLI in a child process; its peak resident memory (MB) and item count."""
    args = ["-q", "enhance", str(data), "--out", str(out), "--side", "candidates",
            "--files", "*mscoco_task0*", "--model", "tiny", "--candidate-tokens", str(tokens),
            "--store", str(out) + ".sqlite", "--no-progress", "--json"]
    code = ("import resource, sys; from augret.cli.main import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True)
    peak_kb = int(res.stderr.strip().splitlines()[-1])
    return peak_kb / 1024, json.loads(res.stdout)["last_run"]["total"]


def overhead(data: Path, work: Path, backend, tokens: int, batch: int,
             repeats: int) -> dict[str, list[float]]:
    """Alternate the direct path and the runner ``repeats`` times (after a warm-up of each);
    wall and CPU seconds of every repetition. Each runner run starts from an empty store."""
    direct(data, backend, tokens, batch)
    warm = runner(data, work / "warm", backend, tokens, batch)[1]["last_run"]
    assert warm["cached"] == 0 and warm["failed"] == 0, warm  # the same work as direct
    out: dict[str, list[float]] = {"direct": [], "runner": [], "direct_cpu": [], "runner_cpu": []}
    for k in range(repeats):
        c0 = _cpu()
        out["direct"].append(direct(data, backend, tokens, batch))
        c1 = _cpu()
        out["runner"].append(runner(data, work / f"r{k}", backend, tokens, batch)[0])
        out["direct_cpu"].append(c1 - c0)
        out["runner_cpu"].append(_cpu() - c1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10, help="scale of the 10x memory run")
    ap.add_argument("--items-reps", type=int, default=8,
                    help="sample renderings per shape and colour of (a): 36 images each")
    ap.add_argument("--repeats", type=int, default=9, help="alternating repetitions of (a)")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--backend", choices=["transformers", "fake"], default="transformers")
    ap.add_argument("--item-delay", type=float, default=0.03,
                    help="fake backend: seconds of model time per item")
    ap.add_argument("--skip-memory", action="store_true", help="only (a) and (c)")
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small = root / "x1"
        write_sample(small, reps=1, train_reps=0)
        items = root / "items"
        write_sample(items, reps=args.items_reps, train_reps=0)
        if args.backend == "fake":
            backend = get_backend("fake", "fake-vlm", item_delay=args.item_delay)
            what = f"fake backend, {args.item_delay * 1000:g} ms per item"
        else:
            backend = get_backend("transformers", "tiny", batch_size=args.batch)
            what = f"tiny VLM, {args.tokens} tokens, CPU"
        runs = overhead(items, root / "overhead", backend, args.tokens, args.batch,
                        args.repeats)
        n = sum(1 for _ in iter_candidates(items / POOL))
        t = Table(title=f"(a) overhead on {n} distinct images, {what}; median of "
                        f"{args.repeats} alternating runs")
        for c in ("path", "median s", "min s", "max s", "spread", "items/s", "CPU s"):
            t.add_column(c, justify="right")
        med = {}
        for path, label in (("direct", "backend directly"), ("runner", "augret runner")):
            wall = runs[path]
            med[path] = statistics.median(wall)
            med[f"{path}_cpu"] = statistics.median(runs[f"{path}_cpu"])
            t.add_row(label, f"{med[path]:.3f}", f"{min(wall):.3f}", f"{max(wall):.3f}",
                      f"{(max(wall) - min(wall)) / med[path]:.1%}", f"{n / med[path]:.1f}",
                      f"{med[f'{path}_cpu']:.3f}")
        console.print(t)
        ratio = {k: statistics.median(r / d for r, d in zip(runs[f"runner{k}"],
                                                             runs[f"direct{k}"], strict=True))
                 for k in ("", "_cpu")}
        console.print(f"runner / direct (median of {args.repeats} adjacent pairs): "
                      f"CPU {ratio['_cpu']:.3f}, wall {ratio['']:.3f}")
        t_direct = med["direct"] * 36 / n  # seconds per 36 images, for (c)

        # (c) de-duplication: the same images listed in 4 pools
        dup = root / "dup"
        write_sample(dup, reps=1, train_reps=0)
        rows = [c.to_dict() for c in iter_candidates(dup / POOL)]
        for k in range(1, 4):
            write_jsonl(dup / f"cand_pool/local/mbeir_mscoco_task0_copy{k}_cand_pool.jsonl",
                        [{**r, "did": f"9:{1000 * k + i}"} for i, r in enumerate(rows)])
        cfg = EnhanceConfig(side="candidates", files="*mscoco_task0*",
                            candidate_tokens=args.tokens, batch_size=args.batch,
                            store=root / "dup.sqlite")
        start = time.perf_counter()
        rep = enhance(dup, root / "dup-out", cfg, backend=backend, progress=False)
        t_dup = time.perf_counter() - start
        run = rep["last_run"]
        t = Table(title="(c) de-duplication: 4 pools listing the same images")
        for c in ("rows", "generated", "cached", "seconds", "est. without store s", "saving"):
            t.add_column(c, justify="right")
        est = t_direct / 36 * run["total"]
        t.add_row(str(run["total"]), str(run["generated"]), str(run["cached"]), f"{t_dup:.2f}",
                  f"{est:.2f}", f"{est / t_dup:.1f}x")
        console.print(t)
        backend.close()
        if args.skip_memory:
            return

        # (b) memory: 1x and Nx the items, each in a fresh process
        big = root / f"x{args.reps}"
        write_sample(big, reps=args.reps, train_reps=0)
        t = Table(title="(b) peak resident memory of a whole enhance run (child process)")
        for c in ("items", "peak MB"):
            t.add_column(c, justify="right")
        peaks = []
        for data in (small, big):
            mb, total = peak_rss_mb(data, root / f"mem-{data.name}", args.tokens)
            peaks.append(mb)
            t.add_row(str(total), f"{mb:.0f}")
        console.print(t)
        console.print(f"peak memory {args.reps}x / 1x = {peaks[1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main()
