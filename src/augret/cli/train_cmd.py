"""``augret train``: contrastive training of a CLIP_SF retriever."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from augret.errors import ConfigError


def _parse_sets(values: tuple[str, ...]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (dotted keys, e.g. "
                              "optim.lr=1e-4)")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def _set_nulls(cfg: object, keys: list[str]) -> None:
    """Apply ``--set KEY=`` / ``KEY=null`` (``load_config`` reads ``None`` as "not given")."""
    import dataclasses
    import typing

    for key in keys:
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = getattr(node, part, None)
        names = {f.name for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) \
            else set()
        if last not in names:
            raise ConfigError(f"--set {key}: unknown key")
        hint = typing.get_type_hints(type(node))[last]
        if type(None) not in typing.get_args(hint):
            raise ConfigError(f"--set {key}: this key cannot be empty")
        setattr(node, last, None)


_KEYS = {"data_dir": "data.dir", "enhanced_dir": "data.enhanced_dir", "view": "data.view",
         "lr": "optim.lr"}


@click.command()
@click.argument("config_file", metavar="CONFIG.yaml", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", default=None, help="M-BEIR directory (raw data).")
@click.option("--enhanced-dir", "enhanced_dir", default=None,
              help="An `augret enhance` output directory (views enhanced and mix).")
@click.option("--view", "view", type=click.Choice(["raw", "enhanced", "mix"]),
              default=None, help="Which texts to train on.")
@click.option("--out", "--output-dir", "output_dir", default=None,
              help="Checkpoints, metrics.jsonl and the resolved config.")
@click.option("--encoder", "encoder", default=None, help="Starting encoder (name or path).")
@click.option("--max-steps", "max_steps", type=int, default=None,
              help="Stop after N optimizer steps (the LR schedule is unchanged).")
@click.option("--epochs", "epochs", type=int, default=None)
@click.option("--batch-size", "batch_size", type=int, default=None, help="Per rank.")
@click.option("--lr", "lr", type=float, default=None)
@click.option("--device", "device", default=None, help="auto, cpu, cuda.")
@click.option("--resume", "resume", is_flag=True, default=None,
              help="Continue from the latest checkpoint in --output-dir.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config key (dotted: data.hard_negatives=1). Repeatable.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def train(config_file: Path, sets: tuple[str, ...], no_progress: bool, as_json: bool,
          **flags: object) -> None:
    """Train CLIP_SF as CONFIG.yaml says; flags override the file, unknown keys are errors.

    Multi-GPU / multi-process: `torchrun --nproc_per_node N -m augret train CONFIG.yaml`
    (multi-node, restarts: docs/scaling.md).
    """
    from augret.config import load_config
    from augret.train import TrainConfig
    from augret.train import train as run

    if os.environ.get("RANK", "0") != "0" and not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("augret").setLevel(logging.WARNING)  # info comes from rank 0 alone
    given = _parse_sets(sets)
    # a flag that was not given must not hide the same key's --set
    overrides = {**given, **{_KEYS.get(k, k): v for k, v in flags.items() if v is not None}}
    if no_progress:
        overrides["progress"] = False
    cfg = load_config(TrainConfig, config_file, overrides)
    _set_nulls(cfg, [k for k, v in given.items() if v is None])
    summary = run(cfg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    loss = summary["loss"]
    last = f"last loss {loss:.4f}" if loss is not None else "nothing left to train"
    click.echo(f"trained {summary['step']} steps ({last}); encoder: {summary['final']}")
