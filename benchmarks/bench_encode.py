"""Embedding throughput on CPU with the tiny encoder: UniIR-style forward vs augret's.

Side by side, on the same rows and in alternating repeats (best of ``--repeats``):

* model forward (items/s) for text-only, image-only and image+text batches: UniIR's layout
  (both towers on every row, zero images where there is none, all 77 text positions) against
  augret's (a tower runs only on the rows that have its modality; text stops at the batch's
  last EOT);
* ``embed_dir`` end to end (image decoding, tokenisation, fp16 shards) on a rendered
  shapes-world sample, with 0 and 2 data-loader workers.

    .venv/bin/python benchmarks/bench_encode.py --rows 2048 --batch 128
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from augret.data.sample import write_sample
from augret.encode import EmbedConfig, Item, embed_dir, load_encoder
from augret.encode.batch import collate, prepare


def uniir_forward(model, batch, image_size: int):
    """CLIPScoreFusion.encode_multimodal_input as UniIR runs it."""
    b = len(batch)
    full = torch.zeros(b, 3, image_size, image_size)
    full[batch.img_mask.bool()] = batch.image
    clip = model.clip_model
    txt = clip.encode_text(batch.text["input_ids"]) * batch.txt_mask[:, None]
    img = clip.encode_image(full) * batch.img_mask[:, None]
    return txt + img


def make_batches(enc, rows: int, batch: int, kind: str, images: list[Path]):
    words = ["a", "small", "red", "circle", "drawn", "on", "a", "plain", "white",
             "background", "next", "to", "a", "blue", "square"]
    items = []
    for i in range(rows):
        text = " ".join(words[: 4 + i % 10])
        img = images[i % len(images)]
        items.append(Item(text if kind != "image" else None, img if kind != "text" else None))
    out = []
    for s in range(0, rows, batch):
        out.append(collate([prepare(it, enc.processor) for it in items[s:s + batch]],
                           enc.processor))
    return out


def time_forward(fn, batches) -> float:
    n = sum(len(b) for b in batches)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            fn(b)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2048, help="rows per forward measurement")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample-reps", type=int, default=4,
                    help="renderings per (shape, colour) in the embed_dir sample")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (1 is steadier on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    enc = load_encoder("tiny", device="cpu")
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="bench_encode_"))
    try:
        write_sample(tmp / "sample", reps=args.sample_reps)
        images = sorted((tmp / "sample" / "mbeir_images").rglob("*.png"))[:64]
        table = Table(title=f"tiny CLIP_SF forward on CPU ({torch.get_num_threads()} threads, "
                            f"batch {args.batch}, best of {args.repeats})")
        for col in ("rows", "UniIR-style items/s", "augret items/s", "augret / UniIR"):
            table.add_column(col, justify="right" if col != "rows" else "left")
        for kind in ("text", "image", "image+text"):
            batches = make_batches(enc, args.rows, args.batch, kind, images)
            best_u = best_a = 0.0
            for _ in range(args.repeats):
                best_u = max(best_u, time_forward(
                    lambda b: uniir_forward(enc.model, b, enc.processor.image_size), batches))
                best_a = max(best_a, time_forward(
                    lambda b: enc.model(b.text, b.image, b.txt_mask, b.img_mask), batches))
            table.add_row(kind, f"{best_u:,.0f}", f"{best_a:,.0f}", f"{best_a / best_u:.2f}x")
        console.print(table)

        table = Table(title="embed_dir end to end (decode + tokenise + forward + fp16 shards)")
        for col in ("workers", "rows", "seconds", "items/s", "ratio"):
            table.add_column(col, justify="right")
        results = {}
        for _ in range(args.repeats):
            for workers in (0, 2):
                out = tmp / f"emb{workers}"
                shutil.rmtree(out, ignore_errors=True)
                cfg = EmbedConfig(encoder="tiny", workers=workers, batch_size=args.batch,
                                  device="cpu", pools=["local"])
                t0 = time.perf_counter()
                meta = embed_dir(tmp / "sample", out, cfg, encoder=enc, progress=False)
                dt = time.perf_counter() - t0
                rows = sum(e["rows"] for e in meta["entries"].values())
                results[workers] = min(results.get(workers, (rows, 1e9)), (rows, dt),
                                       key=lambda r: r[1])
        base = results[0][0] / results[0][1]
        for workers, (rows, dt) in results.items():
            table.add_row(str(workers), str(rows), f"{dt:.2f}", f"{rows / dt:,.0f}",
                          f"{rows / dt / base:.2f}x")
        console.print(table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
