"""The offset-indexed pool lookup, the rendered sample and the PNG writer."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from augret.data import MBEIRDir, iter_candidates, iter_queries, read_qrels
from augret.data.lookup import PoolLookup
from augret.data.png import write_png
from augret.data.sample import write_sample
from augret.errors import DataFormatError


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def _cand(did: str, txt: str | None = "x", img: str | None = None) -> dict:
    mod = "image,text" if txt and img else ("image" if img else "text")
    return {"txt": txt, "img_path": img, "modality": mod, "did": did, "src_content": None}


def test_lookup_finds_every_record_across_files(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [_cand(f"1:{i}", f"text {i}") for i in range(1, 200)])
    # keys in another order and unicode text, to exercise the JSON fallback-free path
    b = _write(tmp_path / "b.jsonl", [
        {"did": "2:5", "modality": "image", "txt": None, "img_path": "x.jpg"},
        _cand("2:1", "caf\u00e9 \u2014 \"quoted\"", "y.jpg"),
    ])
    lookup = PoolLookup([a, b], cache=False)
    assert len(lookup) == 201
    assert lookup.get("1:150").txt == "text 150"
    assert lookup.get("2:1").txt == "caf\u00e9 \u2014 \"quoted\""
    assert lookup.modality("2:5") == "image"
    assert lookup.modality("2:1") == "image,text"
    assert "3:1" not in lookup and "garbage" not in lookup
    got = lookup.get_many(["2:5", "1:1", "1:199"])
    assert [c.did for c in got] == ["2:5", "1:1", "1:199"]
    assert lookup.contains_many(["1:1", "9:9"]).tolist() == [True, False]
    with pytest.raises(KeyError):
        lookup.get("1:999")


def test_lookup_cache_is_reused_and_invalidated(tmp_path: Path) -> None:
    pool = _write(tmp_path / "p.jsonl", [_cand(f"1:{i}") for i in range(1, 5)])
    cache = tmp_path / "cache"
    PoolLookup([pool], cache=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    assert len(PoolLookup([pool], cache=cache)) == 4
    _write(pool, [_cand(f"1:{i}") for i in range(1, 8)])  # changed file: new index
    assert len(PoolLookup([pool], cache=cache)) == 7


def test_lookup_rejects_duplicates_and_bad_lines(tmp_path: Path) -> None:
    dup = _write(tmp_path / "dup.jsonl", [_cand("1:1"), _cand("1:1")])
    with pytest.raises(DataFormatError, match="1:1 occurs more than once"):
        PoolLookup([dup], cache=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_cand("1:1")) + "\n{not json\n", "utf-8")
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2"):
        PoolLookup([bad], cache=False)


def test_lookup_on_real_mini_mscoco(shared_data: Path) -> None:
    d = MBEIRDir(shared_data / "mbeir-mini-mscoco")
    lookup = PoolLookup(d.union_pool_files(), cache=False)
    scanned = {c.did: c for c in d.iter_union_pool()}
    assert len(lookup) == len(scanned) == 126
    for did, cand in list(scanned.items())[::7]:
        assert lookup.get(did) == cand


def test_sample_is_a_consistent_mbeir_directory(sample_dir: Path) -> None:
    d = MBEIRDir(sample_dir)
    names = [tf.task.name for tf in d.tasks()]
    assert names == ["mscoco_task0", "webqa_task1", "mscoco_task3", "nights_task4",
                     "cirr_task7", "oven_task8"]
    all_dids = [c.did for c in d.iter_union_pool()]
    assert len(all_dids) == len(set(all_dids))  # the union is disjoint
    instructions = d.instructions()
    for tf in d.tasks():
        assert tf.pool is not None and tf.qrels is not None
        pool = {c.did: c for c in iter_candidates(tf.pool)}
        qrels = read_qrels(tf.qrels)
        for q in iter_queries(tf.queries):
            assert q.problems() == []
            assert q.task_id == tf.task.task.id
            assert set(qrels.positives(q.qid)) == set(q.pos_cand_list)
            for did in q.pos_cand_list:
                assert pool[did].modality == tf.task.task.cand_modality
            if q.query_img_path:
                assert d.resolve_image(q.query_img_path).is_file()
            instructions.lookup(q.dataset_id, q.query_modality, tf.task.task.cand_modality)
        for c in pool.values():
            assert c.problems() == []
    train = list(iter_queries(d.train_file()))
    train_pool = {c.did for c in iter_candidates(d.train_pool_file())}
    assert train and all(set(q.pos_cand_list) <= train_pool for q in train)


def test_sample_is_deterministic(tmp_path: Path) -> None:
    a, b = write_sample(tmp_path / "a", seed=3), write_sample(tmp_path / "b", seed=3)
    assert a.queries == b.queries and a.images == b.images
    for f in sorted((tmp_path / "a").rglob("*")):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


def test_png_writer_round_trip(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    write_png(tmp_path / "x.png", pixels)
    data = (tmp_path / "x.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (5, 7)
    idat = data[data.index(b"IDAT") + 4: data.index(b"IEND") - 8]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(7, 1 + 5 * 3)
    assert (raw[:, 0] == 0).all()
    assert np.array_equal(raw[:, 1:].reshape(7, 5, 3), pixels)
    with pytest.raises(ValueError):
        write_png(tmp_path / "y.png", pixels.astype(np.float32))
