"""Shared set-up of the Milvus backend tests (``test_index_milvus*``, ``test_serve_milvus``).

* :class:`LiteServer`: Milvus Lite's own gRPC server (``milvus-lite server``) in a
  subprocess on a loopback port, a real server at a URI that can be killed and restarted.
* :class:`EmbeddedMilvus`: the ``milvus`` PyPI package's Milvus standalone server (etcd,
  local storage) on loopback.
* :func:`rankings` / :func:`same_ranking`: run files compared query by query, equal scores
  allowed to swap.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def free_port() -> int:  # the conftest fixture's, for use outside a test
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class LiteServer:
    """``milvus-lite server --data-dir DIR --port PORT`` on 127.0.0.1, in a subprocess.

    Args:
        data_dir: The database directory (kept across restarts).
        port: The port (default: a free one).
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir, self.port = Path(data_dir), port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiteServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("milvus-lite server did not start")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is flushed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> LiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class EmbeddedMilvus:
    """The ``milvus`` package's standalone Milvus server on 127.0.0.1.

    Args:
        base_dir: Its binaries, configs, logs and data (kept across restarts).
    """

    def __init__(self, base_dir: Path) -> None:
        from milvus import MilvusServer

        self.server = MilvusServer()
        self.server.set_base_dir(str(base_dir))
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> EmbeddedMilvus:
        # the package moves to the next free port when its own bind check fails, as it does
        # while the last run's connections linger in TIME_WAIT: wait for the port instead
        deadline = time.monotonic() + 180
        while not _bindable(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {self.port} stays busy")
            time.sleep(1)
        self.server.listen_port = self.port
        self.server.start()
        if self.server.listen_port != self.port:
            raise RuntimeError(f"Milvus moved to port {self.server.listen_port}")
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> EmbeddedMilvus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rankings(path: Path) -> dict[str, list[tuple[str, float]]]:
    """``{qid: [(did, score), ...]}`` of a run file, in rank order."""
    out: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        qid, _, did, _, score, *_ = line.split()
        out[qid].append((did, float(score)))
    return dict(out)


def same_ranking(a: list[tuple[str, float]], b: list[tuple[str, float]], *,
                 tol: float = 1e-5) -> bool:
    """Whether two rankings are equal but for ties: the same scores (within ``tol``) at every
    rank, and the same ids in every group of tied scores but the last (ties at the cut-off
    may keep different ids)."""
    if len(a) != len(b) or any(abs(sa - sb) > tol for (_, sa), (_, sb) in zip(a, b,
                                                                               strict=True)):
        return False
    groups: list[tuple[set[str], set[str]]] = []
    first = None
    for (da, sa), (db, _) in zip(a, b, strict=True):
        if first is None or abs(sa - first) > tol:
            groups.append((set(), set()))
            first = sa
        groups[-1][0].add(da)
        groups[-1][1].add(db)
    return all(x == y for x, y in groups[:-1])


def compare_runs(got: dict[Any, Path], want: dict[Any, Path]) -> dict[Any, int]:
    """Queries whose rankings differ beyond ties, per run file key (all zero when equal)."""
    assert set(got) == set(want), (sorted(got), sorted(want))
    out = {}
    for key in want:
        a, b = rankings(got[key]), rankings(want[key])
        assert set(a) == set(b), key
        out[key] = sum(not same_ranking(a[q], b[q]) for q in b)
    return out


def lite_rows_written(db: Path, collection: str) -> int:
    """How many rows were ever inserted into a collection of a Milvus Lite database (its
    sequence counter: one per inserted row, flushed by the build). Milvus Lite overwrites a
    re-inserted primary key, so this is where a second insert of an id shows."""
    return int(json.loads((Path(db) / "collections" / collection / "manifest.json")
                          .read_text())["current_seq"])


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess:
    """``python -m augret ARGS`` with this checkout's sources first on the path."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    full = {**os.environ, **(env or {}),
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "augret", *args], env=full, timeout=timeout,
                          capture_output=True, text=True)
