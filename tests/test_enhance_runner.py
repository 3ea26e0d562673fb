"""The enhancement runner: counts, store reuse, failures, de-duplication, output layout.

The backend here is the library's ``fake`` backend, which injects faults and records calls;
the real backends run the same runner in tests/test_enhance_e2e.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from augret.data import MBEIRDir, iter_candidates, iter_queries
from augret.enhance import EnhanceConfig, GenerationStore, enhance
from augret.enhance.backends.fake import FakeBackend
from helpers.edge_data import REPEATED_POOL, write_edge_dir, write_repeated_images, write_rows


@pytest.fixture
def edge_dir(tmp_path: Path) -> Path:
    """A CIRR-like test task whose images cover the awkward cases."""
    return write_edge_dir(tmp_path / "data")


def _cfg(tmp_path: Path, **kw) -> EnhanceConfig:
    return EnhanceConfig(store=tmp_path / "store.sqlite", workers=2, batch_size=3, **kw)


def test_bad_rows_fail_alone_and_counts_reconcile(edge_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    backend = FakeBackend()
    report = enhance(edge_dir, out, _cfg(tmp_path), backend=backend, progress=False)
    q = report["files"]["query/test/mbeir_cirr_task7_test.jsonl"]
    c = report["files"]["cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"]
    for counts in (q, c):
        assert counts["total"] == (counts["generated"] + counts["cached"]
                                   + counts["passed_through"] + counts["failed"])
        assert counts["failed"] == sum(counts["failed_by_reason"].values())
    assert q["failed_by_reason"] == {"invalid_row": 3}
    # queries: 12 good lines + 3 unparseable; 11 image rows condense text only (no image read),
    # the question (8:90) needs its image (ok.jpg)
    assert q["total"] == 15 and q["failed"] == 3
    failures = [json.loads(x) for x in (out / "enhance_failures.jsonl").read_text().splitlines()]
    by_id = {f["id"]: f["error"] for f in failures if f["file"].startswith("cand_pool")}
    assert "image not found" in by_id["8:3"]
    assert "empty" in by_id["8:4"]
    assert "truncated" in by_id["8:5"] or "corrupt" in by_id["8:5"]
    assert "too large" in by_id["8:6"] or "bomb" in by_id["8:6"]
    assert set(by_id) == {"8:3", "8:4", "8:5", "8:6"}  # CMYK, 16-bit, palette, GIF, TIFF work
    assert c["total"] == 12 and c["passed_through"] == 1 and c["failed"] == 4
    assert c["generated"] == 6 and c["cached"] == 1  # ok_copy.jpg has ok.jpg's bytes
    query_errors = sorted(f["error"] for f in failures if f["file"].startswith("query"))
    assert any("invalid JSON" in e for e in query_errors)
    assert any("UTF-8" in e for e in query_errors)
    assert any("query_modality" in e for e in query_errors)
    rows = [json.loads(x) for x in (out / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl")
            .read_text().splitlines()]
    assert [r["did"] for r in rows] == [f"8:{i}" for i in range(1, 12)] + ["8:50"]
    failed = rows[2]
    assert failed["txt"] is None and failed["enhancement"]["status"] == "failed"
    ok = rows[0]
    assert ok["txt"] and ok["txt_raw"] is None and ok["enhancement"]["status"] == "ok"
    assert ok["enhancement"]["task"] == "caption_candidate"
    assert rows[-1]["enhancement"] == {"task": "passthrough", "status": "passthrough"}


def test_rerun_generates_nothing_and_output_is_identical(edge_dir: Path, tmp_path: Path) -> None:
    enhance(edge_dir, tmp_path / "a", _cfg(tmp_path), backend=FakeBackend(), progress=False)
    backend = FakeBackend()
    report = enhance(edge_dir, tmp_path / "b", _cfg(tmp_path), backend=backend, progress=False)
    assert report["last_run"]["generated"] == 0
    # only the failing rows are tried again, and they fail before reaching the backend
    assert backend.calls == []
    for f in ("query/test/mbeir_cirr_task7_test.jsonl",
              "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_backend_failures_keep_text_and_are_retried(edge_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _cfg(tmp_path, side="queries")
    report = enhance(edge_dir, out, cfg, backend=FakeBackend(fail_match="Make it blue"),
                     progress=False)
    q = report["files"]["query/test/mbeir_cirr_task7_test.jsonl"]
    assert q["failed"] == 14 and q["generated"] == 1  # only the question got through
    rows = [json.loads(x) for x in (out / "query/test/mbeir_cirr_task7_test.jsonl")
            .read_text().splitlines()]
    assert rows[0]["query_txt"] == "Make it blue and shiny."
    assert "HTTP 500" in rows[0]["enhancement"]["error"]
    healthy = FakeBackend()
    report = enhance(edge_dir, out, cfg, backend=healthy, progress=False)
    q = report["files"]["query/test/mbeir_cirr_task7_test.jsonl"]
    assert q["failed"] == 3 and q["generated"] == 1 and q["cached"] == 11
    assert len(healthy.calls) == 1  # 11 rows share one condensed text


def test_output_is_a_data_directory(edge_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    enhance(edge_dir, out, _cfg(tmp_path, side="queries"), backend=FakeBackend(),
            progress=False)
    d = MBEIRDir(out)
    assert [t.task.name for t in d.tasks()] == ["cirr_task7"]
    assert d.tasks()[0].qrels is not None and d.tasks()[0].pool is not None
    assert (out / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl").is_symlink()
    q = next(iter_queries(d.tasks()[0].queries))
    assert d.resolve_image(q.query_img_path).is_file()
    assert q.extra["query_txt_raw"] == "Make it blue and shiny."
    # enhancing candidates into the same output replaces the link with a real file
    enhance(edge_dir, out, _cfg(tmp_path, side="candidates"), backend=FakeBackend(),
            progress=False)
    assert not (out / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl").is_symlink()
    report = json.loads((out / "enhance_report.json").read_text())
    assert len(report["files"]) == 2
    pool = out / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"
    assert sum(1 for _ in iter_candidates(pool)) == 12


def test_append_mode_and_overlong_outputs(edge_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    enhance(edge_dir, out, _cfg(tmp_path, side="queries", mode="append"),
            backend=FakeBackend(), progress=False)
    row = json.loads((out / "query/test/mbeir_cirr_task7_test.jsonl").read_text().splitlines()[0])
    assert row["query_txt"].startswith("Make it blue and shiny. w")
    fail = _cfg(tmp_path, side="candidates", candidate_caption_words=4, overlong="fail")
    report = enhance(edge_dir, tmp_path / "long", fail, backend=FakeBackend(words=7),
                     progress=False)
    c = report["files"]["cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"]
    assert c["generated"] == 0 and c["failed"] == 11 and c["truncated"] == 0
    assert c["failed_by_reason"]["overlong_output"] == 7
    failures = (tmp_path / "long" / "enhance_failures.jsonl").read_text()
    assert "over-long output (7 words > 6 allowed)" in failures
    # the default policy keeps the output, cut to the word limit, and flags the row
    cut = _cfg(tmp_path, side="candidates", candidate_caption_words=4)
    report = enhance(edge_dir, tmp_path / "cut", cut, backend=FakeBackend(words=7),
                     progress=False)
    c = report["files"]["cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"]
    assert (c["generated"], c["cached"], c["failed"], c["truncated"]) == (6, 1, 4, 7)
    rows = [json.loads(x) for x in (tmp_path / "cut" / "cand_pool/local/"
                                    "mbeir_cirr_task7_cand_pool.jsonl").read_text().splitlines()]
    ok = rows[0]
    assert len(ok["txt"].split()) == 4 and ok["enhancement"]["truncated"] is True


def test_dedup_across_pools_and_splits(tmp_path: Path, sample_dir: Path) -> None:
    data = tmp_path / "d"
    shutil.copytree(sample_dir, data)
    store = tmp_path / "s.sqlite"
    backend = FakeBackend()
    enhance(data, tmp_path / "o1", EnhanceConfig(store=store, side="candidates"),
            backend=backend, progress=False)
    n_test = len(backend.calls)
    with GenerationStore(store) as s:
        assert len(s) == n_test
    # the union test pool (if present) and a second output reuse every generation
    backend2 = FakeBackend()
    report = enhance(data, tmp_path / "o2", EnhanceConfig(store=store, side="candidates"),
                     backend=backend2, progress=False)
    assert backend2.calls == [] and report["last_run"]["cached"] == n_test


def test_dead_backend_stops_the_run_resumably(tmp_path: Path, sample_dir: Path) -> None:
    from augret.errors import BackendError

    dead = FakeBackend(dead=True)
    cfg = _cfg(tmp_path, side="candidates", abort_after_failed_batches=2)
    with pytest.raises(BackendError, match="2 consecutive batches failed"):
        enhance(sample_dir, tmp_path / "out", cfg, backend=dead, progress=False)
    assert len(dead.calls) == 2 * cfg.batch_size
    assert not (tmp_path / "out" / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl").exists()
    report = enhance(sample_dir, tmp_path / "out", cfg, backend=FakeBackend(), progress=False)
    assert report["last_run"]["failed"] == 0


def test_real_odd_images_from_skimage(shared_data: Path, tmp_path: Path) -> None:
    images = sorted(p for p in (shared_data / "skimage-images").iterdir()
                    if p.suffix.lower() in (".png", ".jpg", ".gif", ".tif"))
    root = tmp_path / "d"
    pool = [{"txt": "" if i % 2 else None, "img_path": str(p), "modality": "image",
             "did": f"4:{i + 1}", "src_content": None} for i, p in enumerate(images)]
    write_rows(root / "cand_pool/local/mbeir_nights_task4_cand_pool.jsonl", pool)
    report = enhance(root, tmp_path / "out", _cfg(tmp_path, side="candidates"),
                     backend=FakeBackend(), progress=False)
    counts = report["files"]["cand_pool/local/mbeir_nights_task4_cand_pool.jsonl"]
    failures = [json.loads(x) for x in (tmp_path / "out" / "enhance_failures.jsonl")
                .read_text().splitlines()]
    # every image decodes (grey, RGBA, 16-bit, GIF, multi-page TIFF...) except one TIFF layout
    # Pillow cannot read, which fails alone with a clear reason
    assert {f["id"] for f in failures} <= {f"4:{i + 1}" for i, p in enumerate(images)
                                            if p.name == "multipage_rgb.tif"}
    assert all("not a recognised image format" in f["error"] for f in failures)
    assert counts["generated"] + counts["cached"] == len(images) - len(failures)


def test_duplicates_across_chunks_are_generated_once(tmp_path: Path) -> None:
    """A chunk is looked up while the previous one generates: its late hits are not redone."""
    root = tmp_path / "data"
    (root / "mbeir_images").mkdir(parents=True)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "mbeir_images" / "a.png")
    rows = [{"qid": f"8:{i + 1}", "query_txt": "Make it blue and shiny.",
             "query_img_path": "mbeir_images/a.png", "query_modality": "image,text",
             "query_src_content": None, "pos_cand_list": ["8:1"], "neg_cand_list": [],
             "task_id": 7} for i in range(100)]
    write_rows(root / "query/test/mbeir_cirr_task7_test.jsonl", rows)
    backend = FakeBackend(delay=0.5)  # the next chunk's lookup runs during this sleep
    report = enhance(root, tmp_path / "out", _cfg(tmp_path, side="queries"), backend=backend,
                     progress=False)
    counts = report["files"]["query/test/mbeir_cirr_task7_test.jsonl"]
    assert len(backend.calls) == 1  # 100 rows over 4 chunks of 32
    assert (counts["generated"], counts["cached"]) == (1, 99)


def test_files_takes_a_list_of_globs(edge_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, files=["*cirr_task7_test.jsonl", "nothing*"])
    report = enhance(edge_dir, tmp_path / "out", cfg, backend=FakeBackend(), progress=False)
    assert list(report["files"]) == ["query/test/mbeir_cirr_task7_test.jsonl"]


def test_one_attempt_per_key_recorded_failures_and_retry(tmp_path: Path) -> None:
    """150 rows over 30 images: 30 attempts, none on a rerun, 30 with retry_failed."""
    data = write_repeated_images(tmp_path / "data")
    cfg = _cfg(tmp_path, side="candidates")
    empty = FakeBackend(fail_share=1.0, failure="empty")
    first = enhance(data, tmp_path / "out", cfg, backend=empty, progress=False)["last_run"]
    assert len(empty.calls) == 30 and first["attempts"] == 30
    assert first["failed"] == 150 and first["failed_by_reason"] == {"empty_output": 150}
    with GenerationStore(cfg.store) as store:
        assert store.failure_count() == 30 and len(store) == 0
    rerun = FakeBackend(fail_share=1.0, failure="empty")
    again = enhance(data, tmp_path / "out", cfg, backend=rerun, progress=False)["last_run"]
    assert rerun.calls == [] and again["attempts"] == 0 and again["failed"] == 150
    retry = FakeBackend(fail_share=1.0, failure="empty")
    forced = enhance(data, tmp_path / "out", dataclasses.replace(cfg, retry_failed=True),
                     backend=retry, progress=False)["last_run"]
    assert len(retry.calls) == 30 and forced["attempts"] == 30 and forced["failed"] == 150
    # a retry that succeeds replaces the recorded failure
    healed = enhance(data, tmp_path / "out", dataclasses.replace(cfg, retry_failed=True),
                     backend=FakeBackend(), progress=False)["last_run"]
    assert (healed["attempts"], healed["generated"], healed["cached"]) == (30, 30, 120)
    with GenerationStore(cfg.store) as store:
        assert store.failure_count() == 0 and len(store) == 30


def test_transient_failures_are_retried_by_the_next_run(tmp_path: Path) -> None:
    data = write_repeated_images(tmp_path / "data")
    cfg = _cfg(tmp_path, side="candidates", abort_after_failed_batches=0)  # no dead-server stop
    for _ in range(2):
        flaky = FakeBackend(fail_share=1.0, failure="error")
        run = enhance(data, tmp_path / "out", cfg, backend=flaky, progress=False)["last_run"]
        assert len(flaky.calls) == 30 and run["attempts"] == 30
        assert run["failed_by_reason"] == {"backend_error": 150}
    with GenerationStore(cfg.store) as store:
        assert store.failure_count() == 0
    # a recovered backend: each image generated once, its copies cached
    run = enhance(data, tmp_path / "out", cfg, backend=FakeBackend(), progress=False)
    counts = run["files"][REPEATED_POOL]
    assert (counts["attempts"], counts["generated"], counts["cached"]) == (30, 30, 120)
    assert counts["total"] == counts["generated"] + counts["cached"] + counts[
        "passed_through"] + counts["failed"]


def test_corrupt_images_are_recorded_once(edge_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, side="candidates")
    first = enhance(edge_dir, tmp_path / "out", cfg, backend=FakeBackend(), progress=False)
    c = first["files"]["cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"]
    # truncated and bomb images are read and keyed, then fail to decode: deterministic
    assert c["failed_by_reason"] == {"missing_image": 2, "corrupt_image": 2}
    assert c["attempts"] == c["generated"] + 2
    with GenerationStore(cfg.store) as store:
        assert store.failure_count() == 2
    again = enhance(edge_dir, tmp_path / "out", cfg, backend=FakeBackend(), progress=False)
    c = again["files"]["cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"]
    assert c["attempts"] == 0 and c["failed_by_reason"] == {"missing_image": 2,
                                                             "corrupt_image": 2}
