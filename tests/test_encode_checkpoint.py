"""UniIR-layout checkpoints and augret encoder directories: round trips and safe loading."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
Image = pytest.importorskip("PIL.Image")

from augret.encode import Item, load_encoder  # noqa: E402
from augret.encode.backbones import TINY_MODEL_CFG, infer_openai_cfg  # noqa: E402
from augret.encode.checkpoint import (  # noqa: E402
    load_uniir_state_dict,
    read_encoder_dir,
    save_encoder_dir,
)
from augret.errors import ConfigError, DataFormatError, DataNotFoundError  # noqa: E402


def _items() -> list[Item]:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    return [Item("a photo of a dog", None), Item(None, img), Item("a cat", img)]


@pytest.fixture(scope="module")
def trained_like():
    """A tiny encoder whose weights differ from the preset's seed-0 initialisation."""
    enc = load_encoder("tiny", device="cpu")
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        for p in enc.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    return enc


def _fake_omegaconf() -> types.ModuleType:
    """A stand-in for omegaconf: a class that exists at save time only."""
    mod = types.ModuleType("fake_omegaconf")

    class DictConfig:  # pickled like OmegaConf's containers (state via __getstate__)
        def __init__(self, content: dict) -> None:
            self._content = content

        def __getstate__(self) -> dict:
            return {"_content": self._content, "_flags": {"readonly": False}}

    DictConfig.__module__ = "fake_omegaconf"
    DictConfig.__qualname__ = "DictConfig"
    mod.DictConfig = DictConfig
    return mod


def test_uniir_pth_round_trip_with_config_object(tmp_path: Path, trained_like) -> None:
    mod = _fake_omegaconf()
    sys.modules["fake_omegaconf"] = mod
    try:
        ckpt = {"model": trained_like.model.state_dict(),  # keys "clip_model.*" as UniIR
                "optimizer": {"state": {}, "param_groups": []}, "epoch": 19,
                "scaler": {"scale": 65536.0}, "config": mod.DictConfig({"model": "CLIP_SF"})}
        path = tmp_path / "clip_sf_tiny.pth"
        torch.save(ckpt, path)
    finally:
        del sys.modules["fake_omegaconf"]  # as on a machine without omegaconf
    assert all(k.startswith("clip_model.") for k in ckpt["model"])
    with pytest.raises(Exception):  # noqa: B017 - a plain weights_only load cannot read it
        torch.load(path, weights_only=True)
    sd = load_uniir_state_dict(path)
    assert "visual.conv1.weight" in sd and not any(k.startswith("clip_model.") for k in sd)
    assert infer_openai_cfg(sd) == TINY_MODEL_CFG  # architecture from shapes alone
    loaded = load_encoder(str(path), device="cpu")
    np.testing.assert_array_equal(loaded.encode_candidates(_items()),
                                  trained_like.encode_candidates(_items()))
    assert not np.allclose(loaded.encode_candidates(_items()),
                           load_encoder("tiny", device="cpu").encode_candidates(_items()))


def test_bare_and_prefixed_state_dicts(tmp_path: Path, trained_like) -> None:
    sd = trained_like.model.clip_model.state_dict()
    torch.save(sd, tmp_path / "bare.pt")  # a bare OpenAI-layout state dict
    torch.save({"model": {f"module.clip_model.{k}": v for k, v in sd.items()}},
               tmp_path / "ddp.pth")  # saved from the DDP wrapper
    want = trained_like.encode_queries(_items())
    for name in ("bare.pt", "ddp.pth"):
        got = load_encoder(str(tmp_path / name), device="cpu").encode_queries(_items())
        np.testing.assert_array_equal(got, want)


def test_bad_checkpoints_fail_clearly(tmp_path: Path, trained_like) -> None:
    sd = dict(trained_like.model.state_dict())
    del sd["clip_model.ln_final.weight"]
    torch.save({"model": sd}, tmp_path / "broken.pth")
    with pytest.raises(ConfigError, match="missing"):
        load_encoder(str(tmp_path / "broken.pth"), device="cpu")
    sd = dict(trained_like.model.state_dict())
    sd["clip_model.text_projection"] = torch.zeros(3, 3)
    torch.save({"model": sd}, tmp_path / "shape.pth")
    with pytest.raises(DataFormatError, match="do not fit"):
        load_encoder(str(tmp_path / "shape.pth"), device="cpu")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataFormatError, match=r"junk\.pth"):
        load_encoder(str(tmp_path / "junk.pth"), device="cpu")
    torch.save({"model": {"a": 1}}, tmp_path / "nostate.pth")
    with pytest.raises(DataFormatError, match="no state dict"):
        load_uniir_state_dict(tmp_path / "nostate.pth")
    with pytest.raises(DataNotFoundError):
        load_uniir_state_dict(tmp_path / "absent.pth")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_pickled_code_is_not_run(tmp_path: Path, trained_like, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({"model": trained_like.model.state_dict(), "config": _Evil()},
               tmp_path / "evil.pth")
    sd = load_uniir_state_dict(tmp_path / "evil.pth")
    assert "visual.proj" in sd
    assert not (tmp_path / "pwned").exists()


def test_encoder_dir_round_trip(tmp_path: Path, trained_like) -> None:
    out = save_encoder_dir(tmp_path / "enc", trained_like.model, trained_like.spec, name="tiny",
                           info={"step": 3})
    spec, _, meta = read_encoder_dir(out)
    assert meta["step"] == 3 and meta["architecture"] == "clip_sf"
    assert spec.model_cfg == TINY_MODEL_CFG
    raw = torch.load(out / "model.pt", weights_only=True)  # itself a UniIR-style checkpoint
    assert set(raw) == {"model"} and all(k.startswith("clip_model.") for k in raw["model"])
    got = load_encoder(str(out), device="cpu").encode_candidates(_items())
    np.testing.assert_array_equal(got, trained_like.encode_candidates(_items()))
