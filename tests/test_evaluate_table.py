"""augret.evaluate.table and rundir: the 16-row M-BEIR table, its formats, UniIR's TSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from augret.data.ids import MBEIR_TEST_TASKS
from augret.errors import ConfigError, DataNotFoundError
from augret.evaluate import EvalResult, evaluate, write_run
from augret.evaluate.rundir import evaluate_run_dir, find_run_files, run_file_name
from augret.evaluate.table import build_table, render, uniir_tsv

# UniIR CLIP_SF, M-BEIR 5.6M union pool, paper Table 2 (docs/mbeir.md), in UniIR's row order.
CLIP_SF_UNION = [42.6, 77.9, 17.8, 84.7, 59.4, 78.8, 42.8, 92.3, 17.9, 32.0, 39.2, 24.0, 24.3,
                 43.9, 60.2, 44.6]


def test_published_clip_sf_average():
    results = {(t.name, "union"): v / 100 for t, v in zip(MBEIR_TEST_TASKS, CLIP_SF_UNION,
                                                          strict=True)}
    table = build_table(results)
    assert [r.task.name for r in table.rows] == [t.name for t in MBEIR_TEST_TASKS]
    assert round(table.average("union"), 1) == 48.9
    assert table.average("local") is None and table.count("union") == 16
    assert table.average_label == "Average"
    md = table.to_markdown()
    assert "| **Average** |" in md and "**48.9**" in md


def test_rows_metrics_and_labels():
    table = build_table({("cirr_task7", "local"): 0.5, ("fashion200k_task0", "union"): 0.25,
                         ("fashion200k_task0", "local"): 0.125})
    assert [r.task.name for r in table.rows] == ["fashion200k_task0", "cirr_task7"]
    assert [r.metric for r in table.rows] == ["hit@10", "hit@5"]
    assert table.average("local") == pytest.approx((12.5 + 50) / 2)
    assert table.average_label == "Average (local 2/16, union 1/16 tasks)"
    two = build_table({("cirr_task7", "local"): 0.5, ("nights_task4", "local"): 0.25})
    assert two.average_label == "Average (2/16 tasks)"
    assert build_table({}).average_label == "Average (0/16 tasks)"


def test_formats():
    results = {("cirr_task7", "local"): 0.43875, ("cirr_task7", "union"): 0.4,
               ("fashioniq_task7", "union"): 0.243}
    table = build_table(results)
    md = table.to_markdown().splitlines()
    assert md[0] == "| # | Task | Dataset | Metric | Local | Union |"
    assert md[2] == "| 7 | (qi,qt)→ci | FashionIQ | hit@10 | – | 24.3 |"
    assert md[3] == "| 7 | (qi,qt)→ci | CIRR | hit@5 | 43.9 | 40.0 |"
    assert "Average (local 1/16, union 2/16 tasks)" in md[4]
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    assert rows[0] == ["name", "paper_task", "task", "dataset", "metric", "local", "union"]
    assert rows[1] == ["fashioniq_task7", "7", "(qi,qt)→ci", "FashionIQ", "hit@10", "", "24.30"]
    assert rows[-1][0] == "average" and rows[-1][5:] == ["43.88", "32.15"]
    data = json.loads(table.to_json())
    assert data["rows"][1]["local"] == pytest.approx(43.875)
    assert data["average"] == {"label": "Average (local 1/16, union 2/16 tasks)",
                               "local": pytest.approx(43.875), "local_tasks": 1,
                               "union": pytest.approx(32.15), "union_tasks": 2}


def test_bad_keys():
    with pytest.raises(ConfigError, match="unknown M-BEIR test task"):
        build_table({("cirr_task9", "local"): 0.1})
    with pytest.raises(ConfigError, match="pool"):
        build_table({("cirr_task7", "global"): 0.1})
    res = evaluate({"q": {"d": 1}}, {"q": {"d": 1.0}}, "hit@1")
    with pytest.raises(ConfigError, match="hit@5"):
        build_table({("cirr_task7", "local"): res})
    with pytest.raises(ConfigError, match="format"):
        render({}, "xlsx")


def _result(ks, hits):
    """A result holding only the hit@k means (all that the TSV reads)."""
    return EvalResult(1000, {f"hit@{k}": h for k, h in zip(ks, hits, strict=True)}, [])


def test_uniir_tsv_layout():
    cirr_local = _result((1, 5, 10), (0.123456, 0.4321, 0.5))
    cirr_union = _result((1, 5, 10), (0.1, 0.2, 0.3))
    fiq = _result((10, 20, 50), (0.2, 0.3, 0.456789))
    text = uniir_tsv({("cirr_task7", "union"): cirr_union, ("cirr_task7", "local"): cirr_local,
                      ("fashioniq_task7", "local"): fiq,
                      ("mscoco_task0", "local"): _result((1, 5, 10), (0.5, 0.6, 0.7))})
    rows = [line.split("\t") for line in text.splitlines()]
    assert rows[0] == ["TaskID", "Task", "Dataset", "Split", "Metric", "CandPool", "Value",
                       "UnionPool", "UnionValue"]
    assert rows[1] == ["0", "text -> image", "mscoco_task0", "test", "Recall@1",
                       "mscoco_task0_test", "0.5", "", ""]
    assert [r[2] for r in rows[1:]] == ["mscoco_task0"] * 3 + ["fashioniq_task7"] * 3 + [
        "cirr_task7"] * 3
    assert rows[4] == ["7", "image,text -> image", "fashioniq_task7", "test", "Recall@10",
                       "fashioniq_task7", "0.2", "", ""]
    assert rows[6][4:] == ["Recall@50", "fashioniq_task7", "0.4568", "", ""]
    assert rows[7] == ["7", "image,text -> image", "cirr_task7", "test", "Recall@1",
                       "cirr_task7", "0.1235", "union", "0.1"]
    assert rows[8][4:] == ["Recall@5", "cirr_task7", "0.4321", "union", "0.2"]
    only_union = uniir_tsv({("cirr_task7", "union"): cirr_union}).splitlines()[1].split("\t")
    assert only_union[5:] == ["", "", "union", "0.1"]
    with pytest.raises(ConfigError, match="hit@20"):
        uniir_tsv({("fashioniq_task7", "local"): cirr_local})


# ---- run directories ----------------------------------------------------------------------
@pytest.fixture
def mbeir_dirs(tmp_path):
    data = tmp_path / "mbeir"
    (data / "qrels" / "test").mkdir(parents=True)
    qrels = "".join(f"8:{i} 0 8:{100 + i} 1 7\n" for i in range(1, 11))
    (data / "qrels" / "test" / "mbeir_cirr_task7_test_qrels.txt").write_text(qrels)
    (data / "qrels" / "test" / "mbeir_nights_task4_test_qrels.txt").write_text(
        "4:1 0 4:9 1 4\n")
    runs = tmp_path / "runs"
    (runs / "run_files").mkdir(parents=True)
    hit_all = {f"8:{i}": {"8:1": 0.9, f"8:{100 + i}": 0.8} for i in range(1, 11)}
    hit_half = {f"8:{i}": {f"8:{100 + i}": 0.8} for i in range(1, 6)}
    write_run(runs / run_file_name("cirr_task7", "local"), hit_all)
    write_run(runs / "run_files" / "mbeir_cirr_task7_union_pool_test_k10_run.txt", hit_half,
              task_ids=7)
    write_run(runs / "nights_task4_local.json", {"4:1": {"4:9": 1.0}})
    write_run(runs / "oven_task6_local.run", {"5:1": {"5:9": 1.0}})  # no qrels: skipped
    (runs / "notes.txt").write_text("not a run")
    return data, runs


def test_find_and_evaluate_run_dir(mbeir_dirs):
    data, runs = mbeir_dirs
    assert list(find_run_files(runs)) == [  # UniIR's row order
        ("nights_task4", "local"), ("oven_task6", "local"), ("cirr_task7", "local"),
        ("cirr_task7", "union")]
    results = evaluate_run_dir(data, runs)
    assert set(results) == {("nights_task4", "local"), ("cirr_task7", "local"),
                            ("cirr_task7", "union")}
    assert results["cirr_task7", "local"].metrics == {"hit@1": 0.0, "hit@5": 1.0, "hit@10": 1.0}
    assert results["cirr_task7", "union"].metrics["hit@1"] == 0.5
    table = build_table(results)
    assert table.average_label == "Average (local 2/16, union 1/16 tasks)"
    assert "Recall@1\tcirr_task7\t0.0\tunion\t0.5\n" in render(results, "uniir-tsv")


def test_run_dir_errors(mbeir_dirs, tmp_path):
    data, runs = mbeir_dirs
    write_run(runs / "cirr_task7_local.txt", {"8:1": {"8:1": 1.0}})
    with pytest.raises(ConfigError, match="two run files for cirr_task7"):
        find_run_files(runs)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="no run file"):
        evaluate_run_dir(data, empty)
    with pytest.raises(DataNotFoundError):
        find_run_files(tmp_path / "absent")
    with pytest.raises(ConfigError):
        run_file_name("cirr_task7", "global")
