"""The search service over a Milvus collection behind a URI: the Searcher's hits equal the
FAISS index's, hybrid takes BM25 from the same collection, the service answers 503 with a
JSON error while the database is down and recovers when it is back, and the server's token
never reaches the disk."""

from __future__ import annotations

import time

import pytest

from augret.errors import IndexUnavailable
from helpers.milvus import LiteServer
from helpers.serve import LiveServer

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("faiss")
pytest.importorskip("open_clip")
httpx = pytest.importorskip("httpx")

TOKEN = "tok-5f3a9c-never-on-disk"


@pytest.fixture(scope="module")
def idx(shapes_indexes):
    return shapes_indexes


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    with LiteServer(tmp_path_factory.mktemp("milvus-server")) as server:
        yield server


@pytest.fixture(scope="module")
def milvus_dir(idx, db, tmp_path_factory):
    from augret.index import build_indexes
    from augret.index.config import MilvusConfig

    root = tmp_path_factory.mktemp("served") / "idx"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MILVUS_TOKEN", TOKEN)
        build_indexes(idx.emb, root, MilvusConfig(uri=db.uri, collection="served",
                                                  timeout=10), progress=False)
    return root


def test_the_token_stays_in_the_environment(milvus_dir, db):
    import json

    meta = json.loads((milvus_dir / "union" / "meta.json").read_text())
    assert meta["uri"] == db.uri and meta["token_env"] == "MILVUS_TOKEN"
    for path in milvus_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_searcher_hits_equal_faiss_and_hybrid_uses_the_same_collection(idx, milvus_dir,
                                                                        tiny_encoder):
    from augret.serve import AdhocQuery, Searcher

    faiss = Searcher.open(idx.dense, encoder=tiny_encoder)
    milvus = Searcher.open(milvus_dir, encoder=tiny_encoder)
    assert milvus.kind == "dense" and len(milvus.catalog) == 288
    for q in (AdhocQuery(text="a small blue square"),
              AdhocQuery(text="Which emblem did the weavers of Harrow adopt?",
                         task="webqa_task1"),
              AdhocQuery(text="a red circle", modality="image")):
        got, want = milvus.search(q, k=8), faiss.search(q, k=8)
        assert [h.id for h in got.hits] == [h.id for h in want.hits]
        assert [h.image_path for h in got.hits] == [h.image_path for h in want.hits]
    hybrid = Searcher.open(milvus_dir, bm25_dir=milvus_dir, encoder=tiny_encoder)
    assert hybrid.kind == "hybrid"
    question = "Which emblem did the weavers of Harrow adopt?"
    res = hybrid.search(question, k=5)
    text_hits = hybrid.bm25.search([question], 5)
    assert text_hits.ids[0][0] == "2:1"  # the only text naming the weavers of Harrow
    assert text_hits.ids[0][0] in {h.id for h in res.hits}


def test_503_while_the_database_is_down_then_recovery(milvus_dir, db, tiny_encoder):
    from augret.serve import Searcher, ServeConfig, create_app

    searcher = Searcher.open(milvus_dir, encoder=tiny_encoder)
    body = {"text": "a small blue square", "k": 5}
    with LiveServer(create_app(searcher, ServeConfig())) as live, \
            httpx.Client(base_url=live.url, timeout=60) as client:
        first = client.post("/search", json=body)
        assert first.status_code == 200
        db.kill()
        try:
            down = client.post("/search", json=body)
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/json"
            err = down.json()["error"]
            assert err["status"] == 503 and err["type"] == "IndexUnavailable"
            assert "'served'" in err["message"] and db.uri in err["message"]
            assert client.get("/healthz").status_code == 200
            with pytest.raises(IndexUnavailable):
                searcher.search("a small blue square", k=5)
        finally:
            db.start()
        deadline = time.monotonic() + 60
        while (back := client.post("/search", json=body)).status_code == 503:
            assert time.monotonic() < deadline, back.json()  # the server takes a moment
            time.sleep(0.2)
        assert back.status_code == 200
        assert [h["id"] for h in back.json()["hits"]] == [h["id"] for h in
                                                          first.json()["hits"]]
