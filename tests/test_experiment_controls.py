"""The negative control: enhanced texts permuted across the items of each file and route."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from augret.config import load_config
from augret.data import MBEIRDir
from augret.data.sample import SCENES_FILE
from augret.enhance import EnhanceConfig, enhance
from augret.errors import ConfigError
from augret.experiment.config import ExperimentConfig
from augret.experiment.controls import shuffle_enhanced

FILES = ["query/test/mbeir_oven_task8_test.jsonl",
         "cand_pool/local/mbeir_nights_task4_cand_pool.jsonl",
         "query/test/mbeir_webqa_task1_test.jsonl"]


@pytest.fixture(scope="module")
def enhanced(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ctl") / "enhanced"
    enhance(sample_dir, out, EnhanceConfig(backend="reference", model=SCENES_FILE,
                                           store=out.parent / "s.sqlite"), progress=False)
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def test_texts_move_to_other_items_of_the_same_route(sample_dir: Path, enhanced: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "shuffled"
    info = shuffle_enhanced(enhanced, out, FILES, data_dir=sample_dir, seed=3)
    for rel in FILES:
        src, dst = _rows(enhanced / rel), _rows(out / rel)
        assert len(src) == len(dst) == info["files"][rel]["rows"]
        text = "query_txt" if "qid" in src[0] else "txt"
        ident = "qid" if "qid" in src[0] else "did"
        by_id = {r[ident]: r for r in src}
        moved = 0
        for a, b in zip(src, dst, strict=True):
            assert a[ident] == b[ident] and a.get(f"{text}_raw") == b.get(f"{text}_raw")
            if a["enhancement"]["status"] != "ok":  # pass-through rows are not touched
                assert a == b
                continue
            donor = by_id[b["enhancement"]["text_from"]]
            assert b["enhancement"]["control"] == "shuffled"
            assert donor[ident] != a[ident] and b[text] == donor[text]
            assert donor["enhancement"]["task"] == a["enhancement"]["task"]
            moved += 1
        assert moved == info["files"][rel]["shuffled"]
        # the same texts, per route, in another order
        assert Counter(r[text] for r in src) == Counter(r[text] for r in dst)
        if moved:
            assert sum(a[text] != b[text] for a, b in zip(src, dst, strict=True)) > moved // 2
    assert info["files"][FILES[2]]["shuffled"] == 0  # text-only: nothing to shuffle
    # a complete data directory: other files linked, images resolved from the source
    d = MBEIRDir(out)
    assert (out / "query/test/mbeir_cirr_task7_test.jsonl").is_symlink()
    row = _rows(out / FILES[0])[0]
    assert d.resolve_image(row["query_img_path"]).is_file()


def test_seeded_and_rerunnable(sample_dir: Path, enhanced: Path, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    shuffle_enhanced(enhanced, a, FILES[:1], data_dir=sample_dir, seed=1)
    shuffle_enhanced(enhanced, b, FILES[:1], data_dir=sample_dir, seed=1)
    shuffle_enhanced(enhanced, c, FILES[:1], data_dir=sample_dir, seed=2)
    assert (a / FILES[0]).read_bytes() == (b / FILES[0]).read_bytes()
    assert (a / FILES[0]).read_bytes() != (c / FILES[0]).read_bytes()
    # a later stage replaces the link an earlier one made
    shuffle_enhanced(enhanced, a, FILES[1:2], data_dir=sample_dir, seed=1)
    assert not (a / FILES[1]).is_symlink() and (a / FILES[0]).read_bytes() == (
        b / FILES[0]).read_bytes()


def test_the_control_and_seeds_in_the_config() -> None:
    control = {"name": "shuffled_control", "train_queries": "enhanced",
               "train_corpus": "enhanced", "queries": "enhanced", "corpus": "enhanced",
               "enhance_mode": "shuffled"}
    cfg = load_config(ExperimentConfig, None, {"conditions": [
        {"name": "baseline"}, {"name": "zs", "encoder": "pretrained"}, control],
        "seeds": [3, 4]})
    # the control permutes the replace texts, which are made first even when no condition
    # reads them
    assert [v[2] for v in cfg.enhanced_views()] == ["replace"] * 4 + ["shuffled"] * 4
    assert cfg.training_key(cfg.condition("shuffled_control")) == \
        "q-enhanced_c-enhanced_shuffled"
    assert cfg.seeds_of(cfg.condition("baseline")) == [3, 4]
    assert cfg.seeds_of(cfg.condition("zs")) == [None]
    for bad in ({"seeds": []}, {"seeds": [1, 1]},
                {"conditions": [{"name": "seed-1"}], "baseline": None}):
        with pytest.raises(ConfigError):
            load_config(ExperimentConfig, None, bad)
