"""Entry point of the ``augret`` command: one group, subcommands registered per stage.

Errors of the :class:`augret.errors.AugretError` hierarchy become one line on stderr and the
error's exit code; nothing else is caught, so a real bug still shows its traceback.
"""

from __future__ import annotations

import logging
import sys

import click

from augret import __version__
from augret.errors import AugretError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="augret")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """augret: reasoning-augmented multimodal retrieval."""
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(level=level, console=_stderr_console(), show_path=False,
                              show_time=False)],  # handler level: bm25s pins its logger to DEBUG
        force=True,
    )


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _register() -> None:
    from augret.cli import (
        encode_cmd,
        enhance_cmd,
        evaluate_cmd,
        experiment_cmd,
        experiment_run_cmd,
        index_cmd,
        mbeir_cmd,
        serve_cmd,
        train_cmd,
        validate_cmd,
    )

    cli.add_command(enhance_cmd.enhance)
    cli.add_command(encode_cmd.embed)
    cli.add_command(train_cmd.train)
    cli.add_command(index_cmd.index)
    cli.add_command(index_cmd.search)
    cli.add_command(serve_cmd.serve)
    cli.add_command(serve_cmd.query)
    cli.add_command(experiment_run_cmd.experiment)
    cli.add_command(experiment_cmd.plan)
    cli.add_command(experiment_cmd.report)
    cli.add_command(experiment_cmd.view)
    cli.add_command(evaluate_cmd.evaluate)
    cli.add_command(evaluate_cmd.compare)
    cli.add_command(mbeir_cmd.mbeir)
    cli.add_command(validate_cmd.collection)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (also the ``augret`` console script)."""
    try:
        cli.main(args=argv, prog_name="augret", standalone_mode=False)
    except AugretError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
