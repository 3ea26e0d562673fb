"""Stage configs: defaults, YAML overlay, CLI overrides, unknown keys, types."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from augret.config import config_hash, hash_values, load_config, option, write_resolved
from augret.errors import ConfigError, DataNotFoundError


@dataclass
class Optim:
    lr: float = 1e-5
    betas: tuple[float, ...] = (0.9, 0.98)


@dataclass
class Cfg:
    data: Path | None = None
    steps: int = 10
    mode: str = "replace"
    amp: bool = True
    tags: list[str] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)


def test_defaults_yaml_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("steps: 20\noptim:\n  lr: 0.001\ntags: [a, b]\n")
    cfg = load_config(Cfg, f, {"steps": "30", "optim.betas": [0.8, 0.9], "mode": None})
    assert cfg.steps == 30 and cfg.optim.lr == 0.001 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.tags == ["a", "b"] and cfg.mode == "replace" and cfg.data is None
    assert load_config(Cfg, None, {"tags": "x,y", "amp": "false"}).tags == ["x", "y"]


def test_unknown_keys_and_bad_types_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['stepz'\]"):
        load_config(Cfg, None, {"stepz": 3})
    with pytest.raises(ConfigError, match=r"optim: unknown key\(s\) \['momentum'\]"):
        load_config(Cfg, None, {"optim.momentum": 3})
    with pytest.raises(ConfigError, match="steps: expected int"):
        load_config(Cfg, None, {"steps": "many"})
    with pytest.raises(ConfigError, match="amp: expected true or false"):
        load_config(Cfg, None, {"amp": "maybe"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Cfg, bad)
    with pytest.raises(DataNotFoundError):
        load_config(Cfg, tmp_path / "missing.yaml")


def test_resolved_config_round_trips_and_hashes(tmp_path: Path) -> None:
    cfg = load_config(Cfg, None, {"steps": 5, "data": "/x"})
    path = write_resolved(cfg, tmp_path)
    again = load_config(Cfg, path)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(Cfg, None, {"steps": 6})) != config_hash(cfg)
    assert yaml.safe_load(path.read_text())["optim"]["betas"] == [0.9, 0.98]


# ---- the stage configs: one pattern ------------------------------------------------------------
SRC = Path(__file__).resolve().parents[1] / "src" / "augret"
STAGE_MODULES = sorted(f"augret.{p.parent.name}.config" for p in SRC.glob("*/config.py"))

#: A valid construction of each stage config class, and one bad value per class.
VALID: dict[str, dict] = {"ConditionConfig": {"name": "a"}, "RunConfig": {"encoder": "tiny"}}
BAD: dict[str, dict] = {
    "EnhanceConfig": {"batch_size": 0}, "EmbedConfig": {"pools": ["global"]},
    "IndexConfig": {"nprobe": 0}, "BM25Config": {"b": 2.0}, "SearchConfig": {"k": 0},
    "RunConfig": {"retriever": "dense", "encoder": None}, "SearcherConfig": {"rrf_k": 0},
    "ServeConfig": {"max_k": 5, "default_k": 6}, "TrainConfig": {"epochs": 0},
    "DataConfig": {"mix_ratio": 1.5}, "OptimConfig": {"lr": 0}, "ValConfig": {"every": 0},
    "ConditionConfig": {"name": "a b"}, "SampleConfig": {"reps": 0},
    "SplitsConfig": {"eval": ""}, "TrainingConfig": {"nproc": 0},
    "ThroughputConfig": {"embed_items_per_s": 0}, "PlanConfig": {"workers": 0},
    "ExperimentConfig": {"gpus": 0}, "RayResources": {"workers": 0},
    "LoraConfig": {"r": 0}, "GradCacheConfig": {"query_chunk": 0},
    "MilvusConfig": {"insert_rows": 0},
}


def _stage_classes() -> list[type]:
    import dataclasses
    import importlib

    out = []
    for name in STAGE_MODULES:
        module = importlib.import_module(name)
        out += [c for c in vars(module).values() if isinstance(c, type)
                and dataclasses.is_dataclass(c) and c.__module__ == name]
    return out


def _nested(cls: type, seen: set[type]) -> None:
    """``cls`` and the config classes of its fields (``X``, ``X | None``, ``list[X]``)."""
    import dataclasses
    import typing

    if cls in seen:
        return
    seen.add(cls)
    for tp in typing.get_type_hints(cls).values():
        for arg in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(arg):
                _nested(arg, seen)


def test_every_stage_has_its_configs_in_its_config_module() -> None:
    assert {"augret.encode.config", "augret.enhance.config", "augret.experiment.config",
            "augret.index.config", "augret.pipeline.config", "augret.serve.config",
            "augret.train.config"} <= set(STAGE_MODULES)
    classes = _stage_classes()
    seen: set[type] = set()
    for cls in classes:
        _nested(cls, seen)
    from augret.ray_resources import RayResources

    # the only shared sub-config lives in a public module of its own
    assert seen - set(classes) == {RayResources}
    assert set(BAD) == {c.__name__ for c in seen}, "add a bad value for each config class"


def test_stage_configs_are_frozen_documented_and_validated() -> None:
    import dataclasses
    import typing

    from augret.ray_resources import RayResources

    for cls in [*_stage_classes(), RayResources]:
        name = cls.__name__
        assert cls.__dataclass_params__.frozen, name
        assert name.endswith("Config") or cls is RayResources, name
        for f in dataclasses.fields(cls):
            assert isinstance(f.metadata.get("help"), str) and f.metadata["help"], (name, f.name)
            assert f.metadata.get("hash", True) in (True, False) or isinstance(
                f.metadata["hash"], tuple), (name, f.name)
        cfg = cls(**VALID.get(name, {}))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cfg, dataclasses.fields(cls)[0].name, None)
        with pytest.raises(ConfigError):
            cls(**{**VALID.get(name, {}), **BAD[name]})
        for fname, tp in typing.get_type_hints(cls).items():  # every choice is checked
            if typing.Literal in (typing.get_origin(tp),
                                  *(typing.get_origin(a) for a in typing.get_args(tp))):
                with pytest.raises(ConfigError, match="is not one of"):
                    cls(**{**VALID.get(name, {}), fname: "no-such-choice"})


def test_enhance_config_rejects_a_zero_batch() -> None:
    from augret.enhance import EnhanceConfig

    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        EnhanceConfig(batch_size=0)


def test_hash_relevance_lives_on_the_fields() -> None:
    @dataclass(frozen=True)
    class Inner:
        a: int = option(1, help="a")
        b: int = option(2, help="b", hash=False)

    @dataclass(frozen=True)
    class Outer:
        x: int = option(1, help="x")
        y: int = option(2, help="y", hash=("s",))
        inner: Inner = option(factory=Inner, help="inner")

    assert hash_values(Outer()) == {"x": 1, "inner": {"a": 1}}
    assert hash_values(Outer(), scope="s") == {"x": 1, "y": 2, "inner": {"a": 1}}
    assert config_hash(Outer(inner=Inner(b=5))) == config_hash(Outer())
    assert config_hash(Outer(y=5)) == config_hash(Outer()) != config_hash(Outer(y=5), scope="s")
    assert config_hash(Outer(), extra={"x": 2}) == config_hash(Outer(x=2))


def test_hash_values_written_before_the_metadata_are_unchanged() -> None:
    """Pinned: the values the stages computed from exclusion lists at their call sites."""
    import dataclasses

    from augret.encode import EmbedConfig
    from augret.enhance import EnhanceConfig
    from augret.formats.fingerprint import stable_hash
    from augret.index import BM25Config, IndexConfig, SearchConfig
    from augret.pipeline import RunConfig
    from augret.train import TrainConfig

    assert config_hash(IndexConfig()) == "4bcaf1ddc955f892"
    assert config_hash(IndexConfig(kind="hnsw", gpu="off", batch_rows=7)) == "db2ee24bbd41ba7b"
    assert config_hash(BM25Config()) == "98242a982ddccdb8"
    search = SearchConfig(k=7, threads=3, batch_size=5)
    assert config_hash(search, scope="dense") == "6c26edcd24855e7a"
    assert config_hash(search) == "e4f8fe95a10658b6"
    run = RunConfig(encoder="tiny", workers=0, device="cpu", index=IndexConfig(gpu="off"))
    for retriever, want in (("dense", "45f741e36e53a405"), ("bm25", "cc1067ac4f896233"),
                            ("hybrid", "e18542bf68c80c31")):
        rc = dataclasses.replace(run, retriever=retriever)
        assert stable_hash(hash_values(rc, scope=retriever)) == want, retriever
    assert stable_hash(hash_values(run, scope="embed")) == "4088f753900683d4"
    enhance = EnhanceConfig(model="tiny", batch_size=3, workers=2)
    values = hash_values(enhance)
    assert stable_hash(values) == "02959c9efd6d96f6"
    # the over-long policy changes what is generated, so it entered the hash on purpose
    assert stable_hash({k: v for k, v in values.items() if k != "overlong"}) == \
        "1fcb361a9fe7bb89"
    # fields added since (MLLM training, the milvus backend) count only when changed
    train = TrainConfig(encoder="tiny", max_steps=3)
    assert stable_hash(hash_values(train)) == "1b1dc23b7a42b780"
    lora = dataclasses.replace(train, lora=dataclasses.replace(train.lora, r=8))
    assert stable_hash(hash_values(lora)) != "1b1dc23b7a42b780"
    assert hash_values(lora)["lora"]["r"] == 8
    assert stable_hash(hash_values(dataclasses.replace(train, temperature=0.05))) != \
        "1b1dc23b7a42b780"
    milvus = dataclasses.replace(run, backend="milvus")
    assert stable_hash(hash_values(milvus, scope="dense")) != "45f741e36e53a405"
    resolved = {"backbone": {"arch": "x"}, "weights": None, "precision": "fp32",
                "context_length": 77, "data_dir": "/d", "image_root": "/d"}
    assert config_hash(EmbedConfig(encoder="tiny"), extra=resolved) == "9f0cbaf14e7b4e3a"


def test_sets_sit_between_the_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("steps: 20\nmode: file\ndata: /x\n")
    cfg = load_config(Cfg, f, {"steps": 40, "mode": None}, sets={"steps": 30, "mode": "set",
                                                                 "data": None})
    assert (cfg.steps, cfg.mode, cfg.data) == (40, "set", None)  # a --set null is a value
    with pytest.raises(ConfigError, match=r"Cfg: unknown key\(s\) \['nope'\]; valid keys"):
        load_config(Cfg, None, sets={"nope": 1})
