"""The experiment report on the shapes sample with synthetic run directories: tables, paired
tests against the baseline, bar charts and the two ablation answers.

The charts are also copied to ``$TMPDIR/augret-experiment-report/`` for a look."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from augret.errors import ConfigError, DataNotFoundError
from augret.evaluate.compare import Comparison
from augret.experiment.report import ablation_answer, load_conditions, write_report
from helpers.mbeir_runs import write_condition_runs

PNG = b"\x89PNG\r\n\x1a\n"
KEEP = Path(tempfile.gettempdir()) / "augret-experiment-report"


@pytest.fixture(scope="module")
def runs(sample_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    # corpus enhancement lifts OVEN, query enhancement lifts CIRR; the rest stays put
    return {
        "baseline": write_condition_runs(sample_dir, root / "baseline", {}, default=0.4),
        "inference_only": write_condition_runs(sample_dir, root / "inference_only", {},
                                               default=0.35, seed=7),
        "query_enhanced": write_condition_runs(sample_dir, root / "query_enhanced",
                                               {"cirr_task7": 0.95}, default=0.4),
        "corpus_enhanced": write_condition_runs(sample_dir, root / "corpus_enhanced",
                                                {"oven_task8": 0.95}, default=0.4),
    }


def test_report_tables_tests_plots_and_ablations(sample_dir, runs, tmp_path):
    conditions = {n: {"run_dir": p, "data_dir": sample_dir} for n, p in runs.items()}
    conditions["baseline"]["description"] = "trained on raw data"
    r = write_report(tmp_path / "report", conditions, n_samples=2000)
    data = json.loads(r.results.read_text())
    assert list(data["conditions"]) == list(runs) and data["baseline"] == "baseline"
    table = data["conditions"]["baseline"]["table"]
    assert [row["task"] for row in table["rows"]] == [
        "mscoco_task0", "webqa_task1", "mscoco_task3", "nights_task4", "cirr_task7",
        "oven_task8"]
    assert table["average"]["label"] == "Average (6/16 tasks)"
    assert table["average"]["local_tasks"] == table["average"]["union_tasks"] == 6
    # one comparison per (task, pool) for every non-baseline condition
    assert set(data["comparisons"]) == {"inference_only", "query_enhanced", "corpus_enhanced"}
    corpus = {(c["task"], c["pool"]): c for c in data["comparisons"]["corpus_enhanced"]}
    assert len(corpus) == 12
    assert corpus["oven_task8", "local"]["delta"] > 0.4
    assert corpus["oven_task8", "local"]["p_value"] < 0.01
    assert corpus["cirr_task7", "local"]["delta"] == 0 and corpus["cirr_task7", "local"][
        "p_value"] == 1
    avg = data["average_deltas"]["corpus_enhanced"]["local"]
    assert avg == pytest.approx(
        data["conditions"]["corpus_enhanced"]["table"]["average"]["local"] -
        table["average"]["local"])
    # one run per condition: the ablation answers name the significant rows, but training
    # noise is not measured, so none is called a gain (tests/test_experiment_seeds.py: seeds)
    ab = data["ablations"]
    assert ab["corpus"]["gains"] == [] and ab["corpus"]["seeds"] == 1
    assert {(g["task"], g["pool"]) for g in ab["corpus"]["not_effects"]} == {
        ("oven_task8", "local"), ("oven_task8", "union")}
    assert {(g["task"], g["pool"]) for g in ab["query"]["not_effects"]} == {
        ("cirr_task7", "local"), ("cirr_task7", "union")}
    assert "no difference is called an effect" in ab["corpus"]["answer"]
    assert "0 of the 4 row(s) of those tasks" in ab["corpus"]["answer"]  # OVEN + WebQA rows
    md = r.markdown.read_text()
    for heading in ("## Local pools", "## Union pool", "## Ablation questions",
                    "### Which tasks gain from corpus enhancement?",
                    "### Which tasks gain from query enhancement?",
                    "### corpus_enhanced vs baseline", "## Per-condition tables"):
        assert heading in md
    assert "| 8 | (qi,qt)→(ci,ct) | OVEN | hit@5 |" in md and "(+" in md and "*)" not in md
    assert "trained on raw data" in md
    # charts
    names = sorted(p.name for p in r.plots)
    assert names == ["bars_local.png", "bars_union.png", "delta_local.png", "delta_union.png"]
    for p in r.plots:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000
        assert f"]({p.relative_to(r.out_dir)})" in md
    KEEP.mkdir(parents=True, exist_ok=True)
    for p in r.plots:
        shutil.copy(p, KEEP / p.name)
    shutil.copy(r.markdown, KEEP / "report.md")
    # the inputs are recorded for a re-run
    assert load_conditions(r.out_dir / "conditions.json")["corpus_enhanced"]["run_dir"] == \
        str(runs["corpus_enhanced"])


def test_no_ablation_without_its_condition(sample_dir, runs, tmp_path):
    r = write_report(tmp_path / "r", {"baseline": runs["baseline"],
                                      "inference_only": runs["inference_only"]},
                     data_dir=sample_dir, n_samples=500, plots=False)
    assert r.data["ablations"] == {} and r.plots == []
    assert "Ablation questions" not in r.markdown.read_text()
    assert len(r.data["comparisons"]["inference_only"]) == 12


def test_without_baseline_only_tables(sample_dir, runs, tmp_path):
    r = write_report(tmp_path / "r", {"a": runs["baseline"], "b": runs["query_enhanced"]},
                     baseline="nope", data_dir=sample_dir, plots=False)
    assert r.data["baseline"] is None and r.data["comparisons"] == {}
    assert any("not among the conditions" in n for n in r.data["notes"])
    assert "## Comparisons" not in r.markdown.read_text()


def test_bad_inputs(sample_dir, runs, tmp_path):
    with pytest.raises(ConfigError, match="no data_dir"):
        write_report(tmp_path / "r", {"baseline": runs["baseline"]})
    with pytest.raises(ConfigError, match="no condition"):
        write_report(tmp_path / "r", {})
    with pytest.raises(DataNotFoundError):
        write_report(tmp_path / "r", {"baseline": tmp_path / "absent"}, data_dir=sample_dir)
    with pytest.raises(DataNotFoundError):
        load_conditions(tmp_path / "absent.json")


def _comp(task: str, delta: float, p: float, pool: str = "local",
          seeds: list[float] | None = None) -> dict:
    c = Comparison("hit@5", 0.5, 0.5 + delta, delta, p, 100, "randomization", task, pool)
    return {**c.to_dict(), "seed_deltas": seeds if seeds is not None else [delta] * 3}


def test_ablation_answer_is_cautious():
    comps = [_comp("cirr_task7", 0.2, 0.001), _comp("fashioniq_task7", 0.05, 0.2),
             _comp("oven_task8", -0.1, 0.01), _comp("nights_task4", 0.3, 0.04),
             _comp("mscoco_task3", 0.3, 0.001, seeds=[0.5, -0.1, 0.5])]
    a = ablation_answer("query", comps, baseline="baseline", alpha=0.05)
    assert [g["task"] for g in a["gains"]] == ["cirr_task7", "nights_task4"]
    assert [g["task"] for g in a["losses"]] == ["oven_task8"]
    assert [g["task"] for g in a["not_effects"]] == ["mscoco_task3"]  # a seed disagrees
    assert "has an effect (p < 0.05 on seed-averaged scores and higher in every seed) on 2 of " \
        "5 row(s)" in a["answer"]
    assert "change sign between seeds" in a["answer"]
    assert "1 of the 2 row(s) of those tasks gain" in a["answer"]
    assert "without multiple-comparison correction" in a["answer"]
    none = ablation_answer("corpus", [_comp("cirr_task7", 0.2, 0.3)], baseline="b", alpha=0.05)
    assert none["gains"] == [] and "No row shows an effect" in none["answer"]
    assert "cannot be checked here" in none["answer"]
    # a bare Comparison is one run per condition: never an effect
    one = ablation_answer("query", [Comparison("hit@5", 0.1, 0.9, 0.8, 0.0001, 36,
                                               "randomization", "cirr_task7", "local")],
                          baseline="b", alpha=0.05)
    assert one["gains"] == [] and "training noise is not measured" in one["answer"]


def test_report_cli_reruns_from_conditions_json(sample_dir, runs, tmp_path, capsys):
    from augret.cli.main import main

    out = tmp_path / "rep"
    args = ["report", str(out), "--data", str(sample_dir), "--samples", "300", "--no-plots",
            "-c", f"baseline={runs['baseline']}",
            "-c", f"query_enhanced={runs['query_enhanced']}@{sample_dir}"]
    assert main(args) == 0
    assert "report.md" in capsys.readouterr().out
    (out / "report.md").unlink()
    assert main(["report", str(out), "--no-plots", "--samples", "300"]) == 0
    assert "query_enhanced vs baseline" in (out / "report.md").read_text()
    assert main(["report", str(tmp_path / "empty")]) == 4
    assert main(["report", str(out), "-c", "nonsense"]) == 2


def test_missing_rows_are_noted_not_compared(sample_dir, runs, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(runs["query_enhanced"], partial)
    (partial / "cirr_task7_union.run").unlink()
    r = write_report(tmp_path / "r", {"baseline": runs["baseline"], "query_enhanced": partial},
                     data_dir=sample_dir, n_samples=300, plots=False)
    assert len(r.data["comparisons"]["query_enhanced"]) == 11
    assert any("no run for cirr_task7 (union)" in n for n in r.data["notes"])
    assert [g["pool"] for g in r.data["ablations"]["query"]["not_effects"]] == ["local"]
