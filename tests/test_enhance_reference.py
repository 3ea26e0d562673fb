"""The reference captioner (a simulated perfect VLM) and the shapes world's silent evidence.

The backend answers from the sample's scene records through the real runner, store and
report; its texts are checked against the ground truth of every image they describe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augret.data import MBEIRDir, iter_candidates, iter_jsonl, iter_queries
from augret.data.sample import SCENES_FILE, write_sample
from augret.enhance import EnhanceConfig, enhance
from augret.enhance.backends import BACKENDS, GenerationParams, GenerationRequest, get_backend
from augret.enhance.backends.reference import (
    SIMULATED_NOTE,
    ReferenceBackend,
    condense,
    entity_rewrite,
)
from augret.enhance.images import load_image
from augret.errors import DataFormatError, DataNotFoundError

COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")


def _scenes(root: Path) -> dict[str, dict]:
    return {r["image"]: r for _, r in iter_jsonl(root / SCENES_FILE)}


def _words(text: str | None) -> set[str]:
    return {w.strip(".,?!").lower() for w in (text or "").split()}


@pytest.fixture(scope="module")
def enhanced(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "enhanced"
    cfg = EnhanceConfig(backend="reference", model=SCENES_FILE, batch_size=32,
                        store=out.parent / "store.sqlite")
    report = enhance(sample_dir, out, cfg, progress=False)
    assert report["last_run"]["failed"] == 0
    return out


def test_registered_like_the_model_backends(sample_dir: Path) -> None:
    assert "reference" in BACKENDS
    backend = get_backend("reference", str(sample_dir))  # a directory: its scenes.jsonl
    assert backend.model_id.startswith(f"reference:{SCENES_FILE}@")
    with pytest.raises(DataNotFoundError, match="no records file"):
        get_backend("reference", str(sample_dir / "absent.jsonl"))


def test_sample_texts_hide_what_the_images_show(sample_dir: Path) -> None:
    """The silent evidence: the raw texts never state what the module says they hide."""
    d = MBEIRDir(sample_dir)
    scenes = _scenes(sample_dir)
    for tf in d.tasks():
        queries = list(iter_queries(tf.queries))
        pool = {c.did: c for c in iter_candidates(tf.pool)}
        name = tf.task.name
        for q in queries:
            words = _words(q.query_txt)
            if name == "oven_task8":  # the question never names its subject
                assert not words & set(COLORS) and not words & set(SHAPES), q.query_txt
                entry = pool[q.pos_cand_list[0]]
                scene = scenes[entry.img_path]
                assert scene["shape"] in _words(entry.txt)  # the entry names its shape...
                assert not _words(entry.txt) & set(COLORS)  # ...but never its colour
                assert scenes[q.query_img_path]["subject"] == scene["subject"]
            if name == "cirr_task7":  # the instruction names the change only
                ref = scenes[q.query_img_path]
                target = scenes[pool[q.pos_cand_list[0]].img_path]
                assert ref["shape"] not in words and ref["color"] not in words, q.query_txt
                assert (target["shape"] in words) != (target["color"] in words)
            if name in ("mscoco_task3", "nights_task4"):
                assert q.query_txt is None and q.query_img_path
        if name in ("mscoco_task0", "nights_task4", "cirr_task7"):
            assert all(c.txt is None and c.img_path for c in pool.values())
        if name == "webqa_task1":
            assert all(c.img_path is None and not _words(c.txt) & set(COLORS) for c in
                       pool.values())
    qids = [q.qid for tf in d.tasks() for q in iter_queries(tf.queries)]
    qids += [q.qid for q in iter_queries(d.train_file())]
    assert len(qids) == len(set(qids))  # ids count on across splits


def test_scene_records_are_the_ground_truth_of_the_pixels(sample_dir: Path) -> None:
    import hashlib

    import numpy as np

    scenes = _scenes(sample_dir)
    assert len(scenes) == json.loads((sample_dir / "sample.json").read_text())["images"]
    for rel, s in list(scenes.items())[::97]:
        img = load_image((MBEIRDir(sample_dir).resolve_image(rel)).read_bytes())
        assert hashlib.sha256(img.tobytes()).hexdigest() == s["pixels_sha256"]
        assert rel.endswith(f"_{s['color']}_{s['shape']}.png")
        pixels = np.asarray(img)
        corner = tuple(int(v) for v in pixels[0, 0])
        bg = {"white": (250, 250, 250), "gray": (128, 128, 128), "black": (15, 15, 15)}
        assert corner == bg[s["background"]]
        assert s["keywords"][0] == s["subject"] == f"{s['color']} {s['shape']}"


def test_every_route_answers_from_the_records(sample_dir: Path, enhanced: Path) -> None:
    scenes = _scenes(sample_dir)
    out = MBEIRDir(enhanced)
    report = json.loads((enhanced / "enhance_report.json").read_text())
    assert report["backend"] == "reference" and report["simulated"] == SIMULATED_NOTE
    assert report["model"].startswith("reference:scenes.jsonl@")
    seen = set()
    for tf in out.tasks():
        for q in iter_queries(tf.queries):
            info = q.extra["enhancement"]
            seen.add(info["task"])
            if info["task"] == "passthrough":
                assert q.query_txt == q.extra["query_txt_raw"]
                continue
            assert info["status"] == "ok" and info["simulated"] is True
            scene = scenes[q.query_img_path]
            if info["task"] == "caption_query":  # dense keyword caption of the image
                assert q.query_txt.lower().startswith(scene["subject"])
                assert scene["background"] in q.query_txt
            elif info["task"] == "entity_rewrite":  # grounded, not answered
                assert scene["subject"] in q.query_txt
                assert q.query_txt.endswith("?") and "this" not in q.query_txt.lower()
            elif info["task"] == "condense":  # from the text alone: no image was sent
                assert _words(q.query_txt) <= _words(q.extra["query_txt_raw"]) | {""}
                assert scene["subject"] not in q.query_txt
        for c in iter_candidates(out.pool_file(tf.task.pool)):
            if c.img_path:
                assert c.txt.lower().startswith(scenes[c.img_path]["subject"])
                assert c.extra["enhancement"]["simulated"] is True
    assert seen == {"passthrough", "caption_query", "entity_rewrite", "condense"}


def test_rerun_is_all_store_hits(sample_dir: Path, enhanced: Path, tmp_path: Path) -> None:
    cfg = EnhanceConfig(backend="reference", model=SCENES_FILE, files="*task8*",
                        store=enhanced.parent / "store.sqlite")
    report = enhance(sample_dir, tmp_path / "again", cfg, progress=False)
    assert report["last_run"]["generated"] == 0 and report["last_run"]["cached"] > 0


def test_condense_and_rewrite_rules() -> None:
    assert condense("Same shape, but blue.") == "same shape, blue"
    assert condense("Make it green") == "green"
    assert condense("As a ring instead") == "ring"
    assert condense("Is shiny and silver with shorter sleeves") == "shiny silver with shorter " \
        "sleeves"
    assert condense("the") == "the"  # nothing left: unchanged
    assert entity_rewrite("What is this emblem called?", "red ring") == \
        "What is the red ring emblem called?"
    assert entity_rewrite("Whose emblem is this?", "red ring") == "Whose emblem is the red ring?"
    assert entity_rewrite("What is this?", "red ring") == "What is the red ring?"
    assert entity_rewrite("Name the colour", "red ring") == "Name the colour (red ring)"


def test_user_annotations_and_missing_records(sample_dir: Path, tmp_path: Path) -> None:
    """A user's own id → text file runs through the same runner; items it does not cover
    fail with the reason, and the counts reconcile."""
    d = MBEIRDir(sample_dir)
    queries = list(iter_queries(d.query_file("mscoco_task3")))
    pool = list(iter_candidates(d.tasks()[0].pool))  # mscoco_task0: bare images
    notes = tmp_path / "notes.jsonl"
    lines = [{"qid": q.qid, "text": f"my note {i}"} for i, q in enumerate(queries[:-2])]
    lines += [{"did": c.did, "text": f"my caption {i}"} for i, c in enumerate(pool[:-1])]
    lines.append({"id": queries[-2].qid, "text": "either side"})
    notes.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = EnhanceConfig(backend="reference", model=str(notes), store=tmp_path / "s.sqlite",
                        files=["*mscoco_task3_test.jsonl", "*mscoco_task0_test_cand_pool*"])
    report = enhance(sample_dir, tmp_path / "out", cfg, progress=False)
    counts = report["last_run"]
    assert counts["failed"] == 2  # the last query and the last candidate have no record
    assert counts["total"] == counts["generated"] + counts["cached"] + counts[
        "passed_through"] + counts["failed"]
    failures = [json.loads(x) for x in (tmp_path / "out/enhance_failures.jsonl").open()]
    assert {f["id"] for f in failures} == {queries[-1].qid, pool[-1].did}
    assert all("no annotation" in f["error"] for f in failures)
    out = MBEIRDir(tmp_path / "out")
    texts = {q.qid: q.query_txt for q in iter_queries(out.query_file("mscoco_task3"))}
    assert texts[queries[0].qid] == "My note 0." and texts[queries[-2].qid] == "Either side."


def test_bad_records_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "9:1", "text": "ok"}\n{"subject": "x"}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2.*neither a scene record"):
        ReferenceBackend(str(bad))
    bad.write_text('{"qid": "9:1", "did": "9:2", "text": "two ids"}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:1.*one of 'qid', 'did' or 'id'"):
        ReferenceBackend(str(bad))


def test_records_change_the_model_id(tmp_path: Path) -> None:
    """The store key includes the model id: edited records are answered anew."""
    notes = tmp_path / "n.jsonl"
    notes.write_text('{"qid": "9:1", "text": "a"}\n')
    first = ReferenceBackend(str(notes)).model_id
    notes.write_text('{"qid": "9:1", "text": "b"}\n')
    second = ReferenceBackend(str(notes))
    assert first != second.model_id
    (res,) = second.generate([GenerationRequest([], id="9:1", route="condense", text="x")],
                             GenerationParams())
    assert res.ok and res.text == "b"


def test_sample_summary_lists_the_scenes(tmp_path: Path) -> None:
    s = write_sample(tmp_path / "s", seed=2, reps=1, train_reps=1)
    assert (tmp_path / "s" / SCENES_FILE).is_file()
    assert sum(1 for _ in iter_jsonl(tmp_path / "s" / SCENES_FILE)) == s.images
