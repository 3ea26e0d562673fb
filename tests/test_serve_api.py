"""The HTTP API on a real uvicorn server on loopback: search (JSON and multipart), item images,
health, the page, API keys, CORS and query-time enhancement."""

from __future__ import annotations

import base64

import pytest

from augret.data import MBEIRDir
from augret.enhance.backends.fake import FakeBackend
from augret.serve import AdhocQuery
from helpers.images import png
from helpers.serve import LiveServer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("faiss")
pytest.importorskip("open_clip")
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def idx(shapes_indexes):
    return shapes_indexes


@pytest.fixture(scope="module")
def searcher(idx, tiny_encoder):
    from augret.serve import Searcher

    return Searcher.open(idx.dense, encoder=tiny_encoder)


@pytest.fixture(scope="module")
def server(searcher):
    from augret.serve import ServeConfig, create_app

    with LiveServer(create_app(searcher, ServeConfig(max_k=50))) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _pool_image(idx):
    data = MBEIRDir(idx.data)
    cand = next(data.iter_pool("nights_task4"))
    return cand, data.resolve_image(cand.img_path)


def test_health_page_and_assets(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["retriever"] == "dense"
    assert health["items"] == 288 and health["encoder"] == "tiny"
    assert health["max_k"] == 50 and health["auth"] is False and "cirr_task7" in health["tasks"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert '<form id="search-form"' in page.text and "http" not in page.text.split("<body>")[1]
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "https://" not in r.text  # no CDN, nothing fetched from elsewhere
    assert client.get("/docs").status_code == 404  # no CDN-backed docs pages either


def test_json_search_matches_the_searcher(client, searcher):
    r = client.post("/search", json={"text": "a large red ring", "k": 5, "task": "mscoco_task0"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["query"] == {"original": "a large red ring", "rewritten": "a large red ring",
                             "task": "mscoco_task0", "enhancement": None,
                             "instruction": body["query"]["instruction"]}
    assert body["query"]["instruction"]
    want = searcher.search(AdhocQuery(text="a large red ring", task="mscoco_task0"), k=5)
    assert [h["id"] for h in body["hits"]] == [h.id for h in want.hits]
    assert [h["score"] for h in body["hits"]] == pytest.approx([h.score for h in want.hits])
    assert set(body["hits"][0]) == {"id", "rank", "score", "text", "modality", "image_url"}
    assert all("image_path" not in h for h in body["hits"])  # no server paths leak


def test_base64_and_multipart_image_search_and_item_images(client, idx):
    cand, path = _pool_image(idx)
    data = path.read_bytes()
    for request in (
        {"json": {"image": base64.b64encode(data).decode(), "k": 3}},
        {"json": {"image": "data:image/png;base64," + base64.b64encode(data).decode(),
                  "k": 3}},
        {"files": {"image": ("q.png", data, "image/png")}, "data": {"k": "3"}},
        {"files": {"file": ("q.png", data, "image/png")}, "data": {"k": "3", "text": ""}},
    ):
        r = client.post("/search", **request)
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert len(hits) == 3 and hits[0]["id"] == cand.did
        assert hits[0]["image_url"] == f"/items/{cand.did}/image"
    img = client.get(hits[0]["image_url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content == data
    r = client.post("/search", files={"image": ("q.png", data, "image/png")},
                    data={"text": "Make it blue.", "task": "nights_task4",
                          "modality": "image", "k": "4"})
    assert r.status_code == 200 and {h["modality"] for h in r.json()["hits"]} == {"image"}


def test_k_cap_is_a_422_not_a_clamp(client):
    assert len(client.post("/search", json={"text": "x", "k": 50}).json()["hits"]) == 50
    r = client.post("/search", json={"text": "x", "k": 51})
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "k must be between 1 and 50, got 51"
    assert len(client.post("/search", json={"text": "x"}).json()["hits"]) == 10  # default


def test_api_key_and_cors(idx, searcher):
    from augret.serve import ServeConfig, create_app

    settings = ServeConfig(api_key="s3cret-key", cors_origins=("http://allowed.example",))
    cand, _ = _pool_image(idx)
    with LiveServer(create_app(searcher, settings)) as live, \
            httpx.Client(base_url=live.url, timeout=30) as c:
        r = c.post("/search", json={"text": "a circle"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "Unauthorized"
        assert c.post("/search", json={"text": "a circle"},
                      headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/search", json={"text": "a circle"},
                      headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.post("/search", json={"text": "a circle"},
                      headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        url = f"/items/{cand.did}/image"
        assert c.get(url).status_code == 401
        assert c.get(url, headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.get("/healthz").json()["auth"] is True  # health and page stay open
        assert c.get("/").status_code == 200
        pre = c.options("/search", headers={"Origin": "http://allowed.example",
                                            "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "x-api-key"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "http://allowed.example"
        other = c.options("/search", headers={"Origin": "http://evil.example",
                                              "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
    # CORS is off by default: no header whatever the origin
    with LiveServer(create_app(searcher)) as live, \
            httpx.Client(base_url=live.url, timeout=30) as c:
        r = c.post("/search", json={"text": "a"}, headers={"Origin": "http://allowed.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_query_time_enhancement_over_http(idx, tmp_path, tiny_encoder):
    from augret.enhance import EnhanceConfig, GenerationStore
    from augret.serve import QueryEnhancer, Searcher, create_app

    vlm = FakeBackend(words=5)
    enhancer = QueryEnhancer(EnhanceConfig(store=tmp_path / "s.sqlite"), backend=vlm,
                             store=GenerationStore(tmp_path / "s.sqlite"))
    s = Searcher.open(idx.dense, encoder=tiny_encoder, enhancer=enhancer)
    with LiveServer(create_app(s)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/healthz").json()["enhancer"]["model"] == "fake-vlm"
        request = {"files": {"image": ("q.png", png((20, 20, 220)), "image/png")},
                   "data": {"text": "Which shape is this?", "k": "3"}}
        first = c.post("/search", **request).json()
        assert first["query"]["enhancement"]["status"] == "generated"
        assert first["query"]["rewritten"] != "Which shape is this?"
        second = c.post("/search", **request).json()
        assert second["query"]["enhancement"]["status"] == "cached"
        assert second["query"]["rewritten"] == first["query"]["rewritten"]
        assert len(vlm.calls) == 1
    s.close()


def test_tiny_vlm_query_time_enhancement(idx, tmp_path, tiny_encoder):
    """The real transformers backend with the tiny (random) VLM behind the API."""
    pytest.importorskip("transformers")
    from augret.enhance import EnhanceConfig
    from augret.serve import QueryEnhancer, Searcher, create_app

    cfg = EnhanceConfig(backend="transformers", model="tiny", query_tokens=12,
                        candidate_tokens=12, overlong_factor=100, store=tmp_path / "s.sqlite",
                        backend_options={"device": "cpu"})
    s = Searcher.open(idx.dense, encoder=tiny_encoder, enhancer=QueryEnhancer(cfg))
    with LiveServer(create_app(s)) as live, httpx.Client(base_url=live.url, timeout=120) as c:
        request = {"files": {"image": ("q.png", png(), "image/png")},
                   "data": {"text": "What is this shape called?", "k": "3"}}
        first = c.post("/search", **request).json()
        enh = first["query"]["enhancement"]
        assert enh["route"] == "entity_rewrite" and enh["status"] in ("generated", "failed")
        second = c.post("/search", **request).json()
        if enh["status"] == "generated":
            assert second["query"]["enhancement"]["status"] == "cached"
            assert second["query"]["rewritten"] == first["query"]["rewritten"]
        assert len(second["hits"]) == 3
    s.close()
