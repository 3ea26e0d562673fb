"""benchmarks/gpu_mllm.py: its code path on CPU at the tiny size (embedding and training,
with and without GradCache), the 2B architecture's shape (meta device), and the real run on
CUDA (gpu tier)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_mllm.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_mllm", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_runs_on_cpu_at_the_tiny_size(script) -> None:
    res = script.main(["--size", "tiny", "--device", "cpu", "--precision", "fp32", "--items",
                       "6", "--batch", "3", "--steps", "1", "--warmup", "1", "--image-side",
                       "64", "--image-tokens", "16", "--train-batch", "3", "--global-batch",
                       "6", "--chunk", "4", "--train-steps", "1", "--warmup-steps", "0",
                       "--lora-r", "4", "--json"])
    embed, plain, cached = res["rows"]
    assert embed["measure"] == "embed" and embed["items"] == 6
    assert embed["items_per_s"] > 0 and embed["cpu_items_per_s"] > 0
    assert embed["tokens_per_item"] > 20 and embed["peak_alloc_gib"] is None
    assert (plain["measure"], plain["batch"], plain["chunk"]) == ("train", 3, None)
    assert (cached["measure"], cached["batch"], cached["chunk"]) == ("train_gradcache", 6, 4)
    assert plain["samples_per_s"] > 0 and cached["samples_per_s"] > 0
    assert res["attn"] == "sdpa" and res["precision"] == "fp32"


def test_the_2b_architecture_is_qwen2_vl_2b(script) -> None:
    import transformers as tf

    from augret.tiny_qwen import build_qwen_processor

    config = script.qwen2vl_2b_config(build_qwen_processor("qwen2_vl").tokenizer)
    with torch.device("meta"):
        model = tf.AutoModel.from_config(config)
    n = sum(p.numel() for p in model.parameters())
    assert type(model).__name__ == "Qwen2VLModel"
    assert 2.1e9 < n < 2.3e9  # Qwen2-VL-2B without its (tied) generation head
    assert model.config.text_config.hidden_size == 1536


@pytest.mark.gpu
def test_2b_embedding_and_training_on_cuda(script) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    res = script.main(["--items", "64", "--batch", "32", "--steps", "2", "--train-steps",
                       "1", "--json"])
    embed, plain, cached = res["rows"]
    assert "error" not in embed and "error" not in plain and "error" not in cached, res
    assert embed["items_per_s"] > 0 and embed["peak_alloc_gib"] > 4
    assert plain["batch"] == 32 and cached["batch"] == 512
    assert plain["samples_per_s"] > 0 and cached["samples_per_s"] > 0
