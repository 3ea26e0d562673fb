"""``augret experiment CONFIG --out DIR``: run or resume the whole experiment.

Register in :mod:`augret.cli.main`: ``cli.add_command(experiment_run_cmd.experiment)``.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("config_file", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: output_dir of the config).")
@click.option("--data", "data_dir", default=None,
              help="M-BEIR directory, or 'sample' for the shapes sample (overrides data_dir).")
@click.option("--progress/--no-progress", default=False, show_default=True,
              help="Progress bars of the stages.")
def experiment(config_file: Path, out_dir: Path | None, data_dir: str | None,
               progress: bool) -> None:
    """Run the experiment of CONFIG_FILE end to end: enhance, train, evaluate, report.

    Every stage is recorded in DIR/experiment.json with the fingerprint of its inputs; a
    rerun skips finished stages and resumes an interrupted training from its checkpoint.
    Writes DIR/report.md, results.json, plots/ and viewer.html.
    """
    from augret.config import load_config
    from augret.experiment.config import ExperimentConfig
    from augret.experiment.run import run_experiment

    cfg = load_config(ExperimentConfig, config_file, {"data_dir": data_dir})
    outcome = run_experiment(cfg, out_dir, config_path=config_file, progress=progress)
    out = out_dir or cfg.output_dir
    ran = sum(v == "ran" for v in outcome.values())
    click.echo(f"{out}: {ran} stage(s) ran, {len(outcome) - ran} skipped; "
               f"see {Path(out) / 'report.md'}")


if __name__ == "__main__":  # until registered in augret.cli.main
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    experiment()
