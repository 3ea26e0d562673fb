"""Enhancement runner benchmarks (tiny VLM on CPU; its text is meaningless, the work is real).

(a) pipeline overhead: the runner against calling the backend directly on the same items;
(b) peak memory for 1x and 10x the items (each run in its own process; must stay flat);
(c) de-duplication: a pool whose images repeat across pools is generated once per image.

    .venv/bin/python benchmarks/bench_enhance.py [--reps 10] [--tokens 16]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10, help="scale of the 10x memory run")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small = root / "x1"
        write_sample(small, reps=1, train_reps=0)
        backend = get_backend("transformers", "tiny", batch_size=args.batch)
        direct(small, backend, args.tokens, args.batch)  # warm-up
        t_direct = direct(small, backend, args.tokens, args.batch)
        t_runner, report = runner(small, root / "r1", backend, args.tokens, args.batch)
        n = report["last_run"]["total"]
        t = Table(title=f"(a) overhead on {n} images, tiny VLM, {args.tokens} tokens, CPU")
        for c in ("path", "seconds", "items/s"):
            t.add_column(c, justify="right")
        t.add_row("backend directly", f"{t_direct:.2f}", f"{n / t_direct:.1f}")
        t.add_row("augret runner", f"{t_runner:.2f}", f"{n / t_runner:.1f}")
        console.print(t)
        console.print(f"runner / direct time = {t_runner / t_direct:.2f}")

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
        est = t_direct / n * run["total"]
        t.add_row(str(run["total"]), str(run["generated"]), str(run["cached"]), f"{t_dup:.2f}",
                  f"{est:.2f}", f"{est / t_dup:.1f}x")
        console.print(t)
        backend.close()

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
