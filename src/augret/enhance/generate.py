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
from augret.enhance.item import item_failure, item_generation
from augret.enhance.ledger import Attempt
from augret.enhance.outputs import Failure
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
        input_kind: The failure kind of a row that failed before the model (its image did
            not read or decode); such a row is no model failure for :class:`AbortWatch`.
    """

    key: str
    route: Route
    result: GenerationResult
    input_kind: str | None = None

    @property
    def input_error(self) -> bool:
        return self.input_kind is not None


def commit(ctx: RunContext, outcomes: Sequence[Outcome]) -> list[Attempt]:
    """Check outcomes; store the usable ones and the deterministic failures; record all of
    them in the run ledger.

    The store is written first: a crash in between leaves store hits, never a lost output.

    Returns:
        One attempt per outcome (``reason`` and ``kind`` set for failures).
    """
    stored, recorded, attempts = [], [], []
    for o in outcomes:
        res = o.result
        checked = (Failure(o.input_kind or "backend_error", res.error)
                   if res.error is not None else ctx.rules.check(o.route, res.text))
        if isinstance(checked, Failure):
            attempts.append(Attempt(o.key, reason=checked.reason, kind=checked.kind))
            if not checked.transient:
                recorded.append(item_failure(o.key, checked, backend=ctx.backend,
                                             prompts=ctx.prompts, route=o.route))
            continue
        stored.append(item_generation(o.key, checked, res, backend=ctx.backend,
                                      prompts=ctx.prompts, params=ctx.params, route=o.route))
        attempts.append(Attempt(o.key, tokens=res.output_tokens))
    ctx.store.put_many(stored, recorded)
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
