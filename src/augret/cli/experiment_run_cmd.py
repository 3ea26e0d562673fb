"""``augret experiment CONFIG --out DIR``: run or resume the whole experiment."""

from __future__ import annotations

from pathlib import Path

import click

from augret.cli.options import ConfigArgs, config_command, flag


@config_command(config="augret.experiment.config:ExperimentConfig", positional=True,
                flags=(flag("--data", key="data_dir",
                            help="M-BEIR directory, or 'sample' for the shapes sample "
                                 "(overrides data_dir)."),))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: output_dir of the config).")
@click.option("--progress/--no-progress", default=False, show_default=True,
              help="Progress bars of the stages.")
def experiment(config: ConfigArgs, out_dir: Path | None, progress: bool) -> None:
    """Run the experiment of CONFIG.yaml (or --config) end to end: enhance, train, evaluate,
    report.

    Every stage is recorded in DIR/experiment.json with the fingerprint of its inputs; a
    rerun skips finished stages and resumes an interrupted training from its checkpoint.
    Writes DIR/report.md, results.json, plots/ and viewer.html.
    """
    from augret.experiment.run import run_experiment

    cfg = config.load()
    outcome = run_experiment(cfg, out_dir, config_path=config.path, progress=progress)
    out = out_dir or cfg.output_dir
    ran = sum(v == "ran" for v in outcome.values())
    click.echo(f"{out}: {ran} stage(s) ran, {len(outcome) - ran} skipped; "
               f"see {Path(out) / 'report.md'}")

