"""Report plots (matplotlib, Agg backend, imported lazily: extra ``plot``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from augret._lazy import require

__all__ = ["grouped_bars"]


def grouped_bars(path: str | Path, labels: Sequence[str],
                 series: Mapping[str, Sequence[float | None]], *, title: str, ylabel: str,
                 marks: Mapping[str, Sequence[bool]] | None = None,
                 colors: Mapping[str, int] | None = None, zero_line: bool = False,
                 errors: Mapping[str, Sequence[float | None]] | None = None) -> Path:
    """A grouped bar chart: one group per label, one bar per series (``None``: no bar).

    Args:
        path: The PNG to write.
        labels: Group labels (tasks).
        series: Bar heights per series (conditions), aligned with ``labels``.
        title: Figure title.
        ylabel: Y-axis label.
        marks: Per series, which bars get a ``*`` (e.g. significant deltas).
        colors: Per series, an index into the ``tab10`` palette (keeps a condition's colour
            across charts); default: the series order.
        zero_line: Draw the y = 0 line (delta charts).
        errors: Per series, error bar half-lengths aligned with ``labels`` (e.g. the sd over
            seeds; ``None``: no bar).

    Returns:
        The written file.
    """
    mpl = require("matplotlib", "plot")
    mpl.use("Agg", force=True)
    plt = require("matplotlib.pyplot", "plot")
    names = list(series)
    n = max(len(names), 1)
    width = 0.8 / n
    fig_w = max(7.0, 0.33 * len(labels) * max(n, 2) + 4.0)
    fig, ax = plt.subplots(figsize=(min(fig_w, 22.0), 5.0))
    try:
        cmap = plt.get_cmap("tab10")
        for i, name in enumerate(names):
            xs, ys, flags, errs = [], [], [], []
            for j, v in enumerate(series[name]):
                if v is None:
                    continue
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(v)
                flags.append(bool(marks and marks.get(name) and marks[name][j]))
                err = (errors or {}).get(name)
                errs.append(err[j] if err is not None and err[j] is not None else 0.0)
            color = cmap((colors or {}).get(name, i) % 10)
            bars = ax.bar(xs, ys, width * 0.95, label=name, color=color,
                          yerr=errs if any(errs) else None, capsize=2 if any(errs) else 0,
                          error_kw={"elinewidth": 0.8})
            for bar, flag in zip(bars, flags, strict=True):
                if flag:
                    h = bar.get_height()
                    ax.annotate("*", (bar.get_x() + bar.get_width() / 2, h),
                                ha="center", va="bottom" if h >= 0 else "top", fontsize=11)
        if zero_line:
            ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
