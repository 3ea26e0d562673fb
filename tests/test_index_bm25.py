"""BM25 over candidate texts: ranking, files, tokenizer, modality filter, pool files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from augret.data.jsonl import write_jsonl
from augret.errors import ConfigError, DataFormatError, DataNotFoundError, MissingExtraError
from augret.index import BM25Config, load_index
from augret.index.bm25 import BM25Index, Tokenizer, build_bm25_index
from augret.index.search import search

pytest.importorskip("bm25s")

DOCS = {
    "1:1": "A red dress with long sleeves on a wooden hanger.",
    "1:2": "Blue denim jeans folded on a shelf.",
    "1:3": "A man riding a horse across the river at dawn.",
    "1:4": "The Eiffel Tower lit up at night, seen from the Seine.",
    "1:5": "A bowl of ramen with an egg and spring onions.",
    "1:6": None,  # an image-only candidate before enhancement
}


def _index(**cfg) -> BM25Index:
    return BM25Index.build(list(DOCS.values()), list(DOCS), BM25Config(**cfg), progress=False)


def test_exact_keyword_match_ranks_first():
    index = _index()
    res = search(index, ["eiffel", "ramen egg", "horse river", "denim"], 3)
    assert list(res.ids[:, 0]) == ["1:4", "1:5", "1:3", "1:2"]
    assert (res.scores[:, 0] > 0).all()
    for scores, rows in zip(res.scores, res.rows, strict=True):
        assert (np.diff(scores[rows >= 0]) <= 0).all()


def test_only_matching_documents_are_returned():
    res = _index().search(["eiffel", "", None, "qwertyuiop", "the a of"], 4)
    assert list(res.ids[0]) == ["1:4", "", "", ""]
    assert (res.rows[1:] == -1).all() and np.isneginf(res.scores[1:]).all()


def test_round_trip_through_files(tmp_path: Path):
    index = _index()
    index.meta["pool"] = "mine"
    index.save(tmp_path / "bm25")
    names = sorted(p.name for p in (tmp_path / "bm25").iterdir())
    assert names == ["bm25", "ids.txt", "meta.json"]
    meta = json.loads((tmp_path / "bm25" / "meta.json").read_text())
    assert meta["kind"] == "bm25" and meta["count"] == 6 and meta["empty_documents"] == 1
    assert meta["tokenizer"] == {"pattern": r"\w+", "lowercase": True, "stopwords": "en",
                                 "stemmer": None}
    loaded = load_index(tmp_path / "bm25")
    assert isinstance(loaded, BM25Index)
    q = ["red dress", "tower at night", "onions"]
    a, b = index.search(q, 5), loaded.search(q, 5)
    assert (a.ids == b.ids).all() and np.array_equal(a.scores, b.scores)


def test_tokenizer():
    tok = Tokenizer()
    assert tok("The Eiffel-Tower, in 1889!") == ["eiffel", "tower", "1889"]
    assert Tokenizer(stopwords="none")("The cat") == ["the", "cat"]
    assert tok(None) == [] and tok("") == []
    with pytest.raises(ConfigError):
        Tokenizer(stopwords="fr")
    try:
        import Stemmer  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match="Stemmer"):
            Tokenizer(stemmer="english")
    else:
        assert Tokenizer(stemmer="english")("running dresses") == ["run", "dress"]


def test_stopwords_matter():
    with_stop = _index().search(["the"], 3)
    without = _index(stopwords="none").search(["the"], 3)
    assert (with_stop.rows == -1).all()
    assert set(without.ids[0][without.rows[0] >= 0]) == {"1:3", "1:4"}


def test_bm25_parameters_are_recorded_and_checked():
    index = _index(k1=0.9, b=0.4)
    assert index.meta["params"] == {"k1": 0.9, "b": 0.4, "method": "lucene",
                                    "text_field": "txt"}
    with pytest.raises(ConfigError):
        BM25Config(b=2)


def test_ids_must_be_unique_and_aligned():
    with pytest.raises(DataFormatError, match="'1:1' occurs more than once"):
        BM25Index.build(["a", "b"], ["1:1", "1:1"], progress=False)
    with pytest.raises(DataFormatError, match="3 texts for 2 ids"):
        BM25Index.build(["a", "b", "c"], ["1:1", "1:2"], progress=False)


def _pool(root: Path, name: str, rows: list[dict]) -> None:
    write_jsonl(root / "cand_pool" / "local" / f"mbeir_{name}_cand_pool.jsonl", rows)


def _cand(did: str, txt: str | None, img: str | None = None, **extra) -> dict:
    mod = "image,text" if txt and img else ("image" if img else "text")
    return {"did": did, "txt": txt, "img_path": img, "modality": mod, "src_content": None,
            **extra}


def test_build_from_pool_files_with_modality_filter(tmp_path: Path):
    data = tmp_path / "data"
    _pool(data, "webqa_task1", [_cand("2:1", "The Eiffel Tower is in Paris."),
                                _cand("2:2", "Tokyo Tower is red and white.")])
    _pool(data, "webqa_task2", [_cand("2:3", "The Eiffel Tower at dusk.", "a.jpg",
                                      txt_raw="original caption"),
                                _cand("2:4", "A tower of pancakes.", "b.jpg")])
    local = build_bm25_index(data, tmp_path / "l", pool="webqa_task1", progress=False)
    assert list(local.ids) == ["2:1", "2:2"]
    union = build_bm25_index(data, tmp_path / "u", pool="union", progress=False)
    assert list(union.ids) == ["2:1", "2:2", "2:3", "2:4"]  # UNION_POOL_ORDER
    union = load_index(tmp_path / "u")
    assert union.meta["pool"] == "union" and union.meta["modalities"] is True
    res = union.search(["eiffel tower"], 2)
    assert set(res.ids[0]) == {"2:1", "2:3"}
    res = union.search(["eiffel tower"], 2, modalities="image,text")
    assert list(res.ids[0]) == ["2:3", "2:4"]
    raw = build_bm25_index(data, tmp_path / "r", pool="webqa_task2",
                           cfg=BM25Config(text_field="txt_raw"), progress=False)
    assert raw.search(["original"], 1).ids[0, 0] == "2:3"
    assert raw.search(["pancakes"], 1).ids[0, 0] == "2:4"  # no txt_raw: falls back to txt
    with pytest.raises(DataNotFoundError, match="no local pool 'cirr_task7'"):
        build_bm25_index(data, tmp_path / "x", pool="cirr_task7", progress=False)


def test_up_to_date_index_is_not_rebuilt(tmp_path: Path, caplog):
    data = tmp_path / "data"
    _pool(data, "webqa_task1", [_cand("2:1", "alpha beta"), _cand("2:2", "gamma")])
    build_bm25_index(data, tmp_path / "i", pool="webqa_task1", progress=False)
    with caplog.at_level("INFO"):
        build_bm25_index(data, tmp_path / "i", pool="webqa_task1", progress=False)
    assert "up to date" in caplog.text
    build_bm25_index(data, tmp_path / "i", pool="webqa_task1", cfg=BM25Config(k1=1.2),
                     progress=False)
    assert load_index(tmp_path / "i").meta["params"]["k1"] == 1.2


def test_numba_backend_gives_the_same_ranking(tmp_path: Path):
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    texts = [" ".join(rng.choice(words, 8)) for _ in range(300)]
    ids = [f"3:{i}" for i in range(300)]
    BM25Index.build(texts, ids, progress=False).save(tmp_path / "i")
    queries = [" ".join(rng.choice(words, 3)) for _ in range(20)]
    a = BM25Index.load(tmp_path / "i", backend="numpy").search(queries, 10)
    b = BM25Index.load(tmp_path / "i", backend="numba").search(queries, 10)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    # equal scores may be cut at k differently; above the cut-off the order is the same
    assert (a.ids[:, :5] == b.ids[:, :5]).mean() > 0.9
