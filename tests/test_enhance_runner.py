"""The enhancement runner: counts, store reuse, failures, de-duplication, output layout.

The backend here is an in-process fake used only to inject faults and count calls; the real
backends run the same runner in tests/test_enhance_e2e.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augret.data import MBEIRDir, iter_candidates, iter_queries
from augret.enhance import EnhanceConfig, GenerationStore, enhance
from augret.enhance.backends.base import GenerationParams, GenerationRequest, GenerationResult


class FakeBackend:
    """Deterministic text per request; fails requests whose text contains a marker."""

    name = "fake"
    model_id = "fake-vlm"
    revision = None

    def __init__(self, fail_marker: str | None = None, words: int = 6) -> None:
        self.calls: list[GenerationRequest] = []
        self.fail_marker = fail_marker
        self.words = words

    def generate(self, requests: Sequence[GenerationRequest],
                 params: GenerationParams) -> list[GenerationResult]:
        out = []
        for r in requests:
            self.calls.append(r)
            text = json.dumps(r.messages)
            if self.fail_marker and self.fail_marker in text:
                out.append(GenerationResult(None, error="backend error: HTTP 500 after 3 retries"))
                continue
            h = hashlib.sha256(text.encode())
            if r.image is not None:
                h.update(r.image.tobytes())
            words = " ".join(f"w{h.hexdigest()[i:i + 4]}" for i in range(0, 4 * self.words, 4))
            out.append(GenerationResult(words, output_tokens=self.words, finish_reason="stop"))
        return out

    def close(self) -> None:
        pass


def _img(path: Path, color=(200, 30, 30), mode="RGB", size=(40, 30), fmt=None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 0).save(path, format=fmt)
    return path.name


def _write(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for r in rows:
            f.write(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode())


def _bomb_png(path: Path) -> None:
    """A valid PNG header claiming 100000 x 100000 pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    hdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


@pytest.fixture
def edge_dir(tmp_path: Path) -> Path:
    """A CIRR-like test task whose images cover the awkward cases."""
    root = tmp_path / "data"
    im = root / "mbeir_images" / "x"
    _img(im / "ok.jpg")
    _img(im / "ok_copy.jpg")  # identical bytes: one generation
    (im / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
    (im / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _bomb_png(im / "bomb.png")
    Image.new("CMYK", (20, 20), (0, 255, 0, 0)).save(im / "cmyk.jpg")
    Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 100).save(im / "deep.png")
    Image.new("P", (20, 20), 3).save(im / "palette.png", transparency=3)
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(im / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(im / "pages.tif", save_all=True, append_images=frames[1:])
    names = ["ok.jpg", "ok_copy.jpg", "missing.jpg", "empty.jpg", "truncated.jpg", "bomb.png",
             "cmyk.jpg", "deep.png", "palette.png", "anim.gif", "pages.tif"]
    queries = [{"qid": f"8:{i + 1}", "query_txt": "Make it blue and shiny.",
                "query_img_path": f"mbeir_images/x/{n}", "query_modality": "image,text",
                "query_src_content": None, "pos_cand_list": [f"8:{i + 1}"],
                "neg_cand_list": [], "task_id": 7} for i, n in enumerate(names)]
    queries.append({**queries[0], "qid": "8:90", "query_txt": "What is this?"})
    queries.append(b"{broken json\n")
    queries.append(b'{"qid": "8:91", "query_txt": "caf\xe9", "query_img_path": null}\n')
    queries.append({**queries[0], "qid": "8:92", "query_modality": "video"})
    _write(root / "query/test/mbeir_cirr_task7_test.jsonl", queries)
    pool = [{"txt": None, "img_path": f"mbeir_images/x/{n}", "modality": "image",
             "did": f"8:{i + 1}", "src_content": None} for i, n in enumerate(names)]
    pool.append({"txt": "A plain text candidate.", "img_path": None, "modality": "text",
                 "did": "8:50", "src_content": None})
    _write(root / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl", pool)
    (root / "qrels/test").mkdir(parents=True)
    (root / "qrels/test/mbeir_cirr_task7_test_qrels.txt").write_text("8:1 0 8:1 1 7\n")
    return root


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
    report = enhance(edge_dir, out, cfg, backend=FakeBackend(fail_marker="Make it blue"),
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
    report = enhance(edge_dir, tmp_path / "long", _cfg(tmp_path, side="candidates",
                                                      candidate_caption_words=4),
                     backend=FakeBackend(words=7), progress=False)
    c = report["files"]["cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"]
    assert c["generated"] == 0 and c["failed"] == 11
    failures = (tmp_path / "long" / "enhance_failures.jsonl").read_text()
    assert "over-long output (7 words > 6 allowed)" in failures


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

    class Dead(FakeBackend):
        def generate(self, requests, params):
            self.calls.extend(requests)
            return [GenerationResult(None, error="connection refused") for _ in requests]

    dead = Dead()
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
    _write(root / "cand_pool/local/mbeir_nights_task4_cand_pool.jsonl", pool)
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
