"""The ad-hoc Searcher: exact parity with the index and the embedder, BM25 and hybrid, hit
records, query-time enhancement through the store, batch files and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from augret.data import MBEIRDir
from augret.data.lookup import PoolLookup
from augret.enhance.backends.fake import FakeBackend
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from helpers.images import bomb_png, png

pytest.importorskip("faiss")
pytest.importorskip("bm25s")
pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def idx(shapes_indexes):
    return shapes_indexes


@pytest.fixture(scope="module")
def dense(idx, tiny_encoder):
    from augret.serve import Searcher

    return Searcher.open(idx.dense, encoder=tiny_encoder)


def _image(data: Path, name: str = "mscoco_task3") -> Path:
    q = next(MBEIRDir(data).iter_queries(name))
    return MBEIRDir(data).resolve_image(q.query_img_path)


def test_dense_hits_equal_the_index_search(dense, idx):
    from augret.serve import AdhocQuery

    img = _image(idx.data)
    for q in (AdhocQuery(text="a small blue square"),
              AdhocQuery(image=img.read_bytes()),
              AdhocQuery(text="Make it green.", image=img, task="cirr_task7")):
        res = dense.search(q, k=7)
        vec = dense.embed([q])
        want = dense.dense.search(vec, 7)
        assert [h.id for h in res.hits] == want.ids[0].tolist()
        np.testing.assert_allclose([h.score for h in res.hits], want.scores[0], rtol=1e-6)
        assert [h.rank for h in res.hits] == list(range(1, 8))
    assert dense.kind == "dense" and dense.describe()["pool"] == "union"


@pytest.mark.parametrize("task", ["mscoco_task0", "webqa_task1", "mscoco_task3",
                                  "nights_task4", "cirr_task7", "oven_task8"])
def test_query_vector_equals_the_embedders(dense, idx, task):
    """Same text, image and task as a query file row → the vector ``augret embed`` stored
    (instruction prefix, format_string and image included)."""
    from augret.formats.embeddings import read_entry
    from augret.serve import AdhocQuery

    data = MBEIRDir(idx.data)
    ids, stored = read_entry(idx.emb / "queries" / task)
    rows = {qid: i for i, qid in enumerate(ids)}
    queries = list(data.iter_queries(task))[:3]
    adhoc = [AdhocQuery(text=q.query_txt, task=task,
                        image=data.resolve_image(q.query_img_path) if q.query_img_path else None)
             for q in queries]
    got = dense.embed(adhoc)
    want = stored[[rows[q.qid] for q in queries]].astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-3)
    res = dense.search(adhoc[0], k=3)
    assert res.instruction and res.instruction.endswith(".")


def test_hit_records_come_from_the_pool_files(dense, idx):
    from augret.serve import AdhocQuery

    data = MBEIRDir(idx.data)
    lookup = PoolLookup(data.union_pool_files())
    res = dense.search(AdhocQuery(text="A large red ring on a black background."), k=20)
    assert len(res.hits) == 20
    for h in res.hits:
        rec = lookup.get(h.id)
        assert (h.text, h.modality) == (rec.txt, rec.modality)
        if rec.img_path:
            assert h.image_path == data.resolve_image(rec.img_path) and h.image_path.is_file()
        else:
            assert h.image_path is None


def test_modality_filter_and_k_larger_than_the_pool(dense, idx):
    from augret.serve import AdhocQuery

    res = dense.search(AdhocQuery(text="a circle", modality="image"), k=5)
    assert len(res.hits) == 5 and {h.modality for h in res.hits} == {"image"}
    everything = dense.search("a circle", k=10_000)
    assert len(everything.hits) == len(dense.catalog) == 288


def test_bm25_and_hybrid(idx, tiny_encoder):
    from augret.index import fuse_runs
    from augret.serve import AdhocQuery, Searcher
    from augret.serve.searcher import _to_run

    bm25 = Searcher.open(idx.bm25)
    assert bm25.kind == "bm25" and bm25.instruction_mode == "none"
    q = AdhocQuery(text="Which emblem did the weavers of Harrow adopt?", task="webqa_task1")
    res = bm25.search(q, k=5)
    want = bm25.bm25.search(["Which emblem did the weavers of Harrow adopt?"], 5)
    keep = want.rows[0] >= 0
    assert [h.id for h in res.hits] == want.ids[0][keep].tolist()
    assert "the weavers guild of Harrow" in res.hits[0].text
    assert res.instruction is None  # BM25 searches the text without instruction
    with pytest.raises(ConfigError, match="BM25"):
        bm25.search(AdhocQuery(image=png()), k=3)

    hybrid = Searcher.open(idx.dense, bm25_dir=idx.bm25, encoder=tiny_encoder, rrf_k=60)
    assert hybrid.kind == "hybrid"
    got = hybrid.search(q, k=8)
    prepared = [hybrid.prepare(q)]
    runs = []
    for index, arg in ((hybrid.dense, hybrid.embed(prepared)), (hybrid.bm25, [q.text])):
        r = index.search(arg, 100)
        keep = r.rows[0] >= 0
        runs.append(_to_run({"q0": list(zip(r.ids[0][keep].tolist(),
                                             r.scores[0][keep].tolist(), strict=True))},
                            ["q0"]))
    want = fuse_runs(runs, k=60, depth=8).ranking("q0")
    assert [(h.id, round(h.score, 9)) for h in got.hits] == [(d, round(s, 9)) for d, s in want]
    top = got.hits[0]
    assert 0 < top.score <= 2 / 61  # RRF: at best rank 1 in both rankings


def test_pick_index_and_pools(idx, tiny_encoder):
    from augret.serve import Searcher
    from augret.serve.searcher import pick_index

    assert pick_index(idx.dense) == idx.dense / "union"
    assert pick_index(idx.dense, "cirr_task7") == idx.dense / "cirr_task7"
    with pytest.raises(DataNotFoundError, match="no index of pool"):
        pick_index(idx.dense, "nope")
    local = Searcher.open(idx.dense, pool="webqa_task1", encoder=tiny_encoder)
    res = local.search("a circle", k=50)
    assert len(res.hits) == 36 and {h.modality for h in res.hits} == {"text"}
    with pytest.raises(ConfigError, match="one dense and one BM25"):
        Searcher.open(idx.dense, bm25_dir=idx.dense, encoder=tiny_encoder)


def test_bad_queries_raise_clear_errors(dense):
    from augret.errors import BadImage, ImageTooLarge, UnsupportedImage
    from augret.serve import AdhocQuery

    with pytest.raises(UnsupportedImage, match="not a recognised image format: query image "
                       r"\(accepted: PNG, JPEG, GIF, WEBP, BMP\)"):
        dense.search(AdhocQuery(image=b"definitely not an image"), k=3)
    with pytest.raises(UnsupportedImage):  # a real image, but TIFF is not accepted
        dense.search(AdhocQuery(image=png(fmt="TIFF")), k=3)
    with pytest.raises(BadImage, match="corrupt or truncated"):
        dense.search(AdhocQuery(image=png()[:60]), k=3)
    with pytest.raises(BadImage, match="empty"):
        dense.search(AdhocQuery(image=b""), k=3)
    with pytest.raises(ImageTooLarge, match="decompression bomb refused"):
        dense.search(AdhocQuery(image=bomb_png()), k=3)
    cap, dense.max_pixels = dense.max_pixels, 1_000_000
    try:  # under PIL's own bomb limit, over the Searcher's: refused before decoding
        with pytest.raises(ImageTooLarge, match="5000x5000 pixels, at most 1,000,000"):
            dense.search(AdhocQuery(image=bomb_png(5000)), k=3)
    finally:
        dense.max_pixels = cap
    with pytest.raises(DataNotFoundError, match="cannot read query image"):
        dense.search(AdhocQuery(image=Path("/nonexistent/x.png")), k=3)
    with pytest.raises(ConfigError, match="text or an image"):
        dense.search(AdhocQuery(text="   "), k=3)
    with pytest.raises(ConfigError, match="unknown task"):
        dense.search(AdhocQuery(text="x", task="cirr_task9"), k=3)
    with pytest.raises(ConfigError, match="unknown modality"):
        dense.search(AdhocQuery(text="x", modality="video"), k=3)
    for k in (0, -1, True, 2.5):
        with pytest.raises(ConfigError, match="positive integer"):
            dense.search("x", k=k)
    assert BadImage.http_status == 422 and UnsupportedImage.http_status == 415
    assert ImageTooLarge.http_status == 413


def _enhanced_searcher(idx, encoder, tmp_path, backend=None, **cfg):
    from augret.enhance import EnhanceConfig, GenerationStore
    from augret.serve import QueryEnhancer, Searcher

    store = GenerationStore(tmp_path / "store.sqlite")
    enhancer = QueryEnhancer(EnhanceConfig(store=tmp_path / "store.sqlite", **cfg),
                             backend=backend or FakeBackend(words=5), store=store)
    return Searcher.open(idx.dense, encoder=encoder, enhancer=enhancer)


def test_query_time_enhancement_uses_the_store(idx, tmp_path, tiny_encoder):
    from augret.serve import AdhocQuery, Searcher

    s = _enhanced_searcher(idx, tiny_encoder, tmp_path)
    vlm = s.enhancer.backend
    img = _image(idx.data).read_bytes()
    q = AdhocQuery(text="What is this shape called?", image=img, task="oven_task8")
    first = s.search(q, k=5)
    assert first.enhancement == {"route": "entity_rewrite", "status": "generated",
                                 "error": None}
    assert first.rewritten != first.original and first.rewritten.startswith("W")
    assert len(vlm.calls) == 1 and vlm.calls[0].image is not None
    second = s.search(q, k=5)
    assert second.enhancement["status"] == "cached" and len(vlm.calls) == 1
    assert second.rewritten == first.rewritten
    assert [h.id for h in second.hits] == [h.id for h in first.hits]
    # the rewritten text is what was encoded: the same as asking with it directly
    plain = Searcher.open(idx.dense, encoder=tiny_encoder)
    direct = plain.search(AdhocQuery(text=first.rewritten, image=img, task="oven_task8"), k=5)
    assert [h.id for h in direct.hits] == [h.id for h in first.hits]
    # routes: a condensed instruction sends no image; an image-only query is captioned
    cond = s.search(AdhocQuery(text="make it blue and larger", image=img), k=3)
    assert cond.enhancement["route"] == "condense" and vlm.calls[-1].image is None
    cap = s.search(AdhocQuery(image=img), k=3)
    assert cap.enhancement["route"] == "caption_query" and cap.rewritten
    assert cap.original is None
    text_only = s.search(AdhocQuery(text="a red circle"), k=3)
    assert text_only.enhancement["status"] == "passthrough"
    assert text_only.rewritten == "a red circle" and len(vlm.calls) == 3
    # another image is another generation
    s.search(AdhocQuery(text="What is this shape called?", image=png()), k=3)
    assert len(vlm.calls) == 4
    s.close()


def test_query_time_enhancement_reuses_offline_generations(idx, tmp_path, tiny_encoder):
    """``augret enhance`` stores a query's rewrite; the same query asked later is a store hit
    with the same text as the enhanced query file (same policy, prompts, keys)."""
    from augret.enhance import EnhanceConfig, GenerationStore, enhance
    from augret.serve import AdhocQuery

    vlm = FakeBackend(words=5)
    cfg = EnhanceConfig(side="queries", files="*oven_task8*", store=tmp_path / "store.sqlite",
                        workers=1)
    with GenerationStore(cfg.store) as store:
        assert len(store) == 0
    enhance(idx.data, tmp_path / "enhanced", cfg, backend=vlm, progress=False)
    offline_calls = len(vlm.calls)
    row = json.loads((tmp_path / "enhanced" / "query" / "test" /
                      "mbeir_oven_task8_test.jsonl").read_text().splitlines()[0])
    assert row["enhancement"]["status"] == "ok"
    s = _enhanced_searcher(idx, tiny_encoder, tmp_path, backend=vlm, side="queries")
    data = MBEIRDir(idx.data)
    res = s.search(AdhocQuery(text=row["query_txt_raw"], task="oven_task8",
                              image=data.resolve_image(row["query_img_path"])), k=3)
    assert res.enhancement["status"] == "cached" and len(vlm.calls) == offline_calls
    assert res.rewritten == row["query_txt"]


def test_failed_enhancement_keeps_the_original_text(idx, tmp_path, tiny_encoder):
    from augret.serve import AdhocQuery

    broken = FakeBackend(fail_share=1.0, error="HTTP 500 after 3 retries")
    s = _enhanced_searcher(idx, tiny_encoder, tmp_path, backend=broken)
    res = s.search(AdhocQuery(text="Which shape is this?", image=png()), k=3)
    assert res.enhancement["status"] == "failed" and "HTTP 500" in res.enhancement["error"]
    assert res.rewritten == "Which shape is this?" and len(res.hits) == 3


def test_search_file(dense, idx, tmp_path):
    from augret.evaluate import read_run
    from augret.serve.batch import search_file

    data = MBEIRDir(idx.data)
    cand = next(data.iter_pool("cirr_task7"))
    img = data.resolve_image(cand.img_path)
    queries = tmp_path / "queries.jsonl"
    rows = [{"qid": "a", "text": "a red circle"},
            {"qid": "b", "image": str(img), "modality": "image"},
            {"qid": "c", "query_txt": "Make it blue.",
             "query_img_path": str(img.relative_to(idx.data))}]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n = search_file(dense, queries, tmp_path / "out.jsonl", k=4, batch_size=2,
                    run=tmp_path / "out.run", image_root=idx.data)
    assert n == 3
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["qid"] for o in out] == ["a", "b", "c"] and all(len(o["hits"]) == 4 for o in out)
    best = out[1]["hits"][0]  # an indexed image finds itself first
    assert best["id"] == cand.did and best["image_path"] == str(img)
    assert best["score"] == pytest.approx(1.0, abs=1e-3)
    run = read_run(tmp_path / "out.run")
    assert run.qids == ["a", "b", "c"]
    assert [d for d, _ in run.ranking("a")] == [h["id"] for h in out[0]["hits"]]
    assert out[0]["hits"] == dense.search("a red circle", k=4).to_dict()["hits"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2 field 'text'"):
        search_file(dense, bad, tmp_path / "o.jsonl")
    bad.write_text('{"txt": "typo"}\n')
    with pytest.raises(DataFormatError, match="unknown field"):
        search_file(dense, bad, tmp_path / "o.jsonl")


def _image_bytes(mode: str, fmt: str) -> bytes:
    import io

    from PIL import Image

    img = Image.new("RGB", (48, 32), (30, 120, 200)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("mode", "fmt"), [
    ("RGB", "PNG"), ("RGBA", "PNG"), ("L", "PNG"), ("P", "PNG"), ("I;16", "PNG"),
    ("1", "PNG"), ("RGB", "JPEG"), ("CMYK", "JPEG"), ("L", "JPEG"), ("P", "GIF"),
    ("RGB", "WEBP"), ("RGBA", "WEBP"), ("RGB", "BMP")])
def test_accepted_image_formats_and_modes(dense, mode, fmt):
    from augret.serve import AdhocQuery

    res = dense.search(AdhocQuery(image=_image_bytes(mode, fmt)), k=2)
    assert len(res.hits) == 2
