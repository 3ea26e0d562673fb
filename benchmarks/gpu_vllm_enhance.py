"""GPU throughput of the vllm backend through the augret runner (for a CUDA machine).

Needs `pip install 'augret[vllm]'` and the model weights (default Qwen/Qwen3-VL-8B-Instruct,
or a local path). Renders N synthetic images, captions them as candidates and rewrites
image+question queries, and prints items/s and output tokens/s per GPU.

    python benchmarks/gpu_vllm_enhance.py --model Qwen/Qwen3-VL-8B-Instruct --reps 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from augret.data.sample import write_sample
from augret.enhance import EnhanceConfig, enhance
from augret.enhance.backends import get_backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="Qwen/Qwen3-VL-8B-Instruct")
    ap.add_argument("--reps", type=int, default=40, help="renderings per concept")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tensor-parallel", type=int, default=1)
    args = ap.parse_args()
    import torch

    gpus = torch.cuda.device_count()
    backend = get_backend("vllm", args.model, tensor_parallel_size=args.tensor_parallel)
    table = Table(title=f"vllm backend, {args.model}, {gpus} GPU(s) visible")
    for c in ("side", "items", "seconds", "items/s", "out tok/s", "tok/s per GPU"):
        table.add_column(c, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_sample(data, reps=args.reps, train_reps=0)
        for side in ("candidates", "queries"):
            cfg = EnhanceConfig(backend="vllm", model=args.model, side=side,
                                batch_size=args.batch, store=Path(tmp) / f"{side}.sqlite")
            start = time.perf_counter()
            report = enhance(data, Path(tmp) / side, cfg, backend=backend, progress=False)
            secs = time.perf_counter() - start
            run = report["last_run"]
            n = run["generated"]
            per_gpu = run["output_tokens"] / secs / max(args.tensor_parallel, 1)
            table.add_row(side, str(n), f"{secs:.1f}", f"{n / secs:.2f}",
                          f"{run['output_tokens'] / secs:.0f}", f"{per_gpu:.0f}")
    backend.close()
    Console().print(table)


if __name__ == "__main__":
    main()
