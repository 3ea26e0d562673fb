"""The union pool: one rule (``MBEIRDir.union_pool_files``) for every index that searches it.

UniIR's rule: the global test pool file when present, else the concatenation of the local
test pools present. The dense and the BM25 union indexes must hold exactly those candidates.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("faiss")
pytest.importorskip("bm25s")

from augret.cli.main import main
from augret.data import MBEIRDir
from augret.data.mbeir import UNION_TEST_POOL
from augret.errors import DataNotFoundError

EXTRA = 10


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["did"] for line in path.read_text("utf-8").splitlines()
            if line.strip()]


@pytest.fixture
def mini_with_global(shared_data: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """mini-mscoco's two local test pools plus a global pool holding them and 10 more."""
    src = shared_data / "mbeir-mini-mscoco"
    root = tmp_path / "data"
    for sub in ("query", "cand_pool", "qrels", "instructions"):
        shutil.copytree(src / sub, root / sub)
    (root / "augret.json").write_text(json.dumps({"image_root": str(src)}), "utf-8")
    lines = []
    for pool in sorted((root / "cand_pool" / "local").glob("*.jsonl")):
        lines += [x for x in pool.read_text("utf-8").splitlines() if x.strip()]
    lines += [json.dumps({"txt": f"an extra candidate number {i}", "img_path": None,
                          "modality": "text", "did": f"9:99000{i}", "src_content": None})
              for i in range(EXTRA)]
    union = root / UNION_TEST_POOL
    union.parent.mkdir(parents=True)
    union.write_text("\n".join(lines) + "\n", "utf-8")
    return root, _ids(union)


def _index_ids(index_dir: Path) -> list[str]:
    return (index_dir / "ids.txt").read_text("utf-8").splitlines()


def test_union_pool_files_is_the_global_file(mini_with_global):
    root, want = mini_with_global
    data = MBEIRDir(root)
    assert data.union_pool_files() == [root / UNION_TEST_POOL]
    assert len(want) == 126 + EXTRA
    (root / UNION_TEST_POOL).unlink()  # without it: the local test pools, UniIR's order
    assert data.union_pool_files() == [data.pool_file("mscoco_task0_test"),
                                       data.pool_file("mscoco_task3_test")]


def test_dense_and_bm25_union_indexes_hold_the_global_pool(mini_with_global, tmp_path):
    root, want = mini_with_global
    emb = tmp_path / "emb"
    assert main(["embed", str(root), "--out", str(emb), "--encoder", "tiny", "--device", "cpu",
                 "--workers", "0", "--no-queries", "--pools", "local,union",
                 "--no-progress"]) == 0
    assert json.loads((emb / "meta.json").read_text("utf-8"))["union"] == ["pools/union"]
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "dense"), "--union",
                 "--no-progress"]) == 0
    assert sorted(_index_ids(tmp_path / "dense")) == sorted(want)
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "all"), "--all",
                 "--no-progress"]) == 0
    assert sorted(_index_ids(tmp_path / "all" / "union")) == sorted(want)
    local = MBEIRDir(root).pool_file("mscoco_task3_test")
    assert _index_ids(tmp_path / "all" / "mscoco_task3_test") == _ids(local)
    assert main(["index", "bm25", str(root), "--out", str(tmp_path / "bm25"), "--union",
                 "--no-progress"]) == 0
    assert sorted(_index_ids(tmp_path / "bm25")) == sorted(want)


def test_dense_union_is_not_made_of_local_entries_when_the_global_pool_exists(
        mini_with_global, tmp_path, capsys):
    """Local pools embedded, union not: the union index refuses rather than index 126."""
    from augret.index.dense import build_pool_index

    root, _ = mini_with_global
    emb = tmp_path / "emb"
    assert main(["embed", str(root), "--out", str(emb), "--encoder", "tiny", "--device", "cpu",
                 "--workers", "0", "--no-queries", "--no-progress"]) == 0
    assert main(["index", "build", str(emb), "--out", str(tmp_path / "dense"), "--union",
                 "--no-progress"]) != 0
    assert "--pools union" in capsys.readouterr().err
    assert not (tmp_path / "dense" / "ids.txt").exists()
    with pytest.raises(DataNotFoundError, match="global"):
        build_pool_index(emb, tmp_path / "api", pool="union", progress=False)
