"""Rich progress bars on stderr, built one way for every stage.

A bar is a :class:`rich.progress.Progress` whose columns are named from :data:`COLUMNS`. It is
drawn on stderr, and only when it is enabled and stderr is a terminal; a bar that is not
``transient`` also leaves its final state behind, which is written once when stderr is a file.
A bar that is not drawn still counts, so callers use it the same way either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

__all__ = ["COLUMNS", "progress_bar", "track"]

#: What each column name shows.
COLUMNS: dict[str, str] = {
    "description": "the task's description",
    "spinner": "a spinner (for work of unknown size)",
    "bar": "the bar",
    "count": "completed/total",
    "items": "'12,345 items' (completed, for work of unknown size)",
    "percent": "the percentage done",
    "rate": "the task's ``rate`` field, a text the caller updates (e.g. '12.3 rows/s')",
    "elapsed": "the time elapsed",
    "remaining": "the estimated time remaining",
}

DEFAULT_COLUMNS = ("description", "bar", "count", "elapsed", "remaining")


def _column(name: str) -> ProgressColumn:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    make: dict[str, Callable[[], ProgressColumn]] = {
        "description": lambda: TextColumn("{task.description}"),
        "spinner": SpinnerColumn,
        "bar": BarColumn,
        "count": MofNCompleteColumn,
        "items": lambda: TextColumn("{task.completed:,} items"),
        "percent": lambda: TextColumn("{task.percentage:>3.0f}%"),
        "rate": lambda: TextColumn("{task.fields[rate]}"),
        "elapsed": TimeElapsedColumn,
        "remaining": TimeRemainingColumn,
    }
    if name not in make:
        raise ValueError(f"unknown progress column {name!r}; known: {', '.join(COLUMNS)}")
    return make[name]()


def progress_bar(*columns: str, transient: bool = True, enabled: bool = True) -> Progress:
    """A progress display on stderr with the named columns (not started).

    Args:
        columns: Names from :data:`COLUMNS`, left to right (default: description, bar,
            count, elapsed, remaining). A ``rate`` column needs ``rate=...`` on every task.
        transient: Erase the bar when it stops; ``False`` keeps its final state, which is
            also written once at the end when stderr is not a terminal.
        enabled: ``False`` draws nothing.

    Returns:
        A :class:`rich.progress.Progress`; ``disable`` is set when it is not drawn (its tasks
        still count).
    """
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    shown = enabled and (console.is_terminal or not transient)
    return Progress(*(_column(c) for c in columns or DEFAULT_COLUMNS), console=console,
                    transient=transient, disable=not shown)


@contextmanager
def track(description: str, total: int | None, *columns: str, enabled: bool = True,
          **fields: Any) -> Iterator[Callable[[int], None]]:
    """Draw a transient one-task bar while the block runs; yields ``advance(n)``.

    Args:
        description: The task's label.
        total: Units of work (``None``: unknown).
        columns: As for :func:`progress_bar`.
        enabled: ``False`` draws nothing.
        fields: Initial task fields (e.g. ``rate``).
    """
    bar = progress_bar(*columns, enabled=enabled)
    if bar.disable:
        yield lambda n=1: None
        return
    with bar:
        task = bar.add_task(description, total=total, **fields)
        yield lambda n=1: bar.advance(task, n)
