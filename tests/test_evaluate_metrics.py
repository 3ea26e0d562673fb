"""augret.evaluate.metrics: hand-computed cases, the UniIR definition, pytrec_eval and ranx."""

from __future__ import annotations

import math

import numpy as np
import pytest

from augret.data.qrels import Qrels, write_qrels
from augret.errors import ConfigError, DataFormatError
from augret.evaluate import EvalResult, Run, evaluate, parse_metrics, write_run
from augret.evaluate.metrics import DEFAULT_METRICS, METRIC_NAMES

QRELS = {
    "q1": {"a": 1, "b": 0, "c": 2, "e": 1},  # 3 relevant (c graded 2), b judged non-relevant
    "q2": {"x": 1},  # no run entry: scores 0
    "q3": {"y": 0},  # no relevant document: not evaluated
}
RUN = {
    "q1": {"b": 0.9, "a": 0.8, "d": 0.7, "c": 0.6, "f": 0.5},  # ranks: b a d c f
    "q9": {"a": 1.0},  # not in the qrels: ignored
}
L2, L3, L4, L5 = math.log2(2), math.log2(3), math.log2(4), math.log2(5)

# Per-query values of q1 worked out by hand; q2 scores 0 everywhere.
HAND = {
    "hit@1": 0.0,
    "hit@2": 1.0,
    "hit@5": 1.0,
    "recall@2": 1 / 3,
    "recall@5": 2 / 3,
    "precision@2": 1 / 2,
    "precision@5": 2 / 5,
    "mrr@1": 0.0,
    "mrr@5": 1 / 2,
    "map@2": (1 / 2) / 3,
    "map@5": (1 / 2 + 2 / 4) / 3,
    "ndcg@2": (1 / L3) / (2 / L2 + 1 / L3),
    "ndcg@5": (1 / L3 + 2 / L5) / (2 / L2 + 1 / L3 + 1 / L4),
    "ndcg@10": (1 / L3 + 2 / L5) / (2 / L2 + 1 / L3 + 1 / L4),
}


def test_hand_computed_every_metric():
    res = evaluate(QRELS, RUN, list(HAND), per_query=True)
    assert res.num_queries == 2
    assert res.qids == ["q1", "q2"]
    assert res.num_unranked == 1
    for name, q1 in HAND.items():
        assert res.per_query[name][0] == pytest.approx(q1, abs=1e-12), name
        assert res.per_query[name][1] == 0.0, name
        assert res.metrics[name] == pytest.approx(q1 / 2, abs=1e-12), name


def test_inputs_run_object_qrels_object_and_files(tmp_path):
    base = evaluate(QRELS, RUN, list(HAND))
    assert evaluate(Qrels.from_dict(QRELS), Run.from_dict(RUN), list(HAND)).metrics == \
        base.metrics
    qrels_file = tmp_path / "q.txt"
    write_qrels(qrels_file, Qrels.from_dict(QRELS), columns=4)
    run_file = tmp_path / "r.run"
    write_run(run_file, Run.from_dict(RUN))
    assert evaluate(qrels_file, run_file, list(HAND)).metrics == base.metrics


def test_per_query_only_when_asked_and_rows():
    res = evaluate(QRELS, RUN, "hit@2, mrr@5")
    assert res.per_query == {}
    assert list(res.metrics) == ["hit@2", "mrr@5"]
    rows = list(evaluate(QRELS, RUN, "hit@2,mrr@5", per_query=True).iter_per_query())
    assert rows == [{"qid": "q1", "hit@2": 1.0, "mrr@5": 0.5},
                    {"qid": "q2", "hit@2": 0.0, "mrr@5": 0.0}]
    assert res.to_dict() == {"num_queries": 2, "metrics": res.metrics}


def test_ties_keep_given_order():
    qrels = {"q": {"b": 1}}
    assert evaluate(qrels, {"q": {"a": 1.0, "b": 1.0}}, "hit@1").metrics["hit@1"] == 0.0
    assert evaluate(qrels, {"q": {"b": 1.0, "a": 1.0}}, "hit@1").metrics["hit@1"] == 1.0


def test_depth_truncates_and_short_runs():
    assert evaluate(QRELS, RUN, "hit@5", depth=1).metrics["hit@5"] == 0.0
    # k beyond the run's depth: nothing more is retrieved, precision still divides by k
    res = evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, "precision@10,recall@50,hit@50")
    assert res.metrics == {"precision@10": 0.1, "recall@50": 1.0, "hit@50": 1.0}
    with pytest.raises(ConfigError):
        evaluate(QRELS, RUN, "hit@5", depth=0)


def test_empty_run_and_unknown_docs():
    res = evaluate({"q": {"a": 1}}, {}, "hit@5,ndcg@5")
    assert res.metrics == {"hit@5": 0.0, "ndcg@5": 0.0}
    res = evaluate({"q": {"zzz": 1}}, {"q": {"a": 1.0}}, "hit@5")
    assert res.metrics == {"hit@5": 0.0}


def test_no_positive_in_qrels():
    with pytest.raises(DataFormatError, match="no query with a relevant"):
        evaluate({"q": {"a": 0}}, {"q": {"a": 1.0}}, "hit@1")


@pytest.mark.parametrize("bad", ["hits@5", "hit", "hit@0", "hit@x", "recall@-1", "", " , "])
def test_unknown_metrics(bad):
    with pytest.raises(ConfigError) as exc:
        parse_metrics(bad)
    assert "hit@k" in str(exc.value) and "ndcg@k" in str(exc.value)


def test_parse_metrics_normalises():
    specs = parse_metrics(" HIT@5,hit@5 , nDCG@10")
    assert [str(s) for s in specs] == ["hit@5", "ndcg@10"]
    assert [str(s) for s in parse_metrics(["map@3"])] == ["map@3"]
    assert len(parse_metrics(DEFAULT_METRICS)) == 6
    assert set(METRIC_NAMES) == {"hit", "recall", "precision", "mrr", "ndcg", "map"}


# ---- the literal UniIR definition (docs/mbeir.md, Recall@k) ---------------------------------
def _uniir_recall_at_k(relevant_docs, retrieved, k):
    """UniIR's definition transcribed: 1.0 if top-k and the relevant set intersect."""
    if not relevant_docs:
        return 0.0
    return 1.0 if set(retrieved[:k]) & set(relevant_docs) else 0.0


def _random_case(seed, n_queries=300, n_docs=400, depth=30, graded=False):
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for i in range(n_queries):
        qid = f"9:{i + 1}"
        judged = rng.choice(n_docs, size=rng.integers(1, 7), replace=False)
        rels = rng.integers(0, 4 if graded else 2, size=judged.size)
        rels[0] = max(rels[0], 1)
        qrels[qid] = {f"d{j}": int(r) for j, r in zip(judged, rels, strict=True)}
        pool = rng.choice(n_docs, size=depth, replace=False)
        if rng.random() < 0.7:  # often retrieve some judged documents
            pool[rng.integers(0, depth, size=2)] = judged[: 2] if judged.size > 1 else judged[0]
        pool = list(dict.fromkeys(pool.tolist()))
        scores = rng.random(len(pool))
        run[qid] = {f"d{j}": float(s) for j, s in zip(pool, scores, strict=True)}
    return qrels, run


def test_hit_matches_uniir_loop():
    qrels, run = _random_case(1)
    res = evaluate(qrels, run, "hit@1,hit@5,hit@10", per_query=True)
    for k in (1, 5, 10):
        expected = []
        for qid, docs in qrels.items():
            ranked = [d for d, _ in sorted(run[qid].items(), key=lambda x: -x[1])]
            positives = [d for d, r in docs.items() if r > 0]
            expected.append(_uniir_recall_at_k(positives, ranked, k))
        np.testing.assert_array_equal(res.per_query[f"hit@{k}"], expected)
        assert res.metrics[f"hit@{k}"] == pytest.approx(np.mean(expected), abs=1e-15)


# ---- pytrec_eval (trec_eval) --------------------------------------------------------------
@pytest.mark.parametrize("seed", [2, 3])
def test_matches_pytrec_eval(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = _random_case(seed, graded=True)
    ks = (1, 5, 10, 20)
    cut = ",".join(map(str, ks))
    measures = {f"success.{cut}", f"recall.{cut}", f"P.{cut}", f"ndcg_cut.{cut}",
                f"map_cut.{cut}"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    metrics = [f"{m}@{k}" for m in METRIC_NAMES for k in ks]
    res = evaluate(qrels, run, metrics, per_query=True)
    names = {"hit": "success", "recall": "recall", "precision": "P", "ndcg": "ndcg_cut",
             "map": "map_cut"}
    for k in ks:
        for ours, theirs in names.items():
            expected = [trec[q][f"{theirs}_{k}"] for q in res.qids]
            np.testing.assert_allclose(res.per_query[f"{ours}@{k}"], expected, atol=1e-12,
                                       err_msg=f"{ours}@{k}")
        # mrr@k = trec_eval recip_rank on the run cut at depth k
        cut_run = Run.from_dict(run, depth=k).to_dict()
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut_run)
        expected = [rr[q]["recip_rank"] if q in rr else 0.0 for q in res.qids]
        np.testing.assert_allclose(res.per_query[f"mrr@{k}"], expected, atol=1e-12)


# ---- ranx (numba: slow first call) -----------------------------------------------------------
@pytest.mark.slow
def test_matches_ranx():
    ranx = pytest.importorskip("ranx")
    qrels, run = _random_case(4, graded=True)
    ks = (1, 5, 10)
    names = {"hit": "hit_rate", "recall": "recall", "precision": "precision", "mrr": "mrr",
             "ndcg": "ndcg", "map": "map"}
    metrics = [f"{m}@{k}" for m in names for k in ks]
    ours = evaluate(qrels, run, metrics, per_query=True)
    ranx_run = ranx.Run(run)
    ranx.evaluate(ranx.Qrels(qrels), ranx_run,
                  [f"{names[m.split('@')[0]]}@{m.split('@')[1]}" for m in metrics])
    for m in metrics:
        key = f"{names[m.split('@')[0]]}@{m.split('@')[1]}"
        theirs = [ranx_run.scores[key][q] for q in ours.qids]
        np.testing.assert_allclose(ours.per_query[m], theirs, atol=1e-9, err_msg=m)


def test_eval_result_is_small_dataclass():
    res = evaluate(QRELS, RUN, "hit@1")
    assert isinstance(res, EvalResult)
    assert "q1" not in repr(res)  # per-query data stays out of the repr


def test_vectorised_speed():
    """200k queries × top-50 must score in seconds (here a 20k slice; see benchmarks/)."""
    import time

    rng = np.random.default_rng(0)
    nq, depth, vocab = 20_000, 50, 200_000
    docs = (rng.integers(0, vocab, size=nq)[:, None] + np.arange(depth) * 7919) % vocab
    scores = -np.sort(rng.random((nq, depth)), axis=1)
    qids = [f"q{i}" for i in range(nq)]
    run = Run(qids, docs, -scores, [f"d{i}" for i in range(vocab)])
    qrels = {q: {f"d{docs[i, i % 60] if i % 60 < depth else 0}": 1} for i, q in enumerate(qids)}
    start = time.perf_counter()
    res = evaluate(qrels, run, "hit@1,hit@5,hit@10,recall@10,mrr@10,ndcg@10,map@10")
    assert time.perf_counter() - start < 2.0
    assert 0 < res.metrics["hit@10"] < 1
