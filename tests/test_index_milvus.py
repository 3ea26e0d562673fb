"""The milvus index backend on Milvus Lite: the rankings of FAISS exact, one collection for
every pool, BM25 over the stored texts, recall of the approximate kinds, resuming a killed
build with every id inserted once, and errors that name the URI and the collection."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from augret.errors import ConfigError, DataFormatError, DataNotFoundError, IndexUnavailable
from helpers.embedding_dirs import brute_force, clustered, dids, write_entry, write_meta
from helpers.milvus import compare_runs, lite_rows_written, run_cli

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("faiss")
pytest.importorskip("bm25s")
pytest.importorskip("open_clip")

DIM = 8


@pytest.fixture(scope="module")
def idx(shapes_indexes):
    return shapes_indexes


@pytest.fixture(scope="module")
def shapes_milvus(idx, tmp_path_factory) -> Path:
    from augret.index import build_indexes
    from augret.index.config import MilvusConfig

    root = tmp_path_factory.mktemp("shapes-milvus") / "idx"
    build_indexes(idx.emb, root, MilvusConfig(), progress=False)
    return root


def _emb(root: Path, n: int = 600, dim: int = DIM, seed: int = 0) -> Path:
    """An embedding directory of two local pools (no pool files) and their queries."""
    rng = np.random.default_rng(seed)
    write_meta(root, dim)
    write_entry(root, "pools", "cirr_task7", clustered(rng, n, dim), dids(7, n),
                shard_size=128)
    write_entry(root, "pools", "fashioniq_task7", clustered(rng, n // 2, dim),
                dids(6, n // 2), shard_size=128)
    for task in ("cirr_task7", "fashioniq_task7"):
        write_entry(root, "queries", task, rng.standard_normal((12, dim)),
                    [f"{task[:4]}:q{i}" for i in range(12)])
    return root


# ---- the same rankings as FAISS exact ------------------------------------------------------
@pytest.mark.parametrize("filter_modality", [False, True])
def test_flat_ranks_as_faiss_exact_on_the_shapes_sample(idx, shapes_milvus, tmp_path,
                                                        filter_modality):
    from augret.evaluate.rundir import evaluate_run_dir
    from augret.evaluate.table import render
    from augret.index import SearchConfig, search_to_run_dir

    cfg = SearchConfig(filter_modality=filter_modality)
    got = search_to_run_dir(idx.emb, shapes_milvus, tmp_path / "milvus", cfg)
    want = search_to_run_dir(idx.emb, idx.dense, tmp_path / "faiss", cfg)
    assert len(want) == 12  # six tasks, local and union
    assert set(compare_runs(got, want).values()) == {0}
    tables = [render(evaluate_run_dir(idx.data, tmp_path / d), "markdown")
              for d in ("milvus", "faiss")]
    assert tables[0] == tables[1]


def test_one_collection_serves_every_pool(idx, shapes_milvus):
    from augret.data import MBEIRDir
    from augret.data.lookup import PoolLookup
    from augret.formats.indexes import index_dirs, read_meta
    from augret.index import load_index
    from augret.index.milvus import MilvusIndex

    dirs = index_dirs(shapes_milvus)
    assert "milvus.db" not in {p.name for p in dirs.values()} and "union" in dirs
    metas = {pool: read_meta(d) for pool, d in dirs.items()}
    union = metas.pop("union")
    assert union["filter"] is None and union["collection_rows"] == union["count"] == 288
    assert (shapes_milvus / "milvus.db").is_dir() and union["uri"] == "../milvus.db"
    for pool, meta in metas.items():
        assert meta["collection"] == union["collection"] == "augret_idx"
        assert meta["filter"] == f'array_contains(pools, "{pool}")'
        assert meta["backend"] == "milvus" and meta["kind"] == "flat"
    assert sum(m["count"] for m in metas.values()) == 288
    index = load_index(dirs["cirr_task7"])
    assert isinstance(index, MilvusIndex) and len(index) == metas["cirr_task7"]["count"]
    row = index.collection.call("get", "get", index.collection.name, ids=[index.ids[0]])[0]
    assert sorted(row["pools"]) == ["cirr_task7", "union"]
    rec = PoolLookup([MBEIRDir(idx.data).pool_file("cirr_task7")]).get(index.ids[0])
    assert (row["modality"], row["image"], row["text"]) == (rec.modality, rec.img_path,
                                                            rec.txt or "")


def _bm25(docs: dict[str, str], query: str, stop: set[str], k1: float = 1.5,
          b: float = 0.75) -> dict[str, float]:
    """BM25 with Lucene's IDF over every row (empty texts count in N and the mean length)."""
    tok = {d: [t for t in re.findall(r"\w+", s.lower()) if t not in stop]
           for d, s in docs.items()}
    n, avgdl = len(tok), sum(map(len, tok.values())) / len(tok)
    out: dict[str, float] = {}
    for term in dict.fromkeys(t for t in re.findall(r"\w+", query.lower()) if t not in stop):
        holders = [d for d, ts in tok.items() if term in ts]
        idf = math.log((n - len(holders) + 0.5) / (len(holders) + 0.5) + 1)
        for d in holders:
            tf, dl = tok[d].count(term), len(tok[d])
            out[d] = out.get(d, 0.0) + idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
    return out


def test_text_search_ranks_by_bm25(idx, shapes_milvus):
    """Milvus Lite reports BM25 as a negative distance: the index turns it back into the
    score, and the ranking is BM25's (checked against BM25 computed here)."""
    from augret.data import MBEIRDir
    from augret.data.mbeir import iter_candidates
    from augret.index import load_index
    from augret.index.config import ENGLISH_STOP_WORDS

    docs = {c.id: c.txt or "" for f in MBEIRDir(idx.data).union_pool_files()
            for c in iter_candidates(f)}
    text = load_index(shapes_milvus / "union").lexical()
    queries = ["a small red circle", "Which shape has three sides?", "blue square", "zzz"]
    res = text.search(queries, 10)
    for i, q in enumerate(queries):
        want = _bm25(docs, q, set(ENGLISH_STOP_WORDS))
        got = [(d, s) for d, s in zip(res.ids[i], res.scores[i], strict=True) if d]
        assert len(got) == min(10, len(want))
        for d, s in got:
            assert s == pytest.approx(want[d], rel=1e-4)
        top = sorted(want.values(), reverse=True)[:len(got)]
        np.testing.assert_allclose([s for _, s in got], top, rtol=1e-4)
    assert not res.ids[3].any() and (res.rows[3] == -1).all()
    only_text = text.search(["a small red circle"], 5, modalities="image")
    assert not only_text.ids.any()  # the filter reaches BM25 too: no image has text here


def test_approximate_kinds_report_recall(tmp_path):
    from augret.formats.indexes import read_meta
    from augret.index import build_indexes
    from augret.index.config import MilvusConfig

    emb = _emb(tmp_path / "emb", n=1200, dim=16)
    for kind in ("hnsw", "ivf"):
        build_indexes(emb, tmp_path / kind, MilvusConfig(kind=kind, recall_queries=100,
                                                        text_search=False), progress=False)
        meta = read_meta(tmp_path / kind / "union")
        rec = meta["recall"]
        assert rec["k"] == 10 and rec["queries"] == 100 and rec["pool"] == "union"
        assert 0.9 <= rec["recall"] <= 1.0
        assert meta["params"]["index_type"] == {"hnsw": "HNSW", "ivf": "IVF_FLAT"}[kind]
        assert read_meta(tmp_path / kind / "cirr_task7")["recall"] == rec
    assert read_meta(tmp_path / "hnsw" / "union")["params"]["ef_search"] == 128
    assert read_meta(tmp_path / "ivf" / "union")["params"]["nlist"] == 46  # 1800 rows


# ---- resuming ----------------------------------------------------------------------------------
def _check_exactly_once(index_dir: Path, ids: list[str]) -> None:
    """Every id once in the collection, and inserted once: a server counts a duplicate
    primary key as a row; Milvus Lite overwrites it, and its sequence counter shows it."""
    from augret.index.milvus import MilvusIndex

    index = MilvusIndex.load(index_dir)
    held = Counter(index.collection.iter_ids())
    assert set(held) == set(ids) and set(held.values()) == {1}
    assert index.collection.count() == len(ids)
    if index.target.lite:
        assert lite_rows_written(Path(index.target.uri), index.collection.name) == len(ids)


def test_a_sigkilled_build_resumes_with_every_id_once(tmp_path):
    from augret.formats.embeddings import EmbeddingDir
    from augret.index.milvus_build import RECORD_FILE

    emb = _emb(tmp_path / "emb", n=6000)
    out = tmp_path / "idx"
    src = str(Path(__file__).resolve().parents[1] / "src")
    cmd = [sys.executable, "-m", "augret", "index", "build", str(emb), "--out", str(out),
           "--backend", "milvus", "--set", "insert_rows=50", "--no-progress"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": src},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record, deadline = out / RECORD_FILE, time.monotonic() + 240
    while not (record.is_file() and json.loads(record.read_text())["confirmed"] >= 2000):
        assert proc.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(record.read_text())["confirmed"]
    assert 2000 <= done < 9000 and not (out / "union" / "meta.json").exists()

    res = run_cli("index", "build", str(emb), "--out", str(out), "--backend", "milvus",
                  "--set", "insert_rows=50", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "resuming the build" in res.stderr
    assert not record.exists()
    e = EmbeddingDir(emb)
    ids = e.entry("pools", "cirr_task7").read_ids() + e.entry("pools",
                                                              "fashioniq_task7").read_ids()
    _check_exactly_once(out / "union", ids)


@pytest.mark.parametrize("applied", ["all", "half"])
def test_a_batch_the_server_took_before_the_kill_is_not_inserted_again(tmp_path, monkeypatch,
                                                                        applied):
    """The kill falls after the server applied an insert (wholly, or in part as a cluster
    may) and before the resume record moved on."""
    from augret.index import build_indexes
    from augret.index.config import MilvusConfig
    from augret.index.milvus_db import Collection

    class Killed(BaseException):
        pass

    real, calls = Collection.call, []

    def dying(self, action, method, *args, **kw):
        if method == "insert":
            calls.append(len(args[1]))
            if len(calls) == 3:
                rows = args[1] if applied == "all" else args[1][::2]
                real(self, action, method, args[0], rows, **kw)
                raise Killed
        return real(self, action, method, *args, **kw)

    emb = _emb(tmp_path / "emb", n=400)
    cfg = MilvusConfig(insert_rows=64, text_search=False)
    monkeypatch.setattr(Collection, "call", dying)
    with pytest.raises(Killed):
        build_indexes(emb, tmp_path / "idx", cfg, progress=False)
    monkeypatch.setattr(Collection, "call", real)
    build_indexes(emb, tmp_path / "idx", cfg, progress=False)
    ids = dids(6, 200) + dids(7, 400)
    _check_exactly_once(tmp_path / "idx" / "union", ids)


def test_up_to_date_builds_are_kept_and_a_new_config_replaces_the_collection(tmp_path):
    from augret.formats.indexes import read_meta
    from augret.index import build_indexes
    from augret.index.config import MilvusConfig

    emb = _emb(tmp_path / "emb", n=200)
    build_indexes(emb, tmp_path / "idx", MilvusConfig(text_search=False), progress=False)
    first = read_meta(tmp_path / "idx" / "union")
    build_indexes(emb, tmp_path / "idx", MilvusConfig(text_search=False), progress=False)
    assert read_meta(tmp_path / "idx" / "union")["created"] == first["created"]
    build_indexes(emb, tmp_path / "idx", MilvusConfig(kind="hnsw", recall_queries=10,
                                                      text_search=False), progress=False)
    second = read_meta(tmp_path / "idx" / "union")
    assert second["kind"] == "hnsw" and second["fingerprint"] != first["fingerprint"]
    _check_exactly_once(tmp_path / "idx" / "union", dids(6, 100) + dids(7, 200))


# ---- errors ------------------------------------------------------------------------------------
def test_an_unreachable_server_is_index_unavailable(tmp_path, free_port):
    from augret.index import build_indexes, load_index
    from augret.index.config import MilvusConfig

    emb = _emb(tmp_path / "emb", n=100)
    uri = f"http://127.0.0.1:{free_port}"
    with pytest.raises(IndexUnavailable, match=re.escape(f"'augret_idx' at {uri}")):
        build_indexes(emb, tmp_path / "idx", MilvusConfig(uri=uri, timeout=5),
                      progress=False)
    with pytest.raises(ConfigError, match=r"holds credentials; give them in \$MILVUS_TOKEN"):
        build_indexes(emb, tmp_path / "idx", MilvusConfig(uri="https://root:pw@host:19530"),
                      progress=False)
    build_indexes(emb, tmp_path / "ok", MilvusConfig(text_search=False), progress=False)
    meta = json.loads((tmp_path / "ok" / "union" / "meta.json").read_text())
    (tmp_path / "ok" / "union" / "meta.json").write_text(json.dumps({**meta, "uri": uri}))
    with pytest.raises(IndexUnavailable, match=re.escape(f"'augret_ok' at {uri}")):
        load_index(tmp_path / "ok" / "union", timeout=5)


def test_missing_half_built_and_mismatched_collections_are_clear_errors(tmp_path):
    from augret.index import build_indexes, load_index
    from augret.index.config import MilvusConfig

    emb = _emb(tmp_path / "emb", n=300)
    build_indexes(emb, tmp_path / "idx", MilvusConfig(text_search=False), progress=False)
    union = tmp_path / "idx" / "union"
    index = load_index(union)
    where = f"collection 'augret_idx' at {(tmp_path / 'idx' / 'milvus.db').resolve()}"
    with pytest.raises(DataFormatError, match=re.escape(where) + ".*dimension 8"):
        index.search(np.ones((2, 5), np.float32), 3)
    meta = json.loads((union / "meta.json").read_text())
    (union / "meta.json").write_text(json.dumps({**meta, "dimension": 16}))
    with pytest.raises(DataFormatError, match=re.escape(where) + " holds vectors of "
                                                                 "dimension 8"):
        load_index(union)
    (union / "meta.json").write_text(json.dumps(meta))
    index.collection.call("delete", "delete", index.collection.name,
                          filter='id in ["7:1", "7:2"]')
    with pytest.raises(DataFormatError, match=re.escape(where) + " holds 448 rows.*half-built"):
        load_index(union)
    index.collection.call("drop", "drop_collection", index.collection.name)
    with pytest.raises(DataNotFoundError, match=re.escape(where) + ": no such collection"):
        load_index(union)


def test_a_collection_of_another_build_is_never_replaced_silently(tmp_path):
    from augret.index import build_indexes, load_index
    from augret.index.config import MilvusConfig

    db = tmp_path / "shared.db"
    cfg = MilvusConfig(uri=str(db), collection="shared", text_search=False)
    build_indexes(_emb(tmp_path / "a", n=100), tmp_path / "idx_a", cfg, progress=False)
    other = _emb(tmp_path / "b", n=100, dim=12, seed=1)
    with pytest.raises(ConfigError, match=r"'shared' at .*another augret build of dimension "
                                          r"8 \(these embeddings: 12\).*--force"):
        build_indexes(other, tmp_path / "idx_b", cfg, progress=False)
    assert load_index(tmp_path / "idx_a" / "union").dim == DIM
    build_indexes(other, tmp_path / "idx_b", cfg, force=True, progress=False)
    assert load_index(tmp_path / "idx_b" / "union").dim == 12
    with pytest.raises(DataFormatError, match=r"'shared' at .* holds another build"):
        load_index(tmp_path / "idx_a" / "union")


def test_search_limits_and_filters(tmp_path):
    from augret.index import build_indexes, load_index
    from augret.index.config import MilvusConfig

    emb = _emb(tmp_path / "emb", n=100)
    build_indexes(emb, tmp_path / "idx", MilvusConfig(text_search=False), progress=False)
    index = load_index(tmp_path / "idx" / "cirr_task7")
    q = np.random.default_rng(5).standard_normal((3, DIM)).astype(np.float32)
    assert index.search([], 5).ids.shape == (0, 5)
    res = index.search(q, 200)  # more than the pool: padded
    assert (res.rows[:, :100] >= 0).all() and (res.rows[:, 100:] == -1).all()
    assert set(res.ids[:, :100].ravel()) == set(dids(7, 100))
    from augret.formats.embeddings import EmbeddingDir

    base = np.concatenate([x for _, x in EmbeddingDir(emb).entry("pools", "cirr_task7")
                           .iter_shards()])
    _, order = brute_force(base, q, 10)
    assert res.ids[:, :10].tolist() == [[dids(7, 100)[i] for i in row] for row in order]
    with pytest.raises(ConfigError, match="from 1 to 16384"):
        index.search(q, 20_000)
    with pytest.raises(ConfigError, match="stores no candidate modalities"):
        index.search(q, 5, modalities="image")  # no pool files: no modalities
    with pytest.raises(ConfigError, match="built without text search"):
        index.search(["a red circle"], 5)


# ---- the CLI -------------------------------------------------------------------------------
def test_cli_build_info_search_and_query(idx, shapes_milvus, tmp_path):
    from augret.cli.main import main

    emb = _emb(tmp_path / "emb", n=200)
    out = tmp_path / "idx"
    assert main(["index", "build", str(emb), "--out", str(out), "--backend", "milvus",
                 "--collection", "cli_c", "--kind", "hnsw", "--set", "recall_queries=20",
                 "--set", "text_search=false", "--no-progress"]) == 0
    meta = json.loads((out / "union" / "meta.json").read_text())
    assert meta["collection"] == "cli_c" and meta["kind"] == "hnsw"
    assert meta["config"]["recall_queries"] == 20
    assert main(["index", "info", str(out)]) == 0
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "x"), "--backend",
                 "milvus", "--pq-m", "4"]) == 2  # a FAISS-only key
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "x"), "--uri",
                 "x.db"]) == 2
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "x"), "--backend",
                 "nope"]) == 2
    assert main(["search", str(idx.data), "--index", str(shapes_milvus), "--out",
                 str(tmp_path / "text"), "--pool", "union"]) == 0
    assert sorted(p.name for p in (tmp_path / "text").glob("*.run")) == [
        "cirr_task7_union.run", "mscoco_task0_union.run", "oven_task8_union.run",
        "webqa_task1_union.run"]
    assert main(["query", str(shapes_milvus), "--bm25", str(shapes_milvus), "--text",
                 "a red circle", "--device", "cpu", "-k", "3", "--json"]) == 0


# ---- the M-BEIR pipeline -------------------------------------------------------------------
def test_mini_mscoco_runs_and_table_equal_faiss_exact(shared_data, tmp_path):
    import shutil

    from augret.pipeline import RunConfig, run_mbeir

    data = shared_data / "mbeir-mini-mscoco"
    if not data.is_dir():
        pytest.skip("mbeir-mini-mscoco is not in ../shared/data")
    kw = {"encoder": "tiny", "workers": 0, "device": "cpu"}
    out = tmp_path / "out"
    faiss = run_mbeir(data, out, RunConfig(**kw), progress=False)
    shutil.copytree(out / "runs" / "dense", tmp_path / "faiss_runs")
    milvus = run_mbeir(data, out, RunConfig(backend="milvus", **kw), progress=False)
    assert milvus.status() == {"embed_queries": "reused", "embed_pools": "reused",
                               "index_milvus": "ran", "search_dense": "ran",
                               "evaluate": "ran"}
    assert (out / "index" / "milvus" / "milvus.db").is_dir()
    assert milvus.table == faiss.table
    got = {p.name: p for p in (out / "runs" / "dense").glob("*.run")}
    want = {p.name: p for p in (tmp_path / "faiss_runs").glob("*.run")}
    assert len(want) == 4 and set(compare_runs(got, want).values()) == {0}
    hybrid = run_mbeir(data, out, RunConfig(backend="milvus", retriever="hybrid", **kw),
                       progress=False)
    assert "index_bm25" not in hybrid.status() and hybrid.status()["search_bm25"] == "ran"
