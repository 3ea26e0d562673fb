"""Shared set-up of the search-service tests (imported by ``test_serve_*``, ``test_searcher``);
it holds no tests itself.

* :func:`shapes_indexes`: the shapes sample embedded with the tiny encoder and indexed
  (dense root and BM25 root), built once per session.
* :class:`LiveServer`: a real uvicorn server on a free loopback port, in a thread.
* :class:`FakeVLM`: a deterministic, call-counting enhancement backend.
* Image bytes: PNGs, a decompression-bomb PNG header, a TIFF.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import socket
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CACHE: dict[str, Any] = {}


@dataclass(frozen=True)
class ShapesIndexes:
    """Where the session's shapes indexes are."""

    data: Path  # the shapes sample
    emb: Path  # embedding directory (queries + pools)
    dense: Path  # dense index root: <pool>/ and union/
    bm25: Path  # BM25 index root


def tiny_encoder() -> Any:
    """The tiny random-init CLIP_SF encoder on CPU (loaded once)."""
    if "encoder" not in _CACHE:
        from augret.encode import load_encoder

        _CACHE["encoder"] = load_encoder("tiny", device="cpu")
    return _CACHE["encoder"]


def shapes_indexes(sample_dir: Path, root: Path) -> ShapesIndexes:
    """Embed and index the shapes sample under ``root`` (once per session)."""
    if "indexes" not in _CACHE:
        from augret.encode import EmbedConfig, embed_dir
        from augret.index import BM25Config, build_indexes

        emb, dense, bm25 = root / "emb", root / "dense", root / "bm25"
        embed_dir(sample_dir, emb, EmbedConfig(encoder="tiny", pools=["local", "union"],
                                               workers=0, device="cpu"),
                  encoder=tiny_encoder(), progress=False)
        build_indexes(emb, dense, progress=False)
        build_indexes(sample_dir, bm25, BM25Config(), progress=False)
        _CACHE["indexes"] = ShapesIndexes(sample_dir, emb, dense, bm25)
    return _CACHE["indexes"]


class LiveServer:
    """Run an ASGI app with uvicorn on ``127.0.0.1`` and a free port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
        # the listening socket says so (proto 0 would leave Nagle on: +40 ms per response)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                    timeout_keep_alive=30))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class FakeVLM:
    """Deterministic words per request (hash of messages and image); counts calls."""

    name = "fake"
    model_id = "fake-vlm"
    revision = None

    def __init__(self, words: int = 5) -> None:
        self.calls: list[Any] = []
        self.words = words

    def generate(self, requests: Sequence[Any], params: Any) -> list[Any]:
        from augret.enhance.backends.base import GenerationResult

        out = []
        for r in requests:
            self.calls.append(r)
            h = hashlib.sha256(json.dumps(r.messages).encode())
            if r.image is not None:
                h.update(r.image.tobytes())
            text = " ".join(f"w{h.hexdigest()[i:i + 4]}" for i in range(0, 4 * self.words, 4))
            out.append(GenerationResult(text, output_tokens=self.words, finish_reason="stop"))
        return out

    def close(self) -> None:
        pass


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30),
        fmt: str = "PNG") -> bytes:
    """A small solid-colour image file."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(side: int = 100_000) -> bytes:
    """A valid PNG header claiming side x side pixels (a decompression bomb), tiny on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def load_mix(image: bytes) -> list[dict[str, Any]]:
    """httpx request kwargs of a realistic mix: texts, base64 and multipart images, tasks."""
    b64 = base64.b64encode(image).decode()
    return [
        {"json": {"text": "a small red circle on a white background", "k": 10}},
        {"json": {"text": "Which shape has three sides?", "task": "webqa_task1", "k": 5}},
        {"json": {"image": b64, "k": 10, "modality": "image"}},
        {"files": {"image": ("q.png", image, "image/png")},
         "data": {"text": "Make it blue.", "task": "cirr_task7", "k": "10"}},
    ]


def run_load(url: str, requests: Sequence[dict[str, Any]], *, clients: int = 8,
             seconds: float = 5.0) -> dict[str, Any]:
    """``clients`` threads, each with its own keep-alive connection, send ``requests`` in turn
    to ``POST {url}/search`` for ``seconds``; latency percentiles in milliseconds."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(n: int) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=url, timeout=60) as c:
            i = n
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = c.post("/search", **requests[i % len(requests)])
                    ok = r.status_code == 200 and r.json()["hits"]
                    problem = None if ok else f"HTTP {r.status_code}: {r.text[:100]}"
                except Exception as exc:  # every failure counts as an error
                    problem = repr(exc)
                mine.append(time.perf_counter() - t0)
                if problem:
                    with lock:
                        errors.append(problem)
                i += 1
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {"clients": clients, "seconds": round(wall, 2), "requests": len(ms),
            "errors": len(errors), "first_errors": errors[:3],
            "rps": round(len(ms) / wall, 1), "p50_ms": round(percentile(ms, 50), 2),
            "p90_ms": round(percentile(ms, 90), 2), "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms, default=float("nan")), 2)}
