"""The report over training seeds: mean ± sd, per-seed values and signs, the effect rule and
the plain answers to the paper's three questions (synthetic run directories)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from augret.evaluate.metrics import EvalResult
from augret.experiment.report import load_conditions, load_notices, write_report
from augret.experiment.seeds import consistent_sign, is_effect, mean_result, mean_sd, seed_pairs
from helpers.mbeir_runs import write_condition_runs

SEEDS = (0, 1, 2)


def test_effect_rule_needs_every_seed_and_the_test() -> None:
    assert is_effect(0.001, [0.1, 0.2, 0.05], 0.05)
    assert not is_effect(0.001, [0.1, -0.2, 0.05], 0.05)  # a seed disagrees
    assert not is_effect(0.2, [0.1, 0.2, 0.05], 0.05)  # not significant
    assert not is_effect(0.001, [0.3], 0.05)  # one run: training noise unmeasured
    assert not consistent_sign([0.1, 0.0]) and consistent_sign([-1, -2])
    assert seed_pairs({0: 1, 1: 1}, {1: 1, 0: 1}) == [(0, 0), (1, 1)]
    assert seed_pairs({None: 1}, {0: 1, 1: 1}) == [(None, 0), (None, 1)]
    assert mean_sd([1.0, 3.0]) == {"mean": 2.0, "sd": pytest.approx(2 ** 0.5), "n": 2}
    assert mean_sd([4.0])["sd"] is None
    a = EvalResult(2, {"hit@5": 0.5}, ["q1", "q2"], {"hit@5": np.array([1.0, 0.0])})
    b = EvalResult(2, {"hit@5": 1.0}, ["q1", "q2"], {"hit@5": np.array([1.0, 1.0])})
    m = mean_result([a, b])
    assert m.metrics["hit@5"] == 0.75 and m.per_query["hit@5"].tolist() == [1.0, 0.5]


def _seeded(sample_dir: Path, root: Path, name: str, rates_per_seed: list[dict], *,
            default: list[float], offset: int) -> dict:
    runs = {str(s): write_condition_runs(sample_dir, root / name / f"seed-{s}", rates,
                                         default=d, seed=offset + s)
            for s, rates, d in zip(SEEDS, rates_per_seed, default, strict=True)}
    return {"run_dir": runs["0"], "seed_runs": runs, "data_dir": sample_dir}


@pytest.fixture(scope="module")
def seeded(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("seeded")
    flat = [{}, {}, {}]
    return {
        "zero_shot": {"run_dir": write_condition_runs(sample_dir, root / "zs", {},
                                                      default=0.1, seed=50),
                      "data_dir": sample_dir},
        "baseline": _seeded(sample_dir, root, "baseline", flat, default=[0.4] * 3, offset=0),
        "inference_only": _seeded(sample_dir, root, "io", flat, default=[0.55] * 3,
                                  offset=10),
        "query_enhanced": _seeded(sample_dir, root, "q", [{"cirr_task7": 0.95}] * 3,
                                  default=[0.4] * 3, offset=20),
        "corpus_enhanced": _seeded(sample_dir, root, "c", [{"oven_task8": 0.95}] * 3,
                                   default=[0.4] * 3, offset=30),
        "fully_enhanced": _seeded(sample_dir, root, "f", flat, default=[0.9] * 3, offset=40),
        # one lucky seed: higher on average, but the sign flips between seeds
        "unstable": _seeded(sample_dir, root, "u", flat, default=[0.95, 0.25, 0.95],
                            offset=60),
        "shuffled_control": _seeded(sample_dir, root, "s", flat, default=[0.38] * 3,
                                    offset=70),
    }


def test_report_over_seeds(seeded: dict, tmp_path: Path) -> None:
    r = write_report(tmp_path / "rep", seeded, n_samples=2000,
                     notices=["Simulated world: test notice."])
    data = json.loads(r.results.read_text())
    base = data["conditions"]["baseline"]
    # one entry per seed with that seed's table averages, beside their mean
    assert [e["seed"] for e in base["seeds"]] == list(SEEDS)
    for pool in ("local", "union"):
        values = [e[pool] for e in base["seeds"]]
        assert base["mean"][pool] == pytest.approx(sum(values) / 3)
        assert base["sd"][pool] == pytest.approx(float(np.std(values, ddof=1)))
        assert base["table"]["average"][pool] == pytest.approx(base["mean"][pool])
    assert data["conditions"]["zero_shot"]["seeds"] == [
        {"seed": None, **{p: data["conditions"]["zero_shot"]["mean"][p]
                          for p in ("local", "union")}}]
    assert len(base["rows"]["oven_task8/local"]["seeds"]) == 3

    avg = data["average_comparisons"]
    assert avg["fully_enhanced"]["local"]["effect"] and avg["fully_enhanced"]["local"]["delta"] > 0
    assert len(avg["fully_enhanced"]["local"]["seed_deltas"]) == 3
    unstable = avg["unstable"]["local"]
    assert unstable["delta"] > 0 and not unstable["consistent"] and not unstable["effect"]
    assert not any(c["effect"] and c["delta"] > 0 for c in data["comparisons"]["unstable"])
    assert len(avg["zero_shot"]["local"]["seed_deltas"]) == 3  # one run vs each seed

    questions = [a["question"] for a in data["answers"]]
    q1, q2, q3, control = (a["answer"] for a in data["answers"])
    assert questions[0] == "Does training on enhanced data beat the raw baseline?"
    assert q1.startswith("Yes:") and "higher in every seed" in q1
    assert q2.startswith("Yes:") and "lower in every seed" in q2
    assert "CIRR (qi,qt)→ci" in q3.split("Corpus enhancement")[0]
    assert "OVEN (qi,qt)→(ci,ct)" in q3.split("Corpus enhancement")[1]
    assert control.startswith("As it must")

    md = r.markdown.read_text()
    assert md.index("> **Simulated world: test notice.**") < md.index("## In short") < md.index(
        "## Conditions")
    assert "## Seeds" in md and " ± " in md
    assert "| baseline | 0, 1, 2 |" in md
    ablation = data["ablations"]["query"]
    assert ablation["seeds"] == 3 and [g["task"] for g in ablation["gains"]] == [
        "cirr_task7", "cirr_task7"]
    assert "higher in every seed" in ablation["answer"]
    # the seed runs and the notices are kept for `augret report OUT`
    conds = load_conditions(r.out_dir / "conditions.json")
    assert conds["baseline"]["seed_runs"]["2"].endswith("seed-2")
    assert load_notices(r.out_dir / "conditions.json") == ["Simulated world: test notice."]
    again = write_report(tmp_path / "rep", conds, n_samples=2000, plots=False)
    assert again.data["average_comparisons"]["fully_enhanced"]["local"]["effect"]


def test_one_run_per_condition_claims_no_effect(seeded: dict, tmp_path: Path) -> None:
    single = {n: {"run_dir": s["run_dir"], "data_dir": s["data_dir"]}
              for n, s in seeded.items()}
    r = write_report(tmp_path / "one", single, n_samples=2000, plots=False)
    data = r.data
    assert not any(c["effect"] for cs in data["comparisons"].values() for c in cs)
    q1 = data["answers"][0]["answer"]
    assert q1.startswith("Not shown") and "training noise is not measured" in q1
    assert "no difference is called an effect" in data["ablations"]["corpus"]["answer"]
    md = r.markdown.read_text()
    assert "*)" not in md and "significantly higher" not in md
