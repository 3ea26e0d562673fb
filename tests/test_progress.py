"""The one progress module (:mod:`augret.progress`): columns, stderr only, shown when asked."""

from __future__ import annotations

import pytest

from augret.progress import COLUMNS, progress_bar, track


def test_columns_are_named_and_unknown_ones_refused() -> None:
    bar = progress_bar(*COLUMNS)
    assert len(bar.columns) == len(COLUMNS)
    with pytest.raises(ValueError, match="unknown progress column 'speed'"):
        progress_bar("description", "speed")


def test_off_a_terminal_only_a_lasting_bar_leaves_its_final_state_on_stderr(capsys) -> None:
    with progress_bar() as bar:  # transient: nothing at all
        task = bar.add_task("transient", total=3)
        bar.advance(task, 3)
    assert bar.disable and bar.tasks[0].completed == 3  # still counts
    with progress_bar("description", "count", "rate", transient=False, enabled=False) as bar:
        bar.add_task("disabled", total=2, rate="")
    with progress_bar("description", "count", "rate", transient=False) as bar:
        task = bar.add_task("lasting", total=2, rate="")
        bar.update(task, advance=2, rate="9.5 rows/s")
    out, err = capsys.readouterr()
    assert out == ""
    assert "lasting" in err and "2/2" in err and "9.5 rows/s" in err
    assert "transient" not in err and "disabled" not in err


def test_on_a_terminal_bars_are_drawn_unless_disabled(monkeypatch, capsys) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stderr as a terminal
    assert not progress_bar().disable
    assert progress_bar(enabled=False).disable
    with track("counting", 4, "description", "items") as advance:
        advance(4)
    assert "counting" in capsys.readouterr().err


def test_track_yields_a_no_op_when_not_drawn(capsys) -> None:
    with track("quiet", None, "spinner", "description", "items", "elapsed") as advance:
        advance(10)
    assert capsys.readouterr() == ("", "")
