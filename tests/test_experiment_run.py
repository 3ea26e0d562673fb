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

import yaml

from augret.config import load_config
from augret.experiment.config import PAPER_CONDITIONS, ExperimentConfig
from augret.experiment.run import run_experiment
from augret.experiment.state import STATE_FILE

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SMOKE = ROOT / "configs" / "smoke-tiny-vlm.yaml"


def _small_config(tmp_path: Path, **training: object) -> Path:
    """The quickstart reduced to two conditions, two tasks, local pools, a few steps and one
    training run per condition (``training``: more overrides of the recipe)."""
    raw = yaml.safe_load(QUICKSTART.read_text("utf-8"))
    raw.pop("seeds")
    raw["training"]["recipe"] = str(ROOT / "configs" / "train-tiny.yaml")
    raw["training"]["overrides"].update({"max_steps": 4, "save_every": 2, "batch_size": 16,
                                         **training})
    raw["enhance"].update({"query_tokens": 4, "candidate_tokens": 4,
                           "store": str(tmp_path / "generations.sqlite")})
    raw["tasks"] = ["mscoco_task0", "webqa_task1"]
    raw["pools"] = ["local"]
    raw["conditions"] = [
        {"name": "baseline", "encoder": "trained"},
        {"name": "fully_enhanced", "encoder": "trained", "train_queries": "enhanced",
         "train_corpus": "enhanced", "queries": "enhanced", "corpus": "enhanced"},
    ]
    return _write(tmp_path / "small.yaml", raw)


def _write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw), "utf-8")
    return path


def _metric_lines(run_dir: Path, up_to: int) -> list[str]:
    """``metrics.jsonl`` rows of steps <= ``up_to``, as written."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text("utf-8").splitlines() if path.is_file() else []
    return [line for line in lines if line.strip() and json.loads(line)["step"] <= up_to]


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


def test_experiment_end_to_end_kill_mid_training_and_resume(tmp_path: Path) -> None:
    """SIGKILL while the second training runs, after a checkpoint: the rerun skips what had
    finished, continues that training from its checkpoint (not from step 0) and reports what
    an uninterrupted run reports."""
    from augret.train.checkpoint import latest_checkpoint

    steps = 24  # the window between the first checkpoint and the end of training
    config = _small_config(tmp_path, max_steps=steps, save_every=2, log_every=1)
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
    stage, run_dir = "train:q-enhanced_c-enhanced", out / "train" / "q-enhanced_c-enhanced"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "augret", "experiment",
                             str(config), "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not (run_dir / "checkpoints" / "latest").is_file():
            assert proc.poll() is None, "the experiment ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert _stages(out)[stage]["status"] == "running"
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and not (run_dir / "final").exists()
    at = int(ckpt.name.removeprefix("step_"))
    assert 0 < at < steps, "killed after the training had finished"
    before = _metric_lines(run_dir, at)
    assert [json.loads(line)["step"] for line in before] == list(range(1, at + 1))
    finished = {k for k, v in _stages(out).items() if v["status"] == "done"}
    assert "train:q-raw_c-raw" in finished and "report" not in finished

    outcome = run_experiment(cfg, out, config_path=config)
    assert {k for k, v in outcome.items() if v == "skipped"} == finished
    assert outcome[stage] == "ran"
    entry = _stages(out)[stage]
    assert entry["resumed_from"] == ckpt.name and entry["step"] == steps
    # rows up to the checkpoint are kept as written (a restart from step 0 would rewrite
    # them, with other samples_per_s); the resumed run logged each later step once
    assert _metric_lines(run_dir, at) == before
    logged = [json.loads(line)["step"] for line in _metric_lines(run_dir, steps)
              if "loss" in json.loads(line)]
    assert logged == list(range(1, steps + 1))
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


def test_shipped_configs_load() -> None:
    paper = load_config(ExperimentConfig, ROOT / "configs" / "mbeir-paper.yaml")
    smoke = load_config(ExperimentConfig, SMOKE)
    qs = load_config(ExperimentConfig, QUICKSTART)
    assert str(qs.data_dir) == str(smoke.data_dir) == "sample"
    for cfg in (paper, smoke, qs):
        assert [c.name for c in cfg.conditions][:6] == list(PAPER_CONDITIONS)
    for cfg in (paper, smoke):
        assert {c.retriever for c in cfg.conditions} == {"dense", "bm25", "hybrid"}
        assert "append" in {cfg.enhance_mode(c) for c in cfg.conditions}
    # the smoke run's extras need no training beyond the six paper conditions' four runs
    assert len(smoke.trainings()) == 4 and len(smoke.conditions) == 10 and smoke.seeds is None
    assert smoke.enhance.backend == "transformers" and smoke.enhance.model == "tiny"
    # the main job: the simulated perfect VLM, three seeds, the shuffled control
    assert qs.enhance.backend == "reference" and qs.seeds == [0, 1, 2]
    assert qs.enhance_mode(qs.condition("shuffled_control")) == "shuffled"
    assert len(qs.trainings()) == 5


def test_smoke_config_with_extras_reports_every_condition(tmp_path: Path) -> None:
    """Every condition of configs/smoke-tiny-vlm.yaml (the paper's six and the extras, the
    random tiny VLM) on a smaller sample, two tasks and two training steps; its report opens
    with the banner that its differences are noise."""
    raw = yaml.safe_load(SMOKE.read_text("utf-8"))
    raw["training"]["recipe"] = str(ROOT / "configs" / "train-tiny.yaml")
    raw["training"]["overrides"].update({"max_steps": 2, "save_every": 2, "batch_size": 8})
    raw["enhance"].update({"query_tokens": 4, "candidate_tokens": 4,
                           "store": str(tmp_path / "generations.sqlite")})
    raw["sample"] = {"seed": 1, "reps": 1, "train_reps": 1}
    raw["tasks"] = ["webqa_task1", "oven_task8"]
    raw["pools"] = ["local"]
    config = _write(tmp_path / "qs.yaml", raw)
    cfg = load_config(ExperimentConfig, config)
    out = tmp_path / "qs"
    outcome = run_experiment(cfg, out, config_path=config)
    assert [k for k in outcome if k.startswith("train:")] == [
        "train:q-raw_c-raw", "train:q-enhanced_c-raw", "train:q-raw_c-enhanced",
        "train:q-enhanced_c-enhanced"]
    assert [k for k in outcome if k.startswith("enhance-append:")] == [
        "enhance-append:test-queries", "enhance-append:test-candidates"]
    stages = _stages(out)
    for side in ("queries", "candidates"):  # the append text comes from the store
        run = stages[f"enhance-append:test-{side}"]["last_run"]
        assert run["generated"] == 0 and run["cached"] > 0

    results = json.loads((out / "results.json").read_text("utf-8"))
    names = [c.name for c in cfg.conditions]
    assert list(results["conditions"]) == names
    for name, c in results["conditions"].items():
        assert c["table"]["rows"], name
        assert {k.split("/")[0] for k in c["results"]} <= set(raw["tasks"]), name
    assert results["conditions"]["bm25_raw"]["run_dir"].endswith("runs/bm25")
    assert results["conditions"]["hybrid_enhanced"]["run_dir"].endswith("runs/hybrid")
    assert set(results["comparisons"]) == set(names) - {"baseline"}
    assert {a["condition"] for a in results["ablations"].values()} == {
        "corpus_enhanced", "query_enhanced"}
    report = (out / "report.md").read_text("utf-8")
    assert "| bm25_enhanced | bm25; queries enhanced, corpus enhanced |" in report
    assert ("| inference_only_append | dense, trained q-raw_c-raw; queries enhanced-append, "
            "corpus enhanced-append |") in report
    assert (out / "viewer.html").is_file()
    assert report.startswith("# smoke-tiny-vlm\n\n> **Smoke run: the VLM (tiny) is a randomly "
                             "initialised tiny model") and "every difference" in report
    assert "Smoke run" in results["notices"][0]
    pipeline = json.loads((out / "conditions/bm25_raw/pipeline.json").read_text("utf-8"))
    assert pipeline["retriever"] == "bm25"
    assert not any(s.startswith("embed") for s in pipeline["stages"])
    append = [json.loads(line) for line in
              (out / "enhanced-append/query/test/mbeir_oven_task8_test.jsonl").open()]
    ok = [r for r in append if r["enhancement"]["status"] == "ok"]
    assert ok and all(r["enhancement"]["mode"] == "append" for r in ok)
    assert all(r["query_txt"].startswith(r["query_txt_raw"].rstrip(".?")) for r in ok)


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


def test_extras_rerun_only_the_stages_they_change(tmp_path: Path) -> None:
    """bm25 trains nothing; ``tasks`` limits the enhanced files; an append condition adds
    only its enhancement (store hits) and itself; retrieval, BM25 and sample settings re-run
    exactly the stages that read them."""
    raw = yaml.safe_load(_small_config(tmp_path).read_text("utf-8"))
    raw["conditions"] = [
        {"name": "zero_shot", "encoder": "pretrained"},
        {"name": "bm25_enhanced", "retriever": "bm25", "queries": "enhanced",
         "corpus": "enhanced"},
    ]
    raw["baseline"] = "zero_shot"
    config = _write(tmp_path / "x.yaml", raw)
    out = tmp_path / "x"

    def run(**changes: object) -> dict[str, str]:
        raw.update(changes)
        _write(config, raw)
        return run_experiment(load_config(ExperimentConfig, config), out, config_path=config)

    first = run()
    assert list(first) == ["data", "enhance:test-queries", "enhance:test-candidates",
                           "condition:zero_shot", "condition:bm25_enhanced", "report"]
    assert not (out / "train").exists()
    assert json.loads((out / "conditions/bm25_enhanced/pipeline.json").read_text())[
        "retriever"] == "bm25"
    # only the tasks' query files and local pools were enhanced; the rest are links
    enhanced = {str(p.relative_to(out / "enhanced")) for p in (out / "enhanced").rglob("*.jsonl")
                if p.is_file() and not p.is_symlink() and p.parent.name != "enhanced"}
    assert enhanced == {"query/test/mbeir_mscoco_task0_test.jsonl",
                        "query/test/mbeir_webqa_task1_test.jsonl",
                        "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl",
                        "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl"}
    assert (out / "enhanced/query/test/mbeir_cirr_task7_test.jsonl").is_symlink()
    assert _stages(out)["enhance:test-queries"]["files"] == [
        "query/test/mbeir_mscoco_task0_test.jsonl", "query/test/mbeir_webqa_task1_test.jsonl"]

    appended = {"name": "bm25_append", "retriever": "bm25", "queries": "enhanced",
                "corpus": "enhanced", "enhance_mode": "append"}
    second = run(conditions=[*raw["conditions"], appended])
    assert {k for k, v in second.items() if v == "ran"} == {
        "enhance-append:test-queries", "enhance-append:test-candidates",
        "condition:bm25_append", "report"}
    assert _stages(out)["enhance-append:test-queries"]["last_run"]["generated"] == 0
    assert (out / "enhanced-append/query/test/mbeir_mscoco_task0_test.jsonl").is_file()

    dense_only = run(retrieval={**raw["retrieval"], "batch_size": 32})
    assert {k for k, v in dense_only.items() if v == "ran"} == {"condition:zero_shot",
                                                               "report"}
    bm25_only = run(retrieval={**raw["retrieval"], "bm25": {"k1": 1.2}})
    assert {k for k, v in bm25_only.items() if v == "ran"} == {
        "condition:bm25_enhanced", "condition:bm25_append", "report"}

    narrowed = run(tasks=["webqa_task1"])
    assert narrowed["data"] == "skipped" and narrowed["enhance:test-queries"] == "ran"
    assert _stages(out)["enhance:test-queries"]["files"] == [
        "query/test/mbeir_webqa_task1_test.jsonl"]

    resampled = run(sample={"seed": 7, "train_reps": 1})
    assert set(resampled.values()) == {"ran"}

    # trained on append text: its own training run, on the append directory's files
    trained = {"name": "query_append", "train_queries": "enhanced", "queries": "enhanced",
               "enhance_mode": "append"}
    last = run(conditions=[*raw["conditions"], trained])
    assert {k for k, v in last.items() if v == "ran"} == {
        "enhance-append:train-queries", "train:q-enhanced_c-raw_append",
        "condition:query_append", "report"}
    train_cfg = yaml.safe_load((out / "train/q-enhanced_c-raw_append/config.yaml").read_text())
    assert train_cfg["data"]["train_file"] == str(
        out.resolve() / "enhanced-append/query/union_train/mbeir_union_up_train.jsonl")
    assert train_cfg["data"]["train_pool"].startswith(str(out.resolve() / "data"))


def test_training_under_torchrun_with_two_ranks(tmp_path: Path) -> None:
    """``training.nproc: 2`` trains through ``torchrun`` (gloo on CPU); the rank count is part
    of the training's fingerprint, so changing it retrains."""
    config = _small_config(tmp_path)
    raw = yaml.safe_load(config.read_text("utf-8"))
    raw["conditions"] = raw["conditions"][:1]  # baseline: one training run
    raw["training"]["nproc"] = 2
    config.write_text(yaml.safe_dump(raw), "utf-8")
    out = tmp_path / "ddp"
    ran = run_experiment(load_config(ExperimentConfig, config), out, config_path=config)
    assert ran["train:q-raw_c-raw"] == "ran"
    stage = _stages(out)["train:q-raw_c-raw"]
    assert stage["world_size"] == 2 and stage["step"] == 4
    assert list((out / "train" / "q-raw_c-raw").glob("torchrun-node0.log"))
    assert (out / "report.md").is_file()
    raw["training"]["nproc"] = 1
    config.write_text(yaml.safe_dump(raw), "utf-8")
    again = run_experiment(load_config(ExperimentConfig, config), out, config_path=config)
    assert again["train:q-raw_c-raw"] == "ran" and again["data"] == "skipped"
