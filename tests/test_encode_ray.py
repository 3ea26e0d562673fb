"""``augret embed --engine ray``: byte-identical to the local engine, survives a lost worker
and a killed driver.

One local Ray instance (2 worker CPUs + 1) serves the module; the CLI runs join it by address.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("open_clip")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from augret.encode import (  # noqa: E402
    EmbedConfig,
    embed_dir,
    ray_engine,
)
from augret.encode.shards import ImageGuard  # noqa: E402
from augret.errors import ConfigError, DataNotFoundError  # noqa: E402
from augret.formats.embeddings import read_entry  # noqa: E402
from augret.ray_resources import RayResources  # noqa: E402

# what may differ between engines: the run knobs in the recorded config, and the run record
RUN_KEYS = {"engine", "workers", "ray"}
SHARD = 8


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance for the module (``ray_session`` joins an initialised Ray)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=3, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def data(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample with a missing image, a corrupt image and a row with nothing to embed."""
    src = tmp_path_factory.mktemp("ray") / "data"
    shutil.copytree(sample_dir, src)
    pool = src / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"
    rows = [json.loads(x) for x in pool.read_text().splitlines()]
    rows[3]["img_path"] = "mbeir_images/absent.png"
    rows[13]["img_path"] = "mbeir_images/broken.png"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (src / "mbeir_images/broken.png").write_bytes(b"\x89PNG not really")
    text_pool = src / "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl"
    rows = [json.loads(x) for x in text_pool.read_text().splitlines()]
    rows[2]["txt"] = " "
    text_pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src


def _cfg(**kw) -> EmbedConfig:
    base = {"encoder": "tiny", "workers": 0, "batch_size": 4, "device": "cpu",
            "shard_size": SHARD, "pools": ["local", "union"]}
    return EmbedConfig(**{**base, **kw})


def _ray_cfg(address: str, **kw) -> EmbedConfig:
    return _cfg(engine="ray", ray=RayResources(address=address, workers=2), **kw)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory, tiny_encoder) -> Path:
    """The single-process output."""
    out = tmp_path_factory.mktemp("ref") / "emb"
    meta = embed_dir(data, out, _cfg(), encoder=tiny_encoder, progress=False)
    entries = meta["entries"]
    assert entries["pools/cirr_task7"]["skipped"] == 2
    assert entries["pools/webqa_task1"]["skipped"] == 1
    assert sum(e["shards"] for e in entries.values()) > 20
    return out


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_same_output(got: Path, want: Path) -> dict:
    """Every file byte for byte, except the run knobs in config.yaml / meta.json's config
    and meta.json's run record. Returns the run record of ``got``."""
    a, b = _files(got), _files(want)
    assert sorted(a) == sorted(b)
    for name, path in a.items():
        if name == "config.yaml":
            ca, cb = yaml.safe_load(path.read_text()), yaml.safe_load(b[name].read_text())
            assert {k: v for k, v in ca.items() if k not in RUN_KEYS} == \
                   {k: v for k, v in cb.items() if k not in RUN_KEYS}
        elif name == "meta.json":
            ma, mb = json.loads(path.read_text()), json.loads(b[name].read_text())
            assert list(ma) == list(mb)  # same keys in the same order
            for key in ma:
                if key == "config":
                    assert {k: v for k, v in ma[key].items() if k not in RUN_KEYS} == \
                           {k: v for k, v in mb[key].items() if k not in RUN_KEYS}
                elif key != "run":
                    assert ma[key] == mb[key], key
        else:
            assert path.read_bytes() == b[name].read_bytes(), name
    return json.loads(a["meta.json"].read_text())["run"]


def test_ray_output_is_byte_identical(data: Path, reference: Path, tmp_path: Path,
                                      ray_address: str, tiny_encoder) -> None:
    out = tmp_path / "emb"
    meta = embed_dir(data, out, _ray_cfg(ray_address), encoder=tiny_encoder, progress=True)
    run = _assert_same_output(out, reference)
    assert run["engine"] == "ray" and run["workers"] == 2 and run["gpus"] == 0
    rows = sum(e["rows"] + e["skipped"] for e in meta["entries"].values())
    assert run["stages"]["write"]["rows"] == run["stages"]["embed"]["rows"] == rows
    assert run["stages"]["embed"]["rows_per_s"] > 0
    assert meta["config"]["engine"] == "ray"
    # the engine and its knobs do not change the config hash: local resumes (nothing to do)
    again = embed_dir(data, out, _cfg(), encoder=tiny_encoder, progress=False)
    assert again["config_hash"] == meta["config_hash"]
    assert again["run"]["stages"]["embed"]["rows"] == 0


def test_errors_are_raised_where_a_single_process_raises(data: Path, tmp_path: Path,
                                                         ray_address: str, tiny_encoder) -> None:
    with pytest.raises(ConfigError, match="workers load"):
        embed_dir(data, tmp_path / "x", _ray_cfg(ray_address, encoder="clip_sf-vit-b-32"),
                  encoder=tiny_encoder, progress=False)
    # the bad row (3) is in shard 1 of 2-row shards: shard 0 is written, then the error
    knobs = {"queries": False, "pools": ["local"], "tasks": ["cirr_task7"],
             "on_missing_image": "error", "shard_size": 2}
    with pytest.raises(DataNotFoundError) as local:
        embed_dir(data, tmp_path / "local", _cfg(**knobs), encoder=tiny_encoder, progress=False)
    with pytest.raises(DataNotFoundError) as remote:
        embed_dir(data, tmp_path / "ray", _ray_cfg(ray_address, **knobs), encoder=tiny_encoder,
                  progress=False)
    assert str(remote.value) == str(local.value)
    assert "absent.png" in str(local.value)
    files = sorted(_files(tmp_path / "ray" / "pools"))
    assert files == sorted(_files(tmp_path / "local" / "pools"))
    assert "cirr_task7/shard_00000.ids.txt" in files
    assert "cirr_task7/shard_00001.npy" not in files


def test_a_killed_worker_costs_only_its_shard(data: Path, reference: Path, tmp_path: Path,
                                              ray_address: str, tiny_encoder, monkeypatch) -> None:
    out = tmp_path / "emb"
    trace = tmp_path / "trace.txt"
    marker = tmp_path / "killed"
    victim = 12  # the shard (in write order) whose worker dies

    class DyingActor(ray_engine.EmbedActor):
        """Fault injection: the worker that picks up shard ``victim`` SIGKILLs itself once,
        after the first shard is on disk."""

        def _shard(self, seq, entry, start):
            with trace.open("a") as f:
                f.write(f"start {seq} {os.getpid()}\n")
            if seq == victim:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    deadline = time.time() + 60
                    while not list(out.rglob("shard_*.ids.txt")) and time.time() < deadline:
                        time.sleep(0.05)
                    os.write(fd, str(len(list(out.rglob("shard_*.ids.txt")))).encode())
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
            result = super()._shard(seq, entry, start)
            with trace.open("a") as f:
                f.write(f"done {seq} {os.getpid()}\n")
            return result

    monkeypatch.setattr(ray_engine, "EmbedActor", DyingActor)
    meta = embed_dir(data, out, _ray_cfg(ray_address), encoder=tiny_encoder, progress=False)
    assert int(marker.read_text()) >= 1  # shards were written before the kill
    _assert_same_output(out, reference)
    lines = [line.split() for line in trace.read_text().splitlines()]
    starts = Counter(int(seq) for kind, seq, _ in lines if kind == "start")
    done = Counter(int(seq) for kind, seq, _ in lines if kind == "done")
    shards = sum(e["shards"] for e in meta["entries"].values())
    assert sorted(done) == list(range(shards)) and set(done.values()) == {1}  # no duplicate
    assert starts == done + Counter({victim: 1})  # the lost work: the victim's one shard
    killed = {pid for kind, seq, pid in lines if kind == "start" and int(seq) == victim}
    assert len(killed) == 2  # retried on the restarted (or the other) worker


@pytest.mark.parametrize("seed", range(20))
def test_image_guard_merged_per_shard_fires_like_one_process(seed: int) -> None:
    """The first-50-images guard, counted per shard on workers and merged in shard order,
    raises at the same row with the same message as one guard seeing every row."""
    rnd = random.Random(seed)
    good = rnd.choice([None, rnd.randrange(120)])  # the first image that loads, if any
    rows = [None if i == good or (good is not None and i > good and rnd.random() < 0.5)
            else f"image not found: {i}.png" for i in range(rnd.randrange(30, 130))]
    one = ImageGuard("root")
    try:
        for error in rows:
            one.see(error)
        want = None
    except DataNotFoundError as exc:
        want = str(exc)
    merged = ImageGuard("root")
    cuts = sorted({0, len(rows), *rnd.sample(range(len(rows)), 4)})
    got = None
    try:
        for a, b in pairwise(cuts):
            shard = ImageGuard("root", strict=False)
            for error in rows[a:b]:
                shard.see(error)
            merged.merge(shard)
    except DataNotFoundError as exc:
        got = str(exc)
    assert got == want
    if want is None:
        assert (merged.rows, merged.failures) == (one.rows, one.failures)


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    """Complete shards (their ids file exists): inode and mtime of the npy and ids files."""
    snap = {}
    for ids in out.rglob("shard_*.ids.txt"):
        for p in (ids, ids.with_name(ids.name.replace(".ids.txt", ".npy"))):
            st = p.stat()
            snap[str(p.relative_to(out))] = (st.st_ino, st.st_mtime_ns)
    return snap


@pytest.mark.slow
def test_a_killed_driver_resumes(data: Path, reference: Path, tmp_path: Path,
                                 ray_address: str) -> None:
    out = tmp_path / "emb"
    cmd = [sys.executable, "-m", "augret", "embed", str(data), "--out", str(out),
           "--encoder", "tiny", "--device", "cpu", "--batch-size", "4",
           "--shard-size", str(SHARD), "--pools", "local,union", "--engine", "ray",
           "--workers", "2", "--address", ray_address, "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while len(list(out.rglob("shard_*.ids.txt"))) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no shard written in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = _snapshot(out)
    entries = len(json.loads((reference / "meta.json").read_text())["entries"])
    assert before and len(list(out.rglob("entry.json"))) < entries  # killed mid-run
    # what a kill in the middle of a write leaves (here by chance, so made sure of)
    (out / ".meta.json.killed.tmp").write_text("{")
    first = next(out.rglob("shard_00000.ids.txt")).parent
    (first / ".entry.json.killed.tmp").write_text("{")
    if (first / "entry.json").exists():  # killed between entry.json and its clean-up
        (first / "shard_00000.stats.json").write_text("{}")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _snapshot(out)
    assert {k: after[k] for k in before} == before  # shards of the killed run not redone
    run = _assert_same_output(out, reference)
    total = sum(e["rows"] + e["skipped"] for e in
                json.loads((out / "meta.json").read_text())["entries"].values())
    assert 0 < run["stages"]["write"]["rows"] < total  # the rerun embedded only the rest
    ids, _ = read_entry(out / "pools/cirr_task7")
    assert len(ids) == len(set(ids)) == 34
