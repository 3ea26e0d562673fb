"""Stage configs: defaults, YAML overlay, CLI overrides, unknown keys, types."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from augret.config import config_hash, load_config, write_resolved
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
