"""The index backends behind one builder, one loader and one search entry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import augret.index
from augret.errors import ConfigError, DataFormatError
from augret.formats.indexes import read_ids, read_meta, write_ids, write_meta
from augret.index import BM25Config, IndexConfig, build_indexes, load_index, search_to_run_dir
from augret.index.backends import BACKENDS, IndexBackend, backend_for, backend_of
from augret.index.bm25 import BM25Index
from augret.index.config import MilvusConfig
from augret.index.dense import DenseIndex, build_index
from augret.index.pools import embedded_pools, pool_entries
from augret.index.queries import EmbeddedQueries
from augret.index.search import SearchResult
from augret.index.vectors import VectorSet
from helpers.embedding_dirs import brute_force, dids, write_entry
from helpers.embedding_dirs import write_meta as write_emb_meta

pytest.importorskip("faiss")
pytest.importorskip("bm25s")

DIM = 8


def test_the_public_surface() -> None:
    assert augret.index.__all__ == [
        "BM25Config", "IndexConfig", "SearchConfig", "build_indexes", "fuse_run_dirs",
        "fuse_runs", "load_index", "search_to_run_dir"]
    assert all(hasattr(augret.index, name) for name in augret.index.__all__)


def test_the_config_picks_the_builder() -> None:
    assert backend_for(IndexConfig()).name == "faiss"
    assert backend_for(BM25Config()).name == "bm25"
    assert backend_for(MilvusConfig()).name == "milvus"

    @dataclass(frozen=True)
    class Named:
        backend: str

    assert backend_for(Named("bm25")).name == "bm25"
    with pytest.raises(ConfigError, match="unknown index backend 'nowhere'"):
        backend_for(Named("nowhere"))
    with pytest.raises(ConfigError, match="no index backend"):
        backend_for(object())


@pytest.mark.parametrize(("meta", "want"), [
    ({"kind": "flat"}, "faiss"), ({"kind": "hnsw"}, "faiss"), ({"kind": "bm25"}, "bm25"),
    ({"kind": "flat", "backend": "bm25"}, "bm25"),  # a recorded backend wins over the kind
    ({"kind": "hnsw", "backend": "milvus"}, "milvus"),
])
def test_meta_json_picks_the_loader(meta: dict, want: str) -> None:
    assert backend_of(meta).name == want


def test_unknown_kinds_and_backends_are_format_errors() -> None:
    with pytest.raises(DataFormatError, match="kind 'annoy'"):
        backend_of({"kind": "annoy"})
    with pytest.raises(DataFormatError, match="backend 'qdrant'"):
        backend_of({"kind": "flat", "backend": "qdrant"})


def test_options_of_another_backend_are_refused(sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bm25 index backend takes no option modalities"):
        build_indexes(sample_dir, tmp_path / "x", BM25Config(), modalities=True)
    assert not (tmp_path / "x").exists()


def test_search_refuses_a_root_of_two_backends(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    vectors = np.random.default_rng(0).standard_normal((5, DIM)).astype(np.float32)
    build_index(VectorSet.from_arrays(vectors, dids(1, 5)), root / "a", pool="a",
                progress=False)
    BM25Index.build(["a red dress", "blue jeans"], ["1:1", "1:2"], progress=False,
                    meta={"pool": "b"}).save(root / "b")
    assert isinstance(load_index(root / "a"), DenseIndex)
    assert isinstance(load_index(root / "b"), BM25Index)
    with pytest.raises(ConfigError, match="mixes bm25 and faiss indexes"):
        search_to_run_dir(tmp_path, root, tmp_path / "runs")


# ---- a new backend is a peer: registered, it builds, loads and searches through the API ----
@dataclass(frozen=True)
class NumpyConfig:
    """Build config of an exact NumPy backend (fp32 matrix in ``vectors.npy``)."""

    normalize: bool = True


class NumpyIndex:
    """Exact inner-product search over a NumPy matrix."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, meta: dict[str, Any]) -> None:
        self.vectors, self.ids, self.meta = vectors, ids, meta
        self.dim = vectors.shape[1]

    @classmethod
    def load(cls, path: Path, **_: Any) -> NumpyIndex:
        return cls(np.load(Path(path) / "vectors.npy"), read_ids(Path(path)), read_meta(path))

    def search(self, queries: np.ndarray, k: int, *, batch_size: int = 1024,
               modalities: Any = None, normalize: bool = True) -> SearchResult:
        assert modalities is None
        scores = np.asarray(queries, np.float32) @ self.vectors.T
        rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return SearchResult(ids=self.ids[rows], scores=np.take_along_axis(scores, rows, 1),
                            rows=rows)


def _build_numpy(emb_dir: Path, out_dir: Path, *, pool: str, cfg: NumpyConfig, force: bool,
                 progress: bool) -> NumpyIndex:
    from augret.formats.embeddings import EmbeddingDir

    vectors = VectorSet.from_entries(pool_entries(EmbeddingDir(emb_dir), pool))
    matrix = np.concatenate([x for _, x in vectors.iter_batches(1024, normalize=True)])
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "vectors.npy", matrix)
    write_ids(out_dir, vectors.read_ids())
    write_meta(out_dir, {"kind": "exact", "backend": "numpy", "pool": pool,
                         "encoder": EmbeddingDir(emb_dir).encoder})
    return NumpyIndex.load(out_dir)


def test_a_registered_backend_is_a_peer(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    emb = tmp_path / "emb"
    write_emb_meta(emb, DIM)
    pool = rng.standard_normal((40, DIM))
    queries = rng.standard_normal((6, DIM))
    write_entry(emb, "pools", "cirr_task7", pool, dids(8, 40), shard_size=16)
    write_entry(emb, "queries", "cirr_task7", queries, [f"7:{i}" for i in range(6)])
    monkeypatch.setitem(BACKENDS, "numpy", IndexBackend(
        name="numpy", kinds=("exact",), config=NumpyConfig, pools=embedded_pools,
        build=_build_numpy, options=(), load=NumpyIndex.load,
        queries=lambda path, **_: EmbeddedQueries(path)))

    dirs = build_indexes(emb, tmp_path / "idx", NumpyConfig())
    assert dirs == {"cirr_task7": tmp_path / "idx" / "cirr_task7",
                    "union": tmp_path / "idx" / "union"}
    assert isinstance(load_index(dirs["union"]), NumpyIndex)
    files = search_to_run_dir(emb, tmp_path / "idx", tmp_path / "runs")
    faiss_dirs = build_indexes(emb, tmp_path / "faiss", progress=False)
    assert set(faiss_dirs) == set(dirs)
    want = search_to_run_dir(emb, tmp_path / "faiss", tmp_path / "faiss_runs")
    assert set(files) == set(want) == {("cirr_task7", "local"), ("cirr_task7", "union")}

    def ranking(path: Path) -> list[tuple[str, str]]:
        return [(x.split()[0], x.split()[2]) for x in path.read_text().splitlines()]

    for key, path in files.items():
        assert ranking(path) == ranking(want[key])
    _, order = brute_force(pool, queries, 10)
    top = [d for q, d in ranking(files["cirr_task7", "local"]) if q == "7:0"]
    assert top == [dids(8, 40)[i] for i in order[0]]
