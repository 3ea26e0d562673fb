"""The enhancement policy and the prompts, on hand-made and real M-BEIR records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from augret.data import Candidate, Query, iter_queries
from augret.enhance import Policy, load_prompts, route
from augret.enhance.policy import is_question
from augret.errors import ConfigError


def q(txt: str | None, img: str | None) -> Query:
    mod = "image,text" if txt and img else ("image" if img else "text")
    return Query("1:1", txt, img, mod)


@pytest.mark.parametrize(("text", "expected"), [
    ("When was it discovered?", True),
    ("what family does this belong to", True),
    ("How tall is this tower", True),
    ("Which one is older", True),
    ("Whatever you like.", False),  # 'what' must be a whole word
    ("Is shiny and silver with shorter sleeves.", False),
    ("Who built this?", True),
    ("Show three bottles of soft drink.", False),
])
def test_is_question(text: str, expected: bool) -> None:
    assert is_question(text) is expected


def test_routes_follow_the_policy_table() -> None:
    p = Policy()
    assert route(q("A dog on a bed.", None)).kind == "passthrough"
    r = route(q("When was this built?", "x.jpg"))
    assert (r.kind, r.send_image, r.send_text) == ("entity_rewrite", True, True)
    assert r.max_new_tokens == 128
    r = route(q("Is red with long sleeves.", "x.jpg"))
    assert (r.kind, r.send_image, r.send_text) == ("condense", False, True)
    r = route(q(None, "x.jpg"))
    assert (r.kind, r.send_image, r.max_words) == ("caption_query", True, p.query_caption_words)
    assert r.max_words == 50
    r = route(Candidate("1:1", "Some title.", "x.jpg", "image,text"))
    assert (r.kind, r.send_image, r.send_text, r.max_words, r.max_new_tokens) == (
        "caption_candidate", True, False, 100, 512)
    assert route(Candidate("1:1", "A fact.", None, "text")).kind == "passthrough"
    assert route(q("   ", "x.jpg")).kind == "caption_query"


def test_routes_on_real_test_topics(shared_data: Path) -> None:
    topics = shared_data / "mbeir-test-topics" / "topics"
    kinds = {}
    for f in sorted(topics.glob("*.jsonl")):
        kinds[f.name.split(".")[1]] = Counter(route(x).kind for x in iter_queries(f))
    # modification instructions are condensed (text only); the policy's literal question rule
    # sends the 2 FashionIQ texts that end in "?" to the rewrite route
    assert kinds["mbeir-fashioniq_task7"] == Counter(condense=6001, entity_rewrite=2)
    assert kinds["mbeir-cirr_task7"] == Counter(condense=4170)
    # image-only queries get captions
    assert kinds["mbeir-mscoco_task3"] == Counter(caption_query=5000)
    assert kinds["mbeir-nights_task4"] == Counter(caption_query=2120)
    assert kinds["mbeir-fashion200k_task3"] == Counter(caption_query=4889)
    # text-only queries pass through
    for name in ("webqa_task1", "webqa_task2", "edis_task2", "fashion200k_task0"):
        assert set(kinds[f"mbeir-{name}"]) == {"passthrough"}


def test_prompts_render_every_route() -> None:
    prompts = load_prompts()
    assert prompts.version == "augret-prompts-v1" and len(prompts.digest) == 12
    for rec, needle in [
        (q("When was this built?", "x.jpg"), "Question: When was this built?"),
        (q("Is red with long sleeves.", "x.jpg"), "Text: Is red with long sleeves."),
        (q(None, "x.jpg"), "at most 50 words"),
        (Candidate("1:1", "A title.", "x.jpg", "image,text"), "at most 100 words"),
    ]:
        r = route(rec)
        msgs = prompts.messages(r, rec.query_txt if isinstance(rec, Query) else rec.txt)
        assert [m["role"] for m in msgs] == ["system", "user"]
        assert msgs[0]["content"][0]["text"].startswith("You are an expert")
        user = msgs[1]["content"]
        images = [c for c in user if c["type"] == "image"]
        assert len(images) == (1 if r.send_image else 0)
        text = user[-1]["text"]
        assert needle in text
        assert "A title." not in text  # candidates: the VLM sees the image only
        assert "{" not in text  # every placeholder filled


def test_prompt_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown prompt set"):
        load_prompts("v999")
    bad = tmp_path / "p.yaml"
    bad.write_text("version: x\nroutes:\n  condense: {system: s}\n")
    with pytest.raises(ConfigError, match=r"route '(entity_rewrite|condense)'"):
        load_prompts(bad)
