"""``--config`` and ``--set`` on every config-backed command, through the real entry point."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from augret.cli.main import cli, main
from augret.cli.options import ConfigCommand

#: Each config-backed command, with the arguments it needs to reach its config.
CONFIG_COMMANDS: dict[str, list[str]] = {
    "embed": ["DATA", "--out", "OUT"],
    "enhance": ["DATA", "--out", "OUT"],
    "experiment": [],
    "index bm25": ["DATA", "--out", "OUT"],
    "index build": ["EMB", "--out", "OUT"],
    "mbeir run": ["DATA", "--out", "OUT"],
    "mbeir sample": ["--out", "OUT"],
    "plan": [],
    "query": ["INDEX", "--text", "a query"],
    "search": ["QUERIES", "--index", "INDEX", "--out", "OUT"],
    "serve": ["INDEX"],
    "train": [],
}
#: Commands without a stage config: they read files and print or write reports.
PLAIN_COMMANDS = {"collection import", "compare", "evaluate", "index fuse", "index info",
                  "mbeir download", "mbeir get", "mbeir info", "mbeir table", "mbeir validate",
                  "report", "view"}


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.update(_commands(cmd, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = cmd
    return out


def test_every_command_is_config_backed_or_plain() -> None:
    commands = _commands(cli)
    backed = {name for name, cmd in commands.items() if isinstance(cmd, ConfigCommand)}
    assert backed == set(CONFIG_COMMANDS)
    assert set(commands) - backed == PLAIN_COMMANDS


@pytest.mark.parametrize("command", sorted(CONFIG_COMMANDS))
def test_config_and_set_reach_the_config(command: str, tmp_path: Path, capsys) -> None:
    argv = [*command.split(), *(str(tmp_path / a) if a.isupper() else a
                                for a in CONFIG_COMMANDS[command])]
    cls = _commands(cli)[command].config_class.__name__
    assert main([*argv, "--set", "no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert f"{cls}: unknown key(s) ['no_such_key']; valid keys: [" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("also_no_key: 1\n")
    assert main([*argv, "--config", str(bad)]) == 2
    assert "unknown key(s) ['also_no_key']" in capsys.readouterr().err
    assert main([*argv, "--set", "missing-equals-sign"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config PATH" in out and "--set KEY=VALUE" in out


def _bm25_config(argv: list[str]) -> dict:
    out = Path(argv[argv.index("--out") + 1])
    assert main(argv) == 0
    return yaml.safe_load((out / "config.yaml").read_text("utf-8"))


def test_flags_win_over_set_which_wins_over_the_file(sample_dir: Path, tmp_path: Path) -> None:
    cfg_file = tmp_path / "bm25.yaml"
    cfg_file.write_text("k1: 1.0\nb: 0.5\nstemmer: english\n")
    base = ["index", "bm25", str(sample_dir), "--pool", "cirr_task7", "--config", str(cfg_file)]
    got = _bm25_config([*base, "--out", str(tmp_path / "a"), "--set", "k1=1.1", "--k1", "1.2",
                        "--set", "stemmer="])
    assert (got["k1"], got["b"], got["stemmer"]) == (1.2, 0.5, None)  # `KEY=`: null
    got = _bm25_config([*base, "--out", str(tmp_path / "b"), "--set", "k1=1.1"])
    assert (got["k1"], got["b"], got["stemmer"]) == (1.1, 0.5, "english")
    got = _bm25_config([*base, "--out", str(tmp_path / "c")])
    assert (got["k1"], got["b"], got["method"]) == (1.0, 0.5, "lucene")


def test_help_shows_the_field_help_and_dataclass_default(capsys) -> None:
    assert main(["index", "build", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "IVF lists visited per query (stored; a search may override it). [default: 32]" \
        in out


@pytest.mark.parametrize("engine,field", [("local", "workers"), ("ray", "ray.workers")])
def test_workers_flag_follows_the_engine(engine: str, field: str, tmp_path: Path,
                                         monkeypatch) -> None:
    """--workers sets the loader threads, or under --engine ray the Ray actors."""
    import augret.encode
    import augret.enhance

    seen = []
    monkeypatch.setattr(augret.encode, "embed_dir", lambda *a, **k: seen.append(a[2]) or {
        "dim": 1, "entries": {}})
    monkeypatch.setattr(augret.enhance, "enhance", lambda *a, **k: seen.append(a[2]) or {
        "model": "m", "prompt_version": "v", "files": {}})
    for cmd in ("embed", "enhance"):
        assert main([cmd, str(tmp_path), "--out", str(tmp_path / "o"), "--engine", engine,
                     "--workers", "3", "--address", "auto", "--gpus-per-worker", "1"]) == 0
    for cfg in seen:
        assert (cfg.ray.workers if field == "ray.workers" else cfg.workers) == 3
        assert (cfg.ray.address, cfg.ray.gpus_per_worker) == ("auto", 1.0)
