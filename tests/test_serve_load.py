"""A bounded load test: 8 concurrent clients for a few seconds against the live server; zero
errors allowed, p50/p99 latency reported (``-s`` prints them; benchmarks/bench_serve.py runs
longer)."""

from __future__ import annotations

import json
import logging

import pytest

from augret.data import MBEIRDir
from helpers.serve import LiveServer, load_mix, run_load

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("faiss")
pytest.importorskip("open_clip")
pytest.importorskip("httpx")

log = logging.getLogger(__name__)


def test_eight_clients_for_five_seconds(tiny_encoder, shapes_indexes, tmp_path_factory):
    from augret.serve import Searcher, create_app

    idx = shapes_indexes
    searcher = Searcher.open(idx.dense, bm25_dir=idx.bm25, encoder=tiny_encoder)
    data = MBEIRDir(idx.data)
    image = data.resolve_image(next(data.iter_pool("cirr_task7")).img_path).read_bytes()
    with LiveServer(create_app(searcher)) as live:
        stats = run_load(live.url, load_mix(image), clients=8, seconds=5.0)
    out = tmp_path_factory.getbasetemp() / "serve-load.json"
    out.write_text(json.dumps(stats, indent=2))
    print(f"\nload test (hybrid retrieval, tiny encoder): {json.dumps(stats)}")
    log.info("load test: %s", stats)
    assert stats["errors"] == 0, stats["first_errors"]
    assert stats["requests"] >= 40  # the server kept answering throughout
    assert stats["p99_ms"] < 5000
