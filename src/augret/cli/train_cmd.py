"""``augret train``: contrastive training of a retriever (CLIP_SF or an MLLM embedder)."""

from __future__ import annotations

import json
import logging
import os

import click

from augret.cli.options import ConfigArgs, config_command, flag


@config_command(config="augret.train.config:TrainConfig", positional=True, flags=(
    flag("--data", key="data.dir"), flag("--enhanced-dir", key="data.enhanced_dir"),
    flag("--view", key="data.view"), flag("--out", "--output-dir", key="output_dir"),
    flag("--encoder"), flag("--max-steps"), flag("--epochs"), flag("--batch-size"),
    flag("--lr", key="optim.lr"), flag("--device"), flag("--resume"),
    flag("--no-progress", key="progress", value=False, help="No progress bar.")))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def train(config: ConfigArgs, as_json: bool) -> None:
    """Train a retriever as CONFIG.yaml (or --config) says; --set and flags override the
    file, unknown keys are errors. The encoder's family decides what trains: every weight of
    a CLIP_SF encoder, or LoRA adapters on an MLLM embedder (encoder: tiny-mllm, mllm:...).

    Multi-GPU / multi-process: `torchrun --nproc_per_node N -m augret train CONFIG.yaml`
    (multi-node, restarts: docs/scaling.md).
    """
    from augret.train import train as run

    if os.environ.get("RANK", "0") != "0" and not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("augret").setLevel(logging.WARNING)  # info comes from rank 0 alone
    summary = run(config.load())
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    loss = summary["loss"]
    last = f"last loss {loss:.4f}" if loss is not None else "nothing left to train"
    click.echo(f"trained {summary['step']} steps ({last}); encoder: {summary['final']}")
