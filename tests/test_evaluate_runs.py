"""augret.evaluate.runs: the columnar Run, TREC / UniIR / JSON run files and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.evaluate import Run, read_run, write_run

RUN = {
    "9:1": {"9:11": 0.75, "9:12": 0.5, "0:7": 0.5, "9:13": -0.125},
    "9:2": {"9:20": 1.0},
    "9:3": {"9:30": 0.1, "9:31": 0.3},  # given out of order: ranked by score
}

UNIIR_LINES = """\
9:1 Q0 9:12 1 0.8125 mbeir_mscoco_task0_union_pool_test_k10 0
9:1 Q0 9:18 2 0.8125 mbeir_mscoco_task0_union_pool_test_k10 0
9:1 Q0 5:3 3 0.25 mbeir_mscoco_task0_union_pool_test_k10 0
9:2 Q0 9:12 1 0.5 mbeir_mscoco_task0_union_pool_test_k10 0
"""


# ---- the Run object -----------------------------------------------------------------------
def test_from_dict_ranks_and_keeps_tie_order():
    run = Run.from_dict(RUN)
    assert run.qids == ["9:1", "9:2", "9:3"]
    assert run.depth == 4
    assert [d for d, _ in run.ranking("9:1")] == ["9:11", "9:12", "0:7", "9:13"]
    assert run.ranking("9:3") == [("9:31", 0.3), ("9:30", 0.1)]
    assert run.ranking("nope") == []
    assert run.docs.dtype == np.int64 and (run.docs[1, 1:] == -1).all()
    assert run.to_dict()["9:1"] == RUN["9:1"]
    assert list(run.to_dict()["9:3"]) == ["9:31", "9:30"]
    assert "3 queries" in repr(run) and len(run) == 3


def test_truncate_and_depth():
    run = Run.from_dict(RUN, depth=2)
    assert run.depth == 2
    assert list(run.to_dict()["9:1"]) == ["9:11", "9:12"]
    with pytest.raises(ConfigError):
        run.truncate(0)


def test_constructor_sorts_rows_stably():
    run = Run(["q"], np.array([[0, 1, 2, -1]]), np.array([[0.1, 0.5, 0.5, 0.0]]),
              ["a", "b", "c"])
    assert [d for d, _ in run.ranking("q")] == ["b", "c", "a"]
    assert np.isnan(run.scores[0, 3])


@pytest.mark.parametrize(
    ("qids", "docs", "scores", "vocab", "match"),
    [
        (["q"], [[0, 1]], [[0.1]], ["a", "b"], "disagree"),
        (["q", "r"], [[0]], [[0.1]], ["a"], "disagree"),
        (["q"], [[5]], [[0.1]], ["a"], "codes"),
        (["q"], [[0]], [[float("nan")]], ["a"], "NaN"),
        (["q", "q"], [[0], [0]], [[1.0], [1.0]], ["a"], "unique"),
        (["q"], [[0, 1, 0]], [[1.0, 0.5, 0.2]], ["a", "b"], "twice"),
    ],
)
def test_constructor_rejects_bad_arrays(qids, docs, scores, vocab, match):
    with pytest.raises(ConfigError, match=match):
        Run(qids, np.array(docs), np.array(scores), vocab)


def test_repeated_vocabulary():
    run = Run(["q"], np.array([[0, 1]]), np.array([[1.0, 0.5]]), ["a", "a"])
    with pytest.raises(ConfigError, match="repeated"):
        run.vocab_index  # noqa: B018


def test_empty_run():
    run = Run.from_dict({})
    assert len(run) == 0 and run.depth == 0 and run.to_dict() == {}


# ---- round trips --------------------------------------------------------------------------
def test_trec_round_trip(tmp_path):
    path = tmp_path / "a.run"
    write_run(path, Run.from_dict(RUN), tag="mine")
    lines = path.read_text().splitlines()
    assert lines[0] == "9:1 Q0 9:11 1 0.75 mine"
    assert lines[-1] == "9:3 Q0 9:30 2 0.1 mine"
    back = read_run(path)
    assert back.to_dict() == Run.from_dict(RUN).to_dict()
    assert back.tag == "mine" and back.task_ids == {}


def test_uniir_seven_columns_round_trip(tmp_path):
    path = tmp_path / "mbeir_mscoco_task0_union_pool_test_k10_run.txt"
    path.write_text(UNIIR_LINES)
    run = read_run(path)
    assert run.task_ids == {"9:1": 0, "9:2": 0}
    assert run.tag == "mbeir_mscoco_task0_union_pool_test_k10"
    assert [d for d, _ in run.ranking("9:1")] == ["9:12", "9:18", "5:3"]  # FAISS tie order
    out = tmp_path / "again.txt"
    write_run(out, run)
    assert out.read_text() == UNIIR_LINES
    write_run(out, run, task_ids={"9:1": 7, "9:2": 8}, tag="t")
    assert out.read_text().splitlines()[3] == "9:2 Q0 9:12 1 0.5 t 8"
    for task in (3, 0):
        write_run(out, Run.from_dict(RUN), task_ids=task)
        assert all(line.endswith(f" augret {task}") for line in out.read_text().splitlines())
        assert read_run(out).task_ids == dict.fromkeys(RUN, task)


def test_json_round_trip(tmp_path):
    path = tmp_path / "run.json"
    write_run(path, RUN)
    assert json.loads(path.read_text())["9:3"] == {"9:31": 0.3, "9:30": 0.1}
    assert read_run(path).to_dict() == Run.from_dict(RUN).to_dict()
    other = tmp_path / "run.txt"
    write_run(other, RUN, fmt="json")
    assert read_run(other).to_dict() == Run.from_dict(RUN).to_dict()


def test_scores_survive_exactly(tmp_path):
    rng = np.random.default_rng(0)
    run = {f"q{i}": {f"d{j}": float(s) for j, s in enumerate(rng.normal(size=20))}
           for i in range(10)}
    for name in ("r.run", "r.json"):
        write_run(tmp_path / name, run)
        assert read_run(tmp_path / name).to_dict() == Run.from_dict(run).to_dict()


def test_read_depth_and_interleaved_queries(tmp_path):
    path = tmp_path / "r.run"
    path.write_text("a Q0 x 1 3 t\nb Q0 y 1 2 t\na Q0 z 2 9 t\n\n")
    run = read_run(path)
    assert run.qids == ["a", "b"]
    assert [d for d, _ in run.ranking("a")] == ["z", "x"]  # ranked by score, not rank column
    assert read_run(path, depth=1).to_dict() == {"a": {"z": 9.0}, "b": {"y": 2.0}}


def test_write_rejects_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="whitespace"):
        write_run(tmp_path / "r.run", {"a b": {"x": 1.0}})
    with pytest.raises(ConfigError, match="whitespace"):
        write_run(tmp_path / "r.run", RUN, tag="my tag")
    with pytest.raises(ConfigError, match="no task id"):
        write_run(tmp_path / "r.run", RUN, task_ids={"9:1": 0})
    with pytest.raises(ConfigError, match="format"):
        write_run(tmp_path / "r.run", RUN, fmt="csv")
    assert not (tmp_path / "r.run").exists()  # atomic: nothing half-written


# ---- bad input ----------------------------------------------------------------------------
BAD_TREC = [
    ("q Q0 d 1 0.5 t\nq Q0 e 2 0.4\n", 2, "expected 6 columns"),
    ("q Q0 d 1 0.5\n", 1, "expected 6 columns"),
    ("q Q0 d 1 0.5 t 0\nq Q0 e 2 0.4 t 0 extra\n", 2, "expected 7 columns"),
    ("q Q0 d 1 0.5 t\nq Q0 e 2 high t\n", 2, "score 'high' is not a number"),
    ("q Q0 d 1 nan t\n", 1, "is not a number"),
    ("q Q0 d one 0.5 t\n", 1, "rank 'one' is not an integer"),
    ("q Q0 d 1 0.5 t x\n", 1, "task id 'x'"),
    ("q Q0 d 1 0.5 t 0\nq Q0 e 2 0.5 t 1\n", 2, "task id 1 here but 0"),
    ("q Q0 d 1 0.5 t\nr Q0 d 1 0.5 t\nq Q0 d 2 0.4 t\n", 3, "appears twice"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD_TREC)
def test_bad_trec_lines(tmp_path, text, line, message):
    path = tmp_path / "bad.run"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message) as exc:
        read_run(path)
    assert exc.value.path == str(path) and exc.value.line == line
    assert str(exc.value).startswith(f"{path}:{line}")


def test_non_utf8_byte(tmp_path):
    path = tmp_path / "bad.run"
    path.write_bytes(b"q Q0 d 1 0.5 t\nq Q0 \xff 2 0.4 t\n")
    with pytest.raises(DataFormatError, match="UTF-8") as exc:
        read_run(path)
    assert exc.value.line == 2


def test_empty_and_missing_files(tmp_path):
    path = tmp_path / "empty.run"
    path.write_text("\n  \n")
    with pytest.raises(DataFormatError, match="empty") as exc:
        read_run(path)
    assert exc.value.path == str(path)
    with pytest.raises(DataNotFoundError):
        read_run(tmp_path / "absent.run")


@pytest.mark.parametrize(
    ("data", "message", "line"),
    [
        (b'{"q": {"d": 1.0},\n "r": {"e": }}\n', "invalid JSON", 2),
        (b'{"q": {"d": 1.0}}\n{"r": {}}\n', "invalid JSON", 2),
        (b'{"q": {"d": "high"}}', "not a number", None),
        (b'{"q": {"d": true}}', "not a number", None),
        (b'{"q": [1, 2]}', "expected an object", None),
        (b'{"q": {"d": 1.0},\n"\xff": {}}', "UTF-8", 2),
    ],
)
def test_bad_json(tmp_path, data, message, line):
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=message) as exc:
        read_run(path)
    assert exc.value.path == str(path) and exc.value.line == line
