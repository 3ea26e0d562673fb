"""The CUDA code paths of training and embedding, end to end through the CLI, on one GPU.

The CPU test suite runs every stage on CPU; this script runs the same commands on a GPU:
``augret train`` (fp16 autocast + GradScaler, pinned memory), the same training under
``torchrun --nproc_per_node 1`` (the NCCL process group), and ``augret embed`` of the trained
checkpoint on CUDA and on CPU, whose vectors must agree (fp32 on both sides: cosine ≥ 0.99
per row). The model is the random-init ``tiny`` CLIP_SF on the shapes sample: the numbers
are meaningless, the code paths and the timings are real.

    python benchmarks/gpu_pipeline_check.py [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def sh(*args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-5000:], sep="\n")
        raise SystemExit(f"failed: {' '.join(args)}")
    return time.perf_counter() - start


def losses(out: Path) -> list[float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def vectors(emb: Path) -> dict[str, np.ndarray]:
    out = {}
    for entry in sorted(p.parent for p in emb.rglob("entry.json")):
        ids = [i for f in sorted(entry.glob("shard_*.ids.txt"))
               for i in f.read_text().split("\n") if i]
        vec = np.concatenate([np.load(f) for f in sorted(entry.glob("shard_*.npy"))])
        out.update(zip(ids, vec.astype(np.float32), strict=True))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    args = ap.parse_args()
    py = [sys.executable, "-m", "augret"]
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        sh(*py, "mbeir", "sample", "--out", str(t / "data"))
        common = ["configs/train-tiny.yaml", "--data", str(t / "data"), "--max-steps",
                  str(args.steps), "--set", f"device={args.device}", "--set", "save_every=20"]
        report["train_s"] = sh(*py, "train", *common, "--output-dir", str(t / "train"))
        report["torchrun_s"] = sh(sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  "--nproc_per_node", "1", "-m", "augret", "train", *common,
                                  "--output-dir", str(t / "train_ddp"))
        la, lb = losses(t / "train"), losses(t / "train_ddp")
        report["loss_first_last"] = [la[0], la[-1]]
        report["loss_torchrun_first_last"] = [lb[0], lb[-1]]
        assert np.isfinite(la).all() and la[-1] < la[0], la
        emb = {}
        for dev in (args.device, "cpu") if args.device != "cpu" else ("cpu",):
            report[f"embed_{dev}_s"] = sh(*py, "embed", str(t / "data"), "--out",
                                          str(t / f"emb_{dev}"), "--encoder", str(t / "train"),
                                          "--device", dev, "--precision", "fp32",
                                          "--pools", "local")
            emb[dev] = vectors(t / f"emb_{dev}")
        gpu = emb.get(args.device, emb["cpu"])
        assert gpu.keys() == emb["cpu"].keys() and gpu
        a = np.stack([gpu[k] for k in emb["cpu"]])
        b = np.stack([emb["cpu"][k] for k in emb["cpu"]])
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        report["embedded_rows"] = len(cos)
        report["cuda_vs_cpu_cosine_min"] = float(cos.min())
        assert cos.min() >= 0.99, cos.min()
    torch = __import__("torch")
    report["device"] = torch.cuda.get_device_name(0) if args.device != "cpu" else "cpu"
    print(json.dumps(report, indent=2))
    print(f"OK: train, torchrun and embed ran on {report['device']}; vectors agree with CPU")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
