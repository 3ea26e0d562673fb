"""The main job measures the method: in the shapes world, whose images hold evidence its texts
never state, the reference captioner (a simulated perfect VLM) writes that evidence down, and
a retriever trained and evaluated on the enhanced text beats the raw baseline in every seed,
while the same texts shuffled across items (the negative control) do not.

The default tier runs a reduced copy of ``configs/quickstart.yaml`` (a smaller training
split, local pools, the conditions the assertions need, two seeds); the ``slow`` test runs the
quickstart itself. Both fail if the enhanced text stops reaching training or retrieval: a
retriever trained on raw text and searching enhanced text is ``inference_only``, one searching
raw text is the baseline, and neither clears the margin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from augret.config import load_config
from augret.experiment.config import ExperimentConfig
from augret.experiment.run import run_experiment

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
#: Points (hit@5 × 100, local average) by which fully_enhanced must beat the baseline in
#: every seed. The quickstart's seeds clear it by about three times.
MARGIN = 10.0


def _averages(results: dict, name: str, pool: str = "local") -> dict:
    return {e["seed"]: e[pool] for e in results["conditions"][name]["seeds"]}


def _check_planted_effect(results: dict) -> None:
    base = _averages(results, "baseline")
    full = _averages(results, "fully_enhanced")
    control = _averages(results, "shuffled_control")
    assert set(base) == set(full) == set(control) and len(base) >= 2
    for seed in base:  # the planted effect: a clear margin in every seed
        assert full[seed] - base[seed] >= MARGIN, (seed, base, full)
    # the paired test on seed-averaged scores agrees, and so does the report's wording
    local = results["average_comparisons"]["fully_enhanced"]["local"]
    assert local["effect"] and local["delta"] >= MARGIN
    assert results["answers"][0]["answer"].startswith("Yes:")
    # the negative control does not beat the baseline beyond seed noise
    ctl = results["average_comparisons"]["shuffled_control"]["local"]
    assert not (ctl["effect"] and ctl["delta"] > 0), ctl
    assert ctl["delta"] < MARGIN, ctl
    assert not any(a["answer"].startswith("Warning") for a in results["answers"])


def _reduced(tmp_path: Path) -> Path:
    raw = yaml.safe_load(QUICKSTART.read_text("utf-8"))
    raw["training"]["recipe"] = str(ROOT / "configs" / "train-tiny.yaml")
    raw["training"]["overrides"].update({"max_steps": 24, "save_every": 100, "batch_size": 24})
    raw["enhance"]["store"] = str(tmp_path / "generations.sqlite")
    raw["sample"] = {"seed": 0, "reps": 1, "train_reps": 1}
    raw["pools"] = ["local"]
    raw["seeds"] = [0, 1]
    keep = ("baseline", "fully_enhanced", "shuffled_control")
    raw["conditions"] = [c for c in raw["conditions"] if c["name"] in keep]
    path = tmp_path / "reduced.yaml"
    path.write_text(yaml.safe_dump(raw), "utf-8")
    return path


def test_reduced_quickstart_shows_the_planted_effect(tmp_path: Path) -> None:
    config = _reduced(tmp_path)
    out = tmp_path / "qs"
    run_experiment(load_config(ExperimentConfig, config), out, config_path=config)
    results = json.loads((out / "results.json").read_text("utf-8"))
    _check_planted_effect(results)
    # the enhanced texts that trained fully_enhanced are the reference captioner's
    train_cfg = yaml.safe_load((out / "train/seed-0/q-enhanced_c-enhanced/config.yaml")
                               .read_text("utf-8"))
    assert train_cfg["data"]["view"] == "enhanced"
    assert train_cfg["data"]["train_pool"].startswith(str(out.resolve() / "enhanced"))
    row = json.loads((out / "enhanced/query/test/mbeir_oven_task8_test.jsonl").open().readline())
    assert row["enhancement"]["simulated"] is True
    assert (out / "report.md").read_text("utf-8").startswith("# quickstart\n\n> **Simulated "
                                                             "world")


@pytest.mark.slow
def test_quickstart_shows_the_planted_effect(tmp_path: Path) -> None:
    """The README's main job as a user runs it."""
    out = tmp_path / "qs"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-m", "augret", "experiment", str(QUICKSTART),
                    "--out", str(out)], env=env, cwd=ROOT, check=True)
    results = json.loads((out / "results.json").read_text("utf-8"))
    assert [e["seed"] for e in results["conditions"]["baseline"]["seeds"]] == [0, 1, 2]
    _check_planted_effect(results)
    questions = [a["question"] for a in results["answers"]]
    assert questions[:3] == [
        "Does training on enhanced data beat the raw baseline?",
        "Does inference-only enhancement fall short of training on it?",
        "Which task types gain from query versus corpus enhancement?"]
    cfg = load_config(ExperimentConfig, QUICKSTART)
    assert list(results["conditions"]) == [c.name for c in cfg.conditions]
    assert all(c["table"]["rows"] for c in results["conditions"].values())
    assert (out / "viewer.html").is_file() and (out / "plots").is_dir()
