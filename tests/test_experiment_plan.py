"""``augret plan``: the experiment config, exact counts on the real M-BEIR test topics (images
absent) and on the shapes sample (images present, de-duplicated by content)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from augret.config import load_config
from augret.errors import ConfigError
from augret.experiment.config import PAPER_CONDITIONS, ExperimentConfig, paper_conditions
from augret.experiment.plan import plan

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "mbeir-paper.yaml"
QUESTION = re.compile(r"^\s*(what|where|why|when|which|how)\b", re.IGNORECASE)


# ---- the config ------------------------------------------------------------------------
def test_paper_config_loads_with_six_conditions():
    cfg = load_config(ExperimentConfig, PAPER)
    assert [c.name for c in cfg.conditions] == [
        "zero_shot", "baseline", "inference_only", "query_enhanced", "corpus_enhanced",
        "fully_enhanced", "fully_enhanced_append", "bm25_raw", "bm25_enhanced",
        "hybrid_enhanced", "zero_shot_qwen3vl_emb_2b", "inference_only_qwen3vl_emb_2b",
        "zero_shot_lamra_ret", "zero_shot_gme_7b", "baseline_lamra_qwen2vl_2b",
        "inference_only_lamra_qwen2vl_2b", "fully_enhanced_lamra_qwen2vl_2b"]
    assert cfg.conditions[:6] == paper_conditions()  # the YAML spells out the defaults
    assert tuple(c.name for c in paper_conditions()) == PAPER_CONDITIONS
    assert cfg.enhance.model == "Qwen/Qwen3-VL-8B-Instruct" and cfg.enhance.backend == "vllm"
    assert (cfg.enhance.query_tokens, cfg.enhance.candidate_tokens) == (128, 512)
    assert cfg.encoder == "clip_sf-vit-l-14" and cfg.gpus == 8
    assert cfg.training.recipe == "configs/train-clip_sf-large.yaml"
    assert cfg.embedding_dim() == 768
    # baseline and inference_only share one encoder, hybrid uses fully_enhanced's, append
    # text needs its own run, bm25 none: five CLIP_SF trainings; the LamRA-trained MLLM
    # conditions two of their own (raw and enhanced)
    lamra = "mllm-lamra-Qwen-Qwen2-VL-2B-Instruct+train-lamra-qwen2vl-2b"
    assert cfg.trainings() == {
        "q-raw_c-raw": ["baseline", "inference_only"], "q-enhanced_c-raw": ["query_enhanced"],
        "q-raw_c-enhanced": ["corpus_enhanced"],
        "q-enhanced_c-enhanced": ["fully_enhanced", "hybrid_enhanced"],
        "q-enhanced_c-enhanced_append": ["fully_enhanced_append"],
        f"{lamra}_q-raw_c-raw": ["baseline_lamra_qwen2vl_2b",
                                 "inference_only_lamra_qwen2vl_2b"],
        f"{lamra}_q-enhanced_c-enhanced": ["fully_enhanced_lamra_qwen2vl_2b"]}
    trained_mllm = cfg.condition("fully_enhanced_lamra_qwen2vl_2b")
    key = cfg.encoder_key(trained_mllm)
    assert key == f"{lamra}_q-enhanced_c-enhanced"
    assert cfg.encoder_name(key) == "mllm:lamra:Qwen/Qwen2-VL-2B-Instruct"
    assert cfg.recipe(trained_mllm) == "configs/train-lamra-qwen2vl-2b.yaml"
    assert cfg.embedding_dim(key) == 1536 and cfg.embed_items_per_s(key) == 100
    assert cfg.train_samples_per_s(key) == 12 and cfg.train_samples_per_s("q-raw_c-raw") == 250
    # generation is shared by the modes; each mode is its own enhancement output
    assert cfg.enhancements() == [("test", "queries"), ("test", "candidates"),
                                  ("train", "queries"), ("train", "candidates")]
    assert cfg.enhanced_views() == [(*e, m) for m in ("replace", "append")
                                    for e in cfg.enhancements()]
    assert cfg.encoder_key(cfg.condition("zero_shot")) == "pretrained"
    assert cfg.encoder_key(cfg.condition("bm25_enhanced")) is None
    # + the append view's queries and pool, + 4 per MLLM model (raw and enhanced for one),
    # + 2 per trained MLLM run (the raw run embeds raw and enhanced text)
    assert len(cfg.embedding_sets()) == 12 + 2 + 8 + 6
    assert ("q-enhanced_c-enhanced_append", "pool", "enhanced-append") in cfg.embedding_sets()
    mllm = cfg.condition("inference_only_qwen3vl_emb_2b")
    assert cfg.encoder_key(mllm) == "pretrained:qwen3-vl-embedding-2b"
    assert cfg.embedding_dim("pretrained:qwen3-vl-embedding-2b") == 2048
    assert cfg.embedding_dim("pretrained:gme-qwen2-vl-7b") == 3584
    assert cfg.embed_items_per_s("pretrained:lamra-ret") == 100
    assert cfg.embed_items_per_s("pretrained") == 1500
    assert [c.name for c in cfg.conditions if c.model and c.trains] == [
        "baseline_lamra_qwen2vl_2b", "inference_only_lamra_qwen2vl_2b",
        "fully_enhanced_lamra_qwen2vl_2b"]


def test_resolved_config_round_trips(tmp_path):
    from augret.config import config_hash, write_resolved

    cfg = load_config(ExperimentConfig, PAPER)
    again = load_config(ExperimentConfig, write_resolved(cfg, tmp_path))
    assert again == cfg and config_hash(again) == config_hash(cfg)


@pytest.mark.parametrize("overrides, match", [
    ({"gpu": 8}, "unknown key"),
    ({"planning.throughput.vlm_tokens": 5}, "unknown key"),
    ({"conditions": [{"name": "a", "corpus": "better"}]}, "not one of"),
    ({"conditions": [{"name": "x", "queries": "raw", "extra": 1}]}, "unknown key"),
    ({"conditions": [{"name": "a"}, {"name": "a"}], "baseline": "a"}, "repeat"),
    ({"baseline": "nope"}, "not a condition"),
    ({"tasks": ["cirr_task9"]}, "unknown M-BEIR test task"),
    ({"planning.throughput.embed_items_per_s": 0}, "positive"),
    ({"conditions": [{"name": "a", "retriever": "splade"}]}, "not one of"),
    ({"conditions": [{"name": "a", "retriever": "bm25", "encoder": "trained"}]},
     r"conditions\[0\]: condition 'a': the bm25 retriever uses no encoder; remove "
     "'encoder: trained'"),
    ({"conditions": [{"name": "a", "retriever": "bm25", "encoder": "pretrained"}]},
     "uses no encoder"),
    ({"conditions": [{"name": "a", "retriever": "bm25", "train_corpus": "enhanced"}]},
     "the bm25 retriever trains nothing"),
    ({"conditions": [{"name": "a", "enhance_mode": "append"}]},
     "enhance_mode applies to enhanced views"),
    ({"conditions": [{"name": "a", "encoder": "pretrained", "train_queries": "enhanced",
                      "enhance_mode": "append"}]}, "enhance_mode applies"),
    ({"conditions": [{"name": "a", "queries": "enhanced", "enhance_mode": "prepend"}]},
     "not one of"),
    ({"retrieval": {"retriever": "bm25"}}, r"retrieval.retriever is set by the experiment"),
    ({"retrieval": {"encoder": "tiny"}}, "retrieval.encoder is set by the experiment"),
    ({"sample": {"reps": 0}}, "reps must be >= 1"),
    ({"sample": {"size": 3}}, "unknown key"),
    ({"conditions": [{"name": "a", "encoder": "pretrained", "recipe": "x.yaml"}]},
     "a recipe applies to trained conditions"),
    ({"planning.throughput.mllm_embed_items_per_s": -1}, "positive"),
    ({"planning.throughput.mllm_train_samples_per_s": 0}, "positive"),
])
def test_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(ExperimentConfig, None, overrides)


def test_plan_needs_a_data_dir():
    with pytest.raises(ConfigError, match="no data directory"):
        plan(ExperimentConfig())


# ---- real M-BEIR test topics (images absent) --------------------------------------------
@pytest.fixture
def topics_dir(shared_data, tmp_path):
    """The real test topics as an M-BEIR layout (links to ``mbeir-test-topics/topics``)."""
    root = tmp_path / "mbeir"
    (root / "query" / "test").mkdir(parents=True)
    topics = shared_data / "mbeir-test-topics" / "topics"
    for f in sorted(topics.glob("topics.mbeir-*.test.jsonl")):
        name = f.name.removeprefix("topics.mbeir-").removesuffix(".test.jsonl")
        (root / "query" / "test" / f"mbeir_{name}_test.jsonl").symlink_to(f)
    return root


def _direct_counts(root: Path) -> dict[str, dict[str, object]]:
    """Per file: route counts, distinct keys and image paths, by an independent reading."""
    out = {}
    for f in sorted((root / "query" / "test").glob("*.jsonl")):
        routes: Counter[str] = Counter()
        keys: set = set()
        images: set = set()
        for line in f.read_text("utf-8").splitlines():
            if not line.strip():
                continue
            q = json.loads(line)
            text, img = (q["query_txt"] or "").strip(), q["query_img_path"]
            if not img:
                routes["passthrough"] += 1
            elif not text:
                routes["caption_query"] += 1
                keys.add(("caption_query", img))
                images.add(img)
            elif text.endswith("?") or QUESTION.match(text):
                routes["entity_rewrite"] += 1
                keys.add(("entity_rewrite", q["query_txt"], img))
                images.add(img)
            else:
                routes["condense"] += 1
                keys.add(("condense", q["query_txt"]))
        out[f.name.removeprefix("mbeir_").removesuffix("_test.jsonl")] = {
            "routes": routes, "keys": keys, "images": images}
    return out


@pytest.mark.parametrize("fast", [False, True])
def test_plan_on_real_topics_matches_a_direct_count(topics_dir, tmp_path, fast):
    direct = _direct_counts(topics_dir)
    # the examples of the brief, counted by hand
    assert direct["cirr_task7"]["routes"] == {"condense": 4170}
    assert direct["fashioniq_task7"]["routes"] == {"condense": 6001, "entity_rewrite": 2}
    assert direct["mscoco_task3"]["routes"] == {"caption_query": 5000}
    assert direct["nights_task4"]["routes"] == {"caption_query": 2120}
    for name in ("webqa_task1", "webqa_task2", "edis_task2", "fashion200k_task0"):
        assert set(direct[name]["routes"]) == {"passthrough"}

    p = plan(PAPER, data_dir=topics_dir, fast=fast)
    assert p.mode == ("fast" if fast else "bytes")
    test_queries = p.stages[0]
    assert (test_queries.split, test_queries.side) == ("test", "queries")
    by_file = {f["file"].removeprefix("query/test/mbeir_").removesuffix("_test.jsonl"): f
               for f in test_queries.files}
    for name, d in direct.items():
        routes = d["routes"]
        assert by_file[name]["rows"] == sum(routes.values())
        assert by_file[name]["passthrough"] == routes["passthrough"]
        assert by_file[name]["generate"] == sum(routes.values()) - routes["passthrough"]
    total = Counter()
    for d in direct.values():
        total.update(d["routes"])
    assert {k: v.rows for k, v in test_queries.by_route.items()} == {
        k: v for k, v in total.items() if k != "passthrough"}
    keys = set().union(*(d["keys"] for d in direct.values()))
    assert test_queries.unique_keys == len(keys) < test_queries.generate  # repeated texts
    for route in ("condense", "caption_query", "entity_rewrite"):
        assert test_queries.by_route[route].unique == sum(k[0] == route for k in keys)
    images = set().union(*(d["images"] for d in direct.values()))
    assert test_queries.missing_images == len(images)  # no image is on disk: all by path
    assert test_queries.missing_image_rows == total["caption_query"] + total["entity_rewrite"]
    assert p.enhancement["missing_images"] == len(images)
    assert any("missing on disk" in n for n in p.notes)
    # the other stages have no files here, and say so
    assert [s.rows for s in p.stages[1:]] == [0, 0, 0]
    assert any("no candidates files of split 'test'" in n for n in p.notes)
    # tokens: distinct keys × mean tokens per route
    r = p.routes["caption_query"]
    assert r["expected_tokens"] == r["unique"] * 70 and r["max_tokens"] == r["unique"] * 128
    assert p.embedding["query_rows"] == sum(sum(d["routes"].values()) for d in direct.values())
    assert p.embedding["pool_rows"] == 0 and p.training["samples"] == 0
    assert p.gpu_hours["total"] == pytest.approx(
        p.gpu_hours["enhancement"] + p.gpu_hours["embedding"] + p.gpu_hours["training"])
    # embedding GPU-hours per set at its encoder's throughput: MLLM sets at the MLLM rate
    sets = p.embedding["sets"]
    for s in sets:
        assert s["gpu_hours"] == pytest.approx(s["rows"] / s["items_per_s"] / 3600)
    mllm = [s for s in sets if s["encoder"].startswith("pretrained:")]
    assert len(mllm) == 8 and {s["items_per_s"] for s in mllm} == {100}
    assert {s["dim"] for s in mllm} == {2048, 3584}
    assert p.gpu_hours["embedding"] == pytest.approx(sum(s["gpu_hours"] for s in sets))
    path = p.write_json(tmp_path / "plan.json")
    saved = json.loads(path.read_text())
    assert saved["stages"][0]["unique_keys"] == len(keys)
    assert saved["config"]["name"] == "mbeir-paper"


def test_plan_reads_the_anserini_layout(shared_data, topics_dir, tmp_path, capsys):
    """``augret plan --data`` on the topics copy itself plans the same enhancement."""
    from augret.cli.main import main

    direct = _direct_counts(topics_dir)
    out = tmp_path / "plan.json"
    assert main(["plan", str(PAPER), "--data", str(shared_data / "mbeir-test-topics"), "--fast",
                 "--out", str(out)]) == 0
    saved = json.loads(out.read_text("utf-8"))
    assert not any("no queries files of split 'test'" in n for n in saved["notes"])
    stage = saved["stages"][0]
    assert (stage["split"], stage["side"]) == ("test", "queries")
    by_file = {f["file"].removeprefix("topics/topics.mbeir-").removesuffix(".test.jsonl"): f
               for f in stage["files"]}
    assert {name: f["rows"] for name, f in by_file.items()} == {
        name: sum(d["routes"].values()) for name, d in direct.items()}
    assert stage["unique_keys"] == len(set().union(*(d["keys"] for d in direct.values())))
    assert saved["gpu_hours"]["enhancement"] > 0


# ---- the shapes sample (image bytes present) --------------------------------------------
@pytest.fixture
def sample_copy(sample_dir, tmp_path):
    root = tmp_path / "sample"
    shutil.copytree(sample_dir, root, symlinks=True)
    return root


def _candidates(p):
    return next(s for s in p.stages if (s.split, s.side) == ("test", "candidates"))


def _pool_images(root: Path) -> set[str]:
    digests = set()
    for f in (root / "cand_pool" / "local").glob("*.jsonl"):
        for line in f.read_text("utf-8").splitlines():
            img = json.loads(line)["img_path"]
            if img:
                digests.add(hashlib.sha256((root / img).read_bytes()).hexdigest())
    return digests


def test_plan_on_sample_dedupes_image_bytes(sample_copy):
    cfg = load_config(ExperimentConfig, PAPER, {"data_dir": str(sample_copy)})
    before = plan(cfg, config_path=PAPER)
    cand = _candidates(before)
    assert cand.missing_images == 0 and before.enhancement["missing_images"] == 0
    assert cand.unique_keys == cand.unique_images == len(_pool_images(sample_copy))
    assert before.training["train_queries"] == 576 and before.training["epochs"] == 20
    # five CLIP_SF training views (20 epochs) and two LamRA-recipe MLLM runs (1 epoch)
    assert before.training["samples"] == 5 * 576 * 20 + 2 * 576
    mllm_runs = [r for r in before.training["runs"] if r["encoder"].startswith("mllm:")]
    assert [r["epochs"] for r in mllm_runs] == [1, 1]
    assert all(r["gpu_hours"] == pytest.approx(576 / 12 / 3600) for r in mllm_runs)
    assert before.gpu_hours["training"] == pytest.approx(
        5 * 576 * 20 / 250 / 3600 + 2 * 576 / 12 / 3600)
    seeded = plan(load_config(ExperimentConfig, PAPER, {"data_dir": str(sample_copy),
                                                        "seeds": [0, 1, 2]}), config_path=PAPER)
    assert seeded.training["samples"] == 3 * before.training["samples"]  # per seed
    assert seeded.gpu_hours["training"] == pytest.approx(3 * before.gpu_hours["training"])
    assert seeded.training["runs"][0]["seeds"] == [0, 1, 2]
    trained = [s for s in seeded.embedding["sets"] if not s["encoder"].startswith("pretrained")]
    assert trained and all(s["runs"] == 3 for s in trained)
    assert before.embedding["pool_rows"] > 0
    assert before.index["indexes"][0]["bytes"] == before.index["local_rows"] * (768 * 4 + 8)

    # a copied pool repeats every image: rows grow, distinct keys do not
    local = sample_copy / "cand_pool" / "local"
    shutil.copy(local / "mbeir_nights_task4_cand_pool.jsonl",
                local / "mbeir_copy_task4_cand_pool.jsonl")
    # and a pool whose images are byte-identical copies under new paths
    rows = []
    for line in (local / "mbeir_cirr_task7_cand_pool.jsonl").read_text().splitlines():
        row = json.loads(line)
        new = row["img_path"].replace("shapes_images/", "shapes_copies/")
        (sample_copy / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_copy / row["img_path"], sample_copy / new)
        rows.append(json.dumps({**row, "img_path": new}))
    (local / "mbeir_copies_task7_cand_pool.jsonl").write_text("\n".join(rows) + "\n")

    after = plan(cfg, config_path=PAPER)
    cand_after = _candidates(after)
    assert cand_after.rows > cand.rows and cand_after.generate > cand.generate
    assert cand_after.unique_keys == cand.unique_keys
    assert after.routes["caption_candidate"]["expected_tokens"] == \
        before.routes["caption_candidate"]["expected_tokens"]

    fast = plan(cfg, fast=True, config_path=PAPER)
    fast_cand = _candidates(fast)
    # by path: the copied pool still dedupes, the copied files do not
    assert fast_cand.unique_keys == cand.unique_keys + len(rows)
    assert fast_cand.missing_images == 0


def test_plan_missing_images_are_reported_by_path(sample_copy):
    img = next((sample_copy / "mbeir_images" / "shapes_images").glob("*.png"))
    img.unlink()
    p = plan(load_config(ExperimentConfig, PAPER, {"data_dir": str(sample_copy)}),
             config_path=PAPER)
    assert p.enhancement["missing_images"] == 1
    assert p.enhancement["missing_image_rows"] >= 1
    examples = [e for s in p.stages for e in s.missing_examples]
    assert examples and examples[0].endswith(img.name)


def test_plan_cli_writes_json(sample_copy, tmp_path, capsys):
    from augret.cli.main import main

    out = tmp_path / "p.json"
    code = main(["plan", str(PAPER), "--data", str(sample_copy), "--fast", "--out", str(out),
                 "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mode"] == "fast" and json.loads(out.read_text())["mode"] == "fast"
    code = main(["plan", str(PAPER), "--data", str(sample_copy), "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "Generation by route" in text and "GPU-hours" in text
    assert main(["plan", str(PAPER), "--data", str(tmp_path / "absent")]) == 4


def test_plan_counts_only_the_selected_tasks(sample_copy):
    tasks = ["mscoco_task0", "webqa_task1"]
    over = {"data_dir": str(sample_copy), "tasks": tasks, "pools": ["local"]}
    p = plan(load_config(ExperimentConfig, PAPER, over), fast=True, config_path=PAPER)
    files = {(s.split, s.side): [f["file"] for f in s.files] for s in p.stages}
    assert files[("test", "queries")] == [f"query/test/mbeir_{t}_test.jsonl" for t in tasks]
    assert files[("test", "candidates")] == [
        "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl",
        "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl"]
    # training reads the whole union training file, whatever the tasks
    assert files[("train", "queries")] == ["query/union_train/mbeir_union_up_train.jsonl"]
    assert p.training["train_queries"] == 576
    rows = sum(1 for t in tasks
               for _ in (sample_copy / f"query/test/mbeir_{t}_test.jsonl").open())
    assert p.embedding["query_rows"] == rows
    assert p.index["local_pools"] == ["mscoco_task0_test", "webqa_task1"]

    # the union pool every task searches holds every test pool: all are enhanced
    p = plan(load_config(ExperimentConfig, PAPER, {**over, "pools": ["local", "union"]}),
             fast=True, config_path=PAPER)
    cands = [f["file"] for f in _candidates(p).files]
    assert cands == sorted(str(f.relative_to(sample_copy))
                           for f in (sample_copy / "cand_pool/local").glob("*.jsonl"))
    assert len(cands) == 6


def test_plan_of_the_reference_backend_needs_no_gpu(sample_copy):
    """The main job's simulated VLM answers from records: no enhancement GPU-hours."""
    qs = PAPER.parent / "quickstart.yaml"
    p = plan(load_config(ExperimentConfig, qs, {"data_dir": str(sample_copy)}), fast=True,
             config_path=qs)
    assert p.enhancement["generate"] > 0 and p.gpu_hours["enhancement"] == 0.0
    assert any("simulated perfect VLM" in n for n in p.notes)
    assert p.training["samples"] == 5 * 3 * p.training["runs"][0]["samples"]  # views × seeds


def test_plan_index_memory_per_condition_and_machine_warnings(sample_copy):
    base = {"data_dir": str(sample_copy), "tasks": ["cirr_task7"]}

    def plan_with(**over):
        return plan(load_config(ExperimentConfig, PAPER, {**base, **over}), fast=True,
                    config_path=PAPER)

    roomy = plan_with(**{"planning.memory_gb": 64, "planning.gpu_memory_gb": 80})
    assert roomy.index["kind"] == "flat" and not roomy.warnings
    assert roomy.index["machine"] == {"ram_bytes": 64 << 30, "gpu_bytes": [80 << 30] * 8,
                                      "source": "the config"}
    union = next(i for i in roomy.index["indexes"]
                 if (i["encoder"], i["view"], i["pool"]) == ("pretrained", "raw", "union"))
    assert union["conditions"] == ["zero_shot"]
    n = roomy.index["union_rows"]
    assert union["bytes"] == n * (768 * 4 + 8) and union["fp16_bytes"] == n * (768 * 2 + 8)
    assert union["fp16_vector_bytes"] * 2 == union["vector_bytes"] == n * 768 * 4
    trained = {tuple(i["conditions"]) for i in roomy.index["indexes"]}
    assert ("baseline", "query_enhanced", "hybrid_enhanced") not in trained  # by view
    assert any("baseline" in c for c in trained)

    # the widest encoder's union index (an MLLM extra's) is the largest
    big = max(roomy.index["indexes"], key=lambda i: i["largest_index_bytes"])
    assert big["pool"] == "union" and big["largest_index_bytes"] == roomy.index[
        "largest_index_bytes"] > union["largest_index_bytes"]
    small = 0.9 * big["largest_index_bytes"] / 2**30  # below its float32, above its float16
    assert big["largest_fp16_bytes"] < small * 2**30
    tight = plan_with(**{"planning.memory_gb": small})
    assert len(tight.warnings) == 1 and "use the flat16 kind" in tight.warnings[0]
    assert f"{big['encoder']}, {big['view']} corpus, union" in tight.warnings[0]
    ok16 = plan_with(**{"planning.memory_gb": small, "retrieval": {"index": {"kind": "flat16"}}})
    assert ok16.index["kind"] == "flat16" and not ok16.warnings
    tiny = plan_with(**{"planning.memory_gb": 1e-6, "planning.gpu_memory_gb": 1e-6,
                        "retrieval": {"index": {"kind": "flat16"}}})
    assert [w.split(" (")[0] for w in tiny.warnings] == [
        "the largest flat16 index", "the largest flat16 index"]
    assert "reads them from disk" in tiny.warnings[0] and "streams" in tiny.warnings[1]
    with pytest.raises(ConfigError, match="memory_gb must be > 0"):
        plan_with(**{"planning.memory_gb": 0})
