"""Users' own collections: folders of images and JSONL/CSV tables as M-BEIR pools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augret.data import MBEIRDir, iter_candidates
from augret.data.collections import (
    ID_SPACE,
    IdAllocator,
    import_collection,
    iter_folder,
    iter_image_files,
    iter_table,
    pool_path,
    stable_number,
)
from augret.data.ids import hash_did, parse_id
from augret.data.validate import validate_mbeir
from augret.errors import ConfigError, DataFormatError, DataNotFoundError


def _touch(path: Path, data: bytes = b"img") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for rel in ("b.JPG", "a.png", "sub/c.jpeg", "sub/deeper/d.WebP", "e.tiff", "f.gif",
                "g.bmp", "h.tif"):
        _touch(root / rel)
    _touch(root / "a.txt", b'  "a red\r\n  bicycle"  \n')  # sidecar caption of a.png
    _touch(root / "sub/c.txt", b"   \n")  # empty caption: image only
    _touch(root / "notes.json", b"{}")
    _touch(root / "movie.mp4", b"x")
    _touch(root / ".hidden.jpg")
    _touch(root / ".cache/x.jpg")
    return root


def _pool(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in pool_path(out, name).read_text("utf-8").splitlines()]


# ---- ids ------------------------------------------------------------------------------------

def test_stable_number_range_and_determinism() -> None:
    values = {stable_number(f"img:{i}.jpg") for i in range(1000)}
    assert all(1 <= v <= ID_SPACE for v in values)
    assert len(values) == 1000
    assert stable_number("img:a.jpg") == stable_number("img:a.jpg")


def test_allocator_resolves_collisions_deterministically(caplog) -> None:
    def run() -> tuple[list[str], int]:
        ids = IdAllocator(100)
        ids.reserve(stable_number("img:b.jpg"))  # b's own number is taken by a given id
        out = [ids.allocate(k) for k in ("img:a.jpg", "img:b.jpg", "img:a.jpg")]
        return out, ids.collisions

    with caplog.at_level("DEBUG", logger="augret.data.collections"):
        first, collisions = run()
    assert run() == (first, collisions)
    assert collisions == 2 and len(set(first)) == 3
    assert first[0] == f"100:{stable_number('img:a.jpg')}"
    assert "collision" in caplog.text
    for did in first:
        d, n = parse_id(did)
        assert d == 100 and 1 <= n <= ID_SPACE
        assert hash_did(did) == 100 * 10_000_000 + n


# ---- folders --------------------------------------------------------------------------------

def test_image_files_sorted_recursive_case_insensitive(photos: Path) -> None:
    rels = [p.relative_to(photos).as_posix() for p in iter_image_files(photos)]
    assert rels == ["a.png", "b.JPG", "e.tiff", "f.gif", "g.bmp", "h.tif", "sub/c.jpeg",
                    "sub/deeper/d.WebP"]


def test_folder_with_sidecar_captions(photos: Path) -> None:
    cands = list(iter_folder(photos))
    by_path = {c.img_path: c for c in cands}
    assert by_path["a.png"].txt == "A red bicycle."
    assert by_path["a.png"].modality == "image,text"
    assert by_path["sub/c.jpeg"].txt is None and by_path["sub/c.jpeg"].modality == "image"
    assert len({c.did for c in cands}) == len(cands) == 8
    assert all(c.did.startswith("100:") for c in cands)
    none = list(iter_folder(photos, captions="none"))
    assert all(c.txt is None for c in none)
    assert [c.did for c in none] == [c.did for c in cands]  # ids depend on the path only


def test_folder_import_layout_and_stability(photos: Path, tmp_path: Path) -> None:
    result = import_collection(photos, tmp_path / "out1", name="mine")
    again = import_collection(photos, tmp_path / "out2", name="mine")
    rows1, rows2 = _pool(tmp_path / "out1", "mine"), _pool(tmp_path / "out2", "mine")
    assert rows1 == rows2
    assert result.stats.items == 8 and result.stats.sidecar_captions == 1
    assert result.stats.modalities == {"image,text": 1, "image": 7}
    d = MBEIRDir(tmp_path / "out1")
    assert d.local_pools() == {"mine": pool_path(tmp_path / "out1", "mine")}
    assert d.image_root == photos.resolve()
    for cand in iter_candidates(d.local_pools()["mine"]):
        assert d.resolve_image(cand.img_path).is_file()
    assert json.loads((tmp_path / "out1/augret.json").read_text()) == {
        "image_root": str(photos.resolve())}
    manifest = json.loads((tmp_path / "out1/collection.json").read_text())["collections"]["mine"]
    assert manifest["kind"] == "folder" and manifest["stats"]["items"] == 8
    assert manifest["pool_file"] == "cand_pool/local/mbeir_mine_cand_pool.jsonl"
    assert manifest["id_scheme"]["dataset_id"] == 100
    assert again.stats == result.stats
    report = validate_mbeir(tmp_path / "out1")
    assert report.ok and report.pools_present == ["mine"]


def test_second_collection_in_same_dir(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_collection(photos, out, name="all")
    import_collection(photos, out, name="plain", captions="none", dataset_id=101)
    manifest = json.loads((out / "collection.json").read_text())["collections"]
    assert set(manifest) == {"all", "plain"}
    assert set(MBEIRDir(out).local_pools()) == {"all", "plain"}
    assert validate_mbeir(out).ok  # dataset ids 100 and 101 keep the pools disjoint
    other = tmp_path / "other"
    _touch(other / "x.jpg")
    with pytest.raises(ConfigError, match="another directory"):
        import_collection(other, out, name="x")


def test_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _touch(empty / "readme.md")
    with pytest.raises(ConfigError, match="no items found"):
        import_collection(empty, tmp_path / "out")
    assert not pool_path(tmp_path / "out", "mycollection").exists()
    with pytest.raises(DataNotFoundError):
        import_collection(tmp_path / "absent", tmp_path / "out")
    with pytest.raises(ConfigError, match="collection name"):
        import_collection(empty, tmp_path / "out", name="../evil")
    with pytest.raises(ConfigError, match="reserved"):
        import_collection(empty, tmp_path / "out", name="cirr_task7")
    bad = tmp_path / "bad"
    _touch(bad / "x.jpg")
    _touch(bad / "x.txt", b"caf\xe9")
    with pytest.raises(DataFormatError, match=r"x\.txt") as exc:
        import_collection(bad, tmp_path / "out2")
    assert "not UTF-8" in str(exc.value)
    assert not (tmp_path / "out2" / "cand_pool/local/mbeir_mycollection_cand_pool.jsonl").exists()


# ---- tables ---------------------------------------------------------------------------------

def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def test_jsonl_items(tmp_path: Path) -> None:
    _touch(tmp_path / "data/img/1.jpg")
    outside = _touch(tmp_path / "elsewhere/2.png")
    src = _jsonl(tmp_path / "data/items.jsonl", [
        {"id": "7:12", "text": "kept id", "image": "img/1.jpg"},
        {"id": "photo-2", "text": None, "image": str(outside)},
        {"id": 42, "text": "an integer id"},
        {"text": "  \"quoted text\" "},
        {"image": "img/1.jpg", "text": "same image, no id"},
    ])
    cands = list(iter_table(src))
    assert [c.modality for c in cands] == ["image,text", "image", "text", "text", "image,text"]
    assert cands[0].did == "7:12" and cands[0].img_path == "img/1.jpg"
    assert cands[0].txt == "Kept id."
    assert cands[1].img_path == outside.as_posix() and cands[1].did.startswith("100:")
    assert json.loads(cands[1].src_content) == {"id": "photo-2"}
    assert json.loads(cands[2].src_content) == {"id": "42"}
    assert cands[3].txt == "Quoted text." and cands[3].src_content is None
    assert cands[4].did == f"100:{stable_number('img:img/1.jpg')}"
    assert len({c.did for c in cands}) == 5
    assert [c.did for c in iter_table(src)] == [c.did for c in cands]


def test_table_ids_match_folder_ids(tmp_path: Path) -> None:
    _touch(tmp_path / "pics/a.jpg")
    _touch(tmp_path / "pics/sub/b.png")
    src = _jsonl(tmp_path / "pics/items.jsonl", [{"image": "sub/b.png"}, {"image": "a.jpg"}])
    table = {c.img_path: c.did for c in iter_table(src)}
    folder = {c.img_path: c.did for c in iter_folder(tmp_path / "pics")}
    assert table == folder


def test_given_ids_are_reserved_before_generating(tmp_path: Path, monkeypatch) -> None:
    from augret.data import collections

    monkeypatch.setattr(collections, "stable_number",
                        lambda key: 5 if "\x00" not in key else 6 + len(key) % 3)
    src = _jsonl(tmp_path / "t.jsonl", [{"text": "generated first"},
                                        {"id": "100:5", "text": "given"}])
    dids = [c.did for c in iter_table(src)]
    assert dids[1] == "100:5" and dids[0] != "100:5"


@pytest.mark.parametrize(("rows", "line", "field", "message"), [
    ([{"text": "ok"}, {"id": "x"}], 2, None, "neither text ('text') nor image ('image')"),
    ([{"text": 3}], 1, "text", "expected a string, got int"),
    ([{"image": "missing.jpg"}], 1, "image", "image file not found: missing.jpg"),
    ([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}], 3, "id",
     "duplicate id (first on line 1)"),
])
def test_jsonl_bad_items(tmp_path: Path, rows, line, field, message) -> None:
    src = _jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DataFormatError) as exc:
        import_collection(src, tmp_path / "out")
    err = exc.value
    assert (err.path, err.line, err.field) == (str(src), line, field)
    assert message in str(err) and f"t.jsonl:{line}" in str(err)
    assert not pool_path(tmp_path / "out", "mycollection").exists()


def test_jsonl_malformed_line(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    src.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DataFormatError, match=r"t.jsonl:2: invalid JSON"):
        import_collection(src, tmp_path / "out")


def test_csv_and_tsv(tmp_path: Path) -> None:
    _touch(tmp_path / "imgs/x.jpg")
    csv_file = tmp_path / "items.csv"
    csv_file.write_text("key,caption,file\nk1,a cat,imgs/x.jpg\nk2,,imgs/x.jpg\n,a dog,\n",
                        "utf-8")
    result = import_collection(csv_file, tmp_path / "out", name="csv", id_column="key",
                               text_column="caption", image_column="file")
    rows = _pool(tmp_path / "out", "csv")
    assert [r["modality"] for r in rows] == ["image,text", "image", "text"]
    assert rows[0]["txt"] == "A cat." and json.loads(rows[0]["src_content"]) == {"id": "k1"}
    assert result.stats.ids_mapped == 2 and result.stats.ids_generated == 1
    assert MBEIRDir(tmp_path / "out").resolve_image(rows[0]["img_path"]).is_file()
    tsv = tmp_path / "items.tsv"
    tsv.write_text("id\ttext\n9:1\tHello\n", "utf-8")
    assert [c.did for c in iter_table(tsv)] == ["9:1"]
    with pytest.raises(ConfigError, match="header"):
        list(iter_table(csv_file))  # default columns text/image are absent
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text\nok\ncaf\xe9\n")
    with pytest.raises(DataFormatError, match="invalid UTF-8"):
        list(iter_table(bad))
    with pytest.raises(ConfigError, match="unsupported"):
        import_collection(_touch(tmp_path / "x.xlsx"), tmp_path / "out")


# ---- real data ------------------------------------------------------------------------------

def test_coco_mini_folder(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "coco-mini"
    first = import_collection(src, tmp_path / "a", name="coco")
    import_collection(src, tmp_path / "b", name="coco")
    rows_a, rows_b = _pool(tmp_path / "a", "coco"), _pool(tmp_path / "b", "coco")
    assert first.stats.items == len(rows_a) == 239
    assert rows_a == rows_b
    assert len({r["did"] for r in rows_a}) == 239
    d = MBEIRDir(tmp_path / "a")
    assert all(d.resolve_image(r["img_path"]).is_file() for r in rows_a)
    assert validate_mbeir(tmp_path / "a").ok


def test_coco_mini_captions_jsonl(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "coco-mini"
    rows = [json.loads(line) for line in (src / "captions_all.jsonl").read_text().splitlines()]
    table = _jsonl(tmp_path / "coco.jsonl", [
        {"id": f"coco-{r['image_id']}", "image": str(src / r["image"]), "text": r["captions"][0]}
        for r in rows])
    result = import_collection(table, tmp_path / "out", name="coco_captions")
    pool = _pool(tmp_path / "out", "coco_captions")
    assert result.stats.items == len(rows) == 239 and result.stats.ids_mapped == 239
    assert all(r["modality"] == "image,text" and r["txt"][0].isupper() for r in pool)
    assert all(r["txt"][-1] in ".?!" for r in pool)
    assert json.loads(pool[0]["src_content"])["id"] == f"coco-{rows[0]['image_id']}"
    assert validate_mbeir(tmp_path / "out").ok


def test_skimage_formats(shared_data: Path, tmp_path: Path,
                         caplog: pytest.LogCaptureFixture) -> None:
    src = shared_data / "skimage-images"
    result = import_collection(src, tmp_path / "out", name="sk")
    pool = _pool(tmp_path / "out", "sk")
    exts = {Path(r["img_path"]).suffix for r in pool}
    assert {".png", ".jpg", ".gif", ".tif"} <= exts
    assert result.stats.items == 29
    with caplog.at_level("WARNING", logger="augret.data.collections"):
        desc = import_collection(src / "clip_notebook_descriptions.jsonl", tmp_path / "out",
                                 name="sk_desc", text_column="caption")
    assert "share dataset id 100" in caplog.text
    assert desc.stats.modalities == {"image,text": 8}
    by_path = {r["img_path"]: r for r in pool}
    for r in _pool(tmp_path / "out", "sk_desc"):
        assert r["did"] == by_path[r["img_path"]]["did"]  # same key: same id as the folder
    # ... which is why two pools of one image root need distinct dataset ids to be disjoint
    report = validate_mbeir(tmp_path / "out")
    assert report.counts == {("error", "duplicate_across_pools"): 8}


def test_cli_collection_import(photos: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from augret.cli.main import main

    out = tmp_path / "out"
    assert main(["collection", "import", str(photos), "--out", str(out), "--name", "p"]) == 0
    text = capsys.readouterr().out
    assert "imported 8 items" in text and "mbeir_p_cand_pool.jsonl" in text
    assert main(["mbeir", "validate", str(out)]) == 0
    capsys.readouterr()
    assert main(["collection", "import", str(tmp_path / "none"), "--out", str(out)]) == 4
    assert "error:" in capsys.readouterr().err
    bad = _jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, {"text": 1}])
    assert main(["collection", "import", str(bad), "--out", str(out)]) == 5
    err = capsys.readouterr().err
    assert "bad.jsonl:2 field 'text': expected a string" in err and "Traceback" not in err


def test_table_outside_the_images_folder_with_an_image_root(tmp_path: Path) -> None:
    _touch(tmp_path / "pics/x.jpg")
    _touch(tmp_path / "pics/sub/y.png")
    _touch(tmp_path / "tables/local.jpg")
    table = _jsonl(tmp_path / "tables/items.jsonl", [
        {"text": "one", "image": "x.jpg"}, {"image": "sub/y.png"},
        {"text": "beside the table", "image": "local.jpg"}])
    with pytest.raises(DataFormatError) as info:  # relative to the table's folder by default
        import_collection(table, tmp_path / "out0")
    message = str(info.value)
    assert "items.jsonl:1" in message and "x.jpg" in message
    assert str(tmp_path / "tables") in message
    from augret.cli.main import main

    assert main(["collection", "import", str(table), "--out", str(tmp_path / "out"),
                 "--image-root", str(tmp_path / "pics")]) == 0
    manifest = json.loads((tmp_path / "out/collection.json").read_text())
    assert manifest["collections"]["mycollection"]["image_root"] == str(
        (tmp_path / "pics").resolve())
    rows = _pool(tmp_path / "out", "mycollection")
    assert [r["img_path"] for r in rows] == ["x.jpg", "sub/y.png",
                                             str(tmp_path / "tables/local.jpg")]
    data = MBEIRDir(tmp_path / "out")
    assert all(data.resolve_image(r["img_path"]).is_file() for r in rows)
    missing = _jsonl(tmp_path / "tables/missing.jsonl", [{"text": "a"}, {"image": "z.jpg"}])
    with pytest.raises(DataFormatError) as info:
        import_collection(missing, tmp_path / "out2", image_root=tmp_path / "pics")
    message = str(info.value)
    assert "missing.jsonl:2" in message and "field 'image'" in message
    assert str(tmp_path / "pics") in message and str(tmp_path / "tables") in message
    with pytest.raises(ConfigError, match="applies to tables"):
        import_collection(tmp_path / "pics", tmp_path / "out3", image_root=tmp_path / "pics")
    with pytest.raises(DataNotFoundError, match="image root"):
        import_collection(table, tmp_path / "out4", image_root=tmp_path / "nowhere")
