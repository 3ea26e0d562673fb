"""Caption throughput of a Qwen3-VL-8B-shaped model with the ``transformers`` backend's path.

Self-contained and offline: the real Qwen3-VL architecture from ``transformers`` at the
8B-Instruct sizes (36 layers, hidden 4096, GQA 32/8, the 27-block vision tower with deepstack),
randomly initialised in bf16 on the GPU; prompts rendered by augret's tiny Qwen3-VL processor
(the real chat template and image processor, a small local vocabulary); one image per request
as in candidate captioning. Generation is forced to the full budget (``min_new_tokens``), so
tokens/s is measured at a known length. The weights are random: only speed means anything.

This is the ``transformers`` backend's speed (``model.generate`` on padded batches), the
floor for planning; vLLM's continuous batching is usually several times faster
(``benchmarks/gpu_vllm_enhance.py`` measures it where vLLM is installed).

    python benchmarks/gpu_hf_enhance.py                      # 8B shape, batches 8,32,64
    python benchmarks/gpu_hf_enhance.py --size tiny --device cpu --batches 2 --tokens 8
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from PIL import Image

from augret.enhance.tiny import build_tiny_processor

QWEN3_VL_8B = {
    "text": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
             "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
             "vocab_size": 151936},
    "vision": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
               "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24]},
    "mrope_section": [24, 20, 20],
}
TINY = {
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
             "vocab_size": 1024},
    "vision": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
               "num_position_embeddings": 144, "deepstack_visual_indexes": [0]},
    "mrope_section": [4, 2, 2],
}


def build(size: dict, processor, device: str, dtype: torch.dtype):
    import transformers as tf

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>")}
    vocab = max(size["text"]["vocab_size"], -(-len(tok) // 64) * 64)
    text = {**size["text"], "vocab_size": vocab, "max_position_embeddings": 32768,
            "tie_word_embeddings": False,
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|im_end|>"],
            "rope_parameters": {"rope_type": "default", "rope_theta": 5e6,
                                "mrope_section": size["mrope_section"],
                                "mrope_interleaved": True}}
    vision = {**size["vision"], "in_channels": 3, "patch_size": 16, "spatial_merge_size": 2,
              "temporal_patch_size": 2, "out_hidden_size": size["text"]["hidden_size"]}
    cfg = tf.Qwen3VLConfig(text_config=text, vision_config=vision,
                           image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"])
    with torch.device(device):
        model = tf.Qwen3VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    return model.eval()


def prompts(processor, n: int, side: int):
    messages = [{"role": "user", "content": [
        {"type": "image"},
        {"type": "text", "text": "Describe this image in detail for retrieval, in at most "
                                 "100 words: objects, attributes, text, setting."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (side, side), (i * 37 % 255, 90, 160)) for i in range(n)]
    return [text] * n, images


def run(model, processor, batch: int, tokens: int, side: int, device: str) -> dict:
    texts, images = prompts(processor, batch, side)
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True,
                       padding_side="left").to(device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    cfg = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)  # warm-up
        sync()
        t0 = time.perf_counter()
        model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, do_sample=False)
        sync()
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.generate(**inputs, **cfg)
        sync()
        seconds = time.perf_counter() - t0
    new = (out.shape[1] - inputs["input_ids"].shape[1]) * batch
    return {"batch": batch, "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "new_tokens": new, "seconds": round(seconds, 3), "prefill_s": round(prefill, 3),
            "images_per_s": round(batch / seconds, 2), "tokens_per_s": round(new / seconds, 1),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
            if device.startswith("cuda") else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["8b", "tiny"], default="8b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", default="8,32,64")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per request")
    ap.add_argument("--image-side", type=int, default=448, help="448 px: 196 image tokens")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    processor = build_tiny_processor("tiny-qwen3-vl")
    # Qwen3-VL's own pixel bounds (the tiny preset keeps images tiny)
    processor.image_processor.size = {"shortest_edge": 65536, "longest_edge": 16777216}
    t0 = time.perf_counter()
    model = build(QWEN3_VL_8B if args.size == "8b" else TINY, processor, args.device, dtype)
    params = sum(p.numel() for p in model.parameters())
    print(f"Qwen3-VL {args.size}: {params / 1e9:.2f}B parameters, built in "
          f"{time.perf_counter() - t0:.1f} s on {args.device}")
    rows = [run(model, processor, int(b), args.tokens, args.image_side, args.device)
            for b in args.batches.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
