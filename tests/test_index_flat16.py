"""The flat16 index: exact blocked search over float16 shards linked from the embedding
directory, equal to FAISS ``IndexFlatIP`` up to ties, on the NumPy and the torch engines."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from augret.errors import ConfigError, DataFormatError
from augret.formats.indexes import read_meta
from augret.index import IndexConfig, SearchConfig, build_indexes, load_index
from augret.index.backends import backend_for, backend_of
from augret.index.blocksearch import RowBlocks, block_rows, topk_blocks
from augret.index.dense import build_index as build_faiss
from augret.index.flat16 import Flat16Index, build_index, build_pool_index
from augret.index.vectors import VectorSet, l2_normalize
from helpers.embedding_dirs import dids, write_entry, write_meta
from helpers.ties import assert_topk_equal_up_to_ties

faiss = pytest.importorskip("faiss")

DIM = 16
FLAT16 = IndexConfig(kind="flat16")


def _one_hot(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Rows with one non-zero entry (±1, ±2 or ±3): every score against them is exact in any
    BLAS kernel, so equal scores are true ties however the rows are blocked."""
    x = np.zeros((n, dim), np.float16)
    x[np.arange(n), rng.integers(0, dim, n)] = rng.choice([-3, -2, -1, 1, 2, 3], n)
    return x


def _lexicographic(base: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None
                   ) -> np.ndarray:
    """The documented order: score down, then row up (for exact-score rows, _one_hot)."""
    s = q @ l2_normalize(base.astype(np.float16)).T
    if allowed is not None:
        s[:, ~allowed] = -np.inf
    out = np.full((len(q), k), -1)
    for i in range(len(q)):
        order = [j for j in np.lexsort((np.arange(len(base)), -s[i])) if s[i, j] > -np.inf]
        out[i, : min(k, len(order))] = order[:k]
    return out


@pytest.fixture
def emb(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An embedding directory with one pool of 700 rows in shards of 64, 100 of them
    duplicates of others (exact ties), and 40 queries."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((700, DIM)).astype(np.float16)
    base[600:] = base[:100]
    root = tmp_path / "emb"
    write_meta(root, DIM)
    write_entry(root, "pools", "cirr_task7", base, dids(8, 700))
    write_entry(root, "queries", "cirr_task7", rng.standard_normal((40, DIM)), dids(7, 40))
    return root, base


def test_equals_faiss_flat_up_to_ties(emb, tmp_path):
    root, base = emb
    flat = build_indexes(root, tmp_path / "flat", pool="cirr_task7", progress=False)
    b16 = build_indexes(root, tmp_path / "f16", FLAT16, pool="cirr_task7", progress=False)
    ref = load_index(flat["cirr_task7"])
    index = load_index(b16["cirr_task7"], device="cpu", block_mb=1)
    assert isinstance(index, Flat16Index) and index.ntotal == 700 and index.dim == DIM
    assert index.block_bytes == 1 << 20
    index.block_bytes = 20_000  # before the first search: several blocks per search
    assert block_rows(index.block_bytes, DIM, 16) == 20_000 // (4 * DIM + 12 * 16) == 78
    q = np.random.default_rng(1).standard_normal((40, DIM)).astype(np.float32)
    q[:10] = base[:10]  # queries whose best hit is tied with its duplicate
    for k in (1, 10, 128):
        a, b = index.search(q, k, batch_size=16), ref.search(q, k)
        assert_topk_equal_up_to_ties(a.scores, a.rows, b.scores, b.rows, atol=1e-6)
        assert (a.ids == np.where(a.rows >= 0, index.ids[a.rows], "")).all()
    top = index.search(q[:10], 2)
    assert {tuple(sorted(r)) for r in top.rows} == {(i, 600 + i) for i in range(10)}
    deep = index.search(q[:3], 900)  # deeper than the pool: padded as FAISS pads
    assert (deep.rows[:, 700:] == -1).all() and np.isneginf(deep.scores[:, 700:]).all()
    assert (deep.ids[:, 700:] == "").all()


def test_shards_are_hard_links_recorded_in_meta(emb, tmp_path):
    root, _ = emb
    build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16, progress=False)
    meta = read_meta(tmp_path / "i")
    assert meta["kind"] == "flat16" and meta["backend"] == "flat16"
    assert meta["dtype"] == "float16" and meta["count"] == 700 and meta["dimension"] == DIM
    shards = meta["shards"]
    assert [s["rows"] for s in shards] == [64] * 10 + [60]
    assert {s["stored"] for s in shards} == {"linked"}
    assert shards[3]["source"] == "pools/cirr_task7/shard_00003.npy"
    src = root / "pools" / "cirr_task7" / "shard_00003.npy"
    assert os.stat(tmp_path / "i" / shards[3]["file"]).st_ino == os.stat(src).st_ino
    assert not (tmp_path / "i" / "index.faiss").exists()
    assert backend_of(meta).name == "flat16"
    assert backend_for(FLAT16).name == "flat16" and backend_for(IndexConfig()).name == "faiss"


def test_the_index_outlives_its_embedding_directory(emb, tmp_path):
    root, _ = emb
    build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16, progress=False)
    q = np.random.default_rng(2).standard_normal((5, DIM))
    before = Flat16Index.load(tmp_path / "i", device="cpu").search(q, 7)
    # re-embedding writes new files and renames them over the old names (augret never
    # writes a shard in place): the index keeps the vectors it was built from
    entry = root / "pools" / "cirr_task7"
    for shard in sorted(entry.glob("shard_*.npy")):
        tmp = shard.with_name(".new.npy")
        np.save(tmp, np.zeros((len(np.load(shard)), DIM), np.float16))
        tmp.replace(shard)
    after = Flat16Index.load(tmp_path / "i", device="cpu").search(q, 7)
    assert (after.rows == before.rows).all() and (after.scores == before.scores).all()
    shutil.rmtree(root)
    gone = Flat16Index.load(tmp_path / "i", device="cpu").search(q, 7)
    assert (gone.rows == before.rows).all()


def test_a_shard_changed_in_place_or_missing_is_refused(emb, tmp_path):
    root, _ = emb
    build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16, progress=False)
    shard = root / "pools" / "cirr_task7" / "shard_00002.npy"
    with open(shard, "r+b") as f:  # another program rewriting the embedding shard in place
        f.seek(200)
        f.write(b"\x00" * 64)
    with pytest.raises(DataFormatError, match=r"vectors/00002.npy changed since the index was "
                                              r"built \(a hard link to the embedding shard "
                                              r"pools/cirr_task7/shard_00002.npy"):
        Flat16Index.load(tmp_path / "i")
    # a rebuild of the same entries is not skipped while a shard differs
    again = build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16,
                             progress=False)
    assert again.ntotal == 700
    with open(root / "pools" / "cirr_task7" / "shard_00004.npy", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(DataFormatError, match=r"00004\.npy changed"):
        Flat16Index.load(tmp_path / "i")
    (tmp_path / "i" / "vectors" / "00001.npy").unlink()
    with pytest.raises(DataFormatError, match=r"00001\.npy is missing; rebuild"):
        load_index(tmp_path / "i")


def test_copies_when_a_hard_link_is_impossible(emb, tmp_path, monkeypatch):
    root, base = emb

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    index = build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16,
                             progress=False)
    assert {s["stored"] for s in index.meta["shards"]} == {"copied"}
    src = root / "pools" / "cirr_task7" / "shard_00000.npy"
    assert os.stat(tmp_path / "i" / "vectors" / "00000.npy").st_ino != os.stat(src).st_ino
    q = np.random.default_rng(3).standard_normal((6, DIM))
    ref = build_faiss(VectorSet.from_arrays(base, dids(8, 700)), None, progress=False)
    a, b = index.search(q, 5), ref.search(q, 5)
    assert_topk_equal_up_to_ties(a.scores, a.rows, b.scores, b.rows, atol=1e-6)


def test_arrays_and_other_dtypes_are_written_as_float16(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, DIM)).astype(np.float16).astype(np.float32)  # fp16 values
    vs = VectorSet.from_arrays(x, dids(1, 300))
    index = build_index(vs, tmp_path / "a", FLAT16, progress=False)
    assert {s["stored"] for s in index.meta["shards"]} == {"written"}
    ref = build_faiss(vs, None, progress=False)
    q = rng.standard_normal((9, DIM))
    a, b = index.search(q, 12), ref.search(q, 12)
    assert_topk_equal_up_to_ties(a.scores, a.rows, b.scores, b.rows, atol=1e-6)
    # an embedding shard stored as float32 is converted, not linked
    root = tmp_path / "emb"
    write_meta(root, DIM)
    folder = write_entry(root, "pools", "p", x, dids(1, 300), shard_size=300)
    np.save(folder / "shard_00000.npy", x)
    built = build_pool_index(root, tmp_path / "b", pool="p", cfg=FLAT16, progress=False)
    assert built.meta["shards"][0]["stored"] == "written"
    assert np.load(tmp_path / "b" / "vectors" / "00000.npy").dtype == np.float16
    assert (built.search(q, 12).rows == a.rows).all()
    with pytest.raises(ConfigError, match="builds kind 'flat16', not 'flat'"):
        build_index(vs, tmp_path / "c", IndexConfig(), progress=False)


def test_up_to_date_builds_are_reused(emb, tmp_path, caplog):
    root, _ = emb
    first = build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16,
                             progress=False)
    with caplog.at_level("INFO"):
        again = build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16,
                                 progress=False)
    assert "up to date" in caplog.text
    assert again.meta["created"] == first.meta["created"]
    other = build_pool_index(root, tmp_path / "i", pool="cirr_task7", progress=False,
                             cfg=IndexConfig(kind="flat16", normalize=False))
    assert other.meta["fingerprint"] != first.meta["fingerprint"]


def test_modality_filter_equals_faiss_filter(tmp_path):
    rng = np.random.default_rng(4)
    n = 1500
    base = rng.standard_normal((n, DIM)).astype(np.float16)
    mods = np.array(["image"] * n, dtype=object)
    rare = rng.choice(n, 25, replace=False)
    mods[rare] = "text"
    vs = VectorSet.from_arrays(base, dids(0, n))
    index = build_index(vs, tmp_path / "f", FLAT16, modalities=mods, progress=False)
    ref = build_faiss(vs, None, modalities=mods, progress=False)
    q = rng.standard_normal((11, DIM))
    for k, want in ((10, "text"), (40, ["text"]), (10, "image")):
        a, b = index.search(q, k, modalities=want), ref.search(q, k, modalities=want)
        assert_topk_equal_up_to_ties(a.scores, a.rows, b.scores, b.rows, atol=1e-6)
        allowed = np.isin(mods, [want] if isinstance(want, str) else want)
        assert allowed[a.rows[a.rows >= 0]].all()
    assert (index.search(q, 40, modalities="text").rows[:, 25:] == -1).all()
    with pytest.raises(ConfigError, match="unknown modality"):
        index.search(q, 3, modalities="video")
    plain = build_index(vs, tmp_path / "g", FLAT16, progress=False)
    with pytest.raises(ConfigError, match="stores no candidate modalities"):
        plain.search(q, 3, modalities="text")


def test_queries_are_checked(emb, tmp_path):
    root, _ = emb
    index = build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16,
                             progress=False)
    with pytest.raises(DataFormatError, match="dimension 16"):
        index.search(np.ones((2, 5)), 3)
    with pytest.raises(ConfigError, match="positive"):
        index.search(np.ones((2, DIM)), 0)
    assert index.search(np.ones(DIM), 2).rows.shape == (1, 2)
    assert index.search(np.ones((0, DIM)), 2).rows.shape == (0, 2)


@pytest.mark.parametrize("devices", [["cpu"], ["cpu", "cpu", "cpu"]])
def test_torch_engine_on_cpu_equals_faiss(devices):
    from augret.index.torchsearch import TorchEngine

    rng = np.random.default_rng(6)
    base = rng.standard_normal((900, DIM)).astype(np.float16)
    allowed = rng.random(900) < 0.3
    ref = build_faiss(VectorSet.from_arrays(base, dids(0, 900)), None,
                      modalities=np.where(allowed, "text", "image"), progress=False)
    engine = TorchEngine(RowBlocks(np.array_split(base, 7), DIM), devices, block_bytes=40_000)
    assert engine.resident == [False] * len(devices)  # CPU shares are streamed
    q = l2_normalize(rng.standard_normal((30, DIM)))
    for k, mask, mods in ((10, None, None), (64, allowed, "text"), (1000, None, None)):
        s, r = engine.search(q, k, mask)
        b = ref.search(q, k, modalities=mods, normalize=False)
        assert_topk_equal_up_to_ties(s, r, b.scores, b.rows, atol=1e-5)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_equal_scores_are_ordered_by_row_across_blocks(engine):
    from augret.index.torchsearch import TorchEngine

    rng = np.random.default_rng(7)
    for trial in range(25):
        n, k = int(rng.integers(1, 300)), int(rng.integers(1, 25))
        x = _one_hot(rng, n, 6)  # many exact ties, within and across blocks
        q = l2_normalize(rng.standard_normal((9, 6)))
        allowed = rng.random(n) < 0.5 if trial % 2 else None
        blocks = RowBlocks(np.array_split(x, int(rng.integers(1, 5))), 6)
        if engine == "numpy":
            _, r = topk_blocks(q, blocks.iter(int(rng.integers(1, 60))), k, allowed=allowed)
        else:
            devices = ["cpu"] * int(rng.integers(1, 4))
            budget = int(rng.integers(100, 5000))
            _, r = TorchEngine(blocks, devices, block_bytes=budget).search(q, k, allowed)
        assert (r == _lexicographic(x, q, k, allowed)).all(), trial


def test_ties_through_the_index(tmp_path):
    rng = np.random.default_rng(8)
    x = _one_hot(rng, 500, DIM)
    index = build_index(VectorSet.from_arrays(x, dids(1, 500)), tmp_path / "t", FLAT16,
                        progress=False)
    q = rng.standard_normal((12, DIM))
    assert (index.search(q, 30).rows == _lexicographic(x, l2_normalize(q), 30)).all()


def test_devices_are_resolved_and_checked(monkeypatch):
    from augret.index import torchsearch

    monkeypatch.setattr(torchsearch, "cuda_devices", lambda: [])
    assert torchsearch.resolve_devices("cpu") is None
    assert torchsearch.resolve_devices("auto") is None  # no GPU: NumPy on the CPU
    with pytest.raises(ConfigError, match="sees no GPU"):
        torchsearch.resolve_devices("cuda")
    monkeypatch.setattr(torchsearch, "cuda_devices", lambda: ["cuda:0", "cuda:1"])
    assert torchsearch.resolve_devices("auto") == ["cuda:0", "cuda:1"]
    assert torchsearch.resolve_devices("cuda:1") == ["cuda:1"]
    with pytest.raises(ConfigError, match="cuda:2 not visible"):
        torchsearch.resolve_devices("cuda:0,2")
    with pytest.raises(ConfigError, match="device must be"):
        torchsearch.resolve_devices("gpu")
    with pytest.raises(ConfigError, match="device must be"):
        SearchConfig(device="cuda0")
    with pytest.raises(ConfigError, match="block_mb"):
        SearchConfig(block_mb=0)


def test_search_to_run_dir_picks_the_gpu_engine_when_a_gpu_is_seen(emb, tmp_path,
                                                                   monkeypatch):
    """``device: auto`` takes the torch engine when torch sees GPUs; here the one "GPU" is
    torch's CPU device, so the whole GPU code path runs."""
    from augret.index import search_to_run_dir, torchsearch
    from augret.index.flat16 import Flat16Index as Index

    root, _ = emb
    build_indexes(root, tmp_path / "flat", pool="cirr_task7", progress=False)
    build_indexes(root, tmp_path / "f16", FLAT16, pool="cirr_task7", progress=False)
    engines = []
    real = Index.engine.fget

    def spy(self):
        engines.append(type(real(self)).__name__)
        return self._engine

    monkeypatch.setattr(torchsearch, "cuda_devices", lambda: ["cpu"])
    monkeypatch.setattr(Index, "engine", property(spy))
    from augret.evaluate import read_run
    from helpers.ties import assert_runs_equal_up_to_ties

    search_to_run_dir(root, tmp_path / "flat", tmp_path / "ra", pools=("local",))
    search_to_run_dir(root, tmp_path / "f16", tmp_path / "rb", pools=("local",))
    assert set(engines) == {"TorchEngine"}
    assert_runs_equal_up_to_ties(read_run(tmp_path / "ra" / "cirr_task7_local.run"),
                                 read_run(tmp_path / "rb" / "cirr_task7_local.run"))


def test_memory_needs_of_both_exact_kinds(emb, tmp_path):
    root, _ = emb
    flat = build_indexes(root, tmp_path / "flat", pool="cirr_task7", progress=False)
    b16 = build_indexes(root, tmp_path / "f16", FLAT16, pool="cirr_task7", progress=False)
    meta_a, meta_b = read_meta(flat["cirr_task7"]), read_meta(b16["cirr_task7"])
    a = backend_of(meta_a).memory(meta_a, flat["cirr_task7"])
    b = backend_of(meta_b).memory(meta_b, b16["cirr_task7"])
    assert a.fp32 == b.fp32 == 700 * DIM * 4 and a.fp16 == b.fp16 == 700 * DIM * 2
    assert a.ram == 700 * DIM * 4 and a.mapped == 0  # FAISS: float32 in RAM
    assert b.mapped == 700 * DIM * 2 and b.gpu == 700 * DIM * 2
    assert b.ram == min(256 << 20, 700 * (4 * DIM + 12 * 1024))  # one block
    on_disk = sum(p.stat().st_size for p in (b16["cirr_task7"] / "vectors").iterdir())
    assert on_disk == sum(s["bytes"] for s in meta_b["shards"])


def test_meta_json_is_plain_json(emb, tmp_path):
    root, _ = emb
    build_pool_index(root, tmp_path / "i", pool="cirr_task7", cfg=FLAT16, progress=False)
    meta = json.loads((tmp_path / "i" / "meta.json").read_text())
    assert meta["format"] == "augret-index" and meta["recall"] is None
    assert meta["sources"][0]["entry"] == "pools/cirr_task7"
    del meta["shards"]
    (tmp_path / "i" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="lists no shards"):
        Flat16Index.load(tmp_path / "i")


def test_torch_engine_over_tensors_already_on_their_devices():
    torch = pytest.importorskip("torch")
    from augret.index.torchsearch import TorchEngine

    rng = np.random.default_rng(9)
    x = rng.standard_normal((500, DIM)).astype(np.float16)
    engine = TorchEngine.from_tensors([torch.from_numpy(x[:200]), torch.from_numpy(x[200:])],
                                      block_bytes=30_000)
    assert engine.rows == 500 and engine.resident == [True, True]
    q = l2_normalize(rng.standard_normal((20, DIM)))
    s, r = engine.search(q, 15)
    ref = topk_blocks(q, RowBlocks([x], DIM).iter(500), 15)
    assert_topk_equal_up_to_ties(s, r, *ref, atol=1e-5)
    with pytest.raises(ConfigError, match="float16 tensors of one width"):
        TorchEngine.from_tensors([torch.zeros((3, 4))])
