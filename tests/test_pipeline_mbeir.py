"""``augret mbeir run``: the whole pipeline with the tiny encoder (numbers meaningless, the
pipeline real), stage reuse by fingerprint, BM25 and hybrid retrievers, the real mini
M-BEIR MSCOCO data, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from augret.data import MBEIRDir
from augret.errors import ConfigError

pytest.importorskip("faiss")
pytest.importorskip("bm25s")
pytest.importorskip("open_clip")

SAMPLE_TASKS = ("mscoco_task0", "webqa_task1", "mscoco_task3", "nights_task4", "cirr_task7",
                "oven_task8")


def _cfg(**kw):
    from augret.pipeline import RunConfig

    return RunConfig(**{"encoder": "tiny", "workers": 0, "device": "cpu", **kw})


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".npy", ".faiss")}


def _corpus_copy(sample: Path, dest: Path) -> Path:
    """An "enhanced corpus": the pools with rewritten text, images from the sample."""
    for pool in MBEIRDir(sample).local_pools().values():
        rel = pool.relative_to(sample)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for line in pool.read_text().splitlines():
            row = json.loads(line)
            if row["txt"]:
                row["txt_raw"], row["txt"] = row["txt"], row["txt"].upper()
            lines.append(json.dumps(row))
        (dest / rel).write_text("\n".join(lines) + "\n")
    (dest / "augret.json").write_text(json.dumps({"image_root": str(sample)}))
    return dest


def test_dense_run_then_reuse_then_new_corpus(sample_dir, tmp_path):
    from augret.evaluate import read_run
    from augret.pipeline import run_mbeir

    out = tmp_path / "out"
    first = run_mbeir(sample_dir, out, _cfg(), progress=False)
    assert first.status() == dict.fromkeys(("embed_queries", "embed_pools", "index_dense",
                                            "search_dense", "evaluate"), "ran")
    runs = sorted(p.name for p in (out / "runs" / "dense").glob("*.run"))
    assert runs == sorted(f"{t}_{p}.run" for t in SAMPLE_TASKS for p in ("local", "union"))
    run = read_run(out / "runs" / "dense" / "cirr_task7_union.run")
    assert len(run) == 36 and run.depth == 10 and run.task_ids["8:1"] == 7
    table = json.loads((out / "table.json").read_text())
    assert len(table["rows"]) == 6
    assert (out / "table.md").read_text() == first.table and "| CIRR |" in first.table
    assert (out / "table.csv").read_text().count("\n") == 8
    assert set(json.loads((out / "metrics.json").read_text())) == {
        f"{t}/{p}" for t in SAMPLE_TASKS for p in ("local", "union")}
    assert set(first.results) == {(t, p) for t in SAMPLE_TASKS for p in ("local", "union")}
    for stage in ("embeddings/queries", "embeddings/pools", "index/dense", "runs/dense",
                  "evaluation"):
        info = json.loads((out / stage / "stage.json").read_text())
        assert info["fingerprint"] and info["inputs"] and "config" in info
    assert (out / "embeddings" / "queries" / "config.yaml").is_file()
    assert (out / "index" / "dense" / "union" / "config.yaml").is_file()
    assert (out / "runs" / "dense" / "search_config.yaml").is_file()
    assert "encoder: tiny" in (out / "run_config.yaml").read_text()
    before = _mtimes(out)

    second = run_mbeir(sample_dir, out, _cfg(), progress=False)
    assert set(second.status().values()) == {"reused"}
    assert _mtimes(out) == before  # nothing re-embedded, nothing re-indexed
    assert second.table == first.table
    assert second.results["cirr_task7", "local"].metrics == \
        first.results["cirr_task7", "local"].metrics

    corpus = _corpus_copy(sample_dir, tmp_path / "corpus")
    third = run_mbeir(sample_dir, out, _cfg(), corpus_dir=corpus, progress=False)
    assert third.status() == {"embed_queries": "reused", "embed_pools": "ran",
                              "index_dense": "ran", "search_dense": "ran", "evaluate": "ran"}
    after = _mtimes(out)
    assert all(after[f] == before[f] for f in before if f.startswith("embeddings/queries"))
    assert all(after[f] != before[f] for f in before if f.startswith("embeddings/pools"))
    meta = json.loads((out / "embeddings" / "pools" / "meta.json").read_text())
    assert meta["data_dir"] == str(corpus.resolve())
    pipeline = json.loads((out / "pipeline.json").read_text())
    assert pipeline["corpus_dir"] == str(corpus.resolve())

    forced = run_mbeir(sample_dir, out, _cfg(), corpus_dir=corpus, force=True, progress=False)
    assert set(forced.status().values()) == {"ran"}


def test_bm25_and_hybrid_share_stages(sample_dir, tmp_path):
    from augret.pipeline import run_mbeir

    out = tmp_path / "out"
    bm25 = run_mbeir(sample_dir, out, _cfg(retriever="bm25", encoder=None, pools=["union"]),
                     progress=False)
    assert bm25.status() == {"index_bm25": "ran", "search_bm25": "ran", "evaluate": "ran"}
    # BM25 finds nothing for image-only candidates: only tasks with candidate text get runs
    names = {p.name for p in (out / "runs" / "bm25").glob("*.run")}
    assert "webqa_task1_union.run" in names and "nights_task4_union.run" not in names
    assert all(pool == "union" for _, pool in bm25.results)

    hybrid = run_mbeir(sample_dir, out, _cfg(retriever="hybrid", pools=["union"],
                                             tasks=["webqa_task1", "cirr_task7"]),
                       progress=False)
    st = hybrid.status()
    assert st["index_bm25"] == "reused" and st["search_bm25"] == "ran"  # fewer tasks
    assert st["embed_pools"] == "ran" and st["fuse"] == "ran"
    assert sorted(p.name for p in (out / "runs" / "hybrid").glob("*.run")) == [
        "cirr_task7_union.run", "webqa_task1_union.run"]
    assert set(hybrid.results) == {("webqa_task1", "union"), ("cirr_task7", "union")}
    # the pipeline's indexes serve as they are
    from augret.serve import Searcher

    s = Searcher.open(out / "index" / "dense", bm25_dir=out / "index" / "bm25", device="cpu")
    assert s.kind == "hybrid" and len(s.catalog) == 288
    assert s.search("Which emblem did the weavers of Harrow adopt?", k=3).hits


def test_mini_mbeir_mscoco(shared_data, tmp_path):
    from augret.pipeline import run_mbeir

    data = shared_data / "mbeir-mini-mscoco"
    out = tmp_path / "out"
    report = run_mbeir(data, out, _cfg(), progress=False)
    assert sorted(p.name for p in report.run_dir.glob("*.run")) == [
        "mscoco_task0_local.run", "mscoco_task0_union.run", "mscoco_task3_local.run",
        "mscoco_task3_union.run"]
    assert set(report.results) == {(t, p) for t in ("mscoco_task0", "mscoco_task3")
                                   for p in ("local", "union")}
    assert report.results["mscoco_task0", "local"].num_queries == 105
    assert report.results["mscoco_task3", "union"].num_queries == 21
    assert "| MSCOCO |" in report.table and "Average (2/16 tasks)" in report.table
    for r in report.results.values():
        assert 0.0 <= r.metrics["hit@5"] <= 1.0


def test_config_errors(sample_dir, tmp_path):
    from augret.config import load_config
    from augret.pipeline import RunConfig, run_mbeir

    with pytest.raises(ConfigError, match="needs an encoder"):
        load_config(RunConfig, None, {"retriever": "dense"})
    with pytest.raises(ConfigError, match="pools"):
        load_config(RunConfig, None, {"encoder": "tiny", "pools": "local,global"})
    cfg = load_config(RunConfig, None, {"encoder": "tiny", "pools": "union",
                                        "index.kind": "hnsw", "metrics": "mrr@10,ndcg@10"})
    assert cfg.pools == ["union"] and cfg.index.kind == "hnsw" and len(cfg.metrics) == 2
    with pytest.raises(ConfigError, match="must differ"):
        run_mbeir(sample_dir, sample_dir, _cfg())
    from augret.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="cirr_task9"):
        run_mbeir(sample_dir, tmp_path / "o", _cfg(tasks=["cirr_task9"]))


def test_cli(sample_dir, tmp_path, capsys):
    from augret.cli.main import main

    out = tmp_path / "out"
    args = ["mbeir", "run", str(sample_dir), "--encoder", "tiny", "--out", str(out),
            "--pools", "local", "--tasks", "webqa_task1,oven_task8", "--workers", "0",
            "--device", "cpu", "--no-progress", "--metrics", "mrr@10"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "| WebQA |" in captured.out and "| OVEN |" in captured.out
    assert "embed_queries ran" in captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"webqa_task1/local", "oven_task8/local"}
    assert "mrr@10" in metrics["webqa_task1/local"]["metrics"]
    assert main([*args, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"] and "embed_queries reused" in captured.err
    assert main(["mbeir", "run", str(sample_dir), "--out", str(tmp_path / "x")]) == 2
    assert "needs an encoder" in capsys.readouterr().err
    shutil.rmtree(out)
