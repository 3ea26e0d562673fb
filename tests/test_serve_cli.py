"""``augret query`` (in process) and ``augret serve`` (a real subprocess on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from augret.cli.main import main

pytest.importorskip("faiss")
pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def idx(shapes_indexes):
    return shapes_indexes


def test_query_command(idx, tmp_path, capsys):
    base = ["query", str(idx.dense), "--bm25", str(idx.bm25), "--device", "cpu"]
    assert main([*base, "--text", "Which emblem did the weavers of Harrow adopt?", "-k",
                 "3"]) == 0
    out = capsys.readouterr().out
    hits = out[out.index("┏"):]  # the results table, after the query line
    assert "searched as" in out and "weavers" in hits and "Harrow" in hits  # its emblem
    assert main([*base, "--text", "a red ring", "--task", "mscoco_task0", "-k", "2",
                     "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["hits"]) == 2 and res["query"]["instruction"]
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"qid": "x", "text": "a blue square"}\n{"qid": "y", "text": "ring"}\n')
    assert main([*base, "--file", str(queries), "--out", str(tmp_path / "r.jsonl"),
                     "--run", str(tmp_path / "r.run"), "-k", "4"]) == 0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2
    assert len((tmp_path / "r.run").read_text().splitlines()) == 8
    capsys.readouterr()
    assert main([*base, "--file", str(queries)]) == 2  # --file needs --out
    assert main([*base]) == 2  # nothing to search
    assert "text or an image" in capsys.readouterr().err
    assert main(["query", str(idx.dense), "--pool", "nope", "--text", "x"]) == 4
    assert main(["query", str(idx.dense), "--enhancer-backend", "openai",
                     "--text", "x"]) == 2


def test_serve_command_in_a_subprocess(idx, tmp_path, free_port):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    port = free_port
    env = {**os.environ, "AUGRET_API_KEY": "k3y", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "augret", "serve", str(idx.dense), "--host", "127.0.0.1",
         "--port", str(port), "--device", "cpu", "--max-k", "20", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                health = httpx.get(url + "/healthz", timeout=2).json()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"augret serve did not start:\n{proc.communicate()[0]}")
                time.sleep(0.2)
        assert health["auth"] is True and health["max_k"] == 20 and health["encoder"] == "tiny"
        assert httpx.post(url + "/search", json={"text": "a"}).status_code == 401
        r = httpx.post(url + "/search", json={"text": "a red circle", "k": 20},
                       headers={"X-API-Key": "k3y"})
        assert r.status_code == 200 and len(r.json()["hits"]) == 20
        assert httpx.post(url + "/search", json={"text": "a", "k": 21},
                          headers={"X-API-Key": "k3y"}).status_code == 422
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
