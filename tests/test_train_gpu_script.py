"""benchmarks/gpu_clip_sf.py: a CPU smoke run of the tiny model (slow tier) and the real
ViT-L/14 run at UniIR's batch of 105 (gpu tier)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_clip_sf.py"


def _run(*args: str, timeout: int) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), *args, "--json"], capture_output=True,
                         text=True, timeout=timeout, check=True)
    return json.loads(out.stdout)


@pytest.mark.slow
def test_gpu_script_runs_on_cpu_with_the_tiny_model() -> None:
    res = _run("--model", "tiny", "--device", "cpu", "--amp", "off", "--batch", "4",
               "--steps", "2", "--warmup", "1", "--embed", "--embed-batch", "8", timeout=300)
    assert [r["mode"] for r in res["train"]] == ["augret", "uniir"]
    assert all(r["samples_per_s"] > 0 for r in res["train"])
    assert abs(res["train"][0]["loss"] - res["train"][1]["loss"]) < 1e-3  # same maths
    assert all(r["items_per_s"] > 0 for r in res["embed"])


@pytest.mark.gpu
def test_gpu_script_vit_l14_at_uniir_batch() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    res = _run("--steps", "10", "--warmup", "3", "--modes", "augret", timeout=900)
    r = res["train"][0]
    assert "error" not in r, r
    assert r["samples_per_s"] > 0 and r["peak_alloc_gib"] > 1
