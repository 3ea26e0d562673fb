"""Evaluation on the real M-BEIR test qrels in ``../shared/data`` (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from augret.data.ids import MBEIR_TEST_TASKS
from augret.data.mbeir import MBEIRDir
from augret.data.qrels import read_qrels
from augret.evaluate import Run, evaluate, write_run
from augret.evaluate.rundir import evaluate_run_dir, find_run_files, run_file_name
from augret.evaluate.table import build_table, uniir_tsv
from helpers.shared_data import SHARED_DATA

QRELS_FILES = sorted(p.name for p in SHARED_DATA.glob("mbeir-test-topics/qrels/*.txt"))
# Fast by default: one file per kind (single/multiple positives, cross-listed dids, k=50 tasks);
# all 14 with -m slow.
DEFAULT = {"cirr-task7", "fashioniq-task7", "infoseek-task6", "mscoco-task3", "webqa-task2"}
PARAMS = [f if f.split(".")[1].removeprefix("m-beir-") in DEFAULT else
          pytest.param(f, marks=pytest.mark.slow) for f in QRELS_FILES]


@pytest.fixture
def topics(shared_data: Path) -> Path:
    return shared_data / "mbeir-test-topics"


def _perfect_run(qrels, keep=None, depth=10):
    """Positives first (scores descending), then distractors; only queries in ``keep``."""
    qids = [q for q in qrels.judgments if keep is None or q in keep]
    vocab, index, rows, cols, codes = [], {}, [], [], []
    for i, qid in enumerate(qids):
        docs = [d for d, r in qrels.judgments[qid].items() if r > 0][:depth]
        docs += [f"x:{j}" for j in range(depth - len(docs))]
        for j, did in enumerate(docs):
            rows.append(i)
            cols.append(j)
            codes.append(index.setdefault(did, len(index)))
    vocab = list(index)
    docs_m = np.full((len(qids), depth), -1, dtype=np.int64)
    docs_m[rows, cols] = codes
    scores = np.tile(np.linspace(1.0, 0.5, depth), (len(qids), 1))
    return Run(qids, docs_m, scores, vocab)


@pytest.mark.parametrize("name", PARAMS)
def test_perfect_and_half_runs(topics, name):
    qrels = read_qrels(topics / "qrels" / name)
    n = len(qrels)
    assert n > 1000
    res = evaluate(qrels, _perfect_run(qrels), "hit@1,hit@5,hit@10,mrr@10,precision@1")
    assert res.num_queries == n and res.num_unranked == 0
    assert res.metrics == {"hit@1": 1.0, "hit@5": 1.0, "hit@10": 1.0, "mrr@10": 1.0,
                           "precision@1": 1.0}
    kept = set(list(qrels.judgments)[::2])
    half = evaluate(qrels, _perfect_run(qrels, keep=kept), "hit@5,recall@10", per_query=True)
    assert half.num_unranked == n - len(kept)
    assert half.metrics["hit@5"] == len(kept) / n  # exact: the mean of 0s and 1s
    assert 0.49 < half.metrics["hit@5"] < 0.51
    npos = np.array([len(qrels.positives(q)) for q in half.qids])
    expected = np.where([q in kept for q in half.qids], np.minimum(npos, 10) / npos, 0.0)
    np.testing.assert_allclose(half.per_query["recall@10"], expected)


def test_table_from_real_qrels(topics, tmp_path):
    data = MBEIRDir(topics)
    present = [t for t in MBEIR_TEST_TASKS if data.qrels_file(t.name) is not None]
    assert len(present) == 14
    runs = tmp_path / "runs"
    small = [t for t in present if t.name in ("fashion200k_task0", "webqa_task1", "nights_task4")]
    for task in small:
        qrels = read_qrels(data.qrels_file(task.name))
        write_run(runs / run_file_name(task.name, "local"), _perfect_run(qrels, depth=task.
                                                                         metric_ks[-1]))
        kept = set(list(qrels.judgments)[::2])
        write_run(runs / f"mbeir_{task.name}_union_pool_test_k10_run.txt",
                  _perfect_run(qrels, keep=kept), task_ids=task.task.id)
    assert len(find_run_files(runs)) == 6
    results = evaluate_run_dir(topics, runs)
    table = build_table(results)
    assert [r.task.name for r in table.rows] == ["fashion200k_task0", "webqa_task1",
                                                 "nights_task4"]
    assert table.average_label == "Average (3/16 tasks)"
    assert table.average("local") == 100.0
    assert 49 < table.average("union") < 51
    tsv = uniir_tsv(results).splitlines()
    assert len(tsv) == 1 + 9
    assert tsv[1].startswith("0\ttext -> image\tfashion200k_task0\ttest\tRecall@10\t")
