"""The ``landcover`` command: parses arguments, sets up logging and progress, delegates."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from collections.abc import Iterator

import click

from .config import load_config
from .errors import LandcoverError
from .predict import predict as predict_pipeline
from .run import RunResult
from .run import run as run_pipeline


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Unsupervised land-cover classification of large rasters."""


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a YAML key, e.g. --set model.k=5.")
@click.option("--show-config", is_flag=True, help="Print the resolved config and exit without running.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines; errors only.")
def run(config_path: str, overrides: tuple[str, ...], show_config: bool, quiet: bool) -> None:
    """Cluster the imagery named in CONFIG and write a COG of class labels."""
    _log_to_terminal(logging.WARNING if quiet else logging.INFO)
    with _user_errors():
        config = load_config(config_path, overrides)
        if show_config:
            click.echo(config.to_yaml(), nl=False)
            return
        result = run_pipeline(config, progress=None if quiet else _progress_bar)
    if not quiet:
        _echo_paths(result)


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The labels COG to write; sidecars go beside it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--confidence", is_flag=True, help="Also write <stem>.confidence.tif (the nearest-centroid margin).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines; errors only.")
def predict(model_path: str, inputs: tuple[str, ...], out: str, overwrite: bool, confidence: bool, quiet: bool) -> None:
    """Label INPUT files (paths, globs or a .vrt) with the MODEL.json a run wrote."""
    _log_to_terminal(logging.WARNING if quiet else logging.INFO)
    with _user_errors():
        result = predict_pipeline(
            model_path, inputs, out=out, overwrite=overwrite, confidence=confidence, progress=None if quiet else _progress_bar
        )
    if not quiet:
        _echo_paths(result)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except LandcoverError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted: nothing was written at the output path", err=True)
        sys.exit(130)


def _echo_paths(result: RunResult) -> None:
    paths = [result.output, result.model_path, result.report_path, result.quicklook_path, result.confidence_path]
    click.echo("\n".join(str(p) for p in paths if p is not None))


def _log_to_terminal(level: int) -> None:
    # Only our own logger: dask-ml logs every Lloyd iteration at INFO.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package = logging.getLogger("pipeline")
    package.addHandler(handler)
    package.setLevel(level)


@contextmanager
def _progress_bar(stage: str) -> Iterator[None]:
    from dask.diagnostics import ProgressBar

    click.echo(f"{stage}:", err=True)
    with ProgressBar(minimum=0.5, out=sys.stderr):
        yield
