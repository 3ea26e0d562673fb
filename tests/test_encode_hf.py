"""Hugging Face CLIP backbones (``hf:<path>``): a tiny random CLIPModel built locally with the
real CLIP BPE vocabulary, embedded, saved as an augret encoder directory and reloaded."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

from augret.encode import Item, load_encoder  # noqa: E402
from augret.encode.checkpoint import save_encoder_dir  # noqa: E402


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    root = tmp_path_factory.mktemp("hfclip")
    with gzip.open(default_bpe()) as f:
        merges = f.read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (root / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (root / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = transformers.CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"))
    small = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 1}
    cfg = transformers.CLIPConfig(
        text_config={**small, "max_position_embeddings": 77, "vocab_size": 49408,
                     "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 0},
        vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=48)
    torch.manual_seed(0)
    out = root / "model"
    transformers.CLIPModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                    crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def _items() -> list[Item]:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8))
    return [Item("a red circle"), Item(None, img), Item("a red circle", img)]


def test_hf_clip_fuses_like_the_open_clip_path(hf_dir: Path, tmp_path: Path) -> None:
    enc = load_encoder(f"hf:{hf_dir}", device="cpu")
    assert (enc.dim, enc.context_length) == (48, 77)
    v = enc.encode_candidates(_items())
    np.testing.assert_allclose(v[2], v[0] + v[1], rtol=1e-5, atol=1e-5)  # masked sum
    tokens, flags = enc.processor.tokenize(["a red circle", "circle " * 100])
    assert tokens["input_ids"][0, :5].tolist() == open_clip.tokenize(["a red circle"])[0, :5]\
        .tolist()
    assert flags == [False, True]
    saved = save_encoder_dir(tmp_path / "enc", enc.model, enc.spec, name=f"hf:{hf_dir}",
                             processor=enc.processor)
    assert (saved / "hf" / "config.json").is_file()
    again = load_encoder(str(saved), device="cpu")
    np.testing.assert_array_equal(again.encode_candidates(_items()), v)
