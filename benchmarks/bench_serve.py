"""Search service: latency and throughput of ``POST /search`` under concurrent clients.

Starts the real app with uvicorn on loopback (or targets ``--url``) and runs ``--clients``
threads, each with its own keep-alive connection, for ``--seconds``, cycling through a mix of
text, base64-image, multipart-image and task-instructed queries. Without ``--index`` it
renders the shapes sample and indexes it with the tiny encoder (hybrid: dense + BM25).

    .venv/bin/python benchmarks/bench_serve.py --clients 8 --seconds 20
    .venv/bin/python benchmarks/bench_serve.py --index runs/out/index/dense \\
        --bm25 runs/out/index/bm25 --device cuda --clients 32
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] if ordered else float("nan")


def shapes_index(root: Path) -> tuple[Path, Path, Path]:
    """Render the shapes sample and build tiny-encoder dense and BM25 indexes."""
    from augret.data.sample import write_sample
    from augret.encode import EmbedConfig, embed_dir
    from augret.index import BM25Config, build_indexes

    data = root / "shapes"
    write_sample(data)
    embed_dir(data, root / "emb", EmbedConfig(encoder="tiny", pools=["local", "union"],
                                              workers=0), progress=False)
    build_indexes(root / "emb", root / "dense", progress=False)
    build_indexes(data, root / "bm25", BM25Config(), progress=False)
    return data, root / "dense", root / "bm25"


def payloads(image: bytes, mix: str) -> dict[str, dict[str, Any]]:
    b64 = base64.b64encode(image).decode()
    all_ = {
        "text": {"json": {"text": "a small red circle on a white background", "k": 10}},
        "text+task": {"json": {"text": "Which shape has three sides?", "task": "webqa_task1",
                               "k": 10}},
        "image-b64": {"json": {"image": b64, "k": 10}},
        "image+text-multipart": {"files": {"image": ("q.png", image, "image/png")},
                                 "data": {"text": "Make it blue.", "task": "cirr_task7",
                                          "k": "10"}},
    }
    if mix == "text":
        return {k: v for k, v in all_.items() if k.startswith("text")}
    if mix == "image":
        return {k: v for k, v in all_.items() if k.startswith("image")}
    return all_


def run_load(url: str, requests: dict[str, dict[str, Any]], clients: int, seconds: float,
             api_key: str | None) -> tuple[dict[str, list[float]], list[str], float]:
    names = list(requests)
    latencies: dict[str, list[float]] = {n: [] for n in names}
    errors: list[str] = []
    lock = threading.Lock()
    headers = {"X-API-Key": api_key} if api_key else {}
    deadline = time.perf_counter() + seconds

    def client(n: int) -> None:
        mine: dict[str, list[float]] = {name: [] for name in names}
        with httpx.Client(base_url=url, timeout=120, headers=headers) as c:
            i = n
            while time.perf_counter() < deadline:
                name = names[i % len(names)]
                t0 = time.perf_counter()
                try:
                    r = c.post("/search", **requests[name])
                    problem = None if r.status_code == 200 else f"{name}: HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    problem = f"{name}: {exc!r}"
                mine[name].append((time.perf_counter() - t0) * 1000)
                if problem:
                    with lock:
                        errors.append(problem)
                i += 1
        with lock:
            for name, values in mine.items():
                latencies[name].extend(values)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="Benchmark a running server instead.")
    ap.add_argument("--index", type=Path, default=None, help="Index dir (or root) to serve.")
    ap.add_argument("--bm25", type=Path, default=None, help="BM25 index to fuse (hybrid).")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--mix", choices=["mixed", "text", "image"], default="mixed")
    ap.add_argument("--image", type=Path, default=None, help="Query image file.")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = ap.parse_args()
    console = Console(width=120, stderr=args.json)

    server = tmp = None
    image = args.image.read_bytes() if args.image else None
    url = args.url
    if url is None:
        import uvicorn

        from augret.serve import Searcher, ServeConfig, create_app

        if args.index is None:
            tmp = tempfile.TemporaryDirectory(prefix="bench-serve-")
            data, dense, bm25 = shapes_index(Path(tmp.name))
            args.index, args.bm25 = dense, bm25
            image = image or next((data / "mbeir_images").rglob("*.png")).read_bytes()
        searcher = Searcher.open(args.index, bm25_dir=args.bm25, device=args.device)
        app = create_app(searcher, ServeConfig(api_key=args.api_key))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        console.print(f"serving {searcher.describe()} at {url}")
    if image is None:
        ap.error("--url needs --image (the query image to send)")
    requests = payloads(image, args.mix)
    with httpx.Client(base_url=url, timeout=120) as c:  # warm-up, one of each
        for req in requests.values():
            c.post("/search", headers={"X-API-Key": args.api_key} if args.api_key else {},
                   **req)
    latencies, errors, wall = run_load(url, requests, args.clients, args.seconds, args.api_key)
    if server is not None:
        server.should_exit = True
    all_ms = [x for v in latencies.values() for x in v]
    rows = {name: v for name, v in latencies.items()} | {"all": all_ms}
    summary = {name: {"requests": len(v), "p50_ms": round(percentile(v, 50), 2),
                      "p90_ms": round(percentile(v, 90), 2),
                      "p99_ms": round(percentile(v, 99), 2),
                      "max_ms": round(max(v, default=float("nan")), 2)}
               for name, v in rows.items()}
    result = {"clients": args.clients, "seconds": round(wall, 2), "errors": len(errors),
              "first_errors": errors[:5], "rps": round(len(all_ms) / wall, 1),
              "by_query": summary}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        table = Table(title=f"POST /search: {args.clients} clients, {wall:.1f} s, "
                            f"{result['rps']} req/s, {len(errors)} errors")
        for col in ("query", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms"):
            table.add_column(col, justify="left" if col == "query" else "right")
        for name, s in summary.items():
            table.add_row(name, str(s["requests"]), f"{s['p50_ms']:.1f}", f"{s['p90_ms']:.1f}",
                          f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}")
        console.print(table)
        for e in errors[:5]:
            console.print(f"[red]{e}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
