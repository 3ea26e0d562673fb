"""``torchrun … -m augret train`` in subprocesses (gloo on CPU): one node with 2 processes,
two "nodes" on localhost, resumption after torchrun is killed, elastic restarts, and
:mod:`augret.train.launch`. Every run must match 1 process with the same global batch. The
static rendezvous and the elastic restart are in the slow tier."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from augret.cli.options import parse_sets  # noqa: E402
from augret.config import config_to_dict, load_config  # noqa: E402
from augret.errors import AugretError, BackendError, ConfigError  # noqa: E402
from augret.train import (  # noqa: E402
    TrainConfig,
    TrainingFailed,
    run_torchrun,
    torchrun_command,
    torchrun_env,
    train,
)
from augret.train import launch as launch_mod  # noqa: E402
from augret.train import loop as loop_mod  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "train-tiny.yaml"
STEPS = 24  # every run below: 24 optimizer steps of 16 queries
LOSS_TOL = 2e-4  # as the in-process DDP test; observed differences are ~1e-6
PARAM_TOL = 1e-3  # absolute, on weights of magnitude up to ~3; observed ~2e-4
RUN_TIMEOUT = 300
needs_proc = pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(),
                                reason="finds worker processes through /proc")


def _overrides(data: Path, batch: int, **kw: Any) -> dict[str, Any]:
    return {"data.dir": str(data), "batch_size": batch, "val.file": "", "log_every": 1,
            "device": "cpu", "max_steps": STEPS, "save_every": STEPS, **kw}


@pytest.fixture(scope="module")
def one_process(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: 1 process, 16 queries per step."""
    out = tmp_path_factory.mktemp("one") / "run"
    torch.set_num_threads(1)
    train(load_config(TrainConfig, TINY_YAML,
                      {**_overrides(sample_dir, 16), "output_dir": str(out), "progress": False}))
    return out


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _params(encoder_dir: Path) -> dict[str, Any]:
    return torch.load(encoder_dir / "model.pt", map_location="cpu", weights_only=True)["model"]


def _assert_matches(run: Path, ref: Path) -> None:
    """Same loss curve (every step, once) and the same final weights as the reference."""
    got, want = _rows(run), _rows(ref)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))  # rank 0 wrote, once
    for g, w in zip(got, want, strict=True):
        assert g["loss"] == pytest.approx(w["loss"], abs=LOSS_TOL), (g, w)
    a, b = _params(run / "final"), _params(ref / "final")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=PARAM_TOL, rtol=0, msg=key)
    ckpt = run / "checkpoints" / f"step_{STEPS:07d}"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "config.yaml", "encoder.json", "model.pt", "rng_rank0.pt", "rng_rank1.pt", "trainer.pt"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == STEPS and summary["world"] == 2


def _squeeze(text: str) -> str:
    """Without whitespace: log lines are wrapped to the console's width."""
    return "".join(text.split())


def _workers(out: Path) -> list[int]:
    """Live ``augret train`` worker processes (not torchrun itself) writing into ``out``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and str(out).encode() in argv and b"augret" in argv \
                and b"torch.distributed.run" not in argv:
            pids.append(int(proc.name))
    return pids


def _wait_for(cond: Any, what: str, timeout: float = RUN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)


def _torchrun() -> list[str]:
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "torch.distributed.run"]


# ---- the command line --------------------------------------------------------------------

def test_torchrun_command_forms(tmp_path: Path) -> None:
    out = tmp_path / "run"
    py = sys.executable
    assert torchrun_command("c.yaml", out, nproc=8) == [
        py, "-m", "torch.distributed.run", "--nproc_per_node", "8", "--standalone",
        "-m", "augret", "train", "c.yaml", "--out", str(out), "--no-progress"]
    c10d = torchrun_command("c.yaml", out, nproc=4, nnodes=2, node_rank=1,
                            rdzv_endpoint="node0:29400", rdzv_id="job7", resume=True,
                            max_restarts=3, overrides=["optim.lr=1e-4"])
    assert c10d[3:15] == ["--nproc_per_node", "4", "--nnodes", "2", "--rdzv_backend", "c10d",
                          "--rdzv_endpoint", "node0:29400", "--rdzv_id", "job7",
                          "--max_restarts", "3"]
    assert "--node_rank" not in c10d  # c10d ranks nodes as they join
    assert c10d[-4:] == ["--resume", "--no-progress", "--set", "optim.lr=1e-4"]
    static = torchrun_command("c.yaml", out, nproc="gpu", nnodes=2, node_rank=1,
                              rdzv_backend="static", rdzv_endpoint="10.0.0.1:29500",
                              progress=True)
    assert static[3:13] == ["--nproc_per_node", "gpu", "--nnodes", "2", "--node_rank", "1",
                            "--master_addr", "10.0.0.1", "--master_port", "29500"]
    assert "--no-progress" not in static
    # nodes of one job agree on the default rendezvous id
    ids = {torchrun_command("c.yaml", out, nnodes=2, node_rank=r, rdzv_endpoint="h:1")[12]
           for r in (0, 1)}
    assert len(ids) == 1 and ids.pop().startswith("augret-")
    for bad in ({"nnodes": 2}, {"nproc": 0}, {"nproc": "many"}, {"node_rank": 1},
                {"nnodes": 2, "rdzv_endpoint": "node0"},
                {"nnodes": 2, "rdzv_endpoint": "node0:99999", "rdzv_backend": "static"},
                {"rdzv_backend": "etcd", "rdzv_endpoint": "h:1"}, {"max_restarts": -1},
                {"overrides": ["lr"]}, {"overrides": "lr=1"},
                {"overrides": {"output_dir": str(tmp_path / "elsewhere")}}):
        with pytest.raises(ConfigError):
            torchrun_command("c.yaml", out, **bad)


def test_overrides_reach_the_config_as_given(tmp_path: Path) -> None:
    """Values survive the trip through ``--set`` (YAML) with their types."""
    out = tmp_path / "run"
    overrides = {"data.dir": tmp_path / "my data", "data.train_file": "true",
                 "encoder": "1e-5", "optim": {"lr": 3e-4, "betas": (0.8, 0.9)},
                 "gather": False, "data.max_examples": 12, "data.train_pool": "a.jsonl,b.jsonl",
                 "seed": None, "val.file": "", "output_dir": str(out)}
    cmd = torchrun_command(TINY_YAML, out, overrides=overrides)
    sets = tuple(cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set")
    assert len(sets) == 9  # output_dir is --out, seed=None is "not given"
    via_cli = load_config(TrainConfig, TINY_YAML, {"output_dir": str(out)},
                          sets=parse_sets(sets))
    direct = load_config(TrainConfig, TINY_YAML, overrides)
    assert config_to_dict(via_cli) == config_to_dict(direct)
    assert direct.data.train_file == "true" and direct.encoder == "1e-5"
    assert direct.optim.betas == (0.8, 0.9) and direct.seed == 2023


def test_env_and_summary_file_name() -> None:
    env = torchrun_env({"CUDA_VISIBLE_DEVICES": "0,1"})
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == os.environ.get(
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    assert torchrun_env({"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "0"})[
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "0"
    assert launch_mod.SUMMARY_FILE == loop_mod.SUMMARY_FILE


# ---- real runs ---------------------------------------------------------------------------

def test_torchrun_cli_two_processes_match_one_process(sample_dir: Path, tmp_path: Path,
                                                      one_process: Path) -> None:
    """``torchrun --standalone --nproc_per_node 2 -m augret train`` = 1 process, 2 × 8 = 16."""
    out = tmp_path / "two"
    sets = [f"{k}={v}" for k, v in _overrides(sample_dir, 8).items()]
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "augret", "train",
           str(TINY_YAML), "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count(f"trained {STEPS} steps") == 1, res.stdout  # rank 0 reports
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "config.yaml", "final", "metrics.jsonl", "summary.json"]
    _assert_matches(out, one_process)


@pytest.mark.parametrize("rdzv", ["c10d", pytest.param("static", marks=pytest.mark.slow)])
def test_two_nodes_on_localhost_match_one_process(sample_dir: Path, tmp_path: Path,
                                                  one_process: Path, rdzv: str,
                                                  free_port: int) -> None:
    """Two torchrun invocations (``--nnodes 2 --nproc_per_node 1``), as two machines would."""
    out = tmp_path / "nodes"
    endpoint = f"127.0.0.1:{free_port}"
    results: dict[int, Any] = {}

    def node(rank: int) -> None:
        try:
            results[rank] = run_torchrun(
                TINY_YAML, out, nproc=1, nnodes=2, node_rank=rank, rdzv_endpoint=endpoint,
                rdzv_backend=rdzv, overrides=_overrides(sample_dir, 8), timeout=RUN_TIMEOUT,
                cwd=REPO)
        except BaseException as exc:  # reported below
            results[rank] = exc

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rank in (0, 1):
        assert isinstance(results[rank], dict), results[rank]
        assert results[rank]["step"] == STEPS
        assert results[rank]["log"] == str(out / f"torchrun-node{rank}.log")
    logs = [(out / f"torchrun-node{r}.log").read_text() for r in (0, 1)]
    assert sum(x.count(f"trained {STEPS} steps") for x in logs) == 1, logs
    if rdzv == "static":  # a fixed node rank: node 0 holds rank 0
        assert f"trained {STEPS} steps" in logs[0]
    _assert_matches(out, one_process)


@needs_proc
def test_resume_after_torchrun_is_killed(sample_dir: Path, tmp_path: Path,
                                         one_process: Path) -> None:
    """SIGKILL torchrun's process group once a checkpoint exists: the workers stop too, and
    ``--resume`` continues the curve from that checkpoint to the reference's end."""
    out = tmp_path / "run"
    launch = {"nproc": 2, "overrides": _overrides(sample_dir, 8, save_every=4)}
    proc = subprocess.Popen(torchrun_command(TINY_YAML, out, **launch), cwd=REPO,
                            env=torchrun_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: (out / "checkpoints" / "latest").is_file() or proc.poll() is not None,
                  "the first checkpoint")
        _kill_group(proc)
        assert proc.returncode == -signal.SIGKILL  # it had not finished
        _wait_for(lambda: not _workers(out), "the workers to exit", timeout=30)
    finally:
        _kill_group(proc)
        for pid in _workers(out):
            os.kill(pid, signal.SIGKILL)
    assert not (out / "final").exists()
    ckpt = int((out / "checkpoints" / "latest").read_text().strip().removeprefix("step_"))
    assert 4 <= ckpt < STEPS and ckpt % 4 == 0
    before = {r["step"]: r for r in _rows(out)}
    assert before and min(before) == 1  # the killed run had logged up to here
    summary = run_torchrun(TINY_YAML, out, resume=True, timeout=RUN_TIMEOUT, cwd=REPO, **launch)
    assert summary["step"] == STEPS
    rows = _rows(out)
    assert rows[:ckpt] == [before[s] for s in range(1, ckpt + 1)]  # kept as they were
    said = _squeeze((out / "torchrun-node0.log").read_text())
    assert _squeeze(f"resumed from {out / 'checkpoints' / f'step_{ckpt:07d}'}") in said
    _assert_matches(out, one_process)


@pytest.mark.slow
@needs_proc
def test_elastic_restart_continues_from_the_checkpoint(sample_dir: Path, tmp_path: Path,
                                                       one_process: Path) -> None:
    """A worker dies: ``--max_restarts 1`` restarts the group, which resumes by itself."""
    out = tmp_path / "run"
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = run_torchrun(
                TINY_YAML, out, nproc=2, max_restarts=1, timeout=RUN_TIMEOUT, cwd=REPO,
                overrides=_overrides(sample_dir, 8, save_every=4))
        except BaseException as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_for(lambda: (out / "checkpoints" / "latest").is_file() or not thread.is_alive(),
                  "the first checkpoint")
        victims = _workers(out)
        assert len(victims) == 2, (victims, result)
        os.kill(victims[0], signal.SIGKILL)
    finally:
        thread.join(RUN_TIMEOUT + 60)
    assert "summary" in result, result.get("error")
    assert result["summary"]["step"] == STEPS
    said = _squeeze((out / "torchrun-node0.log").read_text())
    assert _squeeze(f"torchrun restart 1: continuing from {out / 'checkpoints'}") in said
    _assert_matches(out, one_process)


def test_run_torchrun_failure_raises_with_the_log_tail(sample_dir: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "bad"
    with pytest.raises(TrainingFailed) as info:
        run_torchrun(TINY_YAML, out, nproc=1, timeout=RUN_TIMEOUT, cwd=REPO,
                     overrides={**_overrides(sample_dir, 8), "optim.learning_rate": 1})
    err = info.value
    assert isinstance(err, BackendError) and isinstance(err, AugretError)
    assert err.returncode not in (0, None)
    assert str(err).startswith("torchrun exited with status")
    assert "unknown key(s) ['learning_rate']" in str(err).splitlines()[0]
    assert err.log_file == out / "torchrun-node0.log" and err.log_file.is_file()
    assert any("unknown key" in line for line in err.tail)
    assert "unknown key" in err.log_file.read_text()
    assert not (out / "summary.json").exists()


@needs_proc
def test_run_torchrun_timeout_stops_everything(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "slow"
    t0 = time.monotonic()
    with pytest.raises(TrainingFailed, match="did not finish within 2 s") as info:
        run_torchrun(TINY_YAML, out, nproc=2, timeout=2, cwd=REPO,
                     overrides=_overrides(sample_dir, 8, max_steps=None))
    assert info.value.returncode is None
    assert time.monotonic() - t0 < 60
    _wait_for(lambda: not _workers(out), "the workers to exit", timeout=30)
    shutil.rmtree(out)


def test_cli_set_is_not_hidden_by_flags_left_out(sample_dir: Path, tmp_path: Path,
                                                  capsys) -> None:
    """``--set data.dir=…`` etc. hold when the flags of the same keys are not given (the
    form :func:`torchrun_command` writes)."""
    from augret.cli.main import main

    out = tmp_path / "run"
    assert main([
        "train", str(TINY_YAML), "--out", str(out), "--no-progress", "--set",
        f"data.dir={sample_dir}", "--set", "max_steps=1", "--set", "batch_size=4", "--set",
        "val.file=", "--set", "device=cpu", "--set", "optim.lr=0.002"]) == 0
    assert "trained 1 steps" in capsys.readouterr().out
    saved = load_config(TrainConfig, out / "config.yaml")
    assert (saved.batch_size, saved.device, saved.optim.lr) == (4, "cpu", 0.002)
    assert saved.data.dir == sample_dir
