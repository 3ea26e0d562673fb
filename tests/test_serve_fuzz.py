"""Malformed requests and path-traversal attempts against the live server: every one gets a
4xx with a JSON error body, never a 500, and the server stays healthy."""

from __future__ import annotations

import base64
import json
import logging
import random
import socket

import pytest

from helpers.images import bomb_png, png
from helpers.serve import LiveServer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("faiss")
pytest.importorskip("open_clip")
httpx = pytest.importorskip("httpx")

LIMIT = 256 * 1024  # max_upload_bytes of the fuzzed server


@pytest.fixture(scope="module")
def server(tiny_encoder, shapes_indexes):
    from augret.serve import Searcher, ServeConfig, create_app

    searcher = Searcher.open(shapes_indexes.dense, encoder=tiny_encoder)
    settings = ServeConfig(max_k=20, max_upload_bytes=LIMIT, max_text_chars=2000)
    with LiveServer(create_app(searcher, settings)) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def no_server_errors(caplog):
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def _is_json_4xx(status: int, content_type: str, body: bytes) -> bool:
    if not 400 <= status < 500 or not content_type.startswith("application/json"):
        return False
    err = json.loads(body)["error"]
    return err["status"] == status and isinstance(err["message"], str) and err["message"]


def _check(r: httpx.Response, status: int | None = None) -> None:
    assert _is_json_4xx(r.status_code, r.headers.get("content-type", ""), r.content), (
        r.status_code, r.text[:300])
    assert "Traceback" not in r.text and "File \"" not in r.text
    if status is not None:
        assert r.status_code == status, r.text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


JSON = {"content-type": "application/json"}
MALFORMED_BODIES = [
    (b"{bad", 400), (b"", 400), (b'{"text": "a"', 400), (b"\xff\xfe\x00garbage", 400),
    (b"[" * 50_000, 400), (b'{"text": "a", "k": ' + b"9" * 5000 + b"}", 400),
    (b"null", 422), (b"[]", 422), (b'"a string"', 422), (b"123", 422),
    (b'{"text": "a", "k": NaN}', 422), (b'{"text": "a", "k": Infinity}', 422),
]
BAD_FIELDS = [
    ({"text": 5}, 422), ({"text": ["a"]}, 422), ({"text": {"a": 1}}, 422), ({}, 422),
    ({"text": "   "}, 422), ({"text": "a", "extra": 1}, 422), ({"text": "a" * 2001}, 422),
    ({"text": "a", "k": "ten"}, 422), ({"text": "a", "k": "3"}, 422),
    ({"text": "a", "k": 1.5}, 422), ({"text": "a", "k": 3.0}, 422),
    ({"text": "a", "k": True}, 422), ({"text": "a", "k": [3]}, 422),
    ({"text": "a", "k": 21}, 422), ({"text": "a", "k": 10**6}, 422),
    ({"text": "a", "k": 10**30}, 422), ({"text": "a", "k": 1e308}, 422),
    ({"text": "a", "k": 0}, 422), ({"text": "a", "k": -1}, 422),
    ({"text": "a", "k": -(10**20)}, 422), ({"text": "a", "task": 7}, 422),
    ({"text": "a", "task": "cirr_task9"}, 422), ({"text": "a", "task": "../../etc"}, 422),
    ({"text": "a", "modality": "video"}, 422), ({"text": "a", "instruction": 3}, 422),
    ({"image": 123}, 422), ({"image": ["x"]}, 422), ({"image": "!!!not base64!!!"}, 422),
    ({"image": "abc"}, 422), ({"image": "data:image/png;base64,%%%%"}, 422),
    ({"image": b64(b"hello, world")}, 415), ({"image": b64(b"%PDF-1.7\n%...")}, 415),
    ({"image": b64(png(fmt="TIFF"))}, 415), ({"image": b64(png()[:70])}, 422),
    ({"image": b64(bomb_png())}, 413), ({"image": b64(bomb_png(9000))}, 413),
    ({"image": "A" * (LIMIT * 2)}, 413),
]


@pytest.mark.parametrize(("body", "status"), MALFORMED_BODIES,
                         ids=[f"body{i}" for i in range(len(MALFORMED_BODIES))])
def test_malformed_json_bodies(client, no_server_errors, body, status):
    _check(client.post("/search", content=body, headers=JSON), status)


@pytest.mark.parametrize(("fields", "status"), BAD_FIELDS,
                         ids=[f"fields{i}" for i in range(len(BAD_FIELDS))])
def test_wrong_fields(client, no_server_errors, fields, status):
    _check(client.post("/search", json=fields), status)


def test_bad_content_types_methods_and_multipart(client, no_server_errors):
    _check(client.post("/search", content=b"text=a", headers={"content-type": "text/plain"}),
           415)
    _check(client.post("/search", content=b"text=a"), 415)
    _check(client.post("/search", data={"text": "a"}), 415)  # form-urlencoded
    _check(client.post("/search", content=b"--x\r\n",
                       headers={"content-type": "multipart/form-data"}), 400)
    _check(client.get("/search"), 405)
    _check(client.put("/healthz"), 405)
    _check(client.post("/search", files=[("image", ("a.png", png(), "image/png")),
                                         ("image", ("b.png", png(), "image/png"))]), 422)
    _check(client.post("/search", files={"text": ("a.png", png(), "image/png")}), 422)
    _check(client.post("/search", data={"text": "a", "nope": "1"},
                       files={"image": ("a.png", png(), "image/png")}), 422)
    _check(client.post("/search", data={"text": "a", "k": "many"},
                       files={"image": ("a.png", png(), "image/png")}), 422)
    _check(client.post("/search", files={"image": ("a.png", b"", "image/png")}), 422)
    _check(client.post("/search", files={"image": ("a.txt", b"just text", "text/plain")}), 415)
    _check(client.post("/search", files={"image": ("b.png", bomb_png(), "image/png")}), 413)
    _check(client.post("/search", files={"image": ("a.png", png()[:70], "image/png")}), 422)


def test_oversized_bodies(client, no_server_errors):
    big = b"\x89PNG" + b"\x00" * (LIMIT * 2)
    _check(client.post("/search", files={"image": ("big.png", big, "image/png")}), 413)
    _check(client.post("/search", json={"text": "a" * (LIMIT * 3)}), 413)

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(64):
            yield b"x" * 16_384

    _check(client.post("/search", content=chunks(), headers=JSON), 413)


def _raw_get(port: int, target: str) -> tuple[int, str, bytes]:
    """Send a request line byte for byte (no client-side path normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                  .encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers.get("content-type", ""), body


TRAVERSAL = [
    "/items/../../../etc/passwd/image", "/items/../../../../etc/passwd",
    "/items/..%2F..%2F..%2Fetc%2Fpasswd/image", "/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image",
    "/items/..%252F..%252Fetc%252Fpasswd/image", "/items/%252e%252e%252fetc/image",
    "/items//etc/passwd/image", "/items/%2Fetc%2Fpasswd/image", "/items/%2fetc%2fpasswd/image",
    "/items/C:%5Cwindows%5Cwin.ini/image", "/items/..%5C..%5Cetc%5Cpasswd/image",
    "/items/9:1%00.png/image", "/items/9:1%0A/image", "/items/%209:1/image",
    "/items/9:1/../../../../../etc/passwd", "/items/./9:1/image",
    "/items/9:999999/image", "/items/0:0/image", "/items/1:1/image", "/items/9:-1/image",
    "/items/2:1/image", "/items/9:1.png/image", "/items/9%3A1%2F..%2F..%2Fx/image",
    "/items/" + "9:" + "1" * 5000 + "/image", "/items/9:1/image/../../../etc/passwd",
    "/static/../app.py", "/static/..%2Fapp.py", "/static/%2e%2e%2fsearcher.py",
    "/static/..%252Fapp.py", "/static/index.html", "/static/", "/static/app.js%00",
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSAL, ids=[f"t{i}" for i in range(len(TRAVERSAL))])
def test_path_traversal_is_impossible(server, no_server_errors, target):
    status, ctype, body = _raw_get(server.port, target)
    assert _is_json_4xx(status, ctype, body), (status, body[:200])
    assert b"root:" not in body


def test_an_indexed_image_is_served_however_its_id_is_spelled(server, client):
    ok = client.get("/items/9:1/image")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    status, ctype, body = _raw_get(server.port, "/items/%39%3A%31/image")
    assert (status, ctype, body) == (200, "image/png", ok.content)


def test_random_requests_never_500(client, no_server_errors):
    rng = random.Random(1234)
    values = [None, "", "a red circle", "x" * 300, 0, 1, 7, -3, 21, 2**63, 1.5, float("nan"),
              True, [], {}, ["a"], {"k": 1}, "cirr_task7", "image", "image,text", "text",
              b64(png()), b64(b"\x00\x01"), "data:image/png;base64," + b64(png()), "🙂" * 10]
    fields = ["text", "image", "task", "instruction", "k", "modality", "bogus"]
    statuses = []
    for i in range(150):
        obj = {f: rng.choice(values) for f in rng.sample(fields, rng.randint(0, 4))}
        if i % 3 == 0:  # a third start from a valid query, so that some succeed
            obj = {**obj, "text": "a red circle", "k": 5}
        body = json.dumps(obj, allow_nan=True).encode()
        if rng.random() < 0.15:  # corrupt some bodies byte-wise
            pos = rng.randrange(max(1, len(body)))
            body = body[:pos] + bytes([rng.randrange(256)]) + body[pos + 1:]
        r = client.post("/search", content=body, headers=JSON)
        statuses.append(r.status_code)
        if r.status_code != 200:
            _check(r)
    for _ in range(30):
        r = client.post("/search", content=rng.randbytes(rng.randint(0, 4000)),
                        headers={"content-type": rng.choice(["application/json",
                                                             "multipart/form-data; boundary=x",
                                                             "image/png"])})
        statuses.append(r.status_code)
        _check(r)
    assert max(statuses) < 500 and statuses.count(200) > 5
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.post("/search", json={"text": "still fine", "k": 3}).status_code == 200
