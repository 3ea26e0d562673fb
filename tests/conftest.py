"""Shared test set-up: offline hubs, the shared real-data folder, shared fixtures."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.shared_data import SHARED_DATA

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared 2-core machines: oversubscription is slow


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep augret's caches out of the user's home during tests."""
    monkeypatch.setenv("AUGRET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "augret-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered shapes-world sample (read-only use; built once per session)."""
    from augret.data.sample import write_sample

    root = tmp_path_factory.mktemp("shapes")
    write_sample(root)
    return root


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_encoder() -> Any:
    """The tiny random-init CLIP_SF encoder on CPU (meaningless embeddings), loaded once."""
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    from augret.encode import load_encoder

    return load_encoder("tiny", device="cpu")


@dataclass(frozen=True)
class ShapesIndexes:
    """Where the session's shapes indexes are."""

    data: Path  # the shapes sample
    emb: Path  # embedding directory (queries + pools)
    dense: Path  # dense index root: <pool>/ and union/
    bm25: Path  # BM25 index root


@pytest.fixture(scope="session")
def shapes_indexes(sample_dir: Path, tiny_encoder: Any,
                   tmp_path_factory: pytest.TempPathFactory) -> ShapesIndexes:
    """The shapes sample embedded with the tiny encoder (local and union pools) and indexed:
    a dense root and a BM25 root (read-only use; built once per session)."""
    pytest.importorskip("faiss")
    pytest.importorskip("bm25s")
    from augret.encode import EmbedConfig, embed_dir
    from augret.index import BM25Config, build_indexes

    root = tmp_path_factory.mktemp("shapes-indexes")
    emb, dense, bm25 = root / "emb", root / "dense", root / "bm25"
    embed_dir(sample_dir, emb, EmbedConfig(encoder="tiny", pools=["local", "union"],
                                           workers=0, device="cpu"),
              encoder=tiny_encoder, progress=False)
    build_indexes(emb, dense, progress=False)
    build_indexes(sample_dir, bm25, BM25Config(), progress=False)
    return ShapesIndexes(sample_dir, emb, dense, bm25)
