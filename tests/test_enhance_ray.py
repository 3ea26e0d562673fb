"""The ray engine of ``augret enhance`` on a local Ray instance with 2 CPU workers.

Real Ray, real tiny Qwen2-VL in each worker: the output must equal the single-process
runner's byte for byte, a killed worker must cost nothing but time, and a killed driver must
resume from the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from augret.data.sample import write_sample
from augret.enhance import EnhanceConfig, GenerationStore, enhance
from augret.ray_resources import RayResources
from helpers.edge_data import write_edge_dir, write_repeated_images

ray = pytest.importorskip("ray")

REPORT_ONLY = {"enhance_report.json", "enhance_config.yaml"}


def _cfg(store: Path, **kw) -> EnhanceConfig:
    base = dict(model="tiny", query_tokens=12, candidate_tokens=16, batch_size=4, workers=2,
                store=store)
    return EnhanceConfig(**{**base, **kw})


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and rel not in REPORT_ONLY:
            out[rel] = p.read_bytes()
    return out


def _counts(report: dict) -> dict:
    return {f: {k: v for k, v in c.items() if k != "seconds"} for f, c in report["files"].items()}


def _assert_same_output(a: Path, b: Path, ra: dict | None = None, rb: dict | None = None) -> None:
    ta, tb = _tree(a), _tree(b)
    assert sorted(ta) == sorted(tb)
    for rel in ta:
        assert ta[rel] == tb[rel], rel
    if ra is not None and rb is not None:
        assert _counts(ra) == _counts(rb)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray instance (3 CPUs: 2 workers and the read tasks) for the module; its
    workers use the tests' cache, not the user's."""
    cache = str(tmp_path_factory.getbasetemp() / "augret-cache")
    ray.init(num_cpus=3, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"AUGRET_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1",
                                       "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes-ray")
    write_sample(root)
    return root


def test_ray_output_equals_single_process(local_ray, tmp_path: Path) -> None:
    """Bad rows (missing, empty, truncated, bomb, multi-page TIFF, bad JSON) included."""
    data = write_edge_dir(tmp_path / "data")
    local = enhance(data, tmp_path / "local", _cfg(tmp_path / "a.sqlite"), progress=False)
    dist = enhance(data, tmp_path / "ray", _cfg(tmp_path / "b.sqlite", engine="ray",
                                                ray=RayResources(workers=2)), progress=False)
    _assert_same_output(tmp_path / "local", tmp_path / "ray", local, dist)
    assert dist["last_run"]["failed"] >= 6 and dist["last_run"]["generated"] > 0
    engine = dist["engine"]
    assert engine["name"] == "ray" and engine["workers"] == 2
    gen = engine["stages"]["generate"]
    assert gen["rows"] == engine["generations"] and gen["rows_per_s"] > 0
    assert not (tmp_path / "ray" / ".enhance_ray").exists()
    # the store holds exactly what the local run generated: same keys, same texts
    with GenerationStore(tmp_path / "a.sqlite") as sa, GenerationStore(tmp_path / "b.sqlite") as sb:
        assert len(sa) == len(sb) == dist["last_run"]["generated"]
    again = enhance(data, tmp_path / "ray", _cfg(tmp_path / "b.sqlite", engine="ray",
                                                 ray=RayResources(workers=2)), progress=False)
    # a rerun generates nothing; only the rows that failed at the model are retried
    assert again["last_run"]["generated"] == 0
    assert again["engine"]["generations"] < dist["last_run"]["failed"]
    _assert_same_output(tmp_path / "local", tmp_path / "ray")


def _worker_pids() -> set[int]:
    import psutil

    pids = set()
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "MapBatches(_Generator)" in cmd and "MapWorker" in cmd:
            pids.add(p.pid)
    return pids


def test_killed_worker_costs_only_its_batch(local_ray, shapes: Path, tmp_path: Path) -> None:
    local = enhance(shapes, tmp_path / "local", _cfg(tmp_path / "a.sqlite"), progress=False)
    store_path = tmp_path / "b.sqlite"
    killed: dict[str, int] = {}

    def kill_one() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if store_path.is_file():
                with GenerationStore(store_path) as s:
                    done = len(s)
                pids = _worker_pids()
                if done and pids:
                    pid = min(pids)
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, done=done)
                    return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_one, daemon=True)
    watcher.start()
    dist = enhance(shapes, tmp_path / "ray",
                   _cfg(store_path, engine="ray", ray=RayResources(workers=2)), progress=False)
    watcher.join(5)
    assert killed, "no worker was killed"
    assert killed["done"] < dist["last_run"]["generated"]  # it died mid-run
    _assert_same_output(tmp_path / "local", tmp_path / "ray", local, dist)
    with GenerationStore(store_path) as s:
        assert len(s) == dist["last_run"]["generated"] == local["last_run"]["generated"]


def _cli(data: Path, out: Path, store: Path, env: dict) -> list[str]:
    return [sys.executable, "-m", "augret", "enhance", str(data), "--out", str(out),
            "--model", "tiny", "--query-tokens", "12", "--candidate-tokens", "16",
            "--batch-size", "4", "--store", str(store), "--engine", "ray", "--workers", "2",
            "--no-progress", "--json"]


def _kill_ray_processes(marker: str) -> None:
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        if marker in " ".join(p.info["cmdline"] or []):
            p.kill()


def test_killed_driver_resumes(shapes: Path, tmp_path: Path) -> None:
    local = enhance(shapes, tmp_path / "local", _cfg(tmp_path / "a.sqlite"), progress=False)
    store = tmp_path / "b.sqlite"
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    try:
        proc = subprocess.Popen(_cli(shapes, tmp_path / "ray", store, env), env=env,
                                start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        done = 0
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if store.is_file():
                with GenerationStore(store) as s:
                    done = len(s)
                if done >= 8:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        _kill_ray_processes(ray_tmp)
        with GenerationStore(store) as s:
            before = len(s)
        assert before >= 8
        rerun = subprocess.run(_cli(shapes, tmp_path / "ray", store, env), env=env,
                               capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        report = json.loads(rerun.stdout)
    finally:
        _kill_ray_processes(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    total = local["last_run"]["generated"]
    assert report["last_run"]["generated"] == total - before  # nothing finished was redone
    assert report["engine"]["generations"] == total - before
    _assert_same_output(tmp_path / "local", tmp_path / "ray")
    with GenerationStore(store) as s:
        assert len(s) == total


def _fake(store: Path, engine: str = "ray", **options) -> EnhanceConfig:
    return EnhanceConfig(backend="fake", model="fake-vlm", backend_options=options,
                         side="candidates", batch_size=4, store=store, engine=engine,
                         abort_after_failed_batches=0, ray=RayResources(workers=2))


def test_ray_one_attempt_per_key_whatever_its_outcome(local_ray, tmp_path: Path) -> None:
    """150 rows over 30 images: deterministic failures 30, 0, 30 (retry_failed); transient
    ones 30 then 30 — as the local engine counts them, with the same output."""
    data = write_repeated_images(tmp_path / "data")
    det = _fake(tmp_path / "d.sqlite", fail_share=1.0, failure="empty")
    runs = [enhance(data, tmp_path / "det", cfg, progress=False)
            for cfg in (det, det, dataclasses.replace(det, retry_failed=True))]
    assert [r["last_run"]["attempts"] for r in runs] == [30, 0, 30]
    assert [r["engine"]["generations"] for r in runs] == [30, 0, 30]
    assert all(r["last_run"]["failed_by_reason"] == {"empty_output": 150} for r in runs)
    local = enhance(data, tmp_path / "det-local",
                    _fake(tmp_path / "dl.sqlite", "local", fail_share=1.0, failure="empty"),
                    progress=False)
    _assert_same_output(tmp_path / "det-local", tmp_path / "det", local, runs[0])

    transient = _fake(tmp_path / "t.sqlite", fail_share=1.0, failure="error")
    runs = [enhance(data, tmp_path / "tr", transient, progress=False) for _ in range(2)]
    assert [r["last_run"]["attempts"] for r in runs] == [30, 30]
    assert all(r["last_run"]["failed_by_reason"] == {"backend_error": 150} for r in runs)
    with GenerationStore(tmp_path / "t.sqlite") as s:
        assert s.failure_count() == 0 and len(s) == 0
