"""The generate phase's shared rules: how results are judged and committed, and when a run
stops because its backend is down.

Engines differ in where they call the model; every engine commits what comes back through
:func:`commit`, so the store and the run ledger hold the same outcomes whichever engine ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from augret.enhance.backends.base import GenerationResult
from augret.enhance.context import RunContext
from augret.enhance.item import item_generation, output_problem
from augret.enhance.ledger import Attempt
from augret.enhance.policy import Route
from augret.errors import BackendError

__all__ = ["AbortWatch", "Outcome", "commit"]


@dataclass(frozen=True)
class Outcome:
    """What came back for one key.

    Attributes:
        key: The content key.
        route: The route of the rows with that key.
        result: The backend's result (or an error result for a row that never reached it).
        input_error: The row failed before the model (e.g. its image did not decode): it
            does not count as a model failure for :class:`AbortWatch`.
    """

    key: str
    route: Route
    result: GenerationResult
    input_error: bool = False


def commit(ctx: RunContext, outcomes: Sequence[Outcome]) -> list[Attempt]:
    """Judge outcomes, store the usable ones, record all of them in the run ledger.

    The store is written first: a crash in between leaves store hits, never a lost output.

    Returns:
        One attempt per outcome (``reason`` set for failures).
    """
    stored, attempts = [], []
    for o in outcomes:
        res = o.result
        reason = res.error or output_problem(o.route, res.text, ctx.cfg.overlong_factor)
        if reason is not None:
            attempts.append(Attempt(o.key, reason=reason))
            continue
        stored.append(item_generation(o.key, res, backend=ctx.backend, prompts=ctx.prompts,
                                      params=ctx.params, route=o.route))
        attempts.append(Attempt(o.key, tokens=res.output_tokens))
    ctx.store.put_many(stored)
    ctx.ledger.record(attempts)
    return attempts


class AbortWatch:
    """Stops a run (resumably) when whole units of work keep failing at the model: the
    backend is down.

    Args:
        limit: Consecutive entirely failed units that stop the run; 0 never stops.
        unit: How to name a unit in the error (``batches``, ``result blocks``).
    """

    def __init__(self, limit: int, unit: str = "batches") -> None:
        self.limit = limit
        self.unit = unit
        self.failed = 0

    def observe(self, outcomes: Sequence[Outcome]) -> None:
        """Count one unit of work.

        Raises:
            BackendError: ``limit`` consecutive units failed entirely at the model.
        """
        model = [o for o in outcomes if not o.input_error]
        all_failed = bool(outcomes) and len(model) == len(outcomes) and all(
            o.result.error for o in model)
        self.failed = self.failed + 1 if all_failed else 0
        if self.limit and self.failed >= self.limit:
            last = outcomes[-1].result.error
            raise BackendError(
                f"{self.failed} consecutive {self.unit} failed entirely (last error: {last}); "
                f"stopping. Finished generations are stored: rerun to resume.")
