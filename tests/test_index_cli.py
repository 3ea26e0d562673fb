"""``augret index ...`` and ``augret search``: thin wrappers; errors print one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from augret.cli.main import main
from augret.evaluate.rundir import evaluate_run_dir
from helpers.embedding_dirs import dids, write_entry, write_meta

pytest.importorskip("faiss")
pytest.importorskip("bm25s")


@pytest.fixture
def emb(tmp_path: Path, sample_dir: Path) -> Path:
    from augret.data import MBEIRDir

    rng = np.random.default_rng(0)
    data = MBEIRDir(sample_dir)
    root = tmp_path / "emb"
    write_meta(root, 8, data_dir=str(sample_dir))
    vec = {}
    for name in ("webqa_task1", "cirr_task7"):
        ids = [c.did for c in data.iter_pool(name)]
        x = rng.standard_normal((len(ids), 8))
        vec.update(zip(ids, x, strict=True))
        write_entry(root, "pools", name, x, ids)
    for task in ("webqa_task1", "cirr_task7"):
        qs = list(data.iter_queries(task))
        write_entry(root, "queries", task, np.stack([vec[q.pos_cand_list[0]] for q in qs]),
                    [q.qid for q in qs])
    return root


def test_build_search_evaluate(emb, tmp_path, sample_dir, capsys):
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "one"),
                 "--pool", "cirr_task7", "--no-progress"]) == 0
    assert json.loads((tmp_path / "one" / "meta.json").read_text())["pool"] == "cirr_task7"
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "idx"), "--kind", "hnsw",
                 "--hnsw-m", "8", "--recall-queries", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "webqa_task1" in out and "union" in out and "hnsw" in out
    meta = json.loads((tmp_path / "idx" / "union" / "meta.json").read_text())
    assert meta["params"]["hnsw_m"] == 8 and meta["recall"]["queries"] == 20
    assert main(["search", str(emb), "--index", str(tmp_path / "idx"), "--out",
                 str(tmp_path / "runs")]) == 0
    assert "cirr_task7_union.run" in capsys.readouterr().out
    results = evaluate_run_dir(sample_dir, tmp_path / "runs")
    assert set(results) == {(t, p) for t in ("webqa_task1", "cirr_task7")
                            for p in ("local", "union")}
    assert all(r.metrics["hit@1"] == 1.0 for r in results.values())
    assert main(["search", str(emb), "--index", str(tmp_path / "idx"), "--out",
                 str(tmp_path / "deep"), "--k", "12", "--pool", "union", "--task",
                 "cirr_task7"]) == 0
    assert [p.name for p in (tmp_path / "deep").glob("*.run")] == ["cirr_task7_union.run"]
    capsys.readouterr()
    assert main(["index", "info", str(tmp_path / "idx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"webqa_task1", "cirr_task7", "union"}


def test_bm25_and_fuse(emb, tmp_path, sample_dir, capsys):
    assert main(["index", "bm25", str(sample_dir), "--out", str(tmp_path / "b"), "--union",
                 "--stopwords", "none", "--k1", "1.2", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["kind"] == "bm25" and meta["params"]["k1"] == 1.2
    assert meta["tokenizer"]["stopwords"] == "none"
    assert main(["search", str(sample_dir), "--index", str(tmp_path / "b"), "--out",
                 str(tmp_path / "rb"), "--task", "webqa_task1"]) == 0
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "u"), "--union",
                 "--no-progress"]) == 0
    assert main(["search", str(emb), "--index", str(tmp_path / "u"), "--out",
                 str(tmp_path / "rd")]) == 0
    assert main(["index", "fuse", str(tmp_path / "rd"), str(tmp_path / "rb"), "--out",
                 str(tmp_path / "h"), "--weights", "1,0.5", "--rrf-k", "10"]) == 0
    assert "2 fused run file(s)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "h").glob("*.run")) == [
        "cirr_task7_union.run", "webqa_task1_union.run"]


@pytest.mark.parametrize(("args", "code", "text"), [
    (["index", "build", "{emb}", "--out", "{tmp}/x", "--pool", "a", "--union"], 2,
     "at most one of --pool, --union and --all"),
    (["index", "build", "{tmp}/nowhere", "--out", "{tmp}/x"], 4, "no such directory"),
    (["index", "build", "{emb}", "--out", "{tmp}/x", "--pool", "webqa_task1", "--kind", "pq",
      "--pq-m", "3"], 2, "pq_m=3 must divide the dimension 8"),
    (["search", "{emb}", "--index", "{tmp}/none", "--out", "{tmp}/r"], 4,
     "no such directory"),
    (["index", "fuse", "{tmp}", "--out", "{tmp}/h", "--weights", "a,b"], 2,
     "--weights must be"),
])
def test_errors_are_one_line(emb, tmp_path, capsys, args, code, text):
    argv = [a.format(emb=emb, tmp=tmp_path) for a in args]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and text in err and err.count("\n") == 1


def test_mismatched_ids_exit_code(emb, tmp_path, capsys):
    write_entry(emb, "pools", "nights_task4", np.ones((3, 8)), dids(4, 3))
    (emb / "pools" / "nights_task4" / "shard_00000.ids.txt").write_text("4:1\n4:2\n")
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "x"), "--pool",
                 "nights_task4", "--no-progress"]) == 5
    assert "2 ids for the 3 rows of shard_00000.npy" in capsys.readouterr().err
