"""Prompt styles: the exact input string each one renders (no model needed)."""

from __future__ import annotations

import pytest

from augret.encode.mllm.spec import MLLM_ENCODERS, MLLMSpec, parse_mllm_name
from augret.encode.mllm.styles import FAMILIES, PROMPT_STYLES, get_style
from augret.errors import ConfigError

Q2 = FAMILIES["qwen2_vl"]
Q3 = FAMILIES["qwen3_vl"]
IMG = "<|vision_start|><|image_pad|><|vision_end|>"


def render(style: str, text: str, instruction: str | None, image: bool, family=Q2) -> str:
    return get_style(style).render(text, instruction, image, family)


def test_qwen3vl_emb() -> None:
    assert render("qwen3vl-emb", "a red dress", "Retrieve the matching image", True) == (
        "<|im_start|>system\nRetrieve the matching image.<|im_end|>\n"
        f"<|im_start|>user\n{IMG}A red dress.<|im_end|>\n<|im_start|>assistant\n")
    # candidates and uninstructed queries: the fixed default instruction; image-only items
    assert render("qwen3vl-emb", "", None, True) == (
        "<|im_start|>system\nRepresent the user's input.<|im_end|>\n"
        f"<|im_start|>user\n{IMG}<|im_end|>\n<|im_start|>assistant\n")
    # an instruction ending in punctuation is kept as is
    assert "system\nWhich one?<|im_end|>" in render("qwen3vl-emb", "x", "Which one?", False)
    assert get_style("qwen3vl-emb").positions == "mrope"


def test_gme() -> None:
    assert render("gme", "a red dress", None, True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{IMG}A red dress.<|im_end|>\n<|im_start|>assistant\n"
        "<|endoftext|>")
    assert render("gme", "q", "Find a caption", False).startswith(
        "<|im_start|>system\nFind a caption.<|im_end|>\n")
    assert get_style("gme").positions == "sequential"


def test_lamra_cues_and_system_by_family() -> None:
    head = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    tail = "<|im_end|>\n<|im_start|>assistant\n"
    # instructed text = UniIR's format_string(format_string(prompt) + " " + raw text)
    assert render("lamra", "a red dress", "find the matching image", True) == (
        f"{head}{IMG}Find the matching image. a red dress."
        f"\nSummarize above image and sentence in one word: {tail}")
    assert render("lamra", "a red dress", None, False) == (
        f"{head}A red dress.\nSummarize above sentence in one word: {tail}")
    assert render("lamra", "", None, True) == (
        f"{head}{IMG}\nSummarize above image in one word: {tail}")
    # an image-only query with an instruction: the instruction is its text (as UniIR, LamRA)
    assert render("lamra", "", "Find a similar image", True) == (
        f"{head}{IMG}Find a similar image.\nSummarize above image and sentence in one word: "
        f"{tail}")
    # Qwen3-VL's chat template adds no default system message
    assert render("lamra", "x", None, False, Q3).startswith("<|im_start|>user\nX.\n")
    assert "<emb>" not in render("lamra", "x", None, True)  # the state before <emb>


def test_vlm2vec() -> None:
    assert render("vlm2vec", "a red dress", "Find an image matching the caption", True) == (
        "<|image_pad|> Find an image matching the caption. A red dress.\n")
    assert render("vlm2vec", "", None, True) == "<|image_pad|> Represent the given image.\n"
    assert render("vlm2vec", "a caption", None, False) == "A caption.\n"
    assert "<|vision_start|>" not in render("vlm2vec", "x", None, True)


def test_every_style_is_covered_and_ends_where_it_pools() -> None:
    assert set(PROMPT_STYLES) == {"qwen3vl-emb", "gme", "lamra", "vlm2vec"}
    ends = {"qwen3vl-emb": "assistant\n", "gme": "<|endoftext|>", "lamra": "assistant\n",
            "vlm2vec": "\n"}
    for name, end in ends.items():
        assert render(name, "t", "i", True).endswith(end)


def test_names_and_specs() -> None:
    assert parse_mllm_name("mllm:Qwen/Qwen2-VL-2B-Instruct") == MLLMSpec(
        "Qwen/Qwen2-VL-2B-Instruct", "qwen3vl-emb")
    assert parse_mllm_name("mllm:lamra:/ckpt/x").prompt_style == "lamra"
    assert parse_mllm_name("mllm:lamra:/ckpt/x").model == "/ckpt/x"
    assert parse_mllm_name("mllm:./lamra:dir").model == "./lamra:dir"
    assert parse_mllm_name("tiny-mllm") is MLLM_ENCODERS["tiny-mllm"].spec
    for bad in ("mllm:", "mllm:gme:", "clip_sf-vit-l-14"):
        with pytest.raises(ConfigError):
            parse_mllm_name(bad)
    with pytest.raises(ConfigError, match="unknown prompt style 'e5'"):
        MLLMSpec("x", "e5")
    with pytest.raises(ConfigError, match="min_image_tokens"):
        MLLMSpec("x", max_image_tokens=2, min_image_tokens=3)
    spec = MLLM_ENCODERS["gme-qwen2-vl-7b"].spec
    assert MLLMSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="unknown MLLM spec key"):
        MLLMSpec.from_dict({"model": "x", "pooling": "mean"})
