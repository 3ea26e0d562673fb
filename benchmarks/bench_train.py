"""Training throughput on CPU with the tiny encoder (samples = queries per second).

Side by side on the rendered shapes-world sample, same global batch:

* the model step alone (pre-collated batches: forward, loss, backward, AdamW);
* the full loop (``augret.train.train``: data loading, image decoding, logging) in one
  process with 0 data-loader workers;
* the same with gradient accumulation (2 micro-batches of half the size);
* 2 processes (gloo DDP, candidates all-gathered), half the batch each (``--ddp``).

    .venv/bin/python benchmarks/bench_train.py --batch 32 --steps 30 --ddp
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from augret.config import load_config
from augret.data.sample import write_sample
from augret.encode import load_encoder
from augret.train import TrainConfig, train
from augret.train.config import OptimConfig
from augret.train.data import EpochBatches, TrainData
from augret.train.loop import build_optimizer
from augret.train.loss import contrastive_loss

REPO = Path(__file__).resolve().parents[1]


def _cfg(data: Path, out: Path, batch: int, steps: int, **kw: object) -> TrainConfig:
    return load_config(TrainConfig, REPO / "configs/train-tiny.yaml", {
        "data.dir": str(data), "output_dir": str(out), "batch_size": batch,
        "max_steps": steps, "progress": False, "log_every": 1, "save_every": 10_000,
        "val.file": "", **kw})


def _loop_rate(out: Path, skip: int = 3) -> float:
    """Mean samples/s over the logged steps after the first ``skip`` (warm-up)."""
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in rows if "samples_per_s" in r][skip:]
    return len(rates) / sum(1 / r for r in rates)


def model_step_rate(data_dir: Path, batch: int, steps: int) -> float:
    enc = load_encoder("tiny", device="cpu")
    cfg = _cfg(data_dir, data_dir / "unused", batch, steps).data
    data = TrainData(cfg, enc.processor, seed=0)
    order = EpochBatches(len(data), batch, rank=0, world=1, seed=0)
    batches = [data.collate([data.example(k) for k in keys])
               for keys in order.batches(0)[:steps]]
    model = enc.model.train()
    opt = build_optimizer(model, OptimConfig(lr=1e-3))
    t0 = None
    for i, (b, info) in enumerate(batches):
        if i == 2:
            t0 = time.perf_counter()
        emb = model(b.text, b.image, b.txt_mask, b.img_mask)
        loss, _, _ = contrastive_loss(emb[:batch], emb[batch:2 * batch], model.logit_scale,
                                      valid=info.valid)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return batch * (len(batches) - 2) / (time.perf_counter() - t0)


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    train(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32, help="global batch (queries)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--ddp", action="store_true", help="also run 2-process gloo DDP")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (1 is steadier on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        write_sample(tmp / "sample")
        data = tmp / "sample"
        rows = [("model step only (pre-collated)", model_step_rate(data, args.batch,
                                                                   args.steps))]
        out = tmp / "loop"
        train(_cfg(data, out, args.batch, args.steps))
        rows.append(("full loop, 1 process", _loop_rate(out)))
        out = tmp / "accum"
        train(_cfg(data, out, args.batch // 2, args.steps, grad_accum=2))
        rows.append(("full loop, grad_accum 2", _loop_rate(out)))
        if args.ddp:
            out = tmp / "ddp"
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cfg = _cfg(data, out, args.batch // 2, args.steps)
            torch.multiprocessing.start_processes(_ddp_worker, args=(2, port, cfg), nprocs=2,
                                                  start_method="spawn")
            rows.append(("full loop, 2 processes (gloo DDP)", _loop_rate(out)))
        table = Table(title=f"tiny CLIP_SF training on CPU, global batch {args.batch}, "
                            f"{args.steps} steps ({os.cpu_count()} cores)")
        for col in ("setting", "samples/s", "ratio"):
            table.add_column(col, justify="left" if col == "setting" else "right")
        for name, rate in rows:
            table.add_row(name, f"{rate:,.0f}", f"{rate / rows[0][1]:.2f}x")
        Console().print(table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
