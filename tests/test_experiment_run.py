"""``augret experiment``: end to end on CPU, skip-on-rerun, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from augret.config import load_config
from augret.experiment.config import ExperimentConfig
from augret.experiment.run import run_experiment
from augret.experiment.state import STATE_FILE

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _small_config(tmp_path: Path) -> Path:
    """The quickstart reduced to two conditions, two tasks, local pools and a few steps."""
    raw = yaml.safe_load(QUICKSTART.read_text("utf-8"))
    raw["training"]["recipe"] = str(ROOT / "configs" / "train-tiny.yaml")
    raw["training"]["overrides"].update({"max_steps": 4, "save_every": 2, "batch_size": 16})
    raw["enhance"].update({"query_tokens": 4, "candidate_tokens": 4,
                           "store": str(tmp_path / "generations.sqlite")})
    raw["tasks"] = ["mscoco_task0", "webqa_task1"]
    raw["pools"] = ["local"]
    raw["conditions"] = [
        {"name": "baseline", "encoder": "trained"},
        {"name": "fully_enhanced", "encoder": "trained", "train_queries": "enhanced",
         "train_corpus": "enhanced", "queries": "enhanced", "corpus": "enhanced"},
    ]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw), "utf-8")
    return path


def _normalised(path: Path, out: Path) -> str:
    """A report file without its timestamp and with the output directory replaced."""
    text = path.read_text("utf-8").replace(str(out.resolve()), "OUT").replace(str(out), "OUT")
    text = re.sub(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "Generated T", text)
    return re.sub(r'"created": "[^"]*"', '"created": "T"', text)


def _stages(out: Path) -> dict:
    try:
        return json.loads((out / STATE_FILE).read_text("utf-8"))["stages"]
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_experiment_end_to_end_kill_and_resume(tmp_path: Path) -> None:
    config = _small_config(tmp_path)
    cfg = load_config(ExperimentConfig, config)

    ref = tmp_path / "ref"
    outcome = run_experiment(cfg, ref, config_path=config)
    assert set(outcome.values()) == {"ran"}
    for name in ("report.md", "results.json", "conditions.json", "viewer.html",
                 "experiment_config.yaml", "plots/bars_local.png"):
        assert (ref / name).is_file(), name
    assert all(s["status"] == "done" for s in _stages(ref).values())
    assert set(run_experiment(cfg, ref, config_path=config).values()) == {"skipped"}

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "augret.cli.experiment_run_cmd",
                             str(config), "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while _stages(out).get("train:q-raw_c-raw", {}).get("status") != "done":
            assert proc.poll() is None, "the experiment ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    finished = {k for k, v in _stages(out).items() if v["status"] == "done"}
    assert "report" not in finished

    outcome = run_experiment(cfg, out, config_path=config)
    assert {k for k, v in outcome.items() if v == "skipped"} == finished
    for name in ("report.md", "results.json"):
        assert _normalised(out / name, out) == _normalised(ref / name, ref), name


def test_changed_condition_config_reruns_only_downstream(tmp_path: Path) -> None:
    config = _small_config(tmp_path)
    raw = yaml.safe_load(config.read_text("utf-8"))
    raw["conditions"] = [{"name": "zero_shot", "encoder": "pretrained"}]
    raw["baseline"] = None
    config.write_text(yaml.safe_dump(raw), "utf-8")
    out = tmp_path / "zs"
    first = run_experiment(load_config(ExperimentConfig, config), out, config_path=config)
    assert list(first) == ["data", "condition:zero_shot", "report"]
    assert (out / "report.md").is_file() and not (out / "viewer.html").exists()
    raw["retrieval"]["batch_size"] = 32
    config.write_text(yaml.safe_dump(raw), "utf-8")
    second = run_experiment(load_config(ExperimentConfig, config), out, config_path=config)
    assert second == {"data": "skipped", "condition:zero_shot": "ran", "report": "ran"}


def test_paper_config_loads() -> None:
    cfg = load_config(ExperimentConfig, ROOT / "configs" / "mbeir-paper.yaml")
    assert len(cfg.conditions) == 6
    qs = load_config(ExperimentConfig, QUICKSTART)
    assert str(qs.data_dir) == "sample" and len(qs.conditions) == 6


@pytest.mark.slow
def test_quickstart_full(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-m", "augret.cli.experiment_run_cmd", str(QUICKSTART),
                    "--out", str(out)], env=env, cwd=ROOT, check=True)
    results = json.loads((out / "results.json").read_text("utf-8"))
    assert len(results["conditions"]) == 6
    assert (out / "viewer.html").is_file() and (out / "plots").is_dir()


def test_relative_output_dir_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    """The README runs `augret experiment ... --out runs/quickstart`: a relative path."""
    from augret.cli.main import main

    config = _small_config(tmp_path)
    raw = yaml.safe_load(config.read_text("utf-8"))
    raw["conditions"] = raw["conditions"][1:]  # fully_enhanced: trains on enhanced files
    raw["baseline"] = None
    config.write_text(yaml.safe_dump(raw), "utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "experiment", str(config), "--out", "runs/rel", "--no-progress"]) == 0
    assert (tmp_path / "runs/rel/report.md").is_file()
    assert _stages(tmp_path / "runs/rel")["train:q-enhanced_c-enhanced"]["status"] == "done"
