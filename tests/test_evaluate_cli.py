"""``augret evaluate``, ``augret compare`` and ``augret mbeir table`` through the CLI."""

from __future__ import annotations

import json

import pytest

from augret.cli.main import main
from augret.evaluate import evaluate, write_run
from augret.evaluate.metrics import DEFAULT_METRICS

QRELS = "".join(f"9:{i} 0 9:{100 + i} 1 0\n" for i in range(1, 21)) + "9:1 0 9:999 1 0\n"
RUN_A = {f"9:{i}": {"9:1": 0.9, f"9:{100 + i}": 0.8 if i % 2 else 0.95} for i in range(1, 21)}
RUN_B = {f"9:{i}": {f"9:{100 + i}": 0.99, "9:1": 0.9} for i in range(1, 16)}


@pytest.fixture
def files(tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(QRELS)
    a, b = tmp_path / "a.run", tmp_path / "b.json"
    write_run(a, RUN_A)
    write_run(b, RUN_B)
    return qrels, a, b


def _cli(argv, capsys):
    """Run ``augret ARGV`` through the real entry point; ``(exit code, stdout, stderr)``."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_default_metrics_match_library():
    from augret.cli import evaluate_cmd
    from augret.evaluate.table import FORMATS

    assert evaluate_cmd.DEFAULT_METRICS == DEFAULT_METRICS
    assert evaluate_cmd.FORMATS == FORMATS


def test_evaluate_json(files, capsys):
    qrels, a, _ = files
    code, out, _ = _cli(["evaluate", str(a), "--qrels", str(qrels), "--metrics",
                         "hit@1,hit@5,recall@5,mrr@10,ndcg@10", "--json"], capsys)
    assert code == 0
    data = json.loads(out)  # exactly one JSON object
    expected = evaluate(qrels, a, "hit@1,hit@5,recall@5,mrr@10,ndcg@10")
    assert data == {"num_queries": 20, "metrics": expected.metrics}
    assert data["metrics"]["hit@1"] == 0.5


def test_evaluate_table_and_per_query(files, capsys, tmp_path):
    qrels, _, b = files
    per = tmp_path / "per.jsonl"
    code, out, _ = _cli(["evaluate", str(b), "--qrels", str(qrels), "--per-query", str(per)],
                        capsys)
    assert code == 0
    for name in DEFAULT_METRICS.split(","):
        assert name in out
    assert "5 absent from the run" in out
    rows = [json.loads(line) for line in per.read_text().splitlines()]
    assert len(rows) == 20 and rows[0]["qid"] == "9:1" and rows[-1]["hit@1"] == 0.0
    assert set(rows[0]) == {"qid", *DEFAULT_METRICS.split(",")}


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [
        (b"9:1 Q0 9:101 1 0.5 t\n9:1 Q0 9:2 2 abc t\n", 5, ":2 field 'score': score 'abc'"),
        (b"9:1 Q0 9:101 1 0.5 t\n9:2 Q0 9:102 1\n", 5, ":2: expected 6 columns"),
        (b"9:1 Q0 9:101 1 0.5 t\n9:2 Q0 9:\xfe 1 0.5 t\n", 5, ":2: invalid UTF-8"),
        (b"", 5, "file is empty"),
    ],
)
def test_evaluate_bad_run_is_one_line_error(files, capsys, tmp_path, content, code, needle):
    qrels = files[0]
    bad = tmp_path / "bad.run"
    bad.write_bytes(content)
    got, out, err = _cli(["evaluate", str(bad), "--qrels", str(qrels), "--json"], capsys)
    assert got == code
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert needle in err and str(bad) in err


def test_evaluate_argument_errors(files, capsys, tmp_path):
    qrels, a, _ = files
    code, _, err = _cli(["evaluate", str(a), "--qrels", str(qrels), "--metrics", "recal@5"],
                        capsys)
    assert code == 2 and err.startswith("error: unknown metric 'recal@5'")
    code, _, err = _cli(["evaluate", str(tmp_path / "absent.run"), "--qrels", str(qrels)],
                        capsys)
    assert code == 4 and "no such file" in err
    code, _, _ = _cli(["evaluate", str(a)], capsys)  # --qrels missing: click usage error
    assert code == 2


def test_compare_files(files, capsys):
    qrels, a, b = files
    code, out, _ = _cli(["compare", str(a), str(b), "--qrels", str(qrels), "--metrics",
                         "hit@1,hit@5", "--samples", "500", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["test"] == "randomization" and data["samples"] == 500
    hit1 = data["rows"][0]
    assert hit1["metric"] == "hit@1" and hit1["a"] == 0.5 and hit1["b"] == 0.75
    assert hit1["delta"] == 0.25 and 0 < hit1["p_value"] <= 1
    code, out, _ = _cli(["compare", str(a), str(b), "--qrels", str(qrels), "--test",
                         "bootstrap", "--samples", "200"], capsys)
    assert code == 0 and "bootstrap" in out and "ndcg@10" in out
    code, _, err = _cli(["compare", str(a), str(b)], capsys)
    assert code == 2 and "--qrels" in err


def _mbeir(tmp_path):
    data = tmp_path / "mbeir"
    (data / "qrels" / "test").mkdir(parents=True)
    (data / "qrels" / "test" / "mbeir_cirr_task7_test_qrels.txt").write_text(QRELS)
    sys_a, sys_b = tmp_path / "sys_a", tmp_path / "sys_b"
    write_run(sys_a / "cirr_task7_local.run", RUN_A)
    write_run(sys_a / "cirr_task7_union.run", RUN_B)
    write_run(sys_b / "cirr_task7_local.run", RUN_B)
    write_run(sys_b / "cirr_task7_union.run", RUN_B)
    return data, sys_a, sys_b


def test_compare_run_directories(tmp_path, capsys):
    data, sys_a, sys_b = _mbeir(tmp_path)
    code, out, _ = _cli(["compare", str(sys_a), str(sys_b), "--data", str(data), "--json",
                         "--samples", "300"], capsys)
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [(r["task"], r["pool"], r["metric"]) for r in rows] == [
        ("cirr_task7", "local", "hit@5"), ("cirr_task7", "union", "hit@5")]
    assert rows[1]["delta"] == 0 and rows[1]["p_value"] == 1
    code, _, err = _cli(["compare", str(sys_a), str(sys_b)], capsys)
    assert code == 2 and "--data" in err


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json", "uniir-tsv"])
def test_mbeir_table(tmp_path, capsys, fmt):
    data, sys_a, _ = _mbeir(tmp_path)
    code, out, _ = _cli(["mbeir", "table", str(data), str(sys_a), "--format", fmt], capsys)
    assert code == 0
    if fmt == "json":
        table = json.loads(out)
        assert table["average"]["label"] == "Average (1/16 tasks)"
        assert table["rows"][0]["local"] == pytest.approx(100 * 20 / 20)
        assert table["rows"][0]["union"] == pytest.approx(100 * 15 / 20)
    elif fmt == "uniir-tsv":
        assert out.splitlines()[2] == ("7\timage,text -> image\tcirr_task7\ttest\tRecall@5\t"
                                       "cirr_task7\t1.0\tunion\t0.75")
    else:
        assert "Average (1/16 tasks)" in out and "CIRR" in out
    target = tmp_path / "out" / f"table.{fmt}"
    code, out2, err = _cli(["mbeir", "table", str(data), str(sys_a), "--format", fmt, "--out",
                            str(target)], capsys)
    assert code == 0 and out2 == "" and target.read_text() == out
    assert f"wrote {target}" in err


def test_mbeir_table_errors(tmp_path, capsys):
    data, _, _ = _mbeir(tmp_path)
    code, _, err = _cli(["mbeir", "table", str(data), str(tmp_path / "absent")], capsys)
    assert code == 4 and err.startswith("error: ")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cirr_task7_local.run").write_text("9:1 Q0 9:101 1 x t\n")
    code, _, err = _cli(["mbeir", "table", str(data), str(bad)], capsys)
    assert code == 5 and "cirr_task7_local.run:1" in err
