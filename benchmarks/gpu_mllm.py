"""MLLM embedder speed and peak memory on one GPU: a random-init Qwen2-VL-2B architecture.

Self-contained (no weights, no data, no network): transformers' ``Qwen2VLModel`` built from
Qwen2-VL-2B-Instruct's architecture (28 layers, hidden 1536, a 32-block vision tower) with
random weights, augret's locally built tokenizer and Qwen image processor, and augret's
embedder (:class:`~augret.encode.mllm.model.MLLMEmbedder`: prompt style, last-token pooling).
Items are synthetic: ``--text-words`` words and, for ``--image-frac`` of them, a random
``--image-side``² image capped at ``--image-tokens`` visual tokens.

Measurements are entries of :data:`MEASUREMENTS` (``--measure``):

* ``embed``: the forward pass alone (items/s over pre-collated batches, the GPU's share) and
  the CPU side (prepare + collate items/s in one process; ``augret embed`` spreads it over
  loader workers), with tokens per item and peak GPU memory;
* ``train``: training steps of LamRA-Ret's recipe (LoRA r 128 / α 256 on the language model,
  InfoNCE with τ 0.05, AdamW, gradient checkpointing) at ``--train-batch`` queries (each with
  its positive) in one forward and backward, as augret train runs without GradCache;
* ``train_gradcache``: the same at ``--global-batch`` queries through GradCache in chunks of
  ``--chunk`` (the batch of 512 that 8 GPUs × 64 give, here on one GPU).

Training reports samples (queries with their positives) per second, the optimizer step
included, and peak memory; the batches are collated before timing (loader workers do that
during training).

    python benchmarks/gpu_mllm.py                          # 2B arch, bf16: all three
    python benchmarks/gpu_mllm.py --measure embed --batch 64 --image-tokens 1280 --json
    python benchmarks/gpu_mllm.py --size tiny --device cpu --precision fp32 --items 8 \\
        --batch 4 --steps 1 --warmup 0 --train-batch 4 --global-batch 8 --chunk 2
                                                                    # the CPU smoke path
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from augret.encode.base import Item
from augret.encode.mllm.encoder import MLLMEncoder
from augret.encode.mllm.loaders import attention_implementation, resolve_precision
from augret.encode.mllm.model import MLLMEmbedder
from augret.encode.mllm.processor import MLLMProcessor
from augret.encode.mllm.spec import MLLMSpec
from augret.encode.mllm.styles import FAMILIES, get_style
from augret.encode.mllm.tiny import tiny_config
from augret.tiny_qwen import build_qwen_processor
from augret.train.config import LoraConfig
from augret.train.loss import contrastive_loss
from augret.train.mllm import MLLMTrainModel
from augret.train.step import full_batch_step, grad_cache_step

WORDS = ["a", "red", "cube", "on", "blue", "table", "next", "to", "green", "sphere", "and",
         "yellow", "cone", "near", "river", "with", "tall", "glass", "towers", "bridges",
         "park", "under", "tree", "beside", "wall"]


def qwen2vl_2b_config(tokenizer: Any) -> Any:
    """Qwen2-VL-2B-Instruct's architecture, token ids from the local tokenizer."""
    import transformers as tf

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>",
            "<|vision_start|>", "<|vision_end|>")}
    text = {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
            "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                "mrope_section": [16, 24, 24]}}
    vision = {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16,
              "mlp_ratio": 4, "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2,
              "temporal_patch_size": 2}
    return tf.Qwen2VLConfig(text_config=text, vision_config=vision,
                            image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"],
                            vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"])


SIZES: dict[str, Callable[[Any], Any]] = {"2b": qwen2vl_2b_config, "tiny": tiny_config}


def build(size: str, *, device: str, precision: str, attn: str, style: str,
          image_tokens: int, text_tokens: int) -> MLLMEncoder:
    """A random-init embedder of ``size`` on ``device``."""
    import transformers as tf

    hf = build_qwen_processor("qwen2_vl")
    spec = MLLMSpec(f"random-init:{size}", style, max_image_tokens=image_tokens,
                    max_text_tokens=text_tokens)
    dev = torch.device(device)
    prec = resolve_precision(dev, precision)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[prec]
    config = SIZES[size](hf.tokenizer)
    torch.manual_seed(0)
    with dev:
        base = tf.AutoModel.from_config(
            config, dtype=dtype,
            attn_implementation=attention_implementation(dev, prec, attn)).eval()
    proc = MLLMProcessor(hf.tokenizer, hf.image_processor, spec, FAMILIES["qwen2_vl"])
    emb = MLLMEmbedder(base, get_style(style).positions, proc.image_token_id)
    return MLLMEncoder(f"random-init Qwen2-VL {size}", spec, emb, proc, device=dev,
                       precision=prec)


def make_items(n: int, *, text_words: int, image_side: int, image_frac: float,
               seed: int = 0) -> list[Item]:
    """Synthetic items: random words, and random images on ``image_frac`` of them."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, text_words))
        img = None
        if rng.random() < image_frac:
            px = rng.integers(0, 255, (image_side, image_side, 3), dtype=np.uint8)
            img = Image.fromarray(px)
        out.append(Item(text if text_words else None, img,
                        instruction="Retrieve the matching item." if i % 2 else None))
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_embed(enc: MLLMEncoder, items: list[Item], args: argparse.Namespace
                ) -> dict[str, Any]:
    """Embedding: CPU-side items/s (prepare + collate) and forward items/s (no grad)."""
    dev = enc.device
    t0 = time.perf_counter()
    batches = [enc.processor.collate([enc.processor.prepare(it, i)
                                      for i, it in enumerate(items[s:s + args.batch])])
               for s in range(0, len(items), args.batch)]
    cpu_s = time.perf_counter() - t0
    tokens = sum(int(b.attention_mask.sum()) for b in batches) / len(items)
    batches = [b.to(dev) for b in batches]
    for b in batches[:args.warmup]:
        enc.embed_batch(b)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    timed = [b for _ in range(args.steps) for b in batches]
    _sync(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in timed:
            enc.model(b)
    _sync(dev)
    secs = time.perf_counter() - t0
    n = sum(len(b) for b in timed)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {"measure": "embed", "batch": args.batch, "items": n,
            "items_per_s": n / secs, "cpu_items_per_s": len(items) / cpu_s,
            "tokens_per_item": tokens, "peak_alloc_gib": peak}


_TRAINING: dict[int, MLLMTrainModel] = {}


def training_model(enc: MLLMEncoder, args: argparse.Namespace) -> MLLMTrainModel:
    """The encoder with LamRA's LoRA (built once per encoder: it wraps the model in place)."""
    if id(enc) not in _TRAINING:
        _TRAINING[id(enc)] = MLLMTrainModel(
            enc, lora=LoraConfig(r=args.lora_r, alpha=2.0 * args.lora_r, dropout=0.05),
            temperature=0.05, learn_temperature=False,
            gradient_checkpointing=not args.no_checkpointing, seed=0, source=enc.name)
    return _TRAINING[id(enc)]


def _train(enc: MLLMEncoder, args: argparse.Namespace, batch: int, chunk: int | None
           ) -> dict[str, Any]:
    """Optimizer steps at ``batch`` queries: one forward/backward, or GradCache chunks."""
    model = training_model(enc, args)
    dev = model.device
    items = make_items(2 * batch, text_words=args.text_words, image_side=args.image_side,
                       image_frac=args.image_frac, seed=1)
    rows = [model.processor.prepare(it, i) for i, it in enumerate(items)]
    bounds = [(0, 2 * batch)] if chunk is None else [
        (lo, min(lo + chunk, 2 * batch)) for lo in range(0, 2 * batch, chunk)]
    chunks = [model.processor.collate(rows[lo:hi]) for lo, hi in bounds]
    tokens = sum(int(c.attention_mask.sum()) for c in chunks) / len(rows)
    chunks = [c.to(dev) for c in chunks]
    optimizer = torch.optim.AdamW([p for p in model.module.parameters() if p.requires_grad],
                                  lr=1e-4)
    valid = torch.ones(batch, dtype=torch.bool, device=dev)

    def loss_fn(emb: Any, scale: Any) -> Any:
        return contrastive_loss(emb[:batch], emb[batch:], scale, valid=valid)

    step = full_batch_step if chunk is None else grad_cache_step

    def one() -> None:
        step(model.module, chunks, loss_fn, device=dev, autocast=model.autocast,
             backward=lambda loss: loss.backward(), sync=True, no_sync=contextlib.nullcontext)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup_steps):
        one()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(args.train_steps):
        one()
    _sync(dev)
    secs = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {"measure": "train" if chunk is None else "train_gradcache", "batch": batch,
            "chunk": chunk, "items": batch * args.train_steps,
            "samples_per_s": batch * args.train_steps / secs, "tokens_per_item": tokens,
            "peak_alloc_gib": peak}


def bench_train(enc: MLLMEncoder, items: list[Item], args: argparse.Namespace
                ) -> dict[str, Any]:
    """Training at ``--train-batch`` queries per step without GradCache."""
    return _train(enc, args, args.train_batch, None)


def bench_train_gradcache(enc: MLLMEncoder, items: list[Item], args: argparse.Namespace
                          ) -> dict[str, Any]:
    """Training at ``--global-batch`` queries per step through GradCache."""
    return _train(enc, args, args.global_batch, args.chunk)


#: Measurements by name: ``fn(encoder, items, args) -> row``.
MEASUREMENTS: dict[str, Callable[[MLLMEncoder, list[Item], argparse.Namespace],
                                 dict[str, Any]]] = {
    "embed": bench_embed, "train": bench_train, "train_gradcache": bench_train_gradcache}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="2b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto")
    ap.add_argument("--attn", default="auto", help="auto, sdpa, eager, flash_attention_2")
    ap.add_argument("--style", default="qwen3vl-emb")
    ap.add_argument("--measure", nargs="+", choices=sorted(MEASUREMENTS),
                    default=["embed", "train", "train_gradcache"],
                    help="what to measure, in order (embed before training: training "
                         "wraps the model in LoRA adapters)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--items", type=int, default=256, help="distinct items (collated once)")
    ap.add_argument("--steps", type=int, default=3, help="passes over the items timed")
    ap.add_argument("--warmup", type=int, default=2, help="batches run before timing")
    ap.add_argument("--text-words", type=int, default=30)
    ap.add_argument("--text-tokens", type=int, default=256, help="text token cap per item")
    ap.add_argument("--image-side", type=int, default=448)
    ap.add_argument("--image-frac", type=float, default=0.5)
    ap.add_argument("--image-tokens", type=int, default=256, help="visual token cap")
    ap.add_argument("--train-batch", type=int, default=32,
                    help="queries per step without GradCache (train)")
    ap.add_argument("--global-batch", type=int, default=512,
                    help="queries per step through GradCache (train_gradcache)")
    ap.add_argument("--chunk", type=int, default=32, help="GradCache chunk (rows)")
    ap.add_argument("--train-steps", type=int, default=3, help="optimizer steps timed")
    ap.add_argument("--warmup-steps", type=int, default=1, help="steps run before timing")
    ap.add_argument("--lora-r", type=int, default=128, help="LoRA rank (alpha = 2 r)")
    ap.add_argument("--no-checkpointing", action="store_true",
                    help="train without gradient checkpointing")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    enc = build(args.size, device=args.device, precision=args.precision, attn=args.attn,
                style=args.style, image_tokens=args.image_tokens, text_tokens=args.text_tokens)
    items = make_items(args.items, text_words=args.text_words, image_side=args.image_side,
                       image_frac=args.image_frac)
    rows = []
    for name in args.measure:
        try:
            rows.append(MEASUREMENTS[name](enc, items, args))
        except torch.cuda.OutOfMemoryError as exc:
            rows.append({"measure": name, "batch": args.batch, "error": f"OOM: {exc}"})
            torch.cuda.empty_cache()
    attn = enc.model.backbone.config._attn_implementation
    result = {"model": enc.name, "device": str(enc.device), "precision": enc.precision,
              "attn": attn, "style": args.style, "gpu": torch.cuda.get_device_name(
                  enc.device) if enc.device.type == "cuda" else None, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return result
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{result['model']} on {result['gpu'] or result['device']} "
                    f"({result['precision']}, {attn}, {args.style}); random weights")
    for col in ("measure", "batch", "chunk", "items/s (train: samples/s)", "CPU items/s",
                "tokens/item", "peak GiB"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    for r in rows:
        if "error" in r:
            t.add_row(r["measure"], str(r["batch"]), "", r["error"][:40], "", "", "")
            continue
        peak = r.get("peak_alloc_gib")
        rate = r.get("items_per_s", r.get("samples_per_s", 0))
        cpu = r.get("cpu_items_per_s")
        t.add_row(r["measure"], str(r["batch"]), str(r.get("chunk") or "-"), f"{rate:.1f}",
                  "-" if cpu is None else f"{cpu:.1f}", f"{r.get('tokens_per_item', 0):.0f}",
                  "-" if peak is None else f"{peak:.2f}")
    Console().print(t)
    return result


if __name__ == "__main__":
    main()
