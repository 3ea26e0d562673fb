"""The milvus backend against a real Milvus server on loopback (the ``milvus`` package's
standalone Milvus 2.3.5: etcd, local storage), over its URI: the rankings of FAISS exact, a
SIGKILLed build resumed with every id once, clear errors, and a service that answers 503
while the server is down and recovers when it is back. Milvus 2.3 has no BM25 function, so
these builds set ``text_search: false``, and one test checks the error that asks for it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from helpers.milvus import EmbeddedMilvus, compare_runs, run_cli
from helpers.serve import LiveServer
from test_index_milvus import _emb

pytest.importorskip("milvus")
pytest.importorskip("pymilvus")
pytest.importorskip("faiss")
pytest.importorskip("open_clip")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with EmbeddedMilvus(tmp_path_factory.mktemp("milvus-standalone")) as s:
        yield s


@pytest.fixture(scope="module")
def idx(shapes_indexes):
    return shapes_indexes


def _cfg(server, name: str, **kw):
    from augret.index.config import MilvusConfig

    return MilvusConfig(**{"uri": server.uri, "collection": name, "text_search": False, **kw})


def test_text_search_needs_a_server_with_bm25(server, tmp_path):
    from augret.index import build_indexes
    from augret.index.milvus_db import Collection, Target

    with pytest.raises(ConfigError, match=r"'nobm25' at .*ignored the BM25 function.*"
                                          r"text_search=false"):
        build_indexes(_emb(tmp_path / "emb", n=50), tmp_path / "idx",
                      _cfg(server, "nobm25", text_search=True), progress=False)
    assert not Collection(Target(server.uri, "nobm25")).exists()


@pytest.mark.parametrize("filter_modality", [False, True])
def test_flat_over_the_uri_ranks_as_faiss_exact(server, idx, tmp_path_factory,
                                                filter_modality):
    from augret.index import SearchConfig, build_indexes, search_to_run_dir

    root = tmp_path_factory.getbasetemp() / "server-shapes"
    build_indexes(idx.emb, root, _cfg(server, "shapes"), progress=False)
    meta = json.loads((root / "union" / "meta.json").read_text())
    assert meta["uri"] == server.uri and meta["server_version"].startswith("v2.3")
    cfg = SearchConfig(filter_modality=filter_modality)
    out = tmp_path_factory.mktemp("runs")
    got = search_to_run_dir(idx.emb, root, out / "milvus", cfg)
    want = search_to_run_dir(idx.emb, idx.dense, out / "faiss", cfg)
    assert set(compare_runs(got, want).values()) == {0}


def _exactly_once(server, name: str, ids: list[str]) -> None:
    from augret.index.milvus_db import Collection, Target

    col = Collection(Target(server.uri, name))
    held = Counter(col.iter_ids())
    assert set(held) == set(ids) and set(held.values()) == {1}
    assert col.count() == len(ids)  # a server counts a primary key inserted twice twice


def test_a_sigkilled_build_over_the_uri_resumes_with_every_id_once(server, tmp_path):
    from augret.index.milvus_build import RECORD_FILE

    emb = _emb(tmp_path / "emb", n=6000)
    out = tmp_path / "idx"
    args = ["index", "build", str(emb), "--out", str(out), "--backend", "milvus", "--uri",
            server.uri, "--collection", "killed", "--set", "insert_rows=50", "--set",
            "text_search=false", "--no-progress"]
    src = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.Popen([sys.executable, "-m", "augret", *args],
                            env={**os.environ, "PYTHONPATH": src},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record, deadline = out / RECORD_FILE, time.monotonic() + 300
    while not (record.is_file() and json.loads(record.read_text())["confirmed"] >= 2000):
        assert proc.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert "resuming the build" in res.stderr
    _exactly_once(server, "killed", [f"7:{i}" for i in range(1, 6001)] +
                  [f"6:{i}" for i in range(1, 3001)])


def test_missing_and_half_built_collections_over_the_uri(server, tmp_path):
    from augret.index import build_indexes, load_index

    build_indexes(_emb(tmp_path / "emb", n=300), tmp_path / "idx", _cfg(server, "errs"),
                  progress=False)
    union = tmp_path / "idx" / "union"
    index = load_index(union)
    where = re.escape(f"collection 'errs' at {server.uri}")
    index.collection.call("delete", "delete", "errs", filter='id in ["7:1", "7:2"]')
    with pytest.raises(DataFormatError, match=where + " holds 448 rows.*half-built"):
        load_index(union)
    index.collection.call("drop", "drop_collection", "errs")
    with pytest.raises(DataNotFoundError, match=where + ": no such collection"):
        load_index(union)


def test_503_while_the_server_is_down_then_recovery(server, idx, tmp_path, tiny_encoder):
    from augret.index import build_indexes
    from augret.serve import Searcher, ServeConfig, create_app

    build_indexes(idx.emb, tmp_path / "idx", _cfg(server, "served", timeout=10),
                  progress=False)
    searcher = Searcher.open(tmp_path / "idx", encoder=tiny_encoder)
    body = {"text": "a small blue square", "k": 5}
    with LiveServer(create_app(searcher, ServeConfig())) as live, \
            httpx.Client(base_url=live.url, timeout=120) as client:
        first = client.post("/search", json=body)
        assert first.status_code == 200
        server.stop()
        try:
            down = client.post("/search", json=body)
            assert down.status_code == 503, down.text
            err = down.json()["error"]
            assert err["type"] == "IndexUnavailable" and server.uri in err["message"]
        finally:
            server.start()
        deadline = time.monotonic() + 180
        while (back := client.post("/search", json=body)).status_code == 503:
            assert time.monotonic() < deadline, back.json()
            time.sleep(1)
        assert back.status_code == 200, back.text
        assert [h["id"] for h in back.json()["hits"]] == [h["id"] for h in
                                                          first.json()["hits"]]
