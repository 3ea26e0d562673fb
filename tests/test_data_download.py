"""``augret mbeir download``: hub paths, a local mirror of the hub repository, the image archive
(parts, checksums, safe extraction) and the one-line offline failure."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import types
from pathlib import Path

import pytest

from augret.data import MBEIRDir
from augret.data.download import (
    IMAGE_PARTS,
    DownloadError,
    HubSource,
    UnsafeArchiveError,
    concat_parts,
    download,
    extract_parts,
    hub_paths,
    read_checksum_file,
    resolve_tasks,
)
from augret.errors import ConfigError


def _split(data: bytes, folder: Path, n: int = 4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // n)
    parts = []
    for i, name in enumerate(IMAGE_PARTS[:n]):
        p = folder / name
        p.write_bytes(data[i * size:(i + 1) * size])
        parts.append(p)
    return parts


def _targz(members: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A local copy of the hub repository: the shapes sample, images as 4 archive parts."""
    from augret.data.sample import write_sample

    root = tmp_path_factory.mktemp("hub")
    write_sample(root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root / "mbeir_images", arcname="mbeir_images")
    shutil.rmtree(root / "mbeir_images")
    parts = _split(buf.getvalue(), root)
    (root / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in parts))
    return root


# ---- what to fetch ---------------------------------------------------------------------
def test_hub_paths_follow_the_mbeir_layout():
    assert hub_paths(["cirr_task7"]) == [
        "query/test/mbeir_cirr_task7_test.jsonl",
        "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl",
        "qrels/test/mbeir_cirr_task7_test_qrels.txt",
        "instructions/query_instructions.tsv"]
    coco = hub_paths(["mscoco"], instructions=False)
    assert "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl" in coco
    assert "cand_pool/local/mbeir_mscoco_task3_test_cand_pool.jsonl" in coco
    assert len(coco) == 6
    everything = hub_paths(["all"], union=True, train=True, val=True, images=True)
    assert len(everything) == 16 * 3 + 1 + 1 + 2 + 2 + 4
    assert "cand_pool/global/mbeir_union_test_cand_pool.jsonl" in everything
    assert "query/union_train/mbeir_union_up_train.jsonl" in everything
    assert everything[-4:] == list(IMAGE_PARTS)
    assert hub_paths(["oven", "oven_task8"], local=False, instructions=False) == [
        "query/test/mbeir_oven_task6_test.jsonl", "qrels/test/mbeir_oven_task6_test_qrels.txt",
        "query/test/mbeir_oven_task8_test.jsonl", "qrels/test/mbeir_oven_task8_test_qrels.txt"]
    assert [t.name for t in resolve_tasks(["WebQA"])] == ["webqa_task1", "webqa_task2"]
    with pytest.raises(ConfigError, match="unknown M-BEIR task or dataset"):
        resolve_tasks(["cirr_task9"])


def test_dry_run_writes_nothing(tmp_path):
    r = download(tmp_path / "out", ["nights"], dry_run=True, images=True)
    assert r.dry_run and len(r.files) == 4 + 4 and not (tmp_path / "out").exists()


# ---- a local mirror --------------------------------------------------------------------
def test_download_from_local_mirror_builds_an_mbeir_dir(mirror, tmp_path):
    out = tmp_path / "M-BEIR"
    r = download(out, ["cirr_task7", "nights"], images=True, source=mirror)
    assert r.verified == list(IMAGE_PARTS) and not r.unverified
    assert r.extracted > 100
    d = MBEIRDir(out)
    assert [t.task.name for t in d.tasks()] == ["nights_task4", "cirr_task7"]
    for tf in d.tasks():
        assert tf.pool is not None and tf.qrels is not None
        for line in tf.queries.read_text().splitlines():
            img = json.loads(line)["query_img_path"]
            assert (out / img).is_file()  # extracted where the records point
    assert d.instructions_file() is not None
    assert (out / "mbeir_images" / ".augret_extracted.json").is_file()
    # a second run resumes: nothing re-extracted, digests not recomputed
    state = json.loads((out / ".augret_download.json").read_text())
    assert set(state) == set(IMAGE_PARTS)
    again = download(out, ["cirr_task7", "nights"], images=True, source=mirror,
                     keep_parts=False)
    assert again.extracted == 0 and again.verified == list(IMAGE_PARTS)


def test_checksum_mismatch_is_one_clear_error(mirror, tmp_path):
    sums = tmp_path / "sums.txt"
    sums.write_text("".join(f"{'0' * 64}  {p}\n" for p in IMAGE_PARTS))
    with pytest.raises(DownloadError, match=r"checksum mismatch for .*\.part-00"):
        download(tmp_path / "out", ["nights_task4"], images=True, source=mirror,
                 checksum_file=sums)
    assert not (tmp_path / "out" / "mbeir_images").exists()


def test_missing_file_in_mirror(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DownloadError, match="not in local directory"):
        download(tmp_path / "out", ["cirr_task7"], source=tmp_path / "src")


def test_read_checksum_file(tmp_path):
    f = tmp_path / "SHA256SUMS"
    f.write_text(f"# comment\n{'a' * 64} *dir/part-00\n\n{'B' * 64}  part-01\n")
    assert read_checksum_file(f) == {"dir/part-00": "a" * 64, "part-00": "a" * 64,
                                     "part-01": "b" * 64}
    f.write_text("nothex  part-00\n")
    with pytest.raises(DownloadError, match=":1: expected"):
        read_checksum_file(f)


# ---- archives --------------------------------------------------------------------------
def test_parts_concatenate_and_extract(tmp_path):
    members = {"mbeir_images/cirr_images/a.png": b"A" * 5000,
               "mbeir_images/cirr_images/sub/b.png": b"B" * 70000}
    parts = _split(_targz(members), tmp_path / "parts")
    whole = concat_parts(parts, tmp_path / "all.tar.gz")
    assert whole.read_bytes() == b"".join(p.read_bytes() for p in parts)
    for src, dest in ((parts, tmp_path / "x"), ([whole], tmp_path / "y")):
        assert extract_parts(src, dest) == 2
        for name, data in members.items():
            assert (dest / name).read_bytes() == data


def test_archive_without_top_folder_lands_in_mbeir_images(tmp_path):
    parts = _split(_targz({"oven_images/x.jpg": b"x"}), tmp_path / "p", n=2)
    extract_parts(parts, tmp_path / "out")
    assert (tmp_path / "out" / "mbeir_images" / "oven_images" / "x.jpg").read_bytes() == b"x"


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


@pytest.mark.parametrize("members, extra, match", [
    ({"/etc/evil": b"x"}, None, "absolute path"),
    ({"mbeir_images/../../evil": b"x"}, None, r"contains '\.\.'"),
    ({"mbeir_images/ok": b"x"}, [_link("mbeir_images/l", "/etc/passwd")], "links outside"),
    ({"mbeir_images/ok": b"x"}, [_link("mbeir_images/l", "../../x")], "links outside"),
    ({"mbeir_images/ok": b"x"}, [_link("mbeir_images/h", "../x", tarfile.LNKTYPE)],
     "links outside"),
    ({"mbeir_images/ok": b"x"}, [_device("mbeir_images/dev")], "special file"),
])
def test_unsafe_members_are_refused(tmp_path, members, extra, match):
    parts = _split(_targz(members, extra=extra), tmp_path / "p", n=2)
    dest = tmp_path / "out" / "inner"
    with pytest.raises(UnsafeArchiveError, match=match):
        extract_parts(parts, dest)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "evil").exists()
    assert not (dest / "mbeir_images" / "l").exists()


def test_corrupt_archive_is_a_download_error(tmp_path):
    parts = _split(_targz({"mbeir_images/a": b"a" * 100000}), tmp_path / "p")
    parts[2].write_bytes(b"garbage")
    with pytest.raises(DownloadError, match="cannot extract"):
        extract_parts(parts, tmp_path / "out")


# ---- the hub -----------------------------------------------------------------------------
def test_offline_hub_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        download(tmp_path / "out", ["cirr_task7"])
    message = str(info.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message and "--source" in message
    assert not (tmp_path / "out").exists()


def test_offline_cli_prints_one_line_without_traceback(tmp_path, monkeypatch, capsys):
    from augret.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["mbeir", "download", "--out", str(tmp_path / "out"), "--tasks", "cirr_task7"])
    err = capsys.readouterr().err
    assert code == DownloadError.exit_code
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_cli_downloads_from_a_mirror(mirror, tmp_path, capsys):
    from augret.cli.main import main

    out = tmp_path / "out"
    assert main(["mbeir", "download", "--out", str(out), "--tasks", "webqa_task1",
                 "--source", str(mirror)]) == 0
    assert "4 file(s)" in capsys.readouterr().out
    assert (out / "qrels/test/mbeir_webqa_task1_test_qrels.txt").is_file()
    assert main(["mbeir", "download", "--out", str(out), "--tasks", "all", "--dry-run",
                 "--images"]) == 0
    assert "mbeir_images.tar.gz.part-03" in capsys.readouterr().out


def _fake_hub(tmp_path: Path, fail: BaseException | None = None):
    errors = pytest.importorskip("huggingface_hub.errors")

    def hf_hub_download(repo_id, filename, *, repo_type, revision, token, local_dir):
        assert repo_type == "dataset"
        if fail is not None:
            raise fail
        p = Path(local_dir) / filename
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"part " + filename.encode())
        return str(p)

    class Api:
        def get_paths_info(self, repo_id, paths, *, repo_type, revision, token):
            lfs = types.SimpleNamespace
            return [lfs(path=p, lfs=lfs(sha256=hashlib.sha256(b"part " + p.encode())
                                        .hexdigest())) for p in paths]

    src = HubSource.__new__(HubSource)
    src.hub = types.SimpleNamespace(hf_hub_download=hf_hub_download, HfApi=Api)
    src.errors = errors
    src.repo_id, src.revision, src.token = "TIGER-Lab/M-BEIR", None, None
    return src


def test_hub_source_verifies_parts_with_lfs_digests(tmp_path):
    src = _fake_hub(tmp_path)
    r = download(tmp_path / "out", ["nights_task4"], images=True, extract=False, source=src)
    assert r.verified == list(IMAGE_PARTS) and r.extracted == 0


def test_hub_errors_become_one_line(tmp_path):
    errors = pytest.importorskip("huggingface_hub.errors")
    offline = errors.LocalEntryNotFoundError("An error happened. Please check your "
                                                "connection\nand more")
    with pytest.raises(DownloadError, match=r"cannot fetch query/test/.*check the network") \
            as info:
        download(tmp_path / "out", ["cirr_task7"], source=_fake_hub(tmp_path, offline))
    assert "\n" not in str(info.value)
    missing = errors.EntryNotFoundError("404 Client Error. Entry not found")
    with pytest.raises(DownloadError, match=r"cirr_task7_test\.jsonl: not in the Hugging Face hub"):
        download(tmp_path / "out", ["cirr_task7"], source=_fake_hub(tmp_path, missing))
    with pytest.raises(DownloadError, match=r"cannot fetch .*: boom"):
        download(tmp_path / "out", ["cirr_task7"],
                 source=_fake_hub(tmp_path, ConnectionError("boom")))
