"""CLIP_SF with the tiny encoder: fusion and masking by hand, tokenisation, preprocessing,
UniIR's input rules and the encoder registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
Image = pytest.importorskip("PIL.Image")

from augret.data import MBEIRDir, Query  # noqa: E402
from augret.data.ids import TASKS  # noqa: E402
from augret.data.instructions import read_instructions  # noqa: E402
from augret.encode import ENCODERS, Item, load_encoder, resolve_encoder  # noqa: E402
from augret.encode.backbones import OPENAI_MEAN, OPENAI_STD, clip_image_transform  # noqa: E402
from augret.encode.batch import collate, prepare  # noqa: E402
from augret.encode.inputs import (  # noqa: E402
    candidate_item,
    positive_modality,
    query_item,
    query_prompt,
)
from augret.errors import ConfigError, DataFormatError  # noqa: E402


def _image(seed: int, size: tuple[int, int] = (80, 60)) -> object:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_fusion_and_masks_match_a_hand_computation(tiny_encoder) -> None:
    img_a, img_b = _image(1), _image(2)
    items = [Item("a red circle", None), Item(None, img_a), Item("a blue ring", img_b),
             Item("", img_b)]
    got = tiny_encoder.encode_candidates(items)
    clip = tiny_encoder.model.clip_model
    tok = open_clip.tokenizer.SimpleTokenizer()
    pre = clip_image_transform(32)
    with torch.no_grad():
        t = clip.encode_text(tok(["a red circle", "", "a blue ring", ""]))
        i = clip.encode_image(torch.stack([pre(img_a), pre(img_a), pre(img_b), pre(img_b)]))
    txt_mask = torch.tensor([1.0, 0.0, 1.0, 0.0])[:, None]
    img_mask = torch.tensor([0.0, 1.0, 1.0, 1.0])[:, None]
    want = (t * txt_mask + i * img_mask).numpy()  # UniIR: raw sums, weight 1, no normalising
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)  # un-normalised
    assert tiny_encoder.normalized is False and tiny_encoder.dim == 64


def test_uniir_layout_with_zero_images_gives_the_same_sums(tiny_encoder) -> None:
    rows = [prepare(Item("text only"), tiny_encoder.processor),
            prepare(Item("both", _image(3)), tiny_encoder.processor)]
    b = collate(rows, tiny_encoder.processor)
    full = torch.zeros(2, 3, 32, 32)  # UniIR feeds zero images where the mask is 0
    full[1] = b.image[0]
    with torch.no_grad():
        compact = tiny_encoder.model(b.text, b.image, b.txt_mask, b.img_mask)
        uniir = tiny_encoder.model(b.text, full, b.txt_mask, b.img_mask)
        clip = tiny_encoder.model.clip_model
        by_hand = (clip.encode_text(b.text["input_ids"]) * b.txt_mask[:, None]
                   + clip.encode_image(full) * b.img_mask[:, None])
    torch.testing.assert_close(compact, uniir)
    torch.testing.assert_close(compact, by_hand, rtol=1e-5, atol=1e-5)


def test_training_mode_keeps_every_parameter_in_the_graph(tiny_encoder) -> None:
    model = tiny_encoder.model
    model.train()
    try:
        b = collate([prepare(Item("only text"), tiny_encoder.processor)], tiny_encoder.processor)
        out = model(b.text, b.image, b.txt_mask, b.img_mask)
        out.sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if "logit_scale" not in n}
        assert all(g is not None for g in grads.values())  # DDP needs every parameter used
        assert float(grads["clip_model.visual.conv1.weight"].abs().sum()) == 0.0
        assert float(grads["clip_model.token_embedding.weight"].abs().sum()) > 0.0
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_truncation_keeps_76_tokens_and_eot_and_is_counted(tiny_encoder) -> None:
    long = " ".join(f"word{i}" for i in range(100))  # about 290 tokens
    tokens, flags = tiny_encoder.processor.tokenize(["short text", long])
    assert flags == [False, True]
    ids = tokens["input_ids"]
    ref = open_clip.tokenize([long])[0]  # clip.tokenize(truncate=True) semantics
    assert torch.equal(ids[1], ref)
    assert int(ids[1, -1]) == 49407 and ids.shape[1] == 77
    longer = load_encoder("tiny", device="cpu", context_length=400)
    tokens, flags = longer.processor.tokenize([long])
    assert flags == [False] and tokens["input_ids"].shape[1] == 400
    with pytest.raises(DataFormatError, match="neither text nor an image"):
        tiny_encoder.encode_queries([Item("", None)])


def test_image_preprocessing_is_openai_clips() -> None:
    img = _image(4, (301, 157)).convert("P")  # odd size, palette mode
    ours = clip_image_transform(224)(img)
    theirs = open_clip.image_transform(224, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD,
                                       resize_mode="shortest", interpolation="bicubic")(img)
    torch.testing.assert_close(ours, theirs)
    assert ours.shape == (3, 224, 224)


def test_query_and_candidate_texts_follow_uniir(sample_dir: Path) -> None:
    data = MBEIRDir(sample_dir)
    table = read_instructions(sample_dir / "instructions/query_instructions.tsv")
    q = Query("9:1", "a red circle", None, "text", pos_cand_list=("9:5",), task_id=0)
    assert positive_modality(q) == "image"
    prompt = query_prompt(q, table, "first", cand_modality="image")
    assert prompt == table.choose(9, "text", "image")
    item = query_item(q, data, prompt)
    assert item.text == f"{prompt} a red circle."  # format_string(prompt + " " + text)
    assert query_item(q, data, None).text == "A red circle."  # --instruction none
    img_q = Query("9:2", None, "mbeir_images/x.png", "image", pos_cand_list=("9:7",), task_id=3)
    p3 = query_prompt(img_q, table, "first", cand_modality=TASKS[3].cand_modality)
    only_prompt = query_item(img_q, data, p3)
    assert only_prompt.text == p3 and only_prompt.has_image  # image-only: the prompt as text
    r1 = query_prompt(q, table, "random", cand_modality="image", seed=1)
    assert r1 == query_prompt(q, table, "random", cand_modality="image", seed=1)
    assert query_prompt(q, table, "none", cand_modality="image") is None
    no_task = Query("9:3", "x", None, "text", pos_cand_list=("9:9",))
    assert positive_modality(no_task, file_task=TASKS[0]) == "image"
    from augret.data.records import Candidate

    c = Candidate("9:1", '  "a caption"  ', None, "text")
    assert candidate_item(c, data).text == "A caption."


def test_registry_resolves_exact_names_only(tmp_path: Path) -> None:
    assert {"clip_sf-vit-l-14", "clip_sf-vit-b-32", "tiny"} <= set(ENCODERS)
    spec, sd = resolve_encoder("clip_sf-vit-l-14")
    assert (spec.model, spec.pretrained, spec.quick_gelu) == ("ViT-L-14", "openai", True)
    assert sd is None
    spec, _ = resolve_encoder("open_clip:ViT-B-16-SigLIP:webli")
    assert spec.model == "ViT-B-16-SigLIP" and spec.image_transform == "open_clip"
    assert not spec.quick_gelu
    spec, _ = resolve_encoder("open_clip:ViT-B-32:openai")
    assert spec.quick_gelu and spec.image_transform == "clip"
    assert resolve_encoder("hf:openai/clip-vit-base-patch32")[0].kind == "hf"
    for bad in ("vit-l-14", "clip_sf", "ViT-L-14", str(tmp_path / "absent.pth")):
        with pytest.raises(ConfigError, match="unknown encoder"):
            resolve_encoder(bad)
    with pytest.raises(ConfigError, match="neither an augret encoder"):
        resolve_encoder(str(tmp_path))
