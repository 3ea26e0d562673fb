"""The enhancement runner end to end with real backends and the tiny VLM.

The tiny preset has random weights: its text is meaningless, but every code path is real
(chat template, processor, generate, store, output files).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from augret.cli.main import main
from augret.data import MBEIRDir, iter_candidates, iter_queries
from augret.enhance import EnhanceConfig, enhance

TINY = {"backend": "transformers", "model": "tiny", "query_tokens": 12, "candidate_tokens": 16,
        "batch_size": 8}
ENHANCED = [
    "query/test/mbeir_mscoco_task3_test.jsonl",
    "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl",
]


def _files(root: Path) -> dict[str, bytes]:
    return {f: (root / f).read_bytes() for f in ENHANCED}


def test_cli_on_real_mini_mscoco(shared_data: Path, tmp_path: Path, capsys) -> None:
    """Default settings: the tiny VLM rambles past the word limits, and nothing fails."""
    data = shared_data / "mbeir-mini-mscoco"
    args = ["enhance", str(data), "--out", str(tmp_path / "out"), "--split", "test",
            "--side", "both", "--backend", "transformers", "--model", "tiny",
            "--store", str(tmp_path / "store.sqlite"), "--no-progress", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    run = report["last_run"]
    assert run["failed"] == 0 and run["truncated"] > 0 and run["attempts"] == 42
    files = report["files"]
    # 21 image queries captioned; 105 text queries and 105 text candidates pass through;
    # 21 image candidates captioned
    assert files["query/test/mbeir_mscoco_task3_test.jsonl"]["generated"] == 21
    assert files["query/test/mbeir_mscoco_task0_test.jsonl"]["passed_through"] == 105
    assert files["cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl"]["generated"] == 21
    assert files["cand_pool/local/mbeir_mscoco_task3_test_cand_pool.jsonl"]["passed_through"] == 105
    for c in files.values():
        assert c["total"] == c["generated"] + c["cached"] + c["passed_through"] + c["failed"]
    out = MBEIRDir(tmp_path / "out")
    assert [t.task.name for t in out.tasks()] == ["mscoco_task0", "mscoco_task3"]
    queries = list(iter_queries(out.tasks()[1].queries))
    assert all(q.query_txt and q.extra["enhancement"]["model"] == "tiny-qwen2-vl" for q in queries)
    assert all(out.resolve_image(q.query_img_path).is_file() for q in queries)
    first = (tmp_path / "out" / ENHANCED[0]).read_bytes()
    # the same command again generates nothing and writes the same bytes
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["last_run"]["generated"] == 0
    assert (tmp_path / "out" / ENHANCED[0]).read_bytes() == first


def test_tiny_runs_are_reproducible_across_stores(sample_dir: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        cfg = EnhanceConfig(**TINY, files="*mscoco*", store=tmp_path / f"{name}.sqlite")
        enhance(sample_dir, tmp_path / name, cfg, progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_openai_backend_through_a_real_server(sample_dir: Path, tmp_path: Path) -> None:
    from augret.enhance.backends import get_backend
    from helpers.openai_server import OpenAICompatServer

    local = get_backend("transformers", "tiny")
    try:
        cfg = EnhanceConfig(**TINY, files="*mscoco_task3*", side="queries",
                            store=tmp_path / "t.sqlite")
        enhance(sample_dir, tmp_path / "direct", cfg, backend=local, progress=False)
        with OpenAICompatServer(local, model_name="tiny") as server:
            server.faults.push("500", "close", "malformed")  # transient faults, retried
            cfg = EnhanceConfig(**{**TINY, "backend": "openai"}, files="*mscoco_task3*",
                                side="queries", base_url=server.base_url,
                                backend_options={"backoff_base": 0.01, "timeout": 60},
                                store=tmp_path / "o.sqlite")
            report = enhance(sample_dir, tmp_path / "served", cfg, progress=False)
    finally:
        local.close()
    counts = report["files"]["query/test/mbeir_mscoco_task3_test.jsonl"]
    assert counts["generated"] == 36 and counts["failed"] == 0
    a = [json.loads(x) for x in (tmp_path / "direct" / ENHANCED[0]).read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "served" / ENHANCED[0]).read_text().splitlines()]
    assert [x["query_txt"] for x in a] == [x["query_txt"] for x in b]


def _store_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_kill_9_then_resume_equals_an_uninterrupted_run(sample_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "augret", "enhance", str(sample_dir), "--side", "candidates",
           "--backend", "transformers", "--model", "tiny", "--candidate-tokens", "16",
           "--batch-size", "4", "--files", "*nights*", "--no-progress", "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    store = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "resumed"), "--store", str(store)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _store_rows(store) < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _store_rows(store)
    resumed = subprocess.run([*cmd, "--out", str(tmp_path / "resumed"), "--store", str(store)],
                             env=env, capture_output=True, text=True, check=True)
    report = json.loads(resumed.stdout)
    run = report["last_run"]
    assert run["cached"] >= done_before > 0  # finished work was not redone
    assert run["generated"] + run["cached"] + run["passed_through"] + run["failed"] == run["total"]
    clean = subprocess.run([*cmd, "--out", str(tmp_path / "clean"),
                            "--store", str(tmp_path / "clean.sqlite")],
                           env=env, capture_output=True, text=True, check=True)
    assert json.loads(clean.stdout)["last_run"]["generated"] == run["generated"] + run["cached"]
    for pool in sorted((sample_dir / "cand_pool/local").glob("*nights*.jsonl")):
        rel = pool.relative_to(sample_dir)
        a = (tmp_path / "resumed" / rel).read_bytes()
        assert a == (tmp_path / "clean" / rel).read_bytes()
        ids = [c.did for c in iter_candidates(tmp_path / "resumed" / rel)]
        assert ids == [c.did for c in iter_candidates(pool)]  # no loss, no duplicates
