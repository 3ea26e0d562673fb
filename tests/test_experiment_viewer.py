"""The side-by-side viewer: selection of queries, the static page, its size cap, and (browser
tier) a headless-Chromium screenshot at ``$TMPDIR/augret-experiment-report/viewer.png``."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from augret.errors import ConfigError
from augret.experiment.viewer import select_queries, write_viewer
from helpers.mbeir_runs import write_condition_runs, write_enhanced_copy

KEEP = Path(tempfile.gettempdir()) / "augret-experiment-report"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def systems(sample_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("viewer")
    return {
        "a": write_condition_runs(sample_dir, root / "a", {}, default=0.4),
        "b": write_condition_runs(sample_dir, root / "b", {"cirr_task7": 0.95,
                                                           "oven_task8": 0.95}, default=0.5,
                                  seed=3),
        "enhanced": write_enhanced_copy(sample_dir, root / "enhanced"),
    }


class _E:
    def __init__(self, delta: float, tie: float = 0.0) -> None:
        self.delta, self.tie = delta, tie


def test_select_queries_interleaves_wins_and_losses():
    entries = [_E(1), _E(1), _E(1), _E(-1), _E(0, 0.5), _E(0, -0.2), _E(0), _E(0), _E(0)]
    top, sample = select_queries(entries, changed=4, sampled=3, seed=1)
    # wins and losses alternate; a tie-break (reciprocal rank) move counts as a smaller one
    assert [(e.delta, e.tie) for e in top] == [(1, 0), (-1, 0), (1, 0), (0, -0.2)]
    top6, _ = select_queries(entries, changed=6, sampled=0, seed=1)
    assert [(e.delta, e.tie) for e in top6][4:] == [(1, 0), (0, 0.5)]
    assert len(sample) == 3 and not {id(e) for e in sample} & {id(e) for e in top}
    again_top, again_sample = select_queries(entries, changed=4, sampled=3, seed=1)
    assert again_top == top and again_sample == sample
    only_same, rest = select_queries([_E(0), _E(0)], changed=5, sampled=1)
    assert only_same == [] and len(rest) == 1


def test_viewer_page(sample_dir, systems, tmp_path):
    out = tmp_path / "view.html"
    s = write_viewer(out, sample_dir, systems["a"], systems["b"],
                     enhanced_dir=systems["enhanced"], label_a="baseline",
                     label_b="fully_enhanced", changed=6, sampled=4)
    html = out.read_text()
    assert (s.changed, s.sampled) == (6, 4) and s.bytes == out.stat().st_size < 2_000_000
    assert s.thumbnails > 20 and s.omitted == 0
    assert html.count('<section class="q') == 10
    assert "Most changed queries" in html and "Sampled queries" in html
    assert html.count("data:image/jpeg;base64,") >= s.thumbnails
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    assert 'class="rw"' in html and "ENH rewrite of:" in html  # raw vs rewritten text
    assert "VLM: ENH caption of" in html  # enhanced candidate captions
    assert '<li class="hit">' in html and "Ground truth" in html
    first = re.search(r'<section class="q (\w*)"', html)
    assert first and first.group(1) in ("win", "loss")  # the first card changed
    KEEP.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, KEEP / "viewer.html")


def test_viewer_labels_the_simulated_captioner(sample_dir, systems, tmp_path):
    """With the reference captioner's texts, the page says who wrote them, and the banner."""
    from augret.data.sample import SCENES_FILE
    from augret.enhance import EnhanceConfig, enhance

    enhanced = tmp_path / "ref"
    enhance(sample_dir, enhanced, EnhanceConfig(backend="reference", model=SCENES_FILE,
                                                store=tmp_path / "s.sqlite"), progress=False)
    out = tmp_path / "v.html"
    write_viewer(out, sample_dir, systems["a"], systems["b"], enhanced_dir=enhanced,
                 changed=4, sampled=0, notice="Simulated world: a perfect VLM.")
    html = out.read_text()
    assert '<p class="notice">Simulated world: a perfect VLM.</p>' in html
    assert "reference (simulated VLM): " in html and "VLM: " not in html.replace(
        "simulated VLM): ", "")


def test_viewer_size_cap_and_errors(sample_dir, systems, tmp_path):
    s = write_viewer(tmp_path / "v.html", sample_dir, systems["a"], systems["b"], changed=4,
                     sampled=2, max_bytes=3000, pool="union", tasks=["cirr_task7"])
    assert s.omitted > 0 and s.thumbnails < 4
    assert "not embedded" in (tmp_path / "v.html").read_text()
    with pytest.raises(ConfigError, match="pool"):
        write_viewer(tmp_path / "x.html", sample_dir, systems["a"], systems["b"], pool="global")
    with pytest.raises(ConfigError, match="share no"):
        write_viewer(tmp_path / "x.html", sample_dir, systems["a"], systems["b"],
                     tasks=["infoseek_task6"])


def test_viewer_on_an_enhanced_data_dir(systems, tmp_path):
    """Given the enhanced directory as the data dir, raw texts come from ``*_raw`` fields."""
    out = tmp_path / "v.html"
    s = write_viewer(out, systems["enhanced"], systems["a"], systems["b"], changed=3,
                     sampled=0, tasks=["cirr_task7"])
    html = out.read_text()
    assert s.changed == 3 and s.thumbnails > 0 and s.omitted == 0
    assert "ENH rewrite of: " in html and re.search(r'class="lab">query</span>[A-Z][a-z]', html)
    assert "VLM: ENH caption of" in html


def test_view_cli(sample_dir, systems, tmp_path, capsys):
    from augret.cli.main import main

    out = tmp_path / "v.html"
    assert main(["view", str(out), "--data", str(sample_dir), "--a", str(systems["a"]),
                 "--b", str(systems["b"]), "--changed", "2", "--sampled", "1"]) == 0
    assert out.is_file() and "2 most-changed + 1 sampled" in capsys.readouterr().out


@pytest.mark.browser
def test_viewer_renders_in_chromium(sample_dir, systems, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed")
    page = tmp_path / "view.html"
    write_viewer(page, sample_dir, systems["a"], systems["b"], enhanced_dir=systems["enhanced"],
                 label_a="baseline", label_b="fully_enhanced")
    png = tmp_path / "viewer.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'prof'}",
           f"--screenshot={png}", "--window-size=1400,1800", page.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    KEEP.mkdir(parents=True, exist_ok=True)
    shutil.copy(png, KEEP / "viewer.png")
