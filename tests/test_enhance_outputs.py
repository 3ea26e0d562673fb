"""Output checks (the over-long policy, truncation) and the store's recorded failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from augret.data.records import Candidate
from augret.enhance import EnhanceConfig, GenerationStore
from augret.enhance.backends.base import GenerationParams
from augret.enhance.context import policy_of
from augret.enhance.item import backend_identity, item_key, output_rules
from augret.enhance.outputs import Failure, OutputRules, Usable, truncate_words
from augret.enhance.policy import Route
from augret.enhance.policy import route as route_of
from augret.enhance.prompts import load_prompts
from augret.enhance.store import Generation, RecordedFailure

CAPTION = Route("caption_candidate", send_image=True, max_words=10, max_new_tokens=64)


def test_truncate_at_a_close_sentence_end_else_at_a_word() -> None:
    words = [f"w{i}" for i in range(30)]
    assert truncate_words(" ".join(words[:10]), 10) == " ".join(words[:10])  # within budget
    plain = truncate_words(" ".join(words), 10)
    assert plain == " ".join(words[:10])
    near = words.copy()
    near[8] = "w8."  # a sentence ends 1 word before the budget: cut there
    assert truncate_words(" ".join(near), 10) == " ".join([*words[:8], "w8."])
    far = words.copy()
    far[3] = "w3."  # too far from the budget: cut at the word
    assert truncate_words(" ".join(far), 10) == " ".join(far[:10])
    dangling = words.copy()
    dangling[9] = "w9,"
    assert truncate_words(" ".join(dangling), 10) == " ".join([*words[:9], "w9"])
    quoted = words.copy()
    quoted[9] = 'end!")'
    assert truncate_words(" ".join(quoted), 10).endswith('end!")')


def test_rules_truncate_or_fail() -> None:
    long = " ".join(f"w{i}" for i in range(16))  # > 10 x 1.5
    cut = OutputRules().check(CAPTION, long)
    assert cut == Usable(" ".join(f"w{i}" for i in range(10)), truncated=True)
    assert OutputRules().check(CAPTION, " ".join(["x"] * 15)) == Usable(" ".join(["x"] * 15))
    failed = OutputRules(overlong="fail").check(CAPTION, long)
    assert isinstance(failed, Failure) and failed.kind == "overlong_output"
    assert not failed.transient and "16 words > 15 allowed" in failed.reason
    assert OutputRules().check(CAPTION, '  " " ') == Failure("empty_output", "empty output")
    assert OutputRules().check(CAPTION, None) == Failure("empty_output", "empty output")
    assert Failure("backend_error", "HTTP 500").transient


def test_budget_and_policy_are_part_of_the_key() -> None:
    def key(**kw) -> str:
        cfg = EnhanceConfig(backend="fake", model="fake-vlm", **kw)

        rec = Candidate(did="1:1", txt=None, img_path="a.png", modality="image")
        return item_key(backend=backend_identity(cfg), prompts=load_prompts(cfg.prompts),
                        params=GenerationParams(), route=route_of(rec, policy_of(cfg)),
                        rules=output_rules(cfg), max_pixels=cfg.max_pixels, text=None,
                        image_sha256="ab" * 32)

    base = key()
    assert base == key(workers=1, retry_failed=True)  # how the run goes: not in the key
    assert len({base, key(overlong="fail"), key(candidate_caption_words=80),
                key(overlong_factor=2.0), key(candidate_tokens=256)}) == 5


def test_store_records_failures_until_a_success(tmp_path: Path) -> None:
    fail = RecordedFailure("k", "empty_output", "empty output", "m", None, "v1",
                           "caption_candidate", 0.0)
    gen = Generation("k", "a text", "m", None, "v1", "caption_candidate", {}, 3, "stop", 0.0,
                     truncated=True)
    with GenerationStore(tmp_path / "s.sqlite") as store:
        store.put_many([], [fail])
        assert store.get_failures(["k", "x"])["k"].reason == "empty output"
        store.put_many([gen])
        assert store.get_failures(["k"]) == {} and store.get_many(["k"])["k"].truncated
        store.put_many([], [fail])  # a failure never shadows a stored generation
        assert store.failure_count() == 0


def test_a_store_from_before_truncation_opens_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE generations (key TEXT PRIMARY KEY, text TEXT NOT NULL, model TEXT "
               "NOT NULL, revision TEXT, prompt_version TEXT NOT NULL, route TEXT NOT NULL, "
               "params TEXT NOT NULL, output_tokens INTEGER NOT NULL, finish_reason TEXT, "
               "created REAL NOT NULL)")
    db.execute("INSERT INTO generations VALUES ('k', 't', 'm', NULL, 'v1', 'r', '{}', 2, "
               "'stop', 1.0)")
    db.commit()
    db.close()
    with GenerationStore(path) as store:
        old = store.get_many(["k"])["k"]
        assert old.text == "t" and old.truncated is False and store.failure_count() == 0
