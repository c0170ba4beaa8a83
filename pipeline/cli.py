"""The ``landcover`` command: parses arguments, sets up logging and progress, delegates."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from pipeline.errors import LandcoverError

if TYPE_CHECKING:
    from pipeline.stages.write import RunResult

# Each command imports its stage when it runs: --help, and a mistyped command, answer at once.


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Unsupervised land-cover classification of large rasters."""


@main.result_callback()
def _leave_objects_to_the_os(*_: object, **__: object) -> None:
    # A command has finished and closed what it wrote. At exit the interpreter's collections walk
    # every object numpy, dask, numba and GDAL's modules made: ~0.5 s of a 3 s run, for memory
    # the OS frees anyway. Frozen objects are not walked; atexit handlers still run.
    gc.freeze()


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a YAML key, e.g. --set model.k=5.")
@click.option("--show-config", is_flag=True, help="Print the resolved config and exit without running.")
@click.option("--resume", is_flag=True, help="Reuse the finished parts an interrupted run of this config left beside the output.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines; errors only.")
def run(config_path: str, overrides: tuple[str, ...], show_config: bool, resume: bool, quiet: bool) -> None:
    """Cluster the imagery named in CONFIG and write a COG of class labels."""
    _log_to_terminal(logging.WARNING if quiet else logging.INFO)
    with _user_errors(interrupted="nothing was written at the output path; run again with --resume to reuse the finished parts"):
        with _importing():
            from pipeline.config import load_config
            from pipeline.stages.run import run as run_pipeline

        config = load_config(config_path, overrides)
        if show_config:
            click.echo(config.to_yaml(), nl=False)
            return
        result = run_pipeline(config, progress=None if quiet else _progress_bar, resume=resume)
    if not quiet:
        _echo_paths(result)


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The labels COG to write; sidecars go beside it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--confidence", is_flag=True, help="Also write <stem>.confidence.tif (the nearest-centroid margin).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="dask.* and postprocess.* keys, as in a run's YAML, e.g. --set dask.scheduler=local-cluster or --set postprocess.sieve=0.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines; errors only.")
def predict(
    model_path: str, inputs: tuple[str, ...], out: str, overwrite: bool, confidence: bool, overrides: tuple[str, ...], quiet: bool
) -> None:
    """Label INPUT files (paths, globs or a .vrt) with the MODEL.json a run wrote."""
    _log_to_terminal(logging.WARNING if quiet else logging.INFO)
    with _user_errors():
        with _importing():
            from pipeline.config import predict_settings
            from pipeline.stages.predict import predict as predict_pipeline

        settings = predict_settings(overrides)
        result = predict_pipeline(
            model_path, inputs, out=out, overwrite=overwrite, confidence=confidence, dask=settings.dask,
            postprocess=settings.postprocess, progress=None if quiet else _progress_bar,
        )
    if not quiet:
        _echo_paths(result)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--k", "k_text", default="3..15", show_default=True, metavar="RANGE", help="k values: 3..15, 3,5,8 or 2..6,8.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for sweep.json and sweep.png [default: beside output.path].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a YAML key, e.g. --set sample.size=200000.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines; the table is still printed.")
def sweep(config_path: str, k_text: str, out_dir: str | None, overrides: tuple[str, ...], quiet: bool) -> None:
    """Fit every k of RANGE on one sample of CONFIG's imagery, score it and suggest a k."""
    _log_to_terminal(logging.WARNING if quiet else logging.INFO)
    with _user_errors(interrupted="no sweep file was written"):
        with _importing():
            from pipeline.config import load_config
            from pipeline.stages.sweep import format_table, parse_k
            from pipeline.stages.sweep import sweep as run_sweep

        ks = parse_k(k_text)
        config = load_config(config_path, overrides)
        result, json_path, png_path = run_sweep(config, ks, out_dir=out_dir, progress=None if quiet else _progress_bar)
    click.echo(format_table(result))
    if not quiet:
        click.echo(f"{json_path}\n{png_path}")


@main.command()
@click.argument("output", metavar="OUTPUT.tif", type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="No log lines; errors only.")
def report(output: str, quiet: bool) -> None:
    """Write OUTPUT.report.html (and its PNGs) for a COG written by 'landcover run'."""
    _log_to_terminal(logging.WARNING if quiet else logging.INFO)
    with _user_errors():
        with _importing():
            from pipeline.products.html import report_for

        page = report_for(output)
    if not quiet:
        click.echo(str(page))


@contextmanager
def _importing() -> Iterator[None]:
    """Around a command's imports: the ~250,000 objects they make live as long as the process,
    and the collector's full passes over them cost ~0.4 s of start-up; they are frozen instead.
    Collection is paused by a zero threshold, not ``gc.disable()``: dask records at import time
    whether the collector is enabled, to restore it after its own pauses."""
    thresholds = gc.get_threshold()
    gc.set_threshold(0)
    try:
        yield
    finally:
        gc.freeze()
        gc.set_threshold(*thresholds)


@contextmanager
def _user_errors(interrupted: str = "nothing was written at the output path") -> Iterator[None]:
    try:
        yield
    except LandcoverError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"interrupted: {interrupted}", err=True)
        sys.exit(130)


def _echo_paths(result: RunResult) -> None:
    paths = [
        result.output, result.model_path, result.report_path, result.quicklook_path, result.html_path, result.confidence_path, result.raw_path,
    ]
    click.echo("\n".join(str(p) for p in paths if p is not None))


def _log_to_terminal(level: int) -> None:
    # Only our own logger: the libraries' INFO lines (distributed's, numba's) are not the user's.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package = logging.getLogger("pipeline")
    package.addHandler(handler)
    package.setLevel(level)


@contextmanager
def _progress_bar(stage: str) -> Iterator[Callable[[int, int], None]]:
    from pipeline.runtime.progress import StageBar

    click.echo(f"{stage}:", err=True)
    # dask's local callbacks: under a distributed scheduler only a stage in parts moves the bar,
    # part by part (the dashboard shows the tasks).
    with StageBar(out=sys.stderr) as bar:
        yield bar
