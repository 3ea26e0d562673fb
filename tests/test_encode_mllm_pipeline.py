"""An MLLM encoder through the unchanged commands: embed, mbeir run (index, search, table),
query at serve time (the same vector as offline), and the embedding directory's record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("faiss")

from augret.cli.main import main
from augret.data import MBEIRDir


def _mbeir_run(data: Path, out: Path) -> int:
    return main(["mbeir", "run", str(data), "--encoder", "tiny-mllm", "--out", str(out),
                 "--workers", "0", "--device", "cpu", "--tasks",
                 "mscoco_task0,cirr_task7,oven_task8", "--no-progress"])


@pytest.fixture(scope="module")
def run(sample_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mllm-run") / "run"
    assert _mbeir_run(sample_dir, out) == 0
    return out


def test_mbeir_run_writes_the_table(run: Path, sample_dir: Path, capsys) -> None:
    assert _mbeir_run(sample_dir, run) == 0  # a rerun reuses every stage
    printed = capsys.readouterr()
    assert "embed_queries reused" in printed.err and "evaluate reused" in printed.err
    assert "tiny-mllm is a randomly initialised test model" in printed.out
    table = (run / "table.md").read_text()
    for task in ("MSCOCO", "CIRR", "OVEN"):
        assert task in table
    meta = json.loads((run / "embeddings" / "queries" / "meta.json").read_text())
    assert meta["encoder"]["architecture"] == "mllm" and meta["normalized"] is True
    assert meta["encoder"]["backbone"]["prompt_style"] == "qwen3vl-emb"
    assert meta["dim"] == 32
    assert (run / "index" / "dense" / "union" / "meta.json").is_file()
    assert len(list((run / "runs" / "dense").glob("*.run"))) == 6


def test_embed_cli_matches_the_pipeline_and_records_the_encoder(run: Path, sample_dir: Path,
                                                               tmp_path: Path) -> None:
    from augret.formats.embeddings import read_entry

    emb = tmp_path / "emb"
    assert main(["embed", str(sample_dir), "--encoder", "tiny-mllm", "--out", str(emb),
                 "--tasks", "cirr_task7", "--pools", "none", "--workers", "0", "--device",
                 "cpu", "--no-progress"]) == 0
    ids, vec = read_entry(emb / "queries" / "cirr_task7")
    ids2, vec2 = read_entry(run / "embeddings" / "queries" / "queries" / "cirr_task7")
    assert ids == ids2
    np.testing.assert_array_equal(vec, vec2)
    np.testing.assert_allclose(np.linalg.norm(vec.astype(np.float32), axis=1), 1, atol=2e-3)
    # a rerun with the same config resumes (nothing to do), another encoder is refused
    assert main(["embed", str(sample_dir), "--encoder", "tiny-mllm", "--out", str(emb),
                 "--tasks", "cirr_task7", "--pools", "none", "--workers", "0", "--device",
                 "cpu", "--no-progress"]) == 0
    assert main(["embed", str(sample_dir), "--encoder", "mllm:lamra:tiny-mllm", "--out",
                 str(emb), "--tasks", "cirr_task7", "--pools", "none", "--workers", "0",
                 "--device", "cpu", "--no-progress"]) != 0


def test_serve_time_query_equals_the_offline_vector(run: Path, sample_dir: Path) -> None:
    """A query embedded by the server (instruction placed by the prompt style) is the vector
    ``augret embed`` stored for the same row, and its hits are the index's."""
    from augret.formats.embeddings import read_entry
    from augret.serve import AdhocQuery, Searcher

    s = Searcher.open(run / "index" / "dense" / "union")
    assert s.encoder.name == "tiny-mllm" and s.encoder.separate_instruction
    data = MBEIRDir(sample_dir)
    for task in ("mscoco_task0", "cirr_task7"):
        root = run / "embeddings" / "queries" / "queries"
        ids, stored = read_entry(root / task)
        rows = {qid: i for i, qid in enumerate(ids)}
        queries = list(data.iter_queries(task))[:2]
        adhoc = [AdhocQuery(text=q.query_txt, task=task,
                            image=data.resolve_image(q.query_img_path)
                            if q.query_img_path else None) for q in queries]
        got = s.embed(adhoc)
        want = stored[[rows[q.qid] for q in queries]].astype(np.float32)
        np.testing.assert_allclose(got, want, atol=2e-3)
        res = s.search(adhoc[0], k=4)
        top = s.dense.search(got[:1], 4)
        assert [h.id for h in res.hits] == top.ids[0].tolist()


def test_query_cli(run: Path, capsys) -> None:
    assert main(["query", str(run / "index" / "dense" / "union"), "--text", "a red circle",
                 "--task", "mscoco_task0", "--k", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.strip()


def test_index_and_search_commands_on_mllm_embeddings(run: Path, sample_dir: Path,
                                                      tmp_path: Path) -> None:
    """``augret index build`` + ``augret search`` on the MLLM embedding directories give the
    pipeline's rankings."""
    from augret.evaluate.rundir import evaluate_run_dir

    idx, runs = tmp_path / "idx", tmp_path / "runs"
    assert main(["index", "build", str(run / "embeddings" / "pools"), "--out", str(idx),
                 "--no-progress"]) == 0
    meta = json.loads((idx / "union" / "meta.json").read_text())
    assert meta["encoder"]["name"] == "tiny-mllm" and meta["dimension"] == 32
    assert main(["search", str(run / "embeddings" / "queries"), "--index", str(idx), "--out",
                 str(runs)]) == 0
    ours = evaluate_run_dir(sample_dir, runs)
    pipeline = evaluate_run_dir(sample_dir, run / "runs" / "dense")
    assert set(ours) == set(pipeline) and len(ours) == 6
    for key, res in ours.items():
        assert res.metrics == pipeline[key].metrics, key
