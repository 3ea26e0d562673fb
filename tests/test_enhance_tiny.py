"""Tiny randomly initialised Qwen-VL presets: build, determinism, local save, generation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from PIL import Image

from augret.enhance.tiny import (
    MARKER_FILE,
    TINY_PRESETS,
    build_tiny_processor,
    build_tiny_vlm,
    is_tiny_model,
    resolve_tiny_preset,
    tiny_model_dir,
)
from augret.errors import ConfigError

SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _messages(text: str, with_image: bool) -> list[dict]:
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
    return [
        {"role": "system", "content": [{"type": "text", "text": "You are an expert."}]},
        {"role": "user", "content": content},
    ]


def _generate(model, processor, items, max_new_tokens=6):
    prompts = [
        processor.apply_chat_template(
            _messages(t, im is not None), add_generation_prompt=True, tokenize=False
        )
        for t, im in items
    ]
    images = [im for _, im in items if im is not None]
    inputs = processor(
        text=prompts, images=images or None, return_tensors="pt", padding=True, padding_side="left"
    )
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[:, inputs["input_ids"].shape[1] :]


def test_preset_names():
    assert resolve_tiny_preset("tiny") == "tiny-qwen2-vl"
    for preset in TINY_PRESETS:
        assert resolve_tiny_preset(preset) == preset
        assert is_tiny_model(preset)
    assert resolve_tiny_preset("Qwen/Qwen2-VL-2B-Instruct") is None
    assert not is_tiny_model("tiny-qwen2-vl-extra")  # exact names only
    with pytest.raises(ConfigError, match="unknown tiny preset"):
        build_tiny_vlm("tiny-llava", cache=False)


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_config_ids_match_tokenizer(preset):
    model, processor = build_tiny_vlm(preset, cache=False)
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL}
    assert len(set(ids.values())) == len(SPECIAL)
    for token, i in ids.items():  # each special token is one real, non-unknown id
        assert tok.encode(token, add_special_tokens=False) == [i]
    cfg = model.config
    assert cfg.image_token_id == ids["<|image_pad|>"]
    assert cfg.video_token_id == ids["<|video_pad|>"]
    assert cfg.vision_start_token_id == ids["<|vision_start|>"]
    assert cfg.vision_end_token_id == ids["<|vision_end|>"]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    gen = model.generation_config
    assert set(gen.eos_token_id) == {ids["<|im_end|>"], ids["<|endoftext|>"]}
    assert gen.pad_token_id == ids["<|endoftext|>"]
    assert 500 < len(tok) <= 4096  # small but real
    assert cfg.get_text_config().vocab_size >= len(tok)
    assert processor.image_token == "<|image_pad|>"
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_generates_mixed_batch(preset):
    model, processor = build_tiny_vlm(preset, cache=False)
    red = Image.new("RGB", (64, 48), (200, 10, 10))
    wide = Image.new("RGB", (90, 30), (10, 10, 200))
    items = [("a red cube", red), ("what is this?", None), ("a blue bar", wide)]
    batched = _generate(model, processor, items)
    assert batched.shape == (3, 6)
    for k, item in enumerate(items):  # left padding: each row equals its solo generation
        solo = _generate(model, processor, [item])
        assert torch.equal(batched[k], solo[0])
    texts = processor.batch_decode(batched, skip_special_tokens=True)
    assert all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_same_preset_same_weights_and_outputs(preset):
    a, proc_a = build_tiny_vlm(preset, cache=False)
    b, proc_b = build_tiny_vlm(preset, cache=False)
    sd_a, sd_b = a.state_dict(), b.state_dict()
    assert sd_a.keys() == sd_b.keys()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert proc_a.tokenizer.get_vocab() == proc_b.tokenizer.get_vocab()
    items = [("a red cube", Image.new("RGB", (56, 56), (200, 10, 10))), ("hello", None)]
    assert torch.equal(_generate(a, proc_a, items), _generate(b, proc_b, items))


def test_chat_template_renders_qwen_format():
    processor = build_tiny_processor("tiny")
    prompt = processor.apply_chat_template(
        _messages("What is it?", True), add_generation_prompt=True, tokenize=False
    )
    assert prompt == (
        "<|im_start|>system\nYou are an expert.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # Qwen2-VL adds a default system turn; Qwen3-VL does not.
    user_only = [{"role": "user", "content": "hi"}]
    qwen2 = processor.apply_chat_template(user_only, add_generation_prompt=True, tokenize=False)
    assert qwen2.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    qwen3 = build_tiny_processor("tiny-qwen3-vl").apply_chat_template(
        user_only, add_generation_prompt=True, tokenize=False
    )
    assert qwen3 == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_image_placeholder_expands_to_merged_patches():
    processor = build_tiny_processor("tiny")
    prompt = processor.apply_chat_template(
        _messages("x", True), add_generation_prompt=True, tokenize=False
    )
    image = Image.new("RGB", (56, 56))  # 2x2 merged patches of 28 px -> 4 tokens
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_id).sum()) == 4


@pytest.mark.parametrize("preset", ["tiny", "tiny-qwen3-vl"])
def test_model_dir_roundtrip(preset, capfd):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_model_dir(preset)  # builds and saves: silently
    out, err = capfd.readouterr()
    assert out == "" and "Writing model shards" not in err
    canonical = resolve_tiny_preset(preset)
    assert path.name == f"{canonical}-v1" and path.parent.name == "tiny"
    marker = json.loads((path / MARKER_FILE).read_text())
    assert marker["preset"] == canonical and "meaningless" in marker["note"]
    assert (path / "chat_template.jinja").is_file() or "chat_template" in (
        path / "processor_config.json"
    ).read_text()
    assert tiny_model_dir(preset) == path  # second call reuses it

    fresh, fresh_proc = build_tiny_vlm(preset, cache=False)
    loaded_proc = AutoProcessor.from_pretrained(path)
    loaded = AutoModelForImageTextToText.from_pretrained(path)
    assert type(loaded) is type(fresh)
    sd = fresh.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in loaded.state_dict().items())
    text = "<|im_start|>user\nWhat is the shiny silver dress?<|im_end|>\n"
    assert loaded_proc.tokenizer(text)["input_ids"] == fresh_proc.tokenizer(text)["input_ids"]
    assert loaded_proc.chat_template == fresh_proc.chat_template
    assert loaded_proc.tokenizer.padding_side == "left"

    capfd.readouterr()
    cached, _ = build_tiny_vlm(preset)  # cache=True loads from the directory, silently
    assert all(torch.equal(sd[k], v) for k, v in cached.state_dict().items())
    out, err = capfd.readouterr()
    assert out == "" and "Loading weights" not in err


def test_build_logs_meaningless_and_prints_nothing(caplog, capfd):
    with caplog.at_level(logging.WARNING, logger="augret.enhance.tiny"):
        build_tiny_vlm("tiny-qwen2.5-vl", cache=False)
    assert any("meaningless" in r.getMessage() for r in caplog.records)
    out, err = capfd.readouterr()
    assert out == ""  # nothing printed; stderr may carry log records if a handler is set up
    assert "it/s" not in err and "%|" not in err  # no progress bars


@pytest.mark.slow
def test_tokenizer_identical_across_processes():
    code = (
        "import hashlib, json;"
        "from augret.enhance.tiny import build_tiny_processor;"
        "v = build_tiny_processor('tiny').tokenizer.get_vocab();"
        "print(hashlib.sha256(json.dumps(sorted(v.items())).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    vocab = build_tiny_processor("tiny").tokenizer.get_vocab()
    import hashlib

    here = hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()
    assert digests == {here}


def test_declared_transformers_floor_is_what_the_presets_need(monkeypatch):
    """Every extra that installs transformers declares the presets' floor, no lower; an older
    transformers gets a clear error instead of a TypeError deep in tokenizer code."""
    import inspect
    import re
    from pathlib import Path

    import transformers
    from packaging.requirements import Requirement
    from packaging.version import Version
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    from augret.enhance.tiny import MIN_TRANSFORMERS, check_transformers
    from augret.errors import MissingExtraError

    project = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    declared = [Requirement(r) for r in re.findall(r'"(transformers\b[^"]*)"', project)]
    floors = [[s.version for s in r.specifier if s.operator in (">=", "==", "~=")]
              for r in declared]
    assert len(floors) >= 2 and all(f == [MIN_TRANSFORMERS] for f in floors), floors
    # what the presets rely on: a Qwen2 tokenizer built from an in-memory vocab and merges
    params = inspect.signature(Qwen2Tokenizer.__init__).parameters
    assert "vocab" in params and "merges" in params and "vocab_file" not in params
    assert Version(transformers.__version__) >= Version(MIN_TRANSFORMERS)
    check_transformers(MIN_TRANSFORMERS)
    with pytest.raises(MissingExtraError, match=r"transformers>=5\.0 \(found 4\.57\.1\)"):
        check_transformers("4.57.1")
    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    with pytest.raises(MissingExtraError, match="pip install 'augret\\[enhance\\]'"):
        build_tiny_processor("tiny")
