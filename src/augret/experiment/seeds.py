"""Training seeds in the report: seed-averaged scores, per-seed deltas and the effect rule.

A condition trained once per seed has one run per seed. The report compares two conditions on
the **seed-averaged per-query scores** (each query's score averaged over a condition's runs,
then a paired test over queries) and looks at the **sign of the difference in every seed**.
A difference is called an *effect* only when both agree (:func:`is_effect`): the paired test
rejects at ``alpha`` and the difference has the same sign in every seed, over at least two
seeds. With one run per condition training noise is not measured, so nothing is an effect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from augret.errors import ConfigError
from augret.evaluate.metrics import EvalResult

__all__ = ["MIN_SEEDS", "consistent_sign", "is_effect", "mean_result", "mean_sd",
           "seed_pairs"]

#: Paired seeds needed before a difference may be called an effect.
MIN_SEEDS = 2

Seed = int | None
T = TypeVar("T")


def mean_result(results: Sequence[EvalResult]) -> EvalResult:
    """One result whose per-query scores (and metrics) are the means over ``results``.

    Raises:
        ConfigError: The results cover different queries or lack per-query scores.
    """
    if not results:
        raise ConfigError("no result to average")
    if len(results) == 1:
        return results[0]
    first = results[0]
    for r in results[1:]:
        if r.qids != first.qids:
            raise ConfigError("the seeds' runs were evaluated on different queries")
    names = [m for m in first.metrics if all(m in r.per_query for r in results)]
    per_query = {m: np.mean([r.per_query[m] for r in results], axis=0) for m in names}
    metrics = {m: float(np.mean([r.metrics[m] for r in results])) for m in first.metrics}
    return EvalResult(first.num_queries, metrics, list(first.qids), per_query,
                      max(r.num_unranked for r in results))


def seed_pairs(a: Mapping[Seed, T], b: Mapping[Seed, T]) -> list[tuple[Seed, Seed]]:
    """Which run of ``a`` is compared with which run of ``b``, seed by seed.

    The seeds both have; a single run on one side is paired with every run of the other;
    otherwise the runs are paired in sorted seed order.
    """
    common = [s for s in a if s in b]
    if common:
        return [(s, s) for s in common]
    if len(a) == 1:
        only = next(iter(a))
        return [(only, s) for s in b]
    if len(b) == 1:
        only = next(iter(b))
        return [(s, only) for s in a]
    return list(zip(sorted(a, key=str), sorted(b, key=str), strict=False))


def consistent_sign(deltas: Sequence[float]) -> bool:
    """Whether every delta is non-zero and all have one sign."""
    return bool(deltas) and (all(d > 0 for d in deltas) or all(d < 0 for d in deltas))


def is_effect(p_value: float, seed_deltas: Sequence[float], alpha: float) -> bool:
    """The report's rule: ``p < alpha`` on seed-averaged scores, and the same sign in each of
    at least :data:`MIN_SEEDS` seeds."""
    return (p_value < alpha and len(seed_deltas) >= MIN_SEEDS
            and consistent_sign(seed_deltas))


def mean_sd(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "sd", "n"}`` of the non-``None`` values (sample sd; ``None`` below two)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "sd": None, "n": 0}
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return {"mean": mean, "sd": sd, "n": len(xs)}
