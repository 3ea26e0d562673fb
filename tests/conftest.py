"""Shared test set-up: offline hubs, the shared real-data folder, small fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared 2-core machines: oversubscription is slow


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep augret's caches out of the user's home during tests."""
    monkeypatch.setenv("AUGRET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "augret-cache"))


@pytest.fixture
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
