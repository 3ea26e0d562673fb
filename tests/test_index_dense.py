"""Dense FAISS indexes: exactness, approximate recall, files, errors, modality filter, GPU path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.formats.embeddings import EmbeddingDir
from augret.index import IndexConfig, load_index
from augret.index.dense import DenseIndex, build_index, build_pool_index
from augret.index.pools import pool_entries
from augret.index.recall import recall_at_k
from augret.index.search import search
from augret.index.vectors import VectorSet
from helpers.embedding_dirs import brute_force, clustered, dids, write_entry, write_meta

pytest.importorskip("faiss")

DIM = 24


@pytest.fixture
def emb(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Three M-BEIR local pools (two in the union order, one custom) with odd shard sizes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "emb"
    write_meta(root, DIM)
    pools = {
        "cirr_task7": (8, rng.standard_normal((150, DIM))),
        "visualnews_task0": (0, rng.standard_normal((230, DIM))),
        "my_pool": (1, rng.standard_normal((40, DIM))),
    }
    for name, (ds, vec) in pools.items():
        write_entry(root, "pools", name, vec, dids(ds, len(vec)), shard_size=64)
    q = rng.standard_normal((12, DIM))
    write_entry(root, "queries", "cirr_task7", q, [f"8:{i}" for i in range(12)])
    return root, {n: v for n, (_, v) in pools.items()} | {"queries": q}


def test_exact_equals_numpy_brute_force(emb, tmp_path):
    root, vec = emb
    index = build_pool_index(root, tmp_path / "idx", pool="cirr_task7", progress=False)
    assert index.kind == "flat" and len(index) == 150
    res = search(index, vec["queries"], 10)
    s, order = brute_force(vec["cirr_task7"], vec["queries"], 10)
    assert (res.ids == np.array(dids(8, 150))[order]).all()
    np.testing.assert_allclose(res.scores, s, rtol=1e-5, atol=1e-5)


def test_union_is_local_pools_in_uniir_order(emb, tmp_path):
    root, vec = emb
    entries = pool_entries(EmbeddingDir(root), "union")
    assert [e.name for e in entries] == ["visualnews_task0", "cirr_task7"]  # UNION_POOL_ORDER
    index = build_pool_index(root, tmp_path / "u", pool="union", progress=False)
    ids = np.array(dids(0, 230) + dids(8, 150))
    assert (index.ids == ids).all()
    base = np.vstack([vec["visualnews_task0"], vec["cirr_task7"]])
    res = index.search(vec["queries"], 25, batch_size=5)  # several batches
    s, order = brute_force(base, vec["queries"], 25)
    assert (res.ids == ids[order]).all()
    np.testing.assert_allclose(res.scores, s, rtol=1e-5, atol=1e-5)
    assert index.meta["pool"] == "union"
    assert [s["entry"] for s in index.meta["sources"]] == ["pools/visualnews_task0",
                                                           "pools/cirr_task7"]


def test_union_entry_wins_when_present(emb):
    root, vec = emb
    write_entry(root, "pools", "union", vec["my_pool"], dids(1, 40))
    assert [e.key for e in pool_entries(EmbeddingDir(root), "union")] == ["pools/union"]


def test_union_declared_in_meta_wins(emb):
    root, _ = emb
    write_meta(root, DIM, union=["pools/cirr_task7", "pools/my_pool"])
    keys = [e.key for e in pool_entries(EmbeddingDir(root), "union")]
    assert keys == ["pools/cirr_task7", "pools/my_pool"]
    write_meta(root, DIM, union=["queries/cirr_task7"])
    with pytest.raises(DataFormatError, match="not a pools/<name> entry"):
        pool_entries(EmbeddingDir(root), "union")


def test_round_trip_through_files(emb, tmp_path):
    root, vec = emb
    built = build_pool_index(root, tmp_path / "idx", pool="visualnews_task0", progress=False)
    out = tmp_path / "idx"
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "ids.txt", "index.faiss",
                                                     "meta.json"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "flat" and meta["metric"] == "inner_product"
    assert meta["dimension"] == DIM and meta["count"] == 230 and meta["normalized"] is True
    assert meta["encoder"]["name"] == "test-encoder" and meta["recall"] is None
    assert (out / "ids.txt").read_text().splitlines()[:2] == ["0:1", "0:2"]
    loaded = load_index(out)
    assert isinstance(loaded, DenseIndex)
    a, b = built.search(vec["queries"], 7), loaded.search(vec["queries"], 7)
    assert (a.ids == b.ids).all() and np.array_equal(a.scores, b.scores)


def test_rebuild_is_skipped_when_up_to_date(emb, tmp_path, caplog):
    root, _ = emb
    build_pool_index(root, tmp_path / "idx", pool="cirr_task7", progress=False)
    stamp = (tmp_path / "idx" / "index.faiss").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        build_pool_index(root, tmp_path / "idx", pool="cirr_task7", progress=False)
    assert "up to date" in caplog.text
    assert (tmp_path / "idx" / "index.faiss").stat().st_mtime_ns == stamp
    build_pool_index(root, tmp_path / "idx", pool="cirr_task7", progress=False,
                     cfg=IndexConfig(kind="hnsw", recall_queries=0))
    assert load_index(tmp_path / "idx").kind == "hnsw"


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_is_reported_and_sane(kind, tmp_path):
    rng = np.random.default_rng(1)
    base = clustered(rng, 20_000, 32)
    cfg = IndexConfig(kind=kind, recall_queries=300, recall_k=10, nprobe=16)
    index = build_index(VectorSet.from_arrays(base, dids(3, len(base))), tmp_path / kind, cfg,
                        progress=False)
    rec = index.meta["recall"]
    assert rec["k"] == 10 and rec["queries"] == 300
    assert rec["recall"] > 0.8
    assert json.loads((tmp_path / kind / "meta.json").read_text())["recall"] == rec
    # the reported recall agrees with fresh queries
    q = base[rng.choice(len(base), 200, replace=False)] + 0.1 * rng.standard_normal((200, 32))
    _, order = brute_force(base, q, 10)
    got = load_index(tmp_path / kind).search(q.astype(np.float32), 10).rows
    fresh = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, order, strict=True)])
    assert fresh > 0.8


@pytest.mark.parametrize("kind", ["ivfpq", "pq"])
def test_product_quantisation_builds_and_reports_recall(kind, tmp_path):
    rng = np.random.default_rng(2)
    base = clustered(rng, 6000, 32, centers=20)
    cfg = IndexConfig(kind=kind, pq_m=8, pq_nbits=4, recall_queries=100, nlist=16)
    index = build_index(VectorSet.from_arrays(base, dids(3, len(base))), tmp_path / kind, cfg,
                        progress=False)
    assert index.meta["params"]["pq_m"] == 8 and index.meta["params"]["pq_nbits"] == 4
    assert 0.05 < index.meta["recall"]["recall"] < 1.0  # measured, lossy, better than chance
    assert load_index(tmp_path / kind).search(base[:3], 5).ids.shape == (3, 5)


def test_search_params_override(tmp_path):
    rng = np.random.default_rng(3)
    base = clustered(rng, 4000, 16)
    build_index(VectorSet.from_arrays(base, dids(3, 4000)), tmp_path / "ivf",
                IndexConfig(kind="ivf", nlist=64, nprobe=1, recall_queries=0), progress=False)
    q = base[:50]
    exact = brute_force(base, q, 10)[1]
    low = DenseIndex.load(tmp_path / "ivf").search(q, 10).rows
    high = DenseIndex.load(tmp_path / "ivf", nprobe=64).search(q, 10).rows
    assert recall_at_k(high, exact, 10) > 0.99  # nprobe = nlist: exhaustive
    assert recall_at_k(low, exact, 10) < recall_at_k(high, exact, 10)


def test_ids_file_shorter_than_shard(emb, tmp_path):
    root, _ = emb
    ids = root / "pools" / "cirr_task7" / "shard_00001.ids.txt"
    ids.write_text("".join(ids.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DataFormatError, match=r"63 ids for the 64 rows of shard_00001\.npy"):
        build_pool_index(root, tmp_path / "idx", pool="cirr_task7", progress=False)
    assert not (tmp_path / "idx" / "meta.json").exists()


def test_rows_disagree_with_entry_json(emb, tmp_path):
    root, _ = emb
    info = root / "pools" / "cirr_task7" / "entry.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "rows": 151}))
    with pytest.raises(DataFormatError, match="declares 151 rows"):
        build_pool_index(root, tmp_path / "idx", pool="cirr_task7", progress=False)


def test_duplicate_ids_across_pools(emb, tmp_path):
    root, vec = emb
    write_entry(root, "pools", "cirr_task7", vec["cirr_task7"],
                [*dids(8, 149), "0:17"])  # 0:17 is also in visualnews_task0
    with pytest.raises(DataFormatError) as err:
        build_pool_index(root, tmp_path / "u", pool="union", progress=False)
    msg = str(err.value)
    assert "'0:17'" in msg and "pools/visualnews_task0 row 16" in msg
    assert "pools/cirr_task7 row 149" in msg


def test_dimension_mismatch_and_missing_entries(emb, tmp_path):
    root, _ = emb
    write_entry(root, "pools", "nights_task4", np.ones((5, DIM + 1)), dids(4, 5))
    with pytest.raises(DataFormatError, match="dimension 25, expected 24"):
        build_pool_index(root, tmp_path / "x", pool="nights_task4", progress=False)
    with pytest.raises(DataNotFoundError, match="no entry pools/oven_task6"):
        build_pool_index(root, tmp_path / "x", pool="oven_task6", progress=False)
    (root / "pools" / "cirr_task7" / "entry.json").unlink()  # still being written
    with pytest.raises(DataNotFoundError, match=r"entry\.json"):
        build_pool_index(root, tmp_path / "x", pool="cirr_task7", progress=False)
    with pytest.raises(DataNotFoundError, match="not an embedding directory"):
        EmbeddingDir(tmp_path)


def test_query_dimension_and_k_are_checked(emb, tmp_path):
    root, _ = emb
    index = build_pool_index(root, None, pool="cirr_task7", progress=False)
    with pytest.raises(DataFormatError, match="dimension 24"):
        index.search(np.ones((2, 5)), 3)
    with pytest.raises(ConfigError):
        index.search(np.ones((2, DIM)), 0)
    res = index.search(np.ones((2, DIM)), 500)  # deeper than the pool: padded
    assert (res.rows[:, 150:] == -1).all() and (res.ids[:, 150:] == "").all()
    assert np.isneginf(res.scores[:, 150:]).all()


def test_modality_filter_returns_k_of_the_wanted_modality(tmp_path):
    rng = np.random.default_rng(4)
    n = 2000
    base = rng.standard_normal((n, 16))
    mods = np.array(["image"] * n, dtype=object)
    rare = rng.choice(n, 30, replace=False)  # 1.5% text
    mods[rare] = "text"
    index = build_index(VectorSet.from_arrays(base, dids(0, n)), tmp_path / "f",
                        modalities=mods, progress=False)
    assert (tmp_path / "f" / "modalities.npy").is_file()
    index = load_index(tmp_path / "f")
    q = rng.standard_normal((7, 16))
    res = index.search(q, 10, modalities="text")
    assert (res.rows >= 0).all()
    assert set(res.rows.ravel()) <= set(rare.tolist())
    _, order = brute_force(base[rare], q, 10)
    assert (res.rows == rare[order]).all()  # the exact top-10 among text candidates
    res = index.search(q, 50, modalities=["text"])  # only 30 exist: padded
    assert (res.rows[:, :30] >= 0).all() and (res.rows[:, 30:] == -1).all()
    unfiltered = index.search(q, 10)
    assert (unfiltered.rows == brute_force(base, q, 10)[1]).all()
    with pytest.raises(ConfigError, match="unknown modality"):
        index.search(q, 3, modalities="video")


def test_modality_filter_needs_stored_modalities(emb, tmp_path):
    root, vec = emb
    index = build_pool_index(root, None, pool="cirr_task7", progress=False)
    with pytest.raises(ConfigError, match="stores no candidate modalities"):
        index.search(vec["queries"], 3, modalities="image")


def test_modalities_come_from_the_pool_files(tmp_path):
    from augret.data.jsonl import write_jsonl

    pool = tmp_path / "data" / "cand_pool" / "local" / "mbeir_webqa_task2_cand_pool.jsonl"
    pool.parent.mkdir(parents=True)
    rows = [{"did": f"2:{i}", "txt": "t", "img_path": "x.jpg" if i % 2 else None,
             "modality": "image,text" if i % 2 else "text", "src_content": None}
            for i in range(1, 11)]
    write_jsonl(pool, rows)
    root = tmp_path / "emb"
    write_meta(root, 8, data_dir=str(tmp_path / "data"))
    write_entry(root, "pools", "webqa_task2", np.random.default_rng(0).standard_normal((10, 8)),
                dids(2, 10), source=str(pool))
    index = build_pool_index(root, tmp_path / "i", pool="webqa_task2", progress=False)
    assert index.meta["modalities"] is True
    res = index.search(np.ones((1, 8)), 10, modalities="text")
    assert sorted(res.ids[0][res.rows[0] >= 0]) == sorted(f"2:{i}" for i in range(2, 11, 2))
    _no_source(root)
    with pytest.raises(DataNotFoundError, match="no pool files"):
        build_pool_index(root, tmp_path / "j", pool="webqa_task2", progress=False,
                         modalities=True, data_dir=tmp_path / "nowhere")
    index = build_pool_index(root, None, pool="webqa_task2", progress=False)  # auto: none
    assert index.meta["modalities"] is False and index.modalities is None


def _no_source(root: Path) -> None:
    info = root / "pools" / "webqa_task2" / "entry.json"
    meta = json.loads(info.read_text())
    meta.pop("source")
    info.write_text(json.dumps(meta))
    m = json.loads((root / "meta.json").read_text())
    m["data_dir"] = None
    (root / "meta.json").write_text(json.dumps(m))


def test_gpu_path_trains_on_one_gpu_and_searches_sharded(emb, tmp_path, monkeypatch):
    import faiss

    root, vec = emb
    calls = []

    def fake_all(index, co=None):
        calls.append(("all", co.shard))
        return index

    def fake_one(res, device, index):
        calls.append(("one", device))
        return index

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", fake_all, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake_one, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions",
                        lambda: type("Co", (), {"shard": False})(), raising=False)
    index = build_pool_index(root, tmp_path / "g", pool="cirr_task7", progress=False,
                             cfg=IndexConfig(kind="ivf", nlist=2, recall_queries=20))
    assert index.meta["gpu"] is True
    assert calls == [("one", 0), ("all", True)]  # train + fill on GPU 0; recall search sharded
    calls.clear()
    DenseIndex.load(tmp_path / "g").search(vec["queries"], 5)
    assert calls == [("all", True)]
    calls.clear()
    DenseIndex.load(tmp_path / "g", gpu="off").search(vec["queries"], 5)
    from augret.index import _faiss

    monkeypatch.setattr(_faiss, "GPU_MAX_K", 100)
    DenseIndex.load(tmp_path / "g").search(vec["queries"], 120)  # beyond GPU k: CPU
    assert calls == []
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    with pytest.raises(ConfigError, match="no GPU"):
        DenseIndex.load(tmp_path / "g", gpu="on").search(vec["queries"], 5)


def test_flat_fill_fallback_when_storage_is_hidden(emb, tmp_path, monkeypatch):
    from augret.index import _faiss

    root, vec = emb
    fa = _faiss.faiss()
    monkeypatch.setattr(_faiss, "flat_index_filled",
                        lambda fa_, d, n: (fa.IndexFlatIP(d), None))
    index = build_pool_index(root, None, pool="cirr_task7", progress=False)
    _, order = brute_force(vec["cirr_task7"], vec["queries"], 5)
    assert (index.search(vec["queries"], 5).rows == order).all()


def test_reads_entries_written_by_the_embedder(tmp_path):
    """Contract check against the embedding directory's own writer."""
    from augret.formats.embeddings import EntryWriter

    rng = np.random.default_rng(5)
    vec = rng.standard_normal((10, 8)).astype(np.float32)
    ids = dids(9, 10)
    root = tmp_path / "emb"
    write_meta(root, 8, union=["pools/mscoco_task0_test"])
    writer = EntryWriter(root / "pools" / "mscoco_task0_test", {"x": 1}, shard_size=4, dim=8)
    for i, start in enumerate(range(0, 10, 4)):
        writer.write_shard(i, vec[start: start + 4], ids[start: start + 4],
                           {"rows": len(ids[start: start + 4])})
    writer.finish({"entry": "pools/mscoco_task0_test", "kind": "pool",
                   "source": str(tmp_path / "pool.jsonl")})
    index = build_pool_index(root, None, pool="union", progress=False)
    assert list(index.ids) == ids
    q = rng.standard_normal((3, 8))
    assert (index.search(q, 4).rows == brute_force(vec, q, 4)[1]).all()


def test_pq_parameters_are_checked(tmp_path):
    base = np.random.default_rng(0).standard_normal((200, 30))
    vs = VectorSet.from_arrays(base, dids(1, 200))
    with pytest.raises(ConfigError, match="must divide"):
        build_index(vs, None, IndexConfig(kind="pq", pq_m=7), progress=False)
    with pytest.raises(ConfigError, match="training vectors"):
        build_index(vs, None, IndexConfig(kind="pq", pq_m=5), progress=False)
    with pytest.raises(ConfigError):
        IndexConfig(kind="ivf", nprobe=0)


@pytest.mark.slow
def test_union_of_all_sixteen_pools_at_scale(tmp_path):
    """320k x 256 over the 16 union pools, streamed in small batches: exact and IVF."""
    from augret.data.ids import UNION_POOL_ORDER

    rng = np.random.default_rng(9)
    root = tmp_path / "emb"
    write_meta(root, 256)
    parts, ids = [], []
    for i, name in enumerate(UNION_POOL_ORDER):
        x = clustered(rng, 20_000, 256, centers=200)
        parts.append(x)
        ids += dids(i % 10, 20_000, start=1 + i * 20_000)
        write_entry(root, "pools", name, x, ids[-20_000:], shard_size=7_000)
    base = np.vstack(parts)
    q = clustered(rng, 200, 256, centers=200)
    cfg = IndexConfig(batch_rows=5_000)
    index = build_pool_index(root, tmp_path / "flat", pool="union", cfg=cfg, progress=False)
    s, order = brute_force(base, q, 10)
    res = index.search(q, 10)
    assert (res.ids == np.array(ids)[order]).mean() > 0.999  # float ties aside
    np.testing.assert_allclose(res.scores, s, rtol=1e-4, atol=1e-4)
    ivf = build_pool_index(root, tmp_path / "ivf", pool="union", progress=False,
                           cfg=IndexConfig(kind="ivf", batch_rows=5_000, recall_queries=200))
    assert ivf.meta["recall"]["recall"] > 0.8
    assert recall_at_k(ivf.search(q, 10).rows, order, 10) > 0.8
