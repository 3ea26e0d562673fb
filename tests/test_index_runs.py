"""End to end on the shapes sample: indexes per pool, run files per task and pool, evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from augret.data import MBEIRDir
from augret.data.ids import UNION_POOL_ORDER, default_depth
from augret.data.lookup import PoolLookup
from augret.errors import ConfigError, DataNotFoundError
from augret.evaluate import read_run
from augret.evaluate.rundir import evaluate_run_dir, find_run_files
from augret.index import (
    BM25Config,
    SearchConfig,
    build_indexes,
    fuse_run_dirs,
    load_index,
    search_to_run_dir,
)
from helpers.embedding_dirs import brute_force, write_entry, write_meta

pytest.importorskip("faiss")
pytest.importorskip("bm25s")

DIM = 16


@pytest.fixture(scope="module")
def world(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A synthetic embedding directory of the sample: each query sits near its positive."""
    rng = np.random.default_rng(7)
    data = MBEIRDir(sample_dir)
    root = tmp_path_factory.mktemp("emb")
    write_meta(root, DIM, data_dir=str(sample_dir))
    vectors: dict[str, np.ndarray] = {}
    pools: dict[str, tuple[list[str], np.ndarray]] = {}
    for name, path in data.local_pools().items():
        ids = [c.did for c in data.iter_pool(name)]
        vec = rng.standard_normal((len(ids), DIM)).astype(np.float32)
        vectors.update(zip(ids, vec, strict=True))
        pools[name] = (ids, vec)
        write_entry(root, "pools", name, vec, ids, shard_size=32, source=str(path))
    queries = {}
    for tf in data.tasks():
        qs = list(data.iter_queries(tf.task.name))
        vec = np.stack([vectors.get(q.pos_cand_list[0], rng.standard_normal(DIM))
                        + 0.05 * rng.standard_normal(DIM) for q in qs]).astype(np.float32)
        write_entry(root, "queries", tf.task.name, vec, [q.qid for q in qs], shard_size=16)
        queries[tf.task.name] = ([q.qid for q in qs], vec)
    return root, pools, queries


@pytest.fixture(scope="module")
def dense_runs(world, sample_dir, tmp_path_factory):
    root, _, _ = world
    out = tmp_path_factory.mktemp("dense")
    dirs = build_indexes(root, out / "idx", progress=False)
    files = search_to_run_dir(root, out / "idx", out / "runs")
    return dirs, files, out


def test_one_index_per_local_pool_plus_union(world, dense_runs):
    _, pools, _ = world
    dirs, _, _ = dense_runs
    assert set(dirs) == set(pools) | {"union"}
    union = load_index(dirs["union"])
    order = [p for p in UNION_POOL_ORDER if p in pools]
    assert list(union.ids) == [d for p in order for d in pools[p][0]]
    assert union.modalities is not None  # read from the sample's pool files


def test_run_files_per_task_and_pool_evaluate(sample_dir, dense_runs):
    _, files, out = dense_runs
    tasks = [tf.task.name for tf in MBEIRDir(sample_dir).tasks()]
    assert set(files) == {(t, p) for t in tasks for p in ("local", "union")}
    assert set(find_run_files(out / "runs")) == set(files)
    assert files["cirr_task7", "union"].name == "cirr_task7_union.run"
    first = files["cirr_task7", "local"].read_text().splitlines()[0].split()
    assert len(first) == 7 and first[1] == "Q0" and first[3] == "1" and first[6] == "7"
    assert first[5] == "augret_flat"
    results = evaluate_run_dir(sample_dir, out / "runs")
    assert set(results) == set(files)
    for (task, pool), res in results.items():
        assert res.metrics["hit@1"] > 0.9, (task, pool, res.metrics)
        run = read_run(files[task, pool])
        assert run.depth == (10 if pool == "union" else min(10, len(run.vocab)))
    assert (out / "runs" / "search_config.yaml").is_file()
    assert (out / "runs" / "runs.json").is_file()


def test_union_run_equals_brute_force(world, dense_runs):
    _, pools, queries = world
    _, files, _ = dense_runs
    order = [p for p in UNION_POOL_ORDER if p in pools]
    ids = np.array([d for p in order for d in pools[p][0]])
    base = np.vstack([pools[p][1] for p in order])
    qids, qvec = queries["nights_task4"]
    _, top = brute_force(base, qvec.astype(np.float16), 10)
    run = read_run(files["nights_task4", "union"])
    for qid, row in zip(qids, top, strict=True):
        assert [d for d, _ in run.ranking(qid)] == list(ids[row])


def test_depth_filter_and_skip(world, dense_runs, sample_dir, tmp_path):
    root, _, _ = world
    _, _, out = dense_runs
    runs = tmp_path / "runs"
    cfg = SearchConfig(k=25, filter_modality=True)
    files = search_to_run_dir(root, out / "idx", runs, cfg, pools=["union"],
                              tasks=["mscoco_task3", "cirr_task7"])
    assert set(files) == {("mscoco_task3", "union"), ("cirr_task7", "union")}
    lookup = PoolLookup(MBEIRDir(sample_dir).union_pool_files(), cache=False)
    for (task, _), path in files.items():
        run = read_run(path)
        assert run.depth == 25
        want = {"mscoco_task3": "text", "cirr_task7": "image"}[task]
        assert {lookup.modality(d) for q in run.qids for d, _ in run.ranking(q)} == {want}
    stamp = files["cirr_task7", "union"].stat().st_mtime_ns
    again = search_to_run_dir(root, out / "idx", runs, cfg, pools=["union"],
                              tasks=["mscoco_task3", "cirr_task7"])
    assert again == files and files["cirr_task7", "union"].stat().st_mtime_ns == stamp
    search_to_run_dir(root, out / "idx", runs, cfg, pools=["union"], tasks=["cirr_task7"],
                      force=True)
    assert files["cirr_task7", "union"].stat().st_mtime_ns != stamp


def test_single_index_dir_serves_its_own_tasks(world, dense_runs, tmp_path):
    root, _, _ = world
    dirs, _, _ = dense_runs
    files = search_to_run_dir(root, dirs["mscoco_task0_test"], tmp_path / "r")
    assert list(files) == [("mscoco_task0", "local")]
    files = search_to_run_dir(root, dirs["union"], tmp_path / "u", pools=["union"],
                              tasks=["webqa_task1"])
    assert list(files) == [("webqa_task1", "union")]
    with pytest.raises(DataNotFoundError, match="no index matches"):
        search_to_run_dir(root, dirs["union"], tmp_path / "x", pools=["local"])
    with pytest.raises(DataNotFoundError, match="no query entry"):
        search_to_run_dir(root, dirs["union"], tmp_path / "x", tasks=["fashioniq_task7"])


def test_encoder_mismatch_is_an_error(world, dense_runs, tmp_path):
    import json
    import shutil

    root, _, _ = world
    dirs, _, _ = dense_runs
    other = tmp_path / "emb"
    shutil.copytree(root, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["encoder"] = {"name": "another-encoder"}
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="another-encoder"):
        search_to_run_dir(other, dirs["union"], tmp_path / "r")


def test_bm25_and_hybrid_runs_evaluate(world, sample_dir, dense_runs, tmp_path):
    _, dense_files, out = dense_runs
    dirs = build_indexes(sample_dir, tmp_path / "bm25", BM25Config(), progress=False)
    assert "union" in dirs and "webqa_task1" in dirs
    bm25_files = search_to_run_dir(sample_dir, tmp_path / "bm25", tmp_path / "runs_bm25")
    # image-only queries and image-only pools have no text: those runs are not written
    assert ("webqa_task1", "local") in bm25_files and ("mscoco_task3", "local") not in bm25_files
    assert set(bm25_files) < set(dense_files)
    line = bm25_files["webqa_task1", "local"].read_text().splitlines()[0].split()
    assert line[5] == "augret_bm25" and line[6] == "1"
    lexical = evaluate_run_dir(sample_dir, tmp_path / "runs_bm25")
    assert lexical["webqa_task1", "local"].metrics["hit@1"] == 1.0  # question words match
    fused = fuse_run_dirs([out / "runs", tmp_path / "runs_bm25"], tmp_path / "hybrid",
                          [1.0, 0.5])
    assert set(fused) == set(dense_files)
    hybrid = evaluate_run_dir(sample_dir, tmp_path / "hybrid")
    assert hybrid["webqa_task1", "local"].metrics["hit@1"] == 1.0
    assert read_run(fused["cirr_task7", "union"]).task_ids  # 7th column kept
    with pytest.raises(ConfigError, match="BM25 indexes, which search query texts"):
        search_to_run_dir(world[0], tmp_path / "bm25" / "union", tmp_path / "r")
    with pytest.raises(DataNotFoundError, match="not an embedding directory"):
        search_to_run_dir(sample_dir, out / "idx", tmp_path / "r")


def test_default_depth_follows_uniir():
    assert default_depth("fashioniq_task7") == 50
    assert default_depth("fashion200k_task3") == 50
    assert default_depth("cirr_task7") == 10
    assert default_depth("my_own_task") == 10
