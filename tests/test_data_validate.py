"""``augret.data.validate`` and ``augret mbeir validate`` on small synthetic M-BEIR directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from augret.data.validate import ValidationReport, validate_mbeir
from augret.errors import DataNotFoundError

# ---- fixture building ----------------------------------------------------------------------

def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def _query(qid: str, pos: list[str], task: int, txt: str | None = "a query",
           img: str | None = None) -> dict:
    mod = "image,text" if txt and img else ("image" if img else "text")
    return {"qid": qid, "query_txt": txt, "query_img_path": img, "query_modality": mod,
            "query_src_content": None, "pos_cand_list": pos, "neg_cand_list": [],
            "task_id": task}


def _cand(did: str, txt: str | None = None, img: str | None = None) -> dict:
    mod = "image,text" if txt and img else ("image" if img else "text")
    return {"txt": txt, "img_path": img, "modality": mod, "did": did, "src_content": None}


def _image(root: Path, rel: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xd9")  # existence is all validation checks
    return rel


def _qrels(rows: list[tuple[str, str, int]]) -> str:
    return "".join(f"{q} 0 {d} 1 {t}\n" for q, d, t in rows)


def make_mbeir(root: Path, tasks: tuple[str, ...] = ("cirr", "webqa", "oven")) -> Path:
    """A valid directory: CIRR (task 7), WebQA (task 1), OVEN + InfoSeek (task 6)."""
    if "cirr" in tasks:
        imgs = [_image(root, f"mbeir_images/cirr_images/{i}.jpg") for i in range(6)]
        _write_jsonl(root / "query/test/mbeir_cirr_task7_test.jsonl", [
            _query("8:1", ["8:1"], 7, "make it red", imgs[0]),
            _query("8:2", ["8:2", "8:3"], 7, "add a dog", imgs[1]),
        ])
        _write_jsonl(root / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl",
                     [_cand(f"8:{i}", img=imgs[i + 1]) for i in range(1, 5)])
        _write_text(root / "qrels/test/mbeir_cirr_task7_test_qrels.txt",
                    _qrels([("8:1", "8:1", 7), ("8:2", "8:2", 7), ("8:2", "8:3", 7)]))
    if "webqa" in tasks:
        _write_jsonl(root / "query/test/mbeir_webqa_task1_test.jsonl", [
            _query("2:1", ["2:10"], 1, "Who built it?"),
            _query("2:2", ["2:11"], 1, "When was it built?"),
        ])
        _write_jsonl(root / "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl",
                     [_cand(f"2:{i}", txt=f"Fact {i}.") for i in range(10, 13)])
        _write_text(root / "qrels/test/mbeir_webqa_task1_test_qrels.txt",
                    _qrels([("2:1", "2:10", 1), ("2:2", "2:11", 1)]))
    if "oven" in tasks:
        img = _image(root, "mbeir_images/oven_images/q1.jpg")
        _write_jsonl(root / "query/test/mbeir_oven_task6_test.jsonl", [
            _query("5:1", ["5:1", "6:7"], 6, "What is this?", img),
        ])
        _write_jsonl(root / "cand_pool/local/mbeir_oven_task6_cand_pool.jsonl",
                     [_cand("5:1", txt="Eiffel Tower. A tower."), _cand("5:2", txt="Other.")])
        _write_text(root / "qrels/test/mbeir_oven_task6_test_qrels.txt",
                    _qrels([("5:1", "5:1", 6), ("5:1", "6:7", 6)]))
        _write_jsonl(root / "cand_pool/local/mbeir_infoseek_task6_cand_pool.jsonl",
                     [_cand("6:7", txt="Eiffel Tower. Chunk.")])
        _write_jsonl(root / "cand_pool/local/mbeir_infoseek_task8_cand_pool.jsonl",
                     [_cand("6:8", txt="Eiffel Tower. Other chunk.",
                            img=_image(root, "mbeir_images/oven_images/w.jpg"))])
    return root


@pytest.fixture
def mbeir(tmp_path: Path) -> Path:
    return make_mbeir(tmp_path / "mbeir")


def _kinds(report: ValidationReport, severity: str = "error") -> set[str]:
    return {k for (s, k) in report.counts if s == severity}


def _one(report: ValidationReport, kind: str):
    found = report.examples(kind=kind)
    assert found, f"no {kind} finding in {report.findings}"
    return found[0]


# ---- valid directories ---------------------------------------------------------------------

def test_valid_directory(mbeir: Path) -> None:
    report = validate_mbeir(mbeir)
    assert report.ok, [str(f) for f in report.findings]
    assert report.tasks_present == ["webqa_task1", "oven_task6", "cirr_task7"]
    assert set(report.pools_present) == {"cirr_task7", "webqa_task1", "oven_task6",
                                         "infoseek_task6", "infoseek_task8"}
    assert report.warnings == 0
    by_file = {f.file: f for f in report.files}
    pool = by_file["cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"]
    assert (pool.role, pool.lines, pool.records, pool.errors) == ("pool", 4, 4, 0)
    assert report.total.records == sum(f.records for f in report.files)
    cirr = next(t for t in report.tasks if t.name == "cirr_task7")
    assert (cirr.queries, cirr.qrels_queries, cirr.qrels_rows, cirr.pool_size) == (2, 2, 3, 4)


def test_subset_of_tasks_is_not_an_error(tmp_path: Path) -> None:
    root = make_mbeir(tmp_path / "cirr_only", tasks=("cirr",))
    report = validate_mbeir(root)
    assert report.ok and report.warnings == 0
    assert report.tasks_present == ["cirr_task7"]


def test_enhanced_copy_reads_images_from_source(mbeir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "enhanced"
    for rel in ("query/test/mbeir_cirr_task7_test.jsonl",
                "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl",
                "qrels/test/mbeir_cirr_task7_test_qrels.txt"):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mbeir / rel, copy / rel)
    rows = [json.loads(line) for line in
            (copy / "query/test/mbeir_cirr_task7_test.jsonl").read_text().splitlines()]
    for r in rows:
        r["query_txt_raw"], r["query_txt"] = r["query_txt"], "Enhanced. " + r["query_txt"]
        r["enhancement"] = {"model": "x"}
    _write_jsonl(copy / "query/test/mbeir_cirr_task7_test.jsonl", rows)
    (copy / "augret.json").write_text(json.dumps({"image_root": str(mbeir)}))
    report = validate_mbeir(copy)
    assert report.ok, [str(f) for f in report.findings]
    (copy / "augret.json").write_text(json.dumps({"image_root": str(tmp_path / "gone")}))
    report = validate_mbeir(copy)
    assert not report.ok and _one(report, "missing_image").field == "image_root"


def test_bad_layout_file_is_reported(mbeir: Path) -> None:
    (mbeir / "augret.json").write_text("{not json")
    report = validate_mbeir(mbeir)
    f = _one(report, "layout")
    assert (f.file, f.field) == ("augret.json", "image_root")


def test_nothing_found_and_missing_dir(tmp_path: Path) -> None:
    report = validate_mbeir(tmp_path)
    assert not report.ok and _kinds(report) == {"nothing_found"}
    with pytest.raises(DataNotFoundError):
        validate_mbeir(tmp_path / "absent")


# ---- bad input: each names file, line and field ---------------------------------------------

QUERY = "query/test/mbeir_cirr_task7_test.jsonl"
POOL = "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl"
QRELS = "qrels/test/mbeir_cirr_task7_test_qrels.txt"


def _append(root: Path, rel: str, text: str | bytes) -> None:
    with (root / rel).open("ab") as f:
        f.write(text if isinstance(text, bytes) else text.encode())


def test_malformed_json_line(mbeir: Path) -> None:
    _append(mbeir, POOL, '{"did": "8:9", "txt": \n')
    report = validate_mbeir(mbeir)
    f = _one(report, "bad_json")
    assert (f.severity, f.file, f.line) == ("error", POOL, 5)
    assert "invalid JSON" in f.message
    stats = {s.file: s for s in report.files}[POOL]
    assert (stats.lines, stats.records, stats.errors) == (5, 4, 1)


def test_wrong_type(mbeir: Path) -> None:
    _append(mbeir, QUERY, json.dumps(_query("8:3", ["8:4"], 7, 42, None)) + "\n")  # type: ignore[arg-type]
    f = _one(validate_mbeir(mbeir), "schema")
    assert (f.file, f.line, f.field) == (QUERY, 3, "query_txt")
    assert "expected a string" in f.message


def test_unknown_modality(mbeir: Path) -> None:
    _append(mbeir, POOL, json.dumps({**_cand("8:9", txt="x"), "modality": "video"}) + "\n")
    f = _one(validate_mbeir(mbeir), "schema")
    assert (f.file, f.line, f.field) == (POOL, 5, "modality")
    assert "unknown modality 'video'" in f.message


def test_bad_id(mbeir: Path) -> None:
    _append(mbeir, POOL, json.dumps(_cand("cirr-9", txt="x")) + "\n")
    f = _one(validate_mbeir(mbeir), "schema")
    assert (f.line, f.field) == (5, "did")


def test_bad_id_in_qrels(mbeir: Path) -> None:
    _append(mbeir, QRELS, "8:\u00b2 0 8:1 1 7\n8:1 0 x 1 7\n")
    found = {(f.line, f.field) for f in validate_mbeir(mbeir).examples(kind="schema")}
    assert found == {(4, "qid"), (5, "did")}


def test_id_out_of_uniir_range(mbeir: Path) -> None:
    _append(mbeir, POOL, json.dumps(_cand("8:10000001", img="x.jpg")) + "\n")
    f = _one(validate_mbeir(mbeir, check_images=False), "id_range")
    assert (f.file, f.line, f.field) == (POOL, 5, "did")


def test_qrels_line_with_three_columns(mbeir: Path) -> None:
    _append(mbeir, QRELS, "8:1 0 8:1\n")
    report = validate_mbeir(mbeir)
    f = _one(report, "qrels_format")
    assert (f.file, f.line) == (QRELS, 4)
    assert "got 3" in f.message


def test_non_utf8_byte(mbeir: Path) -> None:
    _append(mbeir, POOL, b'{"did": "8:9", "txt": "caf\xe9"}\n')
    f = _one(validate_mbeir(mbeir), "encoding")
    assert (f.file, f.line) == (POOL, 5)
    assert "0xe9" in f.message


def test_empty_file(mbeir: Path) -> None:
    (mbeir / QRELS).write_text("")
    report = validate_mbeir(mbeir)
    f = _one(report, "empty_file")
    assert (f.file, f.line) == (QRELS, None)
    assert "no_qrels" in _kinds(report, "warning")


def test_many_bad_lines_are_all_counted(mbeir: Path) -> None:
    _append(mbeir, POOL, "not json\n" * 30 + json.dumps(_cand("8:9", txt="x")) + "\n")
    report = validate_mbeir(mbeir, max_examples=3)
    assert report.counts[("error", "bad_json")] == 30
    assert len(report.examples(kind="bad_json")) == 3
    stats = {s.file: s for s in report.files}[POOL]
    assert (stats.lines, stats.records, stats.errors) == (35, 5, 30)


def test_duplicate_did_in_pool(mbeir: Path) -> None:
    _append(mbeir, POOL, json.dumps(_cand("8:2", img="mbeir_images/cirr_images/1.jpg")) + "\n")
    f = _one(validate_mbeir(mbeir), "duplicate_id")
    assert (f.file, f.line, f.field) == (POOL, 5, "did")
    assert "'8:2'" in f.message and "first on line 2" in f.message


def test_duplicate_qid_in_query_file(mbeir: Path) -> None:
    _append(mbeir, QUERY, json.dumps(_query("8:1", ["8:1"], 7, "again",
                                            "mbeir_images/cirr_images/0.jpg")) + "\n")
    f = _one(validate_mbeir(mbeir), "duplicate_id")
    assert (f.file, f.line, f.field) == (QUERY, 3, "qid")


def test_duplicate_did_across_pools(mbeir: Path) -> None:
    _append(mbeir, "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl",
            json.dumps(_cand("8:3", txt="Stolen id.")) + "\n")
    _append(mbeir, "cand_pool/local/mbeir_oven_task6_cand_pool.jsonl",
            json.dumps(_cand("8:4", txt="Another.")) + "\n")
    report = validate_mbeir(mbeir)
    assert report.counts[("error", "duplicate_across_pools")] == 2
    found = {(f.file, f.line, f.field, f.message)
             for f in report.examples(kind="duplicate_across_pools")}
    assert found == {
        ("cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl", 4, "did",
         "did '8:3' is also in pool 'cirr_task7' (line 3); local pools must be disjoint"),
        ("cand_pool/local/mbeir_oven_task6_cand_pool.jsonl", 3, "did",
         "did '8:4' is also in pool 'cirr_task7' (line 4); local pools must be disjoint"),
    }


def test_val_pools_are_not_part_of_the_test_union(tmp_path: Path) -> None:
    root = make_mbeir(tmp_path / "m", tasks=("webqa",))
    for split in ("val", "test"):
        _write_jsonl(root / f"cand_pool/local/mbeir_mscoco_task3_{split}_cand_pool.jsonl",
                     [_cand("9:1", txt="A caption.")])
    assert validate_mbeir(root).ok


def test_dangling_qrels_did_and_qid(mbeir: Path) -> None:
    _append(mbeir, QRELS, "8:1 0 8:99 1 7\n8:77 0 8:1 1 7\n")
    report = validate_mbeir(mbeir)
    f = _one(report, "dangling_qrels_did")
    assert (f.file, f.line, f.field) == (QRELS, 4, "did")
    assert "'8:99'" in f.message and "cirr_task7" in f.message
    f = _one(report, "dangling_qrels_qid")
    assert (f.file, f.line, f.field) == (QRELS, 5, "qid")
    assert "qrels_mismatch" in _kinds(report, "warning")


def test_dangling_positive(mbeir: Path) -> None:
    _append(mbeir, QUERY, json.dumps(_query("8:3", ["8:42"], 7, "x",
                                            "mbeir_images/cirr_images/0.jpg")) + "\n")
    report = validate_mbeir(mbeir)
    f = _one(report, "dangling_positive")
    assert (f.file, f.line, f.field) == (QUERY, 3, "pos_cand_list")
    assert "no_qrels" in _kinds(report, "warning")


def test_missing_image(mbeir: Path) -> None:
    (mbeir / "mbeir_images/cirr_images/3.jpg").unlink()
    (mbeir / "mbeir_images/cirr_images/0.jpg").unlink()
    report = validate_mbeir(mbeir)
    stats = {s.file: s for s in report.files}
    assert stats[POOL].missing_images == 1 and stats[QUERY].missing_images == 1
    assert report.total.missing_images == 2
    pool_f = next(f for f in report.examples(kind="missing_image") if f.file == POOL)
    assert (pool_f.line, pool_f.field) == (2, "img_path")
    assert "mbeir_images/cirr_images/3.jpg" in pool_f.message
    query_f = next(f for f in report.examples(kind="missing_image") if f.file == QUERY)
    assert (query_f.line, query_f.field) == (1, "query_img_path")
    assert validate_mbeir(mbeir, check_images=False).ok


def test_modality_field_mismatch(mbeir: Path) -> None:
    _append(mbeir, POOL, json.dumps({**_cand("8:9", img="mbeir_images/cirr_images/1.jpg"),
                                     "modality": "image,text"}) + "\n")
    f = _one(validate_mbeir(mbeir), "modality_mismatch")
    assert (f.file, f.line, f.field) == (POOL, 5, "txt")


def test_task_id_inconsistent(mbeir: Path) -> None:
    rows = [
        _query("8:3", ["8:4"], 3, "x", "mbeir_images/cirr_images/0.jpg"),  # wrong task_id
        _query("8:4", ["8:4"], 7, "text only"),  # text query in an image,text task
        {**_query("8:5", ["2:10"], 7, "x", "mbeir_images/cirr_images/0.jpg")},  # text positive
    ]
    _append(mbeir, QUERY, "".join(json.dumps(r) + "\n" for r in rows))
    report = validate_mbeir(mbeir)
    found = {(f.line, f.field) for f in report.examples(kind="task_mismatch")}
    assert (3, "task_id") in found
    assert (4, "query_modality") in found
    assert (4, "task_id") in found  # task 7 expects an image,text query (Query.problems)
    # the WebQA did is not in the CIRR pool: dangling, not a modality error
    assert any(f.line == 5 for f in report.examples(kind="dangling_positive"))


def test_positive_with_wrong_modality(tmp_path: Path) -> None:
    root = make_mbeir(tmp_path / "m", tasks=("webqa",))
    _append(root, "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl",
            json.dumps(_cand("2:20", img=_image(root, "mbeir_images/webqa/1.jpg"))) + "\n")
    _append(root, "query/test/mbeir_webqa_task1_test.jsonl",
            json.dumps(_query("2:3", ["2:20"], 1, "Show it")) + "\n")
    _append(root, "qrels/test/mbeir_webqa_task1_test_qrels.txt", "2:3 0 2:20 1 1\n")
    f = _one(validate_mbeir(root), "task_mismatch")
    assert (f.line, f.field) == (3, "pos_cand_list")
    assert "'image'" in f.message and "'text'" in f.message


def test_qrels_task_column_mismatch(mbeir: Path) -> None:
    text = (mbeir / QRELS).read_text().replace("8:3 1 7", "8:3 1 6")
    (mbeir / QRELS).write_text(text)
    f = _one(validate_mbeir(mbeir), "task_mismatch")
    assert (f.file, f.line, f.field) == (QRELS, 3, "task_id")


def test_queries_without_qrels_and_counts(mbeir: Path) -> None:
    (mbeir / QRELS).write_text(_qrels([("8:1", "8:1", 7)]))
    report = validate_mbeir(mbeir)
    assert report.ok
    f = _one(report, "no_qrels")
    assert (f.severity, f.file, f.line) == ("warning", QUERY, 2)
    assert _one(report, "count_mismatch").message == "2 queries but 1 judged qids"
    cirr = next(t for t in report.tasks if t.name == "cirr_task7")
    assert (cirr.queries, cirr.qrels_queries) == (2, 1)


def test_four_column_qrels_are_accepted(mbeir: Path) -> None:
    text = "".join(" ".join(line.split()[:4]) + "\n"
                   for line in (mbeir / QRELS).read_text().splitlines())
    (mbeir / QRELS).write_text(text)
    assert validate_mbeir(mbeir).ok


# ---- OVEN / InfoSeek cross-dataset positives ------------------------------------------------

OVEN_QUERY = "query/test/mbeir_oven_task6_test.jsonl"
OVEN_QRELS = "qrels/test/mbeir_oven_task6_test_qrels.txt"


def test_cross_dataset_did_found_in_other_pool(mbeir: Path) -> None:
    report = validate_mbeir(mbeir)
    assert report.ok and report.warnings == 0


def test_cross_dataset_did_missing_from_present_pools(mbeir: Path) -> None:
    _append(mbeir, OVEN_QRELS, "5:1 0 6:99 1 6\n")
    f = _one(validate_mbeir(mbeir), "dangling_qrels_did")
    assert (f.file, f.line) == (OVEN_QRELS, 3)
    assert "InfoSeek did '6:99'" in f.message


def test_cross_dataset_pool_absent_is_a_warning(mbeir: Path) -> None:
    for task in (6, 8):
        (mbeir / f"cand_pool/local/mbeir_infoseek_task{task}_cand_pool.jsonl").unlink()
    report = validate_mbeir(mbeir)
    assert report.ok
    f = _one(report, "unchecked")
    assert f.severity == "warning" and "cannot check, pool absent" in f.message


def test_cross_dataset_one_pool_absent(mbeir: Path) -> None:
    (mbeir / "cand_pool/local/mbeir_infoseek_task6_cand_pool.jsonl").unlink()
    report = validate_mbeir(mbeir)
    assert report.ok
    assert "infoseek_task6" in _one(report, "unchecked").message


def test_global_union_pool(mbeir: Path) -> None:
    union = mbeir / "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
    rows = []
    for pool in sorted((mbeir / "cand_pool/local").glob("*.jsonl")):
        rows += [json.loads(line) for line in pool.read_text().splitlines()]
    _write_jsonl(union, rows)
    assert validate_mbeir(mbeir).ok
    _write_jsonl(union, [*rows[1:], rows[2]])
    report = validate_mbeir(mbeir)
    assert _one(report, "duplicate_id").file == "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
    assert "union_mismatch" in _kinds(report, "warning")


# ---- instructions and reports ---------------------------------------------------------------

def test_instructions_checked(mbeir: Path) -> None:
    tsv = mbeir / "instructions/query_instructions.tsv"
    _write_text(tsv, "query_modality\tcand_modality\tdataset_name\tdataset_id\tprompt_1\n"
                     "text\ttext\tWebQA\t2\tRetrieve a passage.\n")
    report = validate_mbeir(mbeir)
    assert report.ok
    assert {f.message.split(" (")[-1] for f in report.examples(kind="instructions")} == {
        "oven_task6)", "cirr_task7)"}
    _write_text(tsv, "header\nshort\trow\n")
    f = _one(validate_mbeir(mbeir), "instructions")
    assert (f.severity, f.line) == ("error", 2)


def test_report_json_round_trip(mbeir: Path) -> None:
    _append(mbeir, POOL, "oops\n")
    report = validate_mbeir(mbeir)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["errors"] == 1
    assert data["counts"] == [{"severity": "error", "kind": "bad_json", "count": 1}]
    assert data["findings"][0]["line"] == 5
    assert data["total"]["records"] == report.total.records
    assert "INVALID" in report.summary()
    assert str(report.findings[0]).startswith(f"{POOL}:5: invalid JSON")


# ---- real data ------------------------------------------------------------------------------

def test_mini_mscoco_is_valid(shared_data: Path) -> None:
    report = validate_mbeir(shared_data / "mbeir-mini-mscoco")
    assert report.ok and report.warnings == 0, [str(f) for f in report.findings]
    assert report.tasks_present == ["mscoco_task0", "mscoco_task3"]
    assert {t.name: (t.queries, t.pool_size) for t in report.tasks} == {
        "mscoco_task0": (105, 21), "mscoco_task3": (21, 105)}


def test_anserini_topic_files(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "mbeir-test-topics"
    root = tmp_path / "topics"
    for rel in ("topics/topics.mbeir-cirr_task7.test.jsonl",
                "topics/topics.mbeir-nights_task4.test.jsonl",
                "qrels/qrels.m-beir-cirr-task7.test.txt",
                "qrels/qrels.m-beir-nights-task4.test.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(src / rel)
    report = validate_mbeir(root, check_images=False)
    assert report.ok, [str(f) for f in report.findings]
    assert report.tasks_present == ["nights_task4", "cirr_task7"]
    assert {t.name: (t.queries, t.qrels_queries) for t in report.tasks} == {
        "nights_task4": (2120, 2120), "cirr_task7": (4170, 4170)}
    assert _kinds(report, "warning") == {"unchecked"}  # pools absent
    assert "topics/topics.mbeir-cirr_task7.test.jsonl" in {f.file for f in report.files}
    report = validate_mbeir(root, max_examples=2)
    assert report.counts[("error", "missing_image")] == 2120 + 4170
    assert len(report.examples(kind="missing_image")) == 4


@pytest.mark.slow
def test_all_test_topics(shared_data: Path) -> None:
    report = validate_mbeir(shared_data / "mbeir-test-topics", check_images=False)
    assert report.ok
    assert len(report.tasks_present) == 9
    assert report.total.records == 366_387


# ---- CLI ------------------------------------------------------------------------------------

def test_cli_valid(mbeir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augret.cli.main import main

    assert main(["mbeir", "validate", str(mbeir)]) == 0
    out = capsys.readouterr().out
    assert "cirr_task7" in out and POOL in out and "is valid" in out


def test_cli_invalid(mbeir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augret.cli.main import main

    _append(mbeir, QRELS, "8:1 0 8:99 1 7\n")
    (mbeir / "mbeir_images/cirr_images/3.jpg").unlink()
    code = main(["mbeir", "validate", str(mbeir), "--max-examples", "5"])
    captured = capsys.readouterr()
    assert code == 6
    assert f"{QRELS}:4 did: did '8:99' is not in 'cirr_task7'" in captured.out
    assert f"{POOL}:2 img_path: image file not found" in captured.out
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "INVALID: 2 error(s)" in error_lines[0]
    assert "Traceback" not in captured.out + captured.err
    assert main(["mbeir", "validate", str(mbeir), "--no-images"]) == 6
    capsys.readouterr()
    (mbeir / QRELS).write_text(_qrels([("8:1", "8:1", 7), ("8:2", "8:2", 7), ("8:2", "8:3", 7)]))
    assert main(["mbeir", "validate", str(mbeir), "--no-images"]) == 0


def test_cli_json(mbeir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augret.cli.main import main

    _append(mbeir, POOL, "{bad\n")
    assert main(["mbeir", "validate", str(mbeir), "--json"]) == 6
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["ok"] is False and data["findings"][0]["kind"] == "bad_json"
    assert "error:" in captured.err


def test_cli_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augret.cli.main import main

    assert main(["mbeir", "validate", str(tmp_path / "nope")]) == 4
    assert "no such directory" in capsys.readouterr().err


def test_cli_split_and_json(mbeir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from augret.cli.main import main

    assert main(["mbeir", "validate", str(mbeir), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks_present"] == [
        "webqa_task1", "oven_task6", "cirr_task7"]
