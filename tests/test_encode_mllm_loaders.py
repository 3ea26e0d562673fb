"""MLLM checkpoint loaders, each on a tiny checkpoint of the release's layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch
from PIL import Image
from tests.helpers.mllm_layouts import (
    lora_weights,
    merged_copy,
    reference_vectors,
    tiny_vlm,
    write_adapter,
    write_merged,
)

from augret.encode import Item, load_encoder
from augret.encode.mllm import MLLM_ENCODERS, TINY_MLLM, save_mllm_dir
from augret.encode.registry import resolve_mllm
from augret.errors import AugretError, DataFormatError, DataNotFoundError

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _items() -> list[Item]:
    img = Image.new("RGB", (90, 60), (200, 40, 40))
    img.paste((30, 30, 220), (40, 10, 80, 50))
    return [Item("a red square"), Item(None, img),
            Item("a blue box on red", img, instruction="Find the matching image")]


def _check(enc, want: torch.Tensor) -> None:
    got = enc.encode_queries(_items())
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


@pytest.mark.parametrize(("name", "preset", "style", "legacy", "head", "flat"), [
    ("qwen3-vl-embedding-2b", "tiny-qwen3-vl", "qwen3vl-emb", False, False, False),
    ("lamra-ret", "tiny-qwen2-vl", "lamra", True, True, True),
    ("lamra-ret-qwen2.5vl-7b", "tiny-qwen2.5-vl", "lamra", True, True, True),
    ("gme-qwen2-vl-2b", "tiny-qwen2-vl", "gme", True, True, True),
])
def test_released_merged_layouts(tmp_path: Path, name, preset, style, legacy, head,
                                 flat) -> None:
    """A registered release loads from a local copy of its layout and embeds exactly as the
    original weights do (the registry entry supplies the prompt style)."""
    remote = {"gme_inference.py": "raise RuntimeError('remote code ran')\n"}
    ckpt = write_merged(tmp_path / name, preset, legacy=legacy, head=head, flat=flat,
                        extra=remote if style == "gme" else None)
    if style == "gme":
        cfg = json.loads((ckpt / "config.json").read_text())
        cfg["auto_map"] = {"AutoModel": "gme_inference.GmeQwen2VL"}
        (ckpt / "config.json").write_text(json.dumps(cfg))
    keys = json.loads((ckpt / "model.safetensors.index.json").read_text())["weight_map"] \
        if (ckpt / "model.safetensors.index.json").exists() else None
    assert keys is None
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert any(k.startswith("visual." if legacy else "model.visual.") for k in names)
    assert ("lm_head.weight" in names) == head
    if style == "lamra":
        assert "<emb>" not in tiny_vlm(preset)[1].tokenizer.get_vocab()
    assert MLLM_ENCODERS[name].spec.prompt_style == style
    enc = load_encoder(name, device="cpu", model=str(ckpt))
    model, processor = tiny_vlm(preset)
    family = {"tiny-qwen2-vl": "qwen2_vl", "tiny-qwen2.5-vl": "qwen2_5_vl",
              "tiny-qwen3-vl": "qwen3_vl"}[preset]
    _check(enc, reference_vectors(model.model, processor, family, MLLM_ENCODERS[name].spec,
                                  _items()))
    assert enc.dim == model.config.text_config.hidden_size


def test_mllm_spec_names_a_local_checkpoint(tmp_path: Path) -> None:
    ckpt = write_merged(tmp_path / "ck", "tiny-qwen2-vl", legacy=False)
    model, processor = tiny_vlm("tiny-qwen2-vl")
    enc = load_encoder(f"mllm:vlm2vec:{ckpt}", device="cpu")
    assert enc.spec.prompt_style == "vlm2vec"
    _check(enc, reference_vectors(model.model, processor, "qwen2_vl", "vlm2vec", _items()))
    default = load_encoder(f"mllm:{ckpt}", device="cpu")
    assert default.spec.prompt_style == "qwen3vl-emb"


def test_vlm2vec_adapter_merged_onto_legacy_base(tmp_path: Path) -> None:
    """VLM2Vec-V2.0: a peft LoRA adapter saved from a pre-4.52 ForConditionalGeneration
    (keys base_model.model.model.layers...) merged onto its base equals a by-hand merge."""
    base_dir = write_merged(tmp_path / "qwen2-vl-2b", "tiny-qwen2-vl", legacy=True, flat=True)
    model, processor = tiny_vlm("tiny-qwen2-vl")
    lora = lora_weights(model.model, TARGETS, r=4, seed=1)
    adapter = write_adapter(tmp_path / "vlm2vec", lora, base_path=str(base_dir), r=4,
                            alpha=8, targets=TARGETS, key_prefix="model.")
    enc = load_encoder("vlm2vec-v2.0", device="cpu", model=str(base_dir),
                       adapter=str(adapter))
    spec = MLLM_ENCODERS["vlm2vec-v2.0"].spec
    want = reference_vectors(merged_copy(model.model, lora, 8 / 4), processor, "qwen2_vl",
                             spec, _items())
    _check(enc, want)
    base_only = reference_vectors(model.model, processor, "qwen2_vl", spec, _items())
    assert not torch.allclose(want, base_only, atol=1e-3)  # the adapter changed something
    assert {w["file"].rsplit("/", 1)[-1] for w in enc.describe()["weights"]} >= {
        "model.safetensors", "adapter_model.safetensors", "adapter_config.json"}


def test_augret_adapter_and_merged_directories(tmp_path: Path) -> None:
    """What training writes (save_mllm_dir) loads back by path, as a directory or as the
    final checkpoint of a training output, and embeds as the in-memory model does."""
    peft = pytest.importorskip("peft")
    enc = load_encoder(TINY_MLLM, device="cpu")
    before = enc.encode_queries(_items())
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                             init_lora_weights=False)
    enc.model.model = peft.get_peft_model(enc.model.model, config)
    assert not any("visual" in n for n, _ in enc.model.model.named_modules() if "lora_" in n)
    live = enc.encode_queries(_items())
    assert not np.allclose(live, before, atol=1e-4)
    out = tmp_path / "train" / "final"
    save_mllm_dir(out, enc.model.model, enc.spec, source=TINY_MLLM, info={"step": 7})
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    meta = json.loads((out / "encoder.json").read_text())
    assert meta["architecture"] == "mllm" and meta["weights"] == "adapter"
    assert meta["mllm"]["model"] == TINY_MLLM and meta["step"] == 7
    for path in (out, tmp_path / "train"):
        got = load_encoder(str(path), device="cpu").encode_queries(_items())
        np.testing.assert_allclose(got, live, atol=1e-5)
    merged = tmp_path / "merged-ckpt"
    save_mllm_dir(merged, enc.model.model.merge_and_unload(), enc.spec, source=TINY_MLLM,
                  processor=enc.processor)
    assert json.loads((merged / "encoder.json").read_text())["weights"] == "merged"
    got = load_encoder(str(merged), device="cpu").encode_queries(_items())
    np.testing.assert_allclose(got, live, atol=1e-5)


def test_missing_and_wrong_files_are_named(tmp_path: Path) -> None:
    good = write_merged(tmp_path / "good", "tiny-qwen2-vl", legacy=True)

    bad = tmp_path / "noconfig"
    shutil.copytree(good, bad)
    (bad / "config.json").unlink()
    with pytest.raises(DataNotFoundError, match=r"noconfig/config\.json"):
        load_encoder(f"mllm:{bad}", device="cpu")

    bad = tmp_path / "noweights"
    shutil.copytree(good, bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(DataNotFoundError, match=r"noweights: no weights \(model\.safetensors"):
        load_encoder(f"mllm:{bad}", device="cpu")

    bad = tmp_path / "wrongkeys"
    shutil.copytree(good, bad)
    from safetensors.torch import load_file, save_file

    sd = load_file(str(bad / "model.safetensors"))
    sd = {k.replace("self_attn.q_proj", "attn.query"): v for k, v in sd.items()}
    save_file(sd, str(bad / "model.safetensors"))
    with pytest.raises(DataFormatError, match=r"wrongkeys.*weights do not fit Qwen2VLModel"):
        load_encoder(f"mllm:{bad}", device="cpu")

    bad = tmp_path / "clip"
    shutil.copytree(good, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "clip"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataFormatError, match=r"clip/config\.json.*model_type is 'clip'"):
        load_encoder(f"mllm:{bad}", device="cpu")

    model, _ = tiny_vlm("tiny-qwen2-vl")
    lora = lora_weights(model.model, ("q_proj",), r=2, seed=3)
    adapter = write_adapter(tmp_path / "ad", lora, base_path=str(good), r=2, alpha=2,
                            targets=("q_proj",), key_prefix="model.")
    (adapter / "adapter_model.safetensors").rename(adapter / "weights.safetensors")
    with pytest.raises(DataNotFoundError, match=r"ad: no adapter weights"):
        load_encoder(f"mllm:{good}", device="cpu", adapter=str(adapter))
    (adapter / "weights.safetensors").rename(adapter / "adapter_model.safetensors")
    (adapter / "adapter_config.json").unlink()
    with pytest.raises(DataNotFoundError, match=r"ad/adapter_config\.json: missing"):
        load_encoder(f"mllm:{good}", device="cpu", adapter=str(adapter))

    one = next(iter(lora.values()))
    bad_ad = write_adapter(tmp_path / "ad2", {"language_model.layers.9.mlp.q_proj": one},
                           base_path=str(good), r=2, alpha=2, targets=("q_proj",),
                           key_prefix="model.")
    with pytest.raises(DataFormatError, match=r"adapter_model\.safetensors.*match no module"):
        load_encoder(f"mllm:{good}", device="cpu", adapter=str(bad_ad))


def test_registered_names_resolve_exactly_and_fail_clearly_offline() -> None:
    assert resolve_mllm("lamra-ret").model == "code-kunkun/LamRA-Ret"
    assert resolve_mllm("vlm2vec-v2.0").adapter == "VLM2Vec/VLM2Vec-V2.0"
    assert resolve_mllm("mllm:gme:Alibaba-NLP/gme-Qwen2-VL-2B-Instruct").prompt_style == "gme"
    assert resolve_mllm("lamra") is None and resolve_mllm("qwen3-vl-embedding") is None
    with pytest.raises(AugretError, match="could not fetch model 'Qwen/Qwen3-VL-Embedding-2B'"):
        load_encoder("qwen3-vl-embedding-2b", device="cpu")


def test_checkpoint_directory_errors_name_what_is_wrong(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()

    def meta(**kw) -> None:
        base = {"format": "augret-encoder", "version": 1, "architecture": "mllm",
                "mllm": {"kind": "mllm", "model": TINY_MLLM}, "weights": "adapter"}
        (ck / "encoder.json").write_text(json.dumps({**base, **kw}))

    meta()
    with pytest.raises(DataNotFoundError, match=r"ck/adapter: missing \(encoder.json says"):
        load_encoder(str(ck), device="cpu")
    meta(weights="full")
    with pytest.raises(DataFormatError, match=r"encoder\.json field 'weights'"):
        load_encoder(str(ck), device="cpu")
    meta(mllm=None)
    with pytest.raises(DataFormatError, match=r"encoder\.json field 'mllm'"):
        load_encoder(str(ck), device="cpu")
    (ck / "adapter").mkdir()
    meta()
    with pytest.raises(DataNotFoundError, match=r"adapter/adapter_config\.json: missing"):
        load_encoder(str(ck), device="cpu")
