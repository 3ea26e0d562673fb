"""Shared set-up of the search-service tests (``test_serve_*``). The shapes indexes and the
tiny encoder are fixtures of ``conftest.py``; image bytes are in ``helpers/images.py``.

* :class:`LiveServer`: a real uvicorn server on a free loopback port, in a thread.
* :func:`run_load`: concurrent clients and their latencies.
"""

from __future__ import annotations

import base64
import math
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any


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
        {"json": {"text": "Which emblem did the weavers of Harrow adopt?",
                  "task": "webqa_task1", "k": 5}},
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
