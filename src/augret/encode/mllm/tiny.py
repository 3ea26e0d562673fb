"""``tiny-mllm``: a deterministic, randomly initialised tiny Qwen2-VL embedder.

The real Qwen2-VL architecture of transformers at a toy size (hidden size 32, 3 layers, 4
heads with 2 KV heads, a depth-2 vision tower of width 32, patch 14, spatial merge 2,
M-RoPE sections [2, 1, 1], as transformers' own Qwen2-VL tests), with a processor built
entirely locally (:func:`augret.tiny_qwen.build_qwen_processor`: the byte-level BPE tokenizer
and Qwen image processor that augret's tiny models share). Nothing is downloaded and the
same weights come out of every build (fixed seed).

**Its vectors are meaningless**: it exists so that embedding, indexing, search, serving and
the experiment can run end to end on a CPU in seconds, and so that tests exercise the real
code paths.
"""

from __future__ import annotations

import logging
from typing import Any

from augret._lazy import require

__all__ = ["TINY_MLLM_SEED", "build_tiny_mllm"]

log = logging.getLogger(__name__)

#: Seed of the random weights.
TINY_MLLM_SEED = 4321


def tiny_config(tokenizer: Any) -> Any:
    """The ``Qwen2VLConfig`` of ``tiny-mllm`` (token ids from ``tokenizer``)."""
    tf = require("transformers", "train")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>",
            "<|vision_start|>", "<|vision_end|>")}
    text = {
        "vocab_size": -(-len(tokenizer) // 64) * 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "initializer_range": 0.1,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                            "mrope_section": [2, 1, 1]},
    }
    vision = {"depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 4, "mlp_ratio": 2,
              "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2,
              "temporal_patch_size": 2, "initializer_range": 0.1}
    return tf.Qwen2VLConfig(text_config=text, vision_config=vision,
                            image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"],
                            vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"])


def build_tiny_mllm() -> tuple[Any, Any]:
    """The tiny base model (``Qwen2VLModel``, float32, eval) and its local processor.

    The weights are random (seed :data:`TINY_MLLM_SEED`): outputs are meaningless.
    """
    torch = require("torch", "train")
    tf = require("transformers", "train")
    from augret.tiny_qwen import build_qwen_processor

    processor = build_qwen_processor("qwen2_vl")
    config = tiny_config(processor.tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_MLLM_SEED)
        model = tf.Qwen2VLModel(config)
    log.warning("tiny-mllm: randomly initialised weights, its vectors are meaningless "
                "(tests and smoke runs only)")
    return model.float().eval(), processor
