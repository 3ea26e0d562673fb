"""MLLM embedding and training throughput on CPU with ``tiny-mllm`` (random weights: speed
only).

Side by side, best of ``--repeats``:

* the embedder's forward (items/s over pre-collated batches) for text-only, image-only and
  image+text items, with the ``qwen3vl-emb`` (M-RoPE positions) and ``lamra`` (1-D
  positions) prompt styles;
* the CPU side per item (image budgeting and patching, prompt rendering, tokenisation);
* ``augret embed`` end to end (``embed_dir``) on the rendered shapes-world sample;
* training steps (LoRA r 8 as ``configs/train-mllm-tiny.yaml``, InfoNCE, AdamW) in samples
  (queries with their positives) per second over pre-collated batches: one forward and
  backward, and GradCache in chunks (the same batch, and a 4× larger one);
* ``augret train configs/train-mllm-tiny.yaml`` end to end on the sample (its
  ``samples_per_s``, data loading included).

    .venv/bin/python benchmarks/bench_mllm.py --rows 64 --batch 16 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from augret.config import load_config
from augret.data.sample import write_sample
from augret.encode import EmbedConfig, Item, embed_dir, load_encoder
from augret.train import LoraConfig, TrainConfig, train
from augret.train.loss import contrastive_loss
from augret.train.mllm import MLLMTrainModel
from augret.train.step import full_batch_step, grad_cache_step

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "train-mllm-tiny.yaml"


def make_items(rows: int, kind: str, seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    words = "a small red circle drawn on a plain white background next to a blue square"
    out = []
    for i in range(rows):
        text = " ".join(words.split()[: 4 + i % 10]) if kind != "image" else None
        img = None
        if kind != "text":
            img = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        out.append(Item(text, img, instruction="Retrieve the matching image." if i % 2
                        else None))
    return out


def collate_all(proc, items: list[Item], batch: int) -> list:
    """Prepare and collate ``items`` in batches (the CPU side of embedding)."""
    return [proc.collate([proc.prepare(it, i) for i, it in enumerate(items[s:s + batch])])
            for s in range(0, len(items), batch)]


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def train_rate(batch: int, chunk: int | None, repeats: int, steps: int) -> tuple[float, float]:
    """(samples/s, tokens per item) of optimizer steps at ``batch`` queries (image+text
    queries, text candidates): one forward and backward, or GradCache in ``chunk`` rows."""
    model = MLLMTrainModel(load_encoder("tiny-mllm", device="cpu"),
                           lora=LoraConfig(r=8, alpha=16, dropout=0.0), temperature=0.05,
                           learn_temperature=False, gradient_checkpointing=False, seed=0,
                           source="tiny-mllm")
    proc = model.processor
    queries = make_items(batch, "image+text", seed=1)
    cands = make_items(batch, "text", seed=2)
    rows = [proc.prepare(it, i) for i, it in enumerate(queries + cands)]
    n = len(rows)
    bounds = [(0, n)] if chunk is None else [(lo, min(lo + chunk, n))
                                               for lo in range(0, n, chunk)]
    chunks = [proc.collate(rows[lo:hi]) for lo, hi in bounds]
    tokens = sum(int(c.attention_mask.sum()) for c in chunks) / n
    opt = torch.optim.AdamW([p for p in model.module.parameters() if p.requires_grad], lr=1e-3)
    valid = torch.ones(batch, dtype=torch.bool)
    step = full_batch_step if chunk is None else grad_cache_step

    def loss_fn(emb, scale):
        return contrastive_loss(emb[:batch], emb[batch:], scale, valid=valid)

    def run() -> None:
        for _ in range(steps):
            step(model.module, chunks, loss_fn, device=model.device, autocast=model.autocast,
                 backward=lambda loss: loss.backward(), sync=True,
                 no_sync=contextlib.nullcontext)
            opt.step()
            opt.zero_grad(set_to_none=True)

    return batch * steps / best(run, repeats), tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample-reps", type=int, default=1,
                    help="renderings per (shape, colour) in the embed_dir sample")
    ap.add_argument("--train-steps", type=int, default=3, help="optimizer steps timed")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (1 is steadier on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table = Table(title=f"tiny-mllm on CPU ({torch.get_num_threads()} threads; random "
                        "weights, speed only)")
    for col in ("style", "items", "forward items/s", "CPU-side items/s", "tokens/item"):
        table.add_column(col, justify="left" if col in ("style", "items") else "right")
    for style in ("qwen3vl-emb", "lamra"):
        enc = load_encoder(f"mllm:{style}:tiny-mllm", device="cpu")
        proc = enc.processor
        for kind in ("text", "image", "image+text"):
            items = make_items(args.rows, kind)
            batches = collate_all(proc, items, args.batch)
            cpu = best(lambda p=proc, it=items: collate_all(p, it, args.batch), args.repeats)
            fwd = best(lambda e=enc, bs=batches: [e.embed_batch(b) for b in bs], args.repeats)
            tokens = sum(int(b.attention_mask.sum()) for b in batches) / len(items)
            table.add_row(style, kind, f"{len(items) / fwd:.1f}", f"{len(items) / cpu:.1f}",
                          f"{tokens:.0f}")
    console = Console()
    console.print(table)

    tmp = Path(tempfile.mkdtemp(prefix="bench-mllm-"))
    try:
        data = tmp / "sample"
        write_sample(data, reps=args.sample_reps)
        enc = load_encoder("tiny-mllm", device="cpu")
        cfg = EmbedConfig(encoder="tiny-mllm", batch_size=args.batch, workers=0,
                          device="cpu")
        t0 = time.perf_counter()
        meta = embed_dir(data, tmp / "emb", cfg, encoder=enc, progress=False)
        secs = time.perf_counter() - t0
        rows = sum(e["rows"] for e in meta["entries"].values())
        end = Table(title="augret embed on the shapes sample (tiny-mllm, 0 loader workers)")
        for col in ("rows", "seconds", "rows/s"):
            end.add_column(col, justify="right")
        end.add_row(str(rows), f"{secs:.1f}", f"{rows / secs:.1f}")
        console.print(end)

        tt = Table(title="tiny-mllm training steps on CPU (LoRA r 8; pre-collated batches)")
        for col in ("batch (queries)", "GradCache chunk", "samples/s", "tokens/item"):
            tt.add_column(col, justify="right")
        b = args.batch
        for batch, chunk in ((b, None), (b, max(b // 2, 1)), (4 * b, max(b // 2, 1))):
            rate, tokens = train_rate(batch, chunk, args.repeats, args.train_steps)
            tt.add_row(str(batch), str(chunk or "-"), f"{rate:.1f}", f"{tokens:.0f}")
        console.print(tt)

        out = tmp / "train"
        cfg = load_config(TrainConfig, TINY_YAML, {
            "data.dir": str(data), "output_dir": str(out), "progress": False,
            "max_steps": args.train_steps * 4, "log_every": args.train_steps * 4,
            "val.file": "", "save_every": 10_000})
        t0 = time.perf_counter()
        summary = train(cfg)
        secs = time.perf_counter() - t0
        row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        te = Table(title="augret train configs/train-mllm-tiny.yaml on the shapes sample "
                         "(batch 16, GradCache chunks of 8; checkpoint and model load "
                         "included in seconds)")
        for col in ("steps", "seconds", "samples/s (metrics.jsonl)"):
            te.add_column(col, justify="right")
        te.add_row(str(summary["step"]), f"{secs:.1f}", f"{row['samples_per_s']:.1f}")
        console.print(te)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
