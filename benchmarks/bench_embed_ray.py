"""``augret embed --engine ray`` on CPU: 1 vs 2 Ray workers against the single-process runner.

Side by side in one run, on the same rendered shapes-world sample and the same random-init
CLIP (``--model small``: a 6-layer, 192-wide CLIP on 128-pixel images, saved as an encoder
directory the workers load by path; ``tiny``: the registered tiny CLIP), in alternating
repeats (best of ``--repeats``):

* ``local``: ``embed_dir`` in this process with 1 torch thread (the decoding in-process);
* ``ray xN``: the same through a pool of N actors of 1 CPU each, on a local Ray instance
  started once (its start is not timed; each run starts its own actors, which is timed).

For each: wall time, time to the first written shard (actor start-up and model load for Ray),
end-to-end rows/s, steady rows/s (rows written after the first shard over the time they
took), the scaling of steady rows/s against ``ray x1`` and the extra worker-milliseconds per
row against local (``extra ms/row = 1000 * (workers / ray rows/s - 1 / local rows/s)``).
The encoder is passed in, so the runs skip the driver's one-off remote describe (``augret
embed`` pays it once per run).

    .venv/bin/python benchmarks/bench_embed_ray.py [--model small|tiny] [--reps 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # Ray workers: 1 thread, like the local run

import ray
import torch
from rich.console import Console
from rich.table import Table

from augret.data.sample import write_sample
from augret.encode import EmbedConfig, embed_dir, load_encoder
from augret.encode.backbones import BackboneSpec, build_backbone
from augret.encode.checkpoint import save_encoder_dir
from augret.encode.clip_sf import CLIPScoreFusion
from augret.formats.embeddings import EntryWriter
from augret.ray_resources import RayResources

SMALL_CFG = {
    "embed_dim": 128,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 128, "layers": 6, "width": 192, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 192, "heads": 3,
                 "layers": 6},
}


def small_encoder(root: Path) -> str:
    """Save a random-init small CLIP as an encoder directory; its path is the encoder name."""
    spec = BackboneSpec("open_clip", "bench-small", model_cfg=SMALL_CFG, quick_gelu=True)
    module, _ = build_backbone(spec, load_weights=False)
    save_encoder_dir(root, CLIPScoreFusion(module, spec.kind), spec, name="bench-small")
    return str(root)


class WriteClock:
    """Times every shard the driver writes (both engines write through EntryWriter)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int]] = []
        self._real = EntryWriter.write_shard

    def __enter__(self) -> WriteClock:
        real, events = self._real, self.events

        def timed(writer, index, vectors, ids, stats):
            real(writer, index, vectors, ids, stats)
            events.append((time.perf_counter(), int(stats["input_rows"])))

        EntryWriter.write_shard = timed
        return self

    def __exit__(self, *exc: object) -> None:
        EntryWriter.write_shard = self._real


def run_once(data: Path, out: Path, cfg: EmbedConfig, enc) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    with WriteClock() as clock:
        t0 = time.perf_counter()
        embed_dir(data, out, cfg, encoder=enc, progress=False)
        wall = time.perf_counter() - t0
    (t1, _), (tn, _) = clock.events[0], clock.events[-1]
    rows = sum(r for _, r in clock.events)
    steady = sum(r for _, r in clock.events[1:]) / (tn - t1)
    return {"rows": rows, "wall": wall, "first": t1 - t0, "steady": steady}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["small", "tiny"], default="small")
    ap.add_argument("--reps", type=int, default=8,
                    help="renderings per (shape, colour) in the sample's image tasks")
    ap.add_argument("--shard-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds of rest before each run (Ray tears the last pool down)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="bench_embed_ray_"))
    try:
        write_sample(tmp / "sample", reps=args.reps)
        name = small_encoder(tmp / "encoder") if args.model == "small" else "tiny"
        enc = load_encoder(name, device="cpu")
        ray.init(num_cpus=3, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)
        base = {"encoder": name, "batch_size": args.batch, "shard_size": args.shard_size,
                "device": "cpu", "pools": ["local"]}
        runs = {"local": EmbedConfig(workers=0, **base),
                "ray x1": EmbedConfig(engine="ray", ray=RayResources(workers=1), **base),
                "ray x2": EmbedConfig(engine="ray", ray=RayResources(workers=2), **base)}
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeats):
            for label, cfg in runs.items():
                time.sleep(args.settle)
                r = run_once(tmp / "sample", tmp / "out", cfg, enc)
                if label not in best or r["steady"] > best[label]["steady"]:
                    best[label] = r
        local, one = best["local"]["steady"], best["ray x1"]["steady"]
        table = Table(title=f"augret embed on CPU, {args.model} CLIP, {best['local']['rows']} "
                            f"rows, shards of {args.shard_size}, batch {args.batch}, 1 thread "
                            f"per worker, best of {args.repeats} ({os.cpu_count()} cores)")
        for col in ("engine", "wall s", "1st shard s", "e2e rows/s", "steady rows/s",
                    "vs ray x1", "extra ms/row"):
            table.add_column(col, justify="left" if col == "engine" else "right")
        for label, r in best.items():
            workers = int(label[-1]) if label.startswith("ray") else 1
            extra = 1000 * (workers / r["steady"] - 1 / local)
            table.add_row(label, f"{r['wall']:.1f}", f"{r['first']:.1f}",
                          f"{r['rows'] / r['wall']:,.0f}", f"{r['steady']:,.0f}",
                          f"{r['steady'] / one:.2f}x" if workers > 1 or label != "local"
                          else "", f"{extra:+.2f}" if label != "local" else "")
        console.print(table)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
