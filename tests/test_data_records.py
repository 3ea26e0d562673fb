"""The existing data modules: records, text rules, ids, instructions, JSONL, qrels, MBEIRDir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from augret.data import (
    DATASETS,
    MBEIR_TEST_TASKS,
    TASKS,
    Candidate,
    MBEIRDir,
    Qrels,
    Query,
    eval_task,
    format_string,
    hash_did,
    hash_qid,
    instructed_text,
    iter_candidates,
    iter_jsonl,
    iter_queries,
    read_instructions,
    read_qrels,
    unhash_did,
    unhash_qid,
    write_jsonl,
    write_qrels,
)
from augret.data.ids import (
    UNION_POOL_ORDER,
    dataset_by_name,
    hash_dids,
    hash_qids,
    parse_id,
    task_for_modalities,
)
from augret.data.jsonl import atomic_writer, iter_lines
from augret.data.mbeir import parse_run_file_name, pool_stem, run_file_name
from augret.data.qrels import iter_qrels
from augret.data.records import modality_of
from augret.errors import ConfigError, DataFormatError, DataNotFoundError

REAL_QUERY = {
    "qid": "8:1", "query_txt": "Show three bottles of soft drink.",
    "query_img_path": "mbeir_images/cirr_images/dev/dev-244-0-img0.jpg",
    "query_modality": "image,text", "query_src_content": "{\"id\": \"dev-244-0-img0\"}",
    "pos_cand_list": ["8:18844"], "neg_cand_list": [], "task_id": 7,
}
REAL_CAND = {"txt": None, "img_path": "mbeir_images/mscoco_images/val2014/x.jpg",
             "modality": "image", "did": "9:25428", "src_content": None}


# ---- records --------------------------------------------------------------------------------

def test_query_round_trip() -> None:
    q = Query.from_dict(REAL_QUERY)
    assert q.qid == "8:1" and q.dataset_id == 8 and q.task_id == 7
    assert q.pos_cand_list == ("8:18844",) and q.neg_cand_list == ()
    assert q.to_dict() == REAL_QUERY
    assert list(q.to_dict()) == list(REAL_QUERY)  # field order as released
    assert q.problems() == []
    assert q.with_changes(query_txt="Other.").query_txt == "Other."


def test_query_extras_kept_and_lenient_forms() -> None:
    obj = {**REAL_QUERY, "query_txt_raw": "raw", "enhancement": {"model": "m"},
           "query_src_content": {"id": 1}, "pos_cand_list": [{"did": "8:5"}, "8:6"]}
    q = Query.from_dict(obj)
    assert q.extra == {"query_txt_raw": "raw", "enhancement": {"model": "m"}}
    assert q.query_src_content == '{"id": 1}'
    assert q.pos_cand_list == ("8:5", "8:6")
    assert q.to_dict()["enhancement"] == {"model": "m"}
    q2 = Query.from_dict({k: v for k, v in REAL_QUERY.items() if k != "task_id"})
    assert q2.task_id is None and "task_id" not in q2.to_dict()


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"qid": None}, "qid", "expected a string, got NoneType"),
    ({"qid": "8-1"}, "qid", "not of the form"),
    ({"qid": "8:\u00b2"}, "qid", "not of the form"),  # "²".isdigit(), but int("²") fails
    ({"pos_cand_list": ["8:\u00b2"]}, "pos_cand_list", "item 0"),
    ({"query_txt": 42}, "query_txt", "expected a string or null, got int"),
    ({"query_img_path": ["a"]}, "query_img_path", "expected a string or null, got list"),
    ({"query_modality": "text,image"}, "query_modality", "unknown modality 'text,image'"),
    ({"task_id": True}, "task_id", "expected an integer, got bool"),
    ({"task_id": "7"}, "task_id", "expected an integer, got str"),
    ({"task_id": 5}, "task_id", "unknown task id 5"),
    ({"pos_cand_list": "8:1"}, "pos_cand_list", "expected a list of ids, got str"),
    ({"pos_cand_list": [8]}, "pos_cand_list", "item 0 is not an id string"),
    ({"neg_cand_list": ["8:1", "x"]}, "neg_cand_list", "item 1"),
    ({"query_src_content": 3}, "query_src_content", "expected a JSON string"),
])
def test_query_errors_name_the_field(change: dict, field: str, message: str) -> None:
    with pytest.raises(DataFormatError) as exc:
        Query.from_dict({**REAL_QUERY, **change})
    assert exc.value.field == field
    assert message in str(exc.value)


def test_missing_fields() -> None:
    obj = dict(REAL_QUERY)
    del obj["query_modality"]
    with pytest.raises(DataFormatError, match="missing") as exc:
        Query.from_dict(obj)
    assert exc.value.field == "query_modality"
    with pytest.raises(DataFormatError, match="missing"):
        Candidate.from_dict({"txt": "x", "modality": "text"})


def test_query_problems() -> None:
    q = Query.from_dict({**REAL_QUERY, "query_txt": "  ", "task_id": 3})
    fields = dict(q.problems())
    assert "query_txt" in fields and "empty" in fields["query_txt"]
    assert "task_id" in fields and "'image'" in fields["task_id"]
    q = Query.from_dict({**REAL_QUERY, "query_modality": "text", "task_id": 0})
    assert [f for f, _ in q.problems()] == ["query_img_path"]


def test_candidate_round_trip_and_problems() -> None:
    c = Candidate.from_dict(REAL_CAND)
    assert c.dataset_id == 9 and c.to_dict() == REAL_CAND and c.problems() == []
    bad = Candidate.from_dict({**REAL_CAND, "modality": "text"})
    assert [f for f, _ in bad.problems()] == ["txt", "img_path"]
    bad = Candidate.from_dict({**REAL_CAND, "modality": "image,text", "txt": ""})
    assert [f for f, _ in bad.problems()] == ["txt"]
    with pytest.raises(DataFormatError) as exc:
        Candidate.from_dict({**REAL_CAND, "modality": "video"})
    assert exc.value.field == "modality"
    with pytest.raises(DataFormatError) as exc:
        Candidate.from_dict({**REAL_CAND, "txt": 1.5})
    assert exc.value.field == "txt"


def test_modality_of() -> None:
    assert modality_of("a", "x.jpg") == "image,text"
    assert modality_of(None, "x.jpg") == "image"
    assert modality_of("a", None) == "text"
    with pytest.raises(ValueError):
        modality_of("", None)


# ---- text -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("a dog on a bed", "A dog on a bed."),
    ('  "a quoted caption"  ', "A quoted caption."),
    ("line\r\nbreak\r", "Line\nbreak."),
    ("already done.", "Already done."),
    ("is it?", "Is it?"),
    ("wow!", "Wow!"),
    ("ends with comma,", "Ends with comma,."),
    ('"', ""),
    ("   ", ""),
    (None, ""),
    ("éclair", "Éclair."),
    ("'single quotes' stay", "'single quotes' stay."),
])
def test_format_string(raw: str | None, expected: str) -> None:
    assert format_string(raw) == expected
    assert format_string(format_string(raw)) == expected  # idempotent


def test_instructed_text() -> None:
    assert instructed_text(None, "a dog") == "A dog."
    assert instructed_text("", "a dog") == "A dog."
    assert instructed_text("find an image", "a dog") == "Find an image. a dog."
    assert instructed_text("Find an image.", None) == "Find an image."
    assert instructed_text("Is this it?", "Yes") == "Is this it? Yes."


# ---- ids ------------------------------------------------------------------------------------

def test_id_hashing() -> None:
    assert hash_qid("8:1") == 8 * 500_000 + 1
    assert hash_did("9:25428") == 90_025_428
    assert unhash_qid(hash_qid("6:499999")) == "6:499999"
    assert unhash_did(hash_did("0:9999999")) == "0:9999999"
    assert unhash_did(np.int64(90_025_428)) == "9:25428"
    assert hash_qids(["0:1", "1:2"]).tolist() == [1, 500_002]
    ids = hash_dids(["9:1", "5:7"])
    assert ids.dtype == np.int64 and ids.tolist() == [90_000_001, 50_000_007]
    assert parse_id("100:42") == (100, 42)


@pytest.mark.parametrize("bad", ["", "8", "8:", ":1", "a:1", "8:-1", "8:1.0", "8 :1"])
def test_parse_id_rejects(bad: str) -> None:
    with pytest.raises(DataFormatError, match="not of the form"):
        parse_id(bad)


def test_tables() -> None:
    assert len(DATASETS) == 10 and DATASETS[6].name == "InfoSeek"
    assert dataset_by_name("MSCOCO").id == 9 and dataset_by_name("cirr").id == 8
    with pytest.raises(KeyError):
        dataset_by_name("imagenet")
    assert sorted(TASKS) == [0, 1, 2, 3, 4, 6, 7, 8]
    assert task_for_modalities("image,text", "image").id == 7
    with pytest.raises(KeyError):
        task_for_modalities("image", "image,text")
    assert len(MBEIR_TEST_TASKS) == 16 and len(UNION_POOL_ORDER) == 16
    assert {t.pool for t in MBEIR_TEST_TASKS} == set(UNION_POOL_ORDER)
    coco = eval_task("mscoco_task0")
    assert coco.pool == "mscoco_task0_test" and coco.reported_metric == "hit@5"
    assert eval_task("fashioniq_task7").metric_ks == (10, 20, 50)
    with pytest.raises(KeyError):
        eval_task("mscoco_task5")


# ---- instructions ---------------------------------------------------------------------------

def test_real_instruction_table(shared_data: Path) -> None:
    table = read_instructions(shared_data / "mbeir-instructions" / "query_instructions.tsv")
    assert len(table.prompts) == 16
    assert all(len(p) == 4 for p in table.prompts.values())
    for t in MBEIR_TEST_TASKS:  # every test task has its row
        table.lookup(t.dataset.id, t.task.query_modality, t.task.cand_modality)
    assert table.choose(9, "text", "image") == (
        "Find me an everyday image that matches the given caption.")
    a = table.choose(9, "text", "image", mode="random", qid="9:1")
    assert a == table.choose(9, "text", "image", mode="random", qid="9:1")
    assert a in {format_string(p) for p in table.lookup(9, "text", "image")}
    with pytest.raises(KeyError, match="no instruction"):
        table.lookup(9, "image", "image")
    with pytest.raises(ValueError):
        table.choose(9, "text", "image", mode="best")


def test_bad_instruction_files(tmp_path: Path) -> None:
    path = tmp_path / "i.tsv"
    path.write_text("h\nt\ti\tX\t9\n")
    with pytest.raises(DataFormatError, match=r"i\.tsv:2"):
        read_instructions(path)
    path.write_text("h\nt\ti\tX\tnine\tprompt\n")
    with pytest.raises(DataFormatError) as exc:
        read_instructions(path)
    assert exc.value.field == "dataset_id"


# ---- jsonl ----------------------------------------------------------------------------------

def test_iter_jsonl_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n  \n[1]\n{bad\n\xff\n{"b": 2}\n')
    errors: list[DataFormatError] = []
    rows = list(iter_jsonl(path, on_error=errors.append))
    assert rows == [(1, {"a": 1}), (7, {"b": 2})]
    assert [(e.line, e.reason.split(":")[0]) for e in errors] == [
        (4, "expected a JSON object, got list"), (5, "invalid JSON"),
        (6, "invalid UTF-8 byte 0xff at column 1")]
    with pytest.raises(DataFormatError, match=r"a\.jsonl:4"):
        list(iter_jsonl(path))
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataFormatError, match="file is empty"):
        list(iter_lines(empty))
    assert list(iter_jsonl(empty, allow_empty=True)) == []
    with pytest.raises(DataNotFoundError):
        list(iter_jsonl(tmp_path / "none.jsonl"))
    with pytest.raises(DataNotFoundError, match="directory"):
        list(iter_jsonl(tmp_path))


def test_atomic_writes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"
    assert write_jsonl(path, [{"x": "é"}, {"y": None}]) == 2
    assert path.read_text("utf-8") == '{"x": "é"}\n{"y": null}\n'
    with pytest.raises(RuntimeError), atomic_writer(path) as f:
        f.write("partial")
        raise RuntimeError("boom")
    assert path.read_text("utf-8").startswith('{"x"')
    assert [p.name for p in path.parent.iterdir()] == ["out.jsonl"]


# ---- qrels ----------------------------------------------------------------------------------

def test_qrels_read_write(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("8:1 0 8:5 1 7\n8:1 0 8:6 0 7\n8:2 0 8:7 1\n")
    rows = list(iter_qrels(path))
    assert [(r.qid, r.did, r.relevance, r.task_id, r.line) for r in rows] == [
        ("8:1", "8:5", 1, 7, 1), ("8:1", "8:6", 0, 7, 2), ("8:2", "8:7", 1, None, 3)]
    qrels = read_qrels(path)
    assert len(qrels) == 2 and qrels.positives("8:1") == ["8:5"]
    assert qrels.task_ids == {"8:1": 7}
    out = tmp_path / "out.txt"
    write_qrels(out, Qrels.from_dict({"8:1": {"8:5": 1}}), columns=4)
    assert out.read_text() == "8:1 0 8:5 1\n"
    with pytest.raises(ValueError):
        write_qrels(out, qrels, columns=3)


def test_qrels_errors(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("8:1 0 8:5\n8:1 0 8:5 yes\n8:1 0 8:5 1 seven\n8:1 0 8:5 1 7\n")
    errors: list[DataFormatError] = []
    rows = list(iter_qrels(path, on_error=errors.append))
    assert len(rows) == 1
    assert [(e.line, e.field) for e in errors] == [(1, None), (2, "relevance"), (3, "task_id")]
    assert "got 3" in errors[0].reason
    with pytest.raises(DataFormatError, match=r"q\.txt:1"):
        read_qrels(path)


# ---- MBEIRDir -------------------------------------------------------------------------------

def test_mbeir_dir_mini_mscoco(shared_data: Path) -> None:
    root = shared_data / "mbeir-mini-mscoco"
    d = MBEIRDir(root)
    tasks = d.tasks()
    assert [t.task.name for t in tasks] == ["mscoco_task0", "mscoco_task3"]
    assert all(t.pool is not None and t.qrels is not None for t in tasks)
    assert tasks[0].pool.name == "mbeir_mscoco_task0_test_cand_pool.jsonl"
    assert set(d.local_pools()) == {"mscoco_task0_test", "mscoco_task3_test"}
    assert [p.name for p in d.union_pool_files()] == [
        "mbeir_mscoco_task0_test_cand_pool.jsonl", "mbeir_mscoco_task3_test_cand_pool.jsonl"]
    assert len(list(d.iter_queries("mscoco_task0"))) == 105
    queries = list(d.iter_queries("mscoco_task3"))
    assert len(queries) == 21 and all(q.query_modality == "image" for q in queries)
    assert all(d.resolve_image(q.query_img_path).is_file() for q in queries)
    assert len(list(d.iter_union_pool())) == 21 + 105
    assert all(c.modality == "image" for c in d.iter_pool("mscoco_task0_test"))
    assert len(d.qrels("mscoco_task3")) == 21
    assert len(d.instructions().prompts) == 16
    assert d.train_file() is None and d.split_files("test")
    with pytest.raises(DataNotFoundError):
        d.iter_queries("cirr_task7")
    with pytest.raises(DataNotFoundError):
        d.qrels("cirr_task7")


def test_mbeir_dir_anserini_names(shared_data: Path) -> None:
    d = MBEIRDir(shared_data / "mbeir-test-topics")
    tasks = {t.task.name: t for t in d.tasks()}
    assert len(tasks) == 9 and "cirr_task7" in tasks and "oven_task6" not in tasks
    cirr = tasks["cirr_task7"]
    assert cirr.queries.name == "topics.mbeir-cirr_task7.test.jsonl"
    assert cirr.qrels.name == "qrels.m-beir-cirr-task7.test.txt" and cirr.pool is None
    assert d.qrels_file("infoseek_task6") is not None  # qrels without topics
    first = next(iter_queries(cirr.queries))
    assert first.qid == "8:1" and first.task_id == 7 and first.query_modality == "image,text"
    qrels = d.qrels("cirr_task7")
    assert len(qrels) == 4170 and qrels.positives("8:1") == ["8:18844"]
    assert d.local_pools() == {} and d.union_pool_files() == []


def test_records_share_accessors() -> None:
    q = Query.from_dict({"qid": "1:2", "query_txt": "new", "query_img_path": "a.jpg",
                         "query_modality": "image,text", "query_txt_raw": "old"})
    c = Candidate.from_dict({"did": "1:3", "txt": None, "img_path": "b.jpg",
                             "modality": "image"})
    assert (q.id, q.text, q.image_path, q.modality, q.raw_text) == (
        "1:2", "new", "a.jpg", "image,text", "old")
    assert (c.id, c.text, c.image_path, c.modality, c.raw_text) == (
        "1:3", None, "b.jpg", "image", None)
    assert (q.TEXT_FIELD, q.RAW_TEXT_FIELD, c.TEXT_FIELD, c.RAW_TEXT_FIELD) == (
        "query_txt", "query_txt_raw", "txt", "txt_raw")
    assert q.field_text("query_txt") == "new" and q.field_text("query_txt_raw") == "old"
    assert c.field_text("caption") is None  # absent extra field: the text
    assert all(r.to_dict()[r.TEXT_FIELD] == r.text for r in (q, c))


def test_layout_rules(tmp_path: Path) -> None:
    assert pool_stem("cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl") == (
        "mscoco_task0_test")
    with pytest.raises(DataFormatError):
        pool_stem("pool.jsonl")
    for task, pool in (("cirr_task7", "union"), ("my_photos", "local")):
        assert parse_run_file_name(run_file_name(task, pool)) == (task, pool)
    assert parse_run_file_name("mbeir_cirr_task7_single_pool_test_k10_run.txt") == (
        "cirr_task7", "local")
    assert parse_run_file_name("runs.json") is None
    with pytest.raises(ConfigError):
        run_file_name("cirr_task7", "global")
    # query files of a split in each layout
    for rel in ("query/val/mbeir_a_task1_val.jsonl", "val/mbeir_b_task1_val.jsonl",
                "topics/topics.mbeir-c_task1.val.jsonl", "topics/topics.mbeir-d_task1.test.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}\n")
    assert [p.name for p in MBEIRDir(tmp_path).split_files("val")] == [
        "mbeir_a_task1_val.jsonl", "topics.mbeir-c_task1.val.jsonl", "mbeir_b_task1_val.jsonl"]


def test_union_pools_rule(tmp_path: Path) -> None:
    d = MBEIRDir(tmp_path)
    assert d.union_pools() == {}
    local = tmp_path / "cand_pool" / "local"
    local.mkdir(parents=True)
    for name in ("cirr_task7", "mscoco_task0_test", "mscoco_task0_val", "photos"):
        (local / f"mbeir_{name}_cand_pool.jsonl").write_text("{}\n")
    assert list(d.union_pools()) == ["mscoco_task0_test", "cirr_task7"]  # UniIR's order
    union = tmp_path / "cand_pool" / "global" / "mbeir_union_test_cand_pool.jsonl"
    union.parent.mkdir()
    union.write_text("{}\n")
    assert d.union_pools() == {"union": union} and d.union_pool_files() == [union]
    assert d.global_pool_file("test") == union and d.global_pool_file("train") is None


def test_mbeir_dir_layout_file(tmp_path: Path) -> None:
    (tmp_path / "augret.json").write_text(json.dumps({"image_root": "../images"}))
    d = MBEIRDir(tmp_path)
    assert d.resolve_image("a/b.jpg") == tmp_path / "../images/a/b.jpg"
    assert d.resolve_image("/abs/c.jpg") == Path("/abs/c.jpg")
    assert MBEIRDir(tmp_path, image_root="/x").image_root == Path("/x")
    (tmp_path / "augret.json").write_text("[1]")
    with pytest.raises(DataFormatError, match=r"augret\.json"):
        MBEIRDir(tmp_path)
    with pytest.raises(DataNotFoundError):
        MBEIRDir(tmp_path / "missing")


def test_iter_candidates_reports_file_line_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(REAL_CAND) + "\n" + json.dumps({**REAL_CAND, "did": 5}) + "\n")
    errors: list[DataFormatError] = []
    got = list(iter_candidates(path, on_error=errors.append, with_lines=True))
    assert [n for n, _ in got] == [1]
    assert (errors[0].path, errors[0].line, errors[0].field) == (str(path), 2, "did")
    with pytest.raises(DataFormatError, match=r"p.jsonl:2 field 'did'"):
        list(iter_candidates(path))
