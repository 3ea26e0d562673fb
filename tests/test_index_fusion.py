"""Reciprocal rank fusion against a hand computation, and over run directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from augret.errors import ConfigError, DataNotFoundError
from augret.evaluate import Run, evaluate, read_run, write_run
from augret.index import fuse_run_dirs, fuse_runs

DENSE = Run.from_dict({"q1": {"a": 0.9, "b": 0.8, "c": 0.7}, "q2": {"x": 0.5, "y": 0.4}},
                      task_ids={"q1": 0, "q2": 0})
LEXICAL = Run.from_dict({"q1": {"c": 12.0, "d": 11.0, "a": 3.0}, "q3": {"z": 1.0}})


def test_rrf_matches_a_hand_computation():
    fused = fuse_runs([DENSE, LEXICAL], k=60, depth=4)
    got = fused.to_dict()
    assert list(got) == ["q1", "q2", "q3"]
    q1 = {"a": 1 / 61 + 1 / 63, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62}
    assert got["q1"] == pytest.approx(q1)
    # a and c tie; a was met first (run 0 rank 1). b and d tie; b was met first.
    assert list(got["q1"]) == ["a", "c", "b", "d"]
    assert got["q2"] == pytest.approx({"x": 1 / 61, "y": 1 / 62})
    assert got["q3"] == pytest.approx({"z": 1 / 61})
    assert fused.depth == 4 and fused.tag == "rrf"
    assert fused.task_ids == {"q1": 0, "q2": 0}
    assert list(fuse_runs([DENSE, LEXICAL]).to_dict()["q1"]) == ["a", "c", "b"]  # depth 3


def test_weights_k_and_depth():
    fused = fuse_runs([DENSE, LEXICAL], [0.25, 1.0], k=0, depth=2)
    q1 = fused.to_dict()["q1"]
    # k=0: 1/rank. a: .25/1 + 1/3; c: .25/3 + 1/1; d: 1/2; b: .25/2
    assert q1 == pytest.approx({"c": 0.25 / 3 + 1, "a": 0.25 + 1 / 3})
    assert list(q1) == ["c", "a"]
    only = fuse_runs([LEXICAL], k=60)
    assert list(only.to_dict()["q1"]) == ["c", "d", "a"]  # one run: its own ranking


def test_bad_arguments():
    with pytest.raises(ConfigError):
        fuse_runs([])
    with pytest.raises(ConfigError, match="2 weights for 1 runs"):
        fuse_runs([DENSE], [1, 2])
    with pytest.raises(ConfigError):
        fuse_runs([DENSE], [-1])


def test_fuse_run_directories(tmp_path: Path):
    for name, runs in {"dense": {"cirr_task7_local": DENSE, "cirr_task7_union": DENSE},
                       "bm25": {"cirr_task7_local": LEXICAL}}.items():
        for stem, run in runs.items():
            write_run(tmp_path / name / f"{stem}.run", run, task_ids=7)
    written = fuse_run_dirs([tmp_path / "dense", tmp_path / "bm25"], tmp_path / "hybrid",
                            [1, 1], depth=4)
    assert set(written) == {("cirr_task7", "local"), ("cirr_task7", "union")}
    local = read_run(written["cirr_task7", "local"])
    expected = fuse_runs([DENSE, LEXICAL], depth=4).to_dict()
    assert local.to_dict().keys() == expected.keys()
    for qid, docs in expected.items():
        assert local.to_dict()[qid] == pytest.approx(docs)
    assert local.task_ids["q3"] == 7
    union = read_run(written["cirr_task7", "union"])
    assert list(union.to_dict()["q1"]) == ["a", "b", "c"]  # dense only there
    res = evaluate({"q1": {"d": 1}}, local, "hit@3,hit@4")
    assert res.metrics == {"hit@3": 0.0, "hit@4": 1.0}
    with pytest.raises(ConfigError, match="1 weights for 2"):
        fuse_run_dirs([tmp_path / "dense", tmp_path / "bm25"], tmp_path / "h", [1])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError):
        fuse_run_dirs([tmp_path / "empty"], tmp_path / "h")
