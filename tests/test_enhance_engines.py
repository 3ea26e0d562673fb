"""The enhancement engines' table, the shared run ledger, and the library's fake backend."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
from PIL import Image

from augret.enhance import EnhanceConfig, enhance
from augret.enhance.backends import GenerationParams, GenerationRequest, get_backend
from augret.enhance.backends.fake import FakeBackend
from augret.enhance.item import backend_identity
from augret.enhance.ledger import Attempt, RunLedger
from augret.enhance.runner import ENGINES
from augret.errors import ConfigError
from helpers.edge_data import write_rows


def _req(text: str, image=None) -> GenerationRequest:
    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": text}]
    return GenerationRequest([{"role": "user", "content": content}], image, 16)


def test_engine_table_matches_the_config_choices() -> None:
    choices = typing.get_args(typing.get_type_hints(EnhanceConfig)["engine"])
    assert set(ENGINES) == set(choices)
    assert all(engine.name == name for name, engine in ENGINES.items())
    assert ENGINES["local"].loads_model and not ENGINES["ray"].loads_model


def test_fake_backend_text_and_faults() -> None:
    fake = get_backend("fake", "fake-vlm", words=3, fail_match="boom")
    assert isinstance(fake, FakeBackend)
    red, blue = Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))
    a, b, c, boom = fake.generate([_req("x", red), _req("x", blue), _req("x", red),
                                   _req("a boom")], GenerationParams())
    assert a.ok and len(a.text.split()) == 3 and a.output_tokens == 3
    assert a.text == c.text != b.text  # a hash of the request: same request, same text
    assert boom.error and "HTTP 500" in boom.error and boom.text is None
    assert len(fake.calls) == 4

    texts = [f"item {i}" for i in range(200)]
    empty = FakeBackend(fail_share=0.3, failure="empty").generate(
        [_req(t) for t in texts], GenerationParams())
    chosen = [t for t, r in zip(texts, empty, strict=True) if r.text == ""]
    assert 30 < len(chosen) < 90  # about 30 %, and always the same ones
    again = FakeBackend(fail_share=0.3, failure="overlong", overlong_words=40).generate(
        [_req(t) for t in texts], GenerationParams())
    assert [t for t, r in zip(texts, again, strict=True) if len(r.text.split()) == 40] == chosen

    flaky = FakeBackend(fail_share=1.0, recover_after=2)
    outcomes = [flaky.generate([_req("q")], GenerationParams())[0].ok for _ in range(3)]
    assert outcomes == [False, False, True]
    dead = FakeBackend(dead=True).generate([_req("q"), _req("r")], GenerationParams())
    assert all("connection" in r.error for r in dead)
    sentences = FakeBackend(words=9, sentence_words=4).generate([_req("s")], GenerationParams())
    assert sentences[0].text.count(".") == 2
    with pytest.raises(ConfigError, match="fail_share"):
        FakeBackend(fail_share=2)
    with pytest.raises(ConfigError, match="does not accept"):
        get_backend("fake", "fake-vlm", batch=3)


def test_fake_never_claims_a_real_model() -> None:
    real = "Qwen/Qwen3-VL-8B-Instruct"
    assert FakeBackend(real).model_id == f"fake:{real}"
    assert FakeBackend("fake-vlm").model_id == "fake-vlm"
    assert backend_identity(EnhanceConfig(backend="fake", model=real)).model_id == f"fake:{real}"


def test_run_ledger_hands_each_fresh_key_out_once(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path / "l.sqlite")
    ledger.record([Attempt("a", tokens=5), Attempt("b", reason="empty output"),
                   Attempt("a", reason="a later outcome is ignored")])
    assert ledger.attempted(["a", "b", "c"]) == {"a", "b"}
    assert ledger.failures(["a", "b"]) == {"b": Attempt("b", reason="empty output")}
    assert ledger.take(["a", "b"]) == {"a": Attempt("a", tokens=5),
                                       "b": Attempt("b", reason="empty output")}
    assert ledger.take(["a", "b"]) == {}
    ledger.queue([("k1", "row1"), ("k2", "row2"), ("k1", "again")])
    assert list(ledger.queued()) == ["row1", "row2"]
    ledger.close()
    assert not (tmp_path / "l.sqlite").exists()


def _repeated_image_dir(root: Path, rows: int) -> Path:
    (root / "mbeir_images").mkdir(parents=True)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "mbeir_images" / "a.png")
    write_rows(root / "query/test/mbeir_cirr_task7_test.jsonl", [
        {"qid": f"8:{i + 1}", "query_txt": "What is this?", "query_img_path": "mbeir_images/a.png",
         "query_modality": "image,text", "query_src_content": None, "pos_cand_list": ["8:1"],
         "neg_cand_list": [], "task_id": 7} for i in range(rows)])
    return root


def test_a_key_is_attempted_once_per_run_across_chunks(tmp_path: Path) -> None:
    """100 rows of one key over 4 chunks: one attempt, whatever its outcome."""
    data = _repeated_image_dir(tmp_path / "data", 100)
    cfg = EnhanceConfig(store=tmp_path / "s.sqlite", side="queries", batch_size=3)
    failing = FakeBackend(fail_share=1.0)
    report = enhance(data, tmp_path / "out", cfg, backend=failing, progress=False)
    assert len(failing.calls) == 1 and report["last_run"]["failed"] == 100
    assert not (tmp_path / "out" / ".enhance_run.sqlite").exists()  # the ledger is removed
    healthy = FakeBackend()
    report = enhance(data, tmp_path / "out", cfg, backend=healthy, progress=False)
    assert len(healthy.calls) == 1
    assert (report["last_run"]["generated"], report["last_run"]["cached"]) == (1, 99)


def test_the_fake_backend_from_a_config(tmp_path: Path) -> None:
    data = _repeated_image_dir(tmp_path / "data", 3)
    cfg = EnhanceConfig(store=tmp_path / "s.sqlite", side="queries", backend="fake",
                        model="fake-vlm", backend_options={"words": 4})
    enhance(data, tmp_path / "out", cfg, progress=False)
    rows = (tmp_path / "out/query/test/mbeir_cirr_task7_test.jsonl").read_text().splitlines()
    first = json.loads(rows[0])
    assert len(first["query_txt"].split()) == 4
    assert first["enhancement"]["model"] == "fake-vlm"
