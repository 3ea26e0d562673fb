"""``augret embed``: the embedding directory contract, alignment, skips, resume after a kill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from augret.data import MBEIRDir, iter_candidates, iter_queries  # noqa: E402
from augret.data.ids import UNION_POOL_ORDER  # noqa: E402
from augret.data.records import Candidate  # noqa: E402
from augret.encode import EmbedConfig, embed_dir  # noqa: E402
from augret.encode.inputs import candidate_item, query_item, query_prompt  # noqa: E402
from augret.errors import ConfigError, DataFormatError, DataNotFoundError  # noqa: E402
from augret.formats.embeddings import EntryWriter, read_entry  # noqa: E402


def _cfg(**kw) -> EmbedConfig:
    base = {"encoder": "tiny", "workers": 0, "batch_size": 16, "device": "cpu"}
    return EmbedConfig(**{**base, **kw})


def _copy(sample_dir: Path, dst: Path, tasks: tuple[str, ...], images: bool = False) -> Path:
    """A sample directory with only some tasks (images referenced, or copied)."""
    data = MBEIRDir(sample_dir)
    for tf in data.tasks():
        if tf.task.name in tasks:
            for p in (tf.queries, tf.pool, tf.qrels):
                target = dst / p.relative_to(sample_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, target)
    shutil.copytree(sample_dir / "instructions", dst / "instructions")
    if images:
        shutil.copytree(sample_dir / "mbeir_images", dst / "mbeir_images")
    else:
        (dst / "augret.json").write_text(json.dumps({"image_root": str(sample_dir)}), "utf-8")
    return dst


def test_layout_matches_the_embedding_contract(sample_dir: Path, tmp_path: Path,
                                               tiny_encoder) -> None:
    out = tmp_path / "emb"
    meta = embed_dir(sample_dir, out, _cfg(pools=["local", "union"], shard_size=20),
                     encoder=tiny_encoder, progress=False)
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == meta
    for key in ("encoder", "dim", "dtype", "normalized", "data_dir", "config_hash", "entries"):
        assert key in meta
    assert meta["dim"] == 64 and meta["dtype"] == "float16" and meta["normalized"] is False
    assert meta["encoder"]["name"] == "tiny"
    assert (out / "config.yaml").is_file()
    data = MBEIRDir(sample_dir)
    tasks = [t.task.name for t in data.tasks()]
    assert {f"queries/{t}" for t in tasks} <= set(meta["entries"])
    assert {f"pools/{p}" for p in data.local_pools()} <= set(meta["entries"])
    # union: the local test pools in UniIR's order, not embedded twice
    want = [f"pools/{p}" for p in UNION_POOL_ORDER if p in data.local_pools()]
    assert meta["union"] == want
    entry_dir = out / "pools/nights_task4"  # 72 rows in shards of 20: 4 shards
    names = sorted(p.name for p in entry_dir.iterdir())
    assert names == ["entry.json", "shard_00000.ids.txt", "shard_00000.npy",
                     "shard_00001.ids.txt", "shard_00001.npy", "shard_00002.ids.txt",
                     "shard_00002.npy", "shard_00003.ids.txt", "shard_00003.npy",
                     "skipped.jsonl"]
    entry = json.loads((entry_dir / "entry.json").read_text())
    assert (entry["rows"], entry["shards"], entry["shard_size"]) == (72, 4, 20)
    assert entry["truncated"] == 0 and entry["skipped"] == 0
    assert Path(entry["fingerprint"]["file"]) == data.pool_file("nights_task4").resolve()
    assert np.load(entry_dir / "shard_00003.npy").dtype == np.float16
    ids, vecs = read_entry(entry_dir)
    assert ids == [c.did for c in iter_candidates(data.pool_file("nights_task4"))]
    assert vecs.shape == (72, 64)


def test_vectors_are_the_encoders_in_file_order(sample_dir: Path, tmp_path: Path,
                                                tiny_encoder) -> None:
    data = MBEIRDir(sample_dir)
    out = tmp_path / "emb"
    embed_dir(sample_dir, out, _cfg(tasks=["oven_task8"], pools=["local"]), encoder=tiny_encoder,
              progress=False)
    table = data.instructions()
    queries = list(iter_queries(data.query_file("oven_task8")))
    items = [query_item(q, data, query_prompt(q, table, "first", cand_modality="image,text"))
             for q in queries]
    ids, vecs = read_entry(out / "queries/oven_task8")
    assert ids == [q.qid for q in queries]
    want = tiny_encoder.encode_queries(items).astype(np.float16)
    np.testing.assert_allclose(vecs.astype(np.float32), want.astype(np.float32), atol=2e-3)
    cands = list(iter_candidates(data.pool_file("oven_task8")))
    ids, vecs = read_entry(out / "pools/oven_task8")
    assert ids == [c.did for c in cands]
    want = tiny_encoder.encode_candidates([candidate_item(c, data) for c in cands])
    np.testing.assert_allclose(vecs.astype(np.float32), want, atol=2e-3)


def test_resume_after_a_kill_keeps_finished_shards(sample_dir: Path, tmp_path: Path,
                                                    tiny_encoder, monkeypatch) -> None:
    src = _copy(sample_dir, tmp_path / "data", ("nights_task4",))
    cfg = _cfg(queries=False, pools=["local"], shard_size=10)
    ref = tmp_path / "ref"
    embed_dir(src, ref, cfg, encoder=tiny_encoder, progress=False)

    out = tmp_path / "emb"
    calls = {"n": 0}
    real = EntryWriter.write_shard

    def killed_after_three(self, index, vectors, ids, stats):
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process dies between shards
        calls["n"] += 1
        real(self, index, vectors, ids, stats)

    monkeypatch.setattr(EntryWriter, "write_shard", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        embed_dir(src, out, cfg, encoder=tiny_encoder, progress=False)
    monkeypatch.setattr(EntryWriter, "write_shard", real)
    entry = out / "pools/nights_task4"
    assert not (entry / "entry.json").exists()
    assert sorted(p.name for p in entry.glob("*.ids.txt"))[-1] == "shard_00002.ids.txt"
    # a shard cut short mid-write: vectors without ids, and a temporary file
    (entry / "shard_00003.npy").write_bytes(b"partial")
    (entry / ".shard_00003.ids.txt.xyz.tmp").write_text("1:1\n")
    before = {p.name: p.stat().st_mtime_ns for p in entry.glob("shard_0000[012].[ni]*")}

    written = []
    monkeypatch.setattr(EntryWriter, "write_shard",
                        lambda self, i, *a: (written.append(i), real(self, i, *a)))
    embed_dir(src, out, cfg, encoder=tiny_encoder, progress=False)
    assert written == [3, 4, 5, 6, 7]  # 72 rows / 10: shards 0-2 reused
    after = {p.name: p.stat().st_mtime_ns for p in entry.glob("shard_0000[012].[ni]*")}
    assert after == before
    assert not list(entry.glob(".*.tmp"))
    ids, vecs = read_entry(entry)
    ref_ids, ref_vecs = read_entry(ref / "pools/nights_task4")
    assert ids == ref_ids
    np.testing.assert_array_equal(vecs, ref_vecs)
    written.clear()
    embed_dir(src, out, cfg, encoder=tiny_encoder, progress=False)  # finished: nothing to do
    assert written == []


def test_missing_images_are_recorded_skips_and_ids_stay_aligned(
        sample_dir: Path, tmp_path: Path, tiny_encoder) -> None:
    src = _copy(sample_dir, tmp_path / "data", ("cirr_task7",), images=True)
    pool = src / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"
    rows = [json.loads(line) for line in pool.read_text().splitlines()]
    rows[3]["img_path"] = "mbeir_images/absent.png"
    rows[7]["img_path"] = "mbeir_images/broken.png"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (src / "mbeir_images/broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "emb"
    meta = embed_dir(src, out, _cfg(queries=False, shard_size=8), encoder=tiny_encoder,
                     progress=False)
    assert meta["entries"]["pools/cirr_task7"]["skipped"] == 2
    skipped = [json.loads(x) for x in
               (out / "pools/cirr_task7/skipped.jsonl").read_text().splitlines()]
    assert [(s["id"], s["row"], s["action"]) for s in skipped] == [
        (rows[3]["did"], 3, "skipped"), (rows[7]["did"], 7, "skipped")]
    assert "not found" in skipped[0]["reason"]
    assert "not a recognised image format" in skipped[1]["reason"]
    ids, vecs = read_entry(out / "pools/cirr_task7")
    kept = [r for i, r in enumerate(rows) if i not in (3, 7)]
    assert ids == [r["did"] for r in kept]
    data = MBEIRDir(src)
    want = tiny_encoder.encode_candidates([candidate_item(Candidate.from_dict(r), data)
                                   for r in kept])
    np.testing.assert_allclose(vecs.astype(np.float32), want, atol=2e-3)

    with pytest.raises(DataNotFoundError, match=r"cirr_task7_cand_pool.jsonl:4 .*absent"):
        embed_dir(src, tmp_path / "emb2", _cfg(queries=False, on_missing_image="error"),
                  encoder=tiny_encoder, progress=False)
    meta = embed_dir(src, tmp_path / "emb3", _cfg(queries=False, on_missing_image="drop"),
                     encoder=tiny_encoder, progress=False)
    entry = meta["entries"]["pools/cirr_task7"]  # image-only rows cannot drop their image
    assert (entry["rows"], entry["skipped"], entry["images_dropped"]) == (34, 2, 0)


def test_wrong_image_root_stops_early(sample_dir: Path, tmp_path: Path, tiny_encoder) -> None:
    src = _copy(sample_dir, tmp_path / "data", ("nights_task4",))
    (src / "augret.json").write_text(json.dumps({"image_root": str(tmp_path / "nowhere")}))
    with pytest.raises(DataNotFoundError, match="check the image root"):
        embed_dir(src, tmp_path / "emb", _cfg(queries=False), encoder=tiny_encoder, progress=False)


def test_config_changes_and_source_changes(sample_dir: Path, tmp_path: Path, tiny_encoder) -> None:
    src = _copy(sample_dir, tmp_path / "data", ("webqa_task1",))
    out = tmp_path / "emb"
    embed_dir(src, out, _cfg(), encoder=tiny_encoder, progress=False)
    with pytest.raises(ConfigError, match="another config"):
        embed_dir(src, out, _cfg(instruction="none"), encoder=tiny_encoder, progress=False)
    meta = embed_dir(src, out, _cfg(instruction="none", overwrite=True), encoder=tiny_encoder,
                     progress=False)
    assert meta["instruction"] == "none"
    pool = src / "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl"
    lines = pool.read_text().splitlines()
    long = json.loads(lines[0])
    long["txt"] = " ".join(["circle"] * 120)  # beyond 77 tokens
    pool.write_text("\n".join([json.dumps(long), *lines[1:]]) + "\n")
    meta = embed_dir(src, out, _cfg(instruction="none"), encoder=tiny_encoder, progress=False)
    assert meta["entries"]["pools/webqa_task1"]["truncated"] == 1  # re-embedded: new source


def test_misaligned_entries_are_refused(sample_dir: Path, tmp_path: Path, tiny_encoder) -> None:
    src = _copy(sample_dir, tmp_path / "data", ("webqa_task1",))
    out = tmp_path / "emb"
    embed_dir(src, out, _cfg(pools=[]), encoder=tiny_encoder, progress=False)
    ids_file = out / "queries/webqa_task1/shard_00000.ids.txt"
    ids_file.write_text("\n".join(ids_file.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataFormatError, match="not aligned"):
        read_entry(out / "queries/webqa_task1")
    dup = src / "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl"
    lines = dup.read_text().splitlines()
    dup.write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(DataFormatError, match="more than once"):
        embed_dir(src, tmp_path / "emb2", _cfg(queries=False), encoder=tiny_encoder, progress=False)


def test_global_union_file_is_embedded_as_pools_union(sample_dir: Path, tmp_path: Path,
                                                      tiny_encoder) -> None:
    src = tmp_path / "data"
    (src / "cand_pool/global").mkdir(parents=True)
    data = MBEIRDir(sample_dir)
    rows = 0
    with (src / "cand_pool/global/mbeir_union_test_cand_pool.jsonl").open("w") as f:
        for name in ("webqa_task1", "oven_task8"):
            text = data.pool_file(name).read_text()
            f.write(text)
            rows += len(text.splitlines())
    (src / "augret.json").write_text(json.dumps({"image_root": str(sample_dir)}))
    meta = embed_dir(src, tmp_path / "emb", _cfg(queries=False, pools=["union"]),
                     encoder=tiny_encoder, progress=False)
    assert meta["union"] == ["pools/union"] and list(meta["entries"]) == ["pools/union"]
    assert meta["entries"]["pools/union"]["rows"] == rows == 72


def test_real_mini_mscoco(shared_data: Path, tmp_path: Path, tiny_encoder) -> None:
    root = shared_data / "mbeir-mini-mscoco"
    meta = embed_dir(root, tmp_path / "emb", _cfg(pools=["local", "union"]), encoder=tiny_encoder,
                     progress=False)
    entries = meta["entries"]
    assert entries["queries/mscoco_task0"]["rows"] == 105
    assert entries["queries/mscoco_task3"]["rows"] == 21
    assert meta["union"] == ["pools/mscoco_task0_test", "pools/mscoco_task3_test"]
    assert sum(e["skipped"] for e in entries.values()) == 0


def test_empty_items_are_skipped_not_misaligned(sample_dir: Path, tmp_path: Path,
                                                tiny_encoder) -> None:
    src = _copy(sample_dir, tmp_path / "data", ("webqa_task1",))
    pool = src / "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl"
    rows = [json.loads(x) for x in pool.read_text().splitlines()]
    rows[2]["txt"] = "  "  # a text candidate whose text is blank
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qfile = src / "query/test/mbeir_webqa_task1_test.jsonl"
    queries = [json.loads(x) for x in qfile.read_text().splitlines()]
    queries[0]["query_txt"] = ""
    qfile.write_text("".join(json.dumps(q) + "\n" for q in queries))
    meta = embed_dir(src, tmp_path / "emb", _cfg(), encoder=tiny_encoder, progress=False)
    assert meta["entries"]["pools/webqa_task1"]["skipped"] == 1
    ids, _ = read_entry(tmp_path / "emb/pools/webqa_task1")
    assert rows[2]["did"] not in ids and len(ids) == len(rows) - 1
    # with an instruction the empty query still has text (the prompt), as in UniIR
    assert meta["entries"]["queries/webqa_task1"]["skipped"] == 0
    meta = embed_dir(src, tmp_path / "emb2", _cfg(instruction="none", pools=[]),
                     encoder=tiny_encoder, progress=False)
    assert meta["entries"]["queries/webqa_task1"]["skipped"] == 1
    skipped = (tmp_path / "emb2/queries/webqa_task1/skipped.jsonl").read_text()
    assert "no text and no image" in skipped and queries[0]["qid"] in skipped


def test_every_engine_choice_has_an_engine() -> None:
    from typing import get_args, get_type_hints

    from augret.encode.embed import ENGINES
    from augret.encode.local_engine import embed_local
    from augret.encode.ray_engine import embed_with_ray

    choices = get_args(get_type_hints(EmbedConfig)["engine"])
    assert sorted(ENGINES) == sorted(choices) == ["local", "ray"]
    assert ENGINES["local"] is embed_local and ENGINES["ray"] is embed_with_ray


def test_an_imported_collection_embeds_without_instruction_flags(tmp_path: Path) -> None:
    """Instructions are for queries: a candidates-only directory needs none."""
    from PIL import Image

    from augret.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, colour in enumerate(((200, 0, 0), (0, 200, 0), (0, 0, 200))):
        Image.new("RGB", (24, 16), colour).save(photos / f"{i}.png")
    (photos / "1.txt").write_text("a green card")
    out = tmp_path / "coll"
    assert main(["collection", "import", str(photos), "--out", str(out)]) == 0
    assert not (out / "instructions").exists()
    emb = tmp_path / "emb"
    assert main(["embed", str(out), "--out", str(emb), "--encoder", "tiny", "--device", "cpu",
                 "--no-progress"]) == 0
    meta = json.loads((emb / "meta.json").read_text())
    assert meta["entries"]["pools/mycollection"]["rows"] == 3
