"""Experiment conditions that name an MLLM embedder, zero-shot and trained with its own
recipe, beside the CLIP_SF one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from augret.config import load_config
from augret.experiment.config import ExperimentConfig
from augret.experiment.run import run_experiment

pytest.importorskip("torch")
pytest.importorskip("faiss")

ROOT = Path(__file__).resolve().parents[1]


def test_mllm_zero_shot_condition_runs_beside_clip(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text("utf-8"))
    raw.update(tasks=["mscoco_task0", "cirr_task7"], pools=["local"], baseline="zero_shot")
    raw["conditions"] = [
        {"name": "zero_shot", "encoder": "pretrained"},
        {"name": "zero_shot_mllm", "description": "tiny-mllm as released",
         "encoder": "pretrained", "model": "tiny-mllm"},
    ]
    config = tmp_path / "mllm.yaml"
    config.write_text(yaml.safe_dump(raw), "utf-8")
    cfg = load_config(ExperimentConfig, config)
    assert cfg.encoder_key(cfg.condition("zero_shot_mllm")) == "pretrained:tiny-mllm"
    assert cfg.trainings() == {}  # zero-shot: nothing trains, nothing is enhanced
    out = tmp_path / "out"
    stages = run_experiment(cfg, out, config_path=config)
    assert list(stages) == ["data", "condition:zero_shot", "condition:zero_shot_mllm",
                            "report"]
    emb = json.loads((out / "conditions" / "zero_shot_mllm" / "embeddings" / "pools" /
                      "meta.json").read_text())
    assert emb["encoder"]["name"] == "tiny-mllm" and emb["encoder"]["architecture"] == "mllm"
    clip = json.loads((out / "conditions" / "zero_shot" / "embeddings" / "pools" /
                       "meta.json").read_text())
    assert clip["encoder"]["name"] == "tiny" and clip["dim"] != emb["dim"]
    results = json.loads((out / "results.json").read_text())
    system = results["conditions"]["zero_shot_mllm"]["system"]
    assert system.startswith("dense, pretrained tiny-mllm")
    assert "zero_shot_mllm" in (out / "report.md").read_text()


def test_a_condition_trains_an_mllm_embedder_with_its_own_recipe(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text("utf-8"))
    raw.update(tasks=["mscoco_task0"], pools=["local"], baseline=None, seeds=None)
    raw["training"]["overrides"] = {"max_steps": 2, "save_every": 2, "log_every": 1,
                                    "val.file": ""}
    raw["conditions"] = [
        {"name": "trained_mllm", "description": "tiny-mllm trained with LoRA",
         "encoder": "trained", "model": "tiny-mllm",
         "recipe": "configs/train-mllm-tiny.yaml"},
    ]
    config = tmp_path / "mllm.yaml"
    config.write_text(yaml.safe_dump(raw), "utf-8")
    cfg = load_config(ExperimentConfig, config)
    key = "tiny-mllm+train-mllm-tiny_q-raw_c-raw"
    assert cfg.trainings() == {key: ["trained_mllm"]}
    out = tmp_path / "out"
    stages = run_experiment(cfg, out, config_path=ROOT / "configs" / "quickstart.yaml")
    assert list(stages) == ["data", f"train:{key}", "condition:trained_mllm", "report"]
    run_dir = out / "train" / key
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["encoder"] == "tiny-mllm" and saved["lora"]["r"] == 8
    assert saved["max_steps"] == 2  # the experiment's overrides reach every recipe
    assert json.loads((run_dir / "final" / "encoder.json").read_text())["weights"] == "adapter"
    emb = json.loads((out / "conditions" / "trained_mllm" / "embeddings" / "pools" /
                      "meta.json").read_text())
    assert emb["encoder"]["name"] == str(run_dir / "final")
    assert emb["encoder"]["architecture"] == "mllm"
    results = json.loads((out / "results.json").read_text())
    assert results["conditions"]["trained_mllm"]["system"].startswith(f"dense, trained {key}")
    again = run_experiment(cfg, out, config_path=ROOT / "configs" / "quickstart.yaml")
    assert set(again.values()) == {"skipped"}
