"""The on-disk contracts of :mod:`augret.formats`: each writer read back by its reader.

Every test writes with a contract's writer and reads with its reader, so a change to one
side that the other does not follow fails here. Byte-pinned values guard the hashes that
earlier outputs were written with.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from augret.data.jsonl import read_json, read_json_or_none, write_json
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.formats import embeddings, fingerprint, indexes
from augret.formats.idfile import read_id_file, write_id_file

SRC = Path(__file__).resolve().parents[1] / "src" / "augret"


# ---- JSON objects ------------------------------------------------------------------------------
def test_json_round_trip_and_errors_name_the_file(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": "é", "a": [1, 2]})
    assert path.read_text("utf-8").endswith("}\n") and "\\u00e9" in path.read_text("utf-8")
    assert read_json(path) == {"b": "é", "a": [1, 2]}
    write_json(path, {"b": "é"}, ensure_ascii=False, newline=False)
    assert path.read_text("utf-8") == '{\n  "b": "é"\n}'
    with pytest.raises(DataNotFoundError, match=r"absent\.json.*not an index"):
        read_json(tmp_path / "absent.json", what="an index")
    for name, content, reason in (("bad.json", b"{", "invalid JSON"),
                                  ("latin.json", b'{"a": "\xe9"}', "not UTF-8"),
                                  ("list.json", b"[1]", "expected a JSON object")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataFormatError, match=reason) as err:
            read_json(tmp_path / name)
        assert name in str(err.value)
        assert read_json_or_none(tmp_path / name) is None
    assert read_json_or_none(tmp_path / "absent.json") is None


def test_id_file_round_trip(tmp_path):
    ids = [f"9:{i}" for i in range(70_000)]  # more than one write chunk
    write_id_file(tmp_path / "ids.txt", ids)
    assert read_id_file(tmp_path / "ids.txt") == ids
    (tmp_path / "bad.txt").write_text("1:1\n1: 2\n", "utf-8")
    with pytest.raises(DataFormatError, match="whitespace"):
        read_id_file(tmp_path / "bad.txt")


# ---- embedding directories ---------------------------------------------------------------------
def _write_entry(root: Path, vec: np.ndarray, ids: list[str], shard_size: int) -> dict:
    fp = {"file": "/x/pool.jsonl", "size": 1, "mtime_ns": 2, "config_hash": "h",
          "shard_size": shard_size}
    writer = embeddings.EntryWriter(root, fp, shard_size=shard_size, dim=vec.shape[1])
    for i, start in enumerate(range(0, len(ids), shard_size)):
        part = ids[start: start + shard_size]
        writer.write_shard(i, vec[start: start + shard_size], part, {"rows": len(part)})
    entry = writer.finish({"entry": "pools/p", "kind": "pool", "source": "/x/pool.jsonl"})
    assert embeddings.finished_entry(root, fp) == entry
    assert embeddings.finished_entry(root, {**fp, "size": 3}) is None
    return entry


def test_embedding_directory_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.standard_normal((10, 4)).astype(np.float16)
    ids = [f"1:{i}" for i in range(10)]
    out = tmp_path / "emb"
    assert embeddings.prepare_dir(out, "h", overwrite=False) == {}
    meta = {"format": embeddings.FORMAT, "version": 1, "dim": 4, "data_dir": "/data",
            "config_hash": "h", "entries": {}, "union": ["pools/p"]}
    entry = _write_entry(out / "pools" / "p", vec, ids, shard_size=4)
    meta["entries"]["pools/p"] = {"rows": entry["rows"]}
    embeddings.write_meta(out, meta)

    emb = embeddings.EmbeddingDir(out)
    assert emb.meta == meta and emb.dim == 4 and emb.union == ["pools/p"]
    assert emb.data_dir == Path("/data") and emb.names("pools") == ["p"]
    e = emb.entry("pools", "p")
    assert (e.rows, e.dim, len(e.shards)) == (10, 4, 3)
    assert e.read_ids() == ids and e.source_file() == Path("/x/pool.jsonl")
    got_ids, got = e.read()
    assert got_ids == ids and got.dtype == np.float16 and (got == vec).all()
    assert [i for part, _ in embeddings.iter_entry(e.path) for i in part] == ids
    assert e.fingerprint == hashlib.sha256((e.path / "entry.json").read_bytes()).hexdigest()[:16]

    # the same config keeps the directory; another one is refused, or cleared with overwrite
    assert embeddings.prepare_dir(out, "h", overwrite=False)["entries"] == meta["entries"]
    with pytest.raises(ConfigError, match="another config"):
        embeddings.prepare_dir(out, "other", overwrite=False)
    assert embeddings.prepare_dir(out, "other", overwrite=True) == {}
    assert not (out / "pools").exists() and not (out / "meta.json").exists()


def test_embedding_entry_resumes_complete_shards(tmp_path):
    fp = {"file": "f", "config_hash": "h"}
    root = tmp_path / "pools" / "p"
    writer = embeddings.EntryWriter(root, fp, shard_size=2, dim=3)
    writer.write_shard(0, np.ones((2, 3)), ["1:1", "1:2"], {"rows": 2})
    (root / "shard_00001.npy").write_bytes(b"partial")  # killed before its ids
    assert embeddings.EntryWriter(root, fp, shard_size=2, dim=3).done == 1
    assert not (root / "shard_00001.npy").exists()
    assert embeddings.EntryWriter(root, {**fp, "config_hash": "x"}, shard_size=2,
                                  dim=3).done == 0


def test_embedding_reader_refuses_what_the_writer_never_writes(tmp_path):
    root = tmp_path / "emb"
    root.mkdir()
    with pytest.raises(DataNotFoundError, match="not an embedding directory"):
        embeddings.EmbeddingDir(root)
    (root / "meta.json").write_text(json.dumps({"union": ["queries/x"]}), "utf-8")
    with pytest.raises(DataFormatError, match="not a pools/<name> entry"):
        _ = embeddings.EmbeddingDir(root).union


# ---- index directories -------------------------------------------------------------------------
def test_index_directory_round_trip(tmp_path):
    out = tmp_path / "idx" / "union"
    ids = np.array(["1:1", "1:2", "2:7"])
    indexes.begin_write(out)
    indexes.write_ids(out, ids)
    indexes.write_modalities(out, np.array([0, 1, 2]))
    indexes.write_meta(out, {"kind": "flat", "pool": "union", "note": "é"})
    meta = indexes.read_meta(out)
    assert list(meta)[:2] == ["format", "version"] and meta["note"] == "é"
    assert (indexes.read_ids(out) == ids).all()
    assert indexes.read_modalities(out, 3).tolist() == [0, 1, 2]
    with pytest.raises(DataFormatError, match="modalities for 4 rows"):
        indexes.read_modalities(out, 4)
    assert indexes.index_dirs(tmp_path / "idx") == {"union": out}
    assert indexes.payload_path(out, "bm25").name == indexes.BM25_DIR
    assert indexes.payload_path(out, "hnsw").name == indexes.FAISS_FILE
    indexes.write_modalities(out, None)
    assert indexes.read_modalities(out, 3) is None
    indexes.begin_write(out)  # a rebuild starts: no loadable index until meta.json is back
    with pytest.raises(DataNotFoundError, match="did not finish"):
        indexes.read_meta(out)


# ---- fingerprints and skip records -------------------------------------------------------------
def test_stable_hash_keeps_its_bytes():
    value = {"b": [1, "x"], "a": {"z": None, "y": 1.5}}
    blob = json.dumps(value, sort_keys=True, default=str)
    assert fingerprint.stable_hash(value) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert fingerprint.stable_hash(value) == "6f26423855f8689d"
    assert fingerprint.fingerprint(1, "a") == fingerprint.stable_hash([1, "a"])
    text = ["é"]
    assert fingerprint.stable_hash(text, length=None, ensure_ascii=False) == hashlib.sha256(
        json.dumps(text, ensure_ascii=False).encode()).hexdigest()
    assert fingerprint.stable_hash(text) != fingerprint.stable_hash(text, ensure_ascii=False)


def test_skip_records_round_trip(tmp_path):
    assert fingerprint.read_stage_record(tmp_path) == {}
    fingerprint.write_stage_record(tmp_path, {"stage": "s", "fingerprint": "f",
                                              "inputs": Path("/x")})
    assert fingerprint.read_stage_record(tmp_path)["inputs"] == "/x"
    (tmp_path / fingerprint.STAGE_FILE).write_text("{", "utf-8")  # a torn record: redo
    assert fingerprint.read_stage_record(tmp_path) == {}
    manifest = {"b_union.run": {"fingerprint": "2"}, "a_local.run": {"fingerprint": "1"}}
    fingerprint.write_run_manifest(tmp_path, manifest)
    assert fingerprint.read_run_manifest(tmp_path) == manifest
    assert list(fingerprint.read_run_manifest(tmp_path)) == ["a_local.run", "b_union.run"]


# ---- the package graph -------------------------------------------------------------------------
def _imported_packages(package: str) -> set[str]:
    """The augret packages and top-level modules that ``package`` (or module) imports."""
    module = SRC / f"{package}.py"
    out = set()
    for path in [module] if module.is_file() else (SRC / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            out |= {n.split(".")[1] for n in names if n.startswith("augret.")}
    return out


def test_the_ground_floor_and_shared_modules_import_no_stage():
    assert _imported_packages("formats") <= {"data", "errors", "formats"}
    assert _imported_packages("data") <= {"data", "errors", "_lazy", "_paths", "progress"}
    assert _imported_packages("progress") <= {"progress"}
    assert _imported_packages("images") <= {"images", "errors", "_lazy"}
    assert _imported_packages("tiny_qwen") <= {"_lazy", "errors"}


def test_encode_and_enhance_know_nothing_of_each_other():
    """encode knows nothing of the enhancement VLM, enhance nothing of retrievers (the tiny
    Qwen processor they both use is the shared augret.tiny_qwen)."""
    assert "enhance" not in _imported_packages("encode")
    assert not {"encode", "train", "index"} & _imported_packages("enhance")
