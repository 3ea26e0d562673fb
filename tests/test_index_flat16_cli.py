"""flat16 through the CLI on real layouts: embeddings of the tiny random-init encoder
(numbers meaningless, vectors real) → ``augret index build --kind flat`` and ``--kind flat16``
→ ``augret search``; the run files agree up to ties. Then the pipeline and the service."""

from __future__ import annotations

from pathlib import Path

import pytest

from augret.cli.main import main
from augret.evaluate import read_run
from augret.formats.indexes import index_dirs, read_meta
from helpers.ties import assert_runs_equal_up_to_ties

pytest.importorskip("faiss")
pytest.importorskip("open_clip")


def _same_runs(emb: Path, tmp_path: Path, capsys: pytest.CaptureFixture, *,
               flat: Path | None = None) -> int:
    """Build flat (unless given) and flat16 indexes of ``emb``, search both, compare."""
    kinds = ("flat16",) if flat is not None else ("flat", "flat16")
    for kind in kinds:
        assert main(["index", "build", str(emb), "--out", str(tmp_path / kind), "--kind", kind,
                     "--no-progress"]) == 0
    indexes = {"flat": flat or tmp_path / "flat", "flat16": tmp_path / "flat16"}
    capsys.readouterr()
    assert main(["index", "info", str(tmp_path / "flat16")]) == 0
    out = capsys.readouterr().out
    assert "flat16" in out and "mapped" in out and "+/GPU" in out
    for meta in map(read_meta, index_dirs(tmp_path / "flat16").values()):
        assert {s["stored"] for s in meta["shards"]} == {"linked"}
    swaps = 0
    for extra in ([], ["--filter-modality"]):
        runs = {}
        for kind, flags in (("flat", []), ("flat16", ["--device", "cpu", "--block-mb", "1"])):
            out_dir = tmp_path / f"runs-{kind}{len(extra)}"
            assert main(["search", str(emb), "--index", str(indexes[kind]), "--out",
                         str(out_dir), *extra, *flags]) == 0
            runs[kind] = sorted(out_dir.glob("*.run"))
        assert [p.name for p in runs["flat"]] == [p.name for p in runs["flat16"]]
        assert runs["flat"]
        for a, b in zip(runs["flat"], runs["flat16"], strict=True):
            swaps += assert_runs_equal_up_to_ties(read_run(a), read_run(b))
    return swaps


def test_shapes_sample_runs_equal_flat(shapes_indexes, tmp_path, capsys):
    """The session's shapes embeddings (augret embed's code, the tiny encoder) and flat
    indexes (augret index build's code)."""
    _same_runs(shapes_indexes.emb, tmp_path, capsys, flat=shapes_indexes.dense)
    assert len(list((tmp_path / "runs-flat160").glob("*.run"))) == 12


def test_mini_mbeir_mscoco_runs_equal_flat(shared_data, tmp_path, capsys):
    data = shared_data / "mbeir-mini-mscoco"
    if not data.is_dir():
        pytest.skip("mbeir-mini-mscoco is not in ../shared/data")
    emb = tmp_path / "emb"
    assert main(["embed", str(data), "--encoder", "tiny", "--out", str(emb), "--device", "cpu",
                 "--no-progress"]) == 0
    _same_runs(emb, tmp_path, capsys)
    assert len(list((tmp_path / "runs-flat160").glob("*.run"))) == 4


def test_pipeline_and_service_search_a_flat16_index(sample_dir, tmp_path):
    from augret.index import IndexConfig
    from augret.pipeline import RunConfig, run_mbeir
    from augret.serve import Searcher

    out = tmp_path / "out"
    cfg = RunConfig(encoder="tiny", workers=0, device="cpu", pools=["union"],
                    tasks=["webqa_task1", "cirr_task7"], index=IndexConfig(kind="flat16"))
    report = run_mbeir(sample_dir, out, cfg, progress=False)
    assert read_meta(out / "index" / "dense" / "union")["kind"] == "flat16"
    assert set(report.results) == {("webqa_task1", "union"), ("cirr_task7", "union")}
    s = Searcher.open(out / "index" / "dense", device="cpu")
    assert s.kind == "dense" and type(s.dense).__name__ == "Flat16Index"
    assert s.dense.device == "cpu"
    hits = s.search("Which shape has three sides?", k=3).hits
    assert len(hits) == 3 and hits[0].score >= hits[-1].score
