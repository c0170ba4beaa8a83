"""``run(config)``: open → balance → fit → classify and write, each a call into its module.

The open stage turns the inputs into a lazy mosaic (and, with ``features.balance``, corrects its
tiles); the other stages are the ones a Python user calls on any DataArray (``pipeline.fit``,
then ``write_classified``, which gives the bytes of ``classify`` and ``write_cog``), so a run
and those calls give the same bytes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from pipeline.algo.balance import Balance, balance
from pipeline.algo.cleanup import Cleanup
from pipeline.algo.model import Model, SourceRecord
from pipeline.config import Config
from pipeline.io.access import counts as remote_counts
from pipeline.io.imagery import Imagery, mosaic_imagery
from pipeline.io.mosaic import Mosaic, open_mosaic
from pipeline.products.parts import refuse_leftover_parts
from pipeline.runtime.scheduler import computing, summed_over_processes
from pipeline.stages.edge import cleanup_of, features_of, input_spec, scheduler
from pipeline.stages.fit import check_bands, fit
from pipeline.stages.write import (
    Origin,
    Progress,
    RunResult,
    check_output,
    parts_fingerprint,
    raster_grid,
    timed,
    write_classified,
)

RESUME_HINT = "run again with --resume to finish it, or delete the folder to start again"

__all__ = ["RunResult", "run"]

log = logging.getLogger(__name__)


def run(config: Config, *, progress: Progress | None = None, resume: bool = False) -> RunResult:
    """Cluster the configured imagery and write the COG, model, report and quicklook; with
    ``resume``, reuse the parts an interrupted run of the same config left beside the output."""
    progress = progress or (lambda stage: nullcontext())
    origin = Origin(config=config.model_dump(mode="json"), started=time.perf_counter(), resume_hint=RESUME_HINT)
    retries_before = Counter(remote_counts())  # this process's; workers start with none
    with timed(origin.timings, "open"):
        mosaic = open_mosaic(input_spec(config.input), chunk=config.dask.chunk)
        origin = replace(origin, inputs=tuple(t.path for t in mosaic.tiles))
        data = mosaic_imagery(mosaic)
        cleanup = _refuse_before_reading(config, mosaic, data, origin, resume=resume)
    with computing(scheduler(config.dask)):
        mosaic, balanced = balance_stage(mosaic, config, origin.timings, progress)
        data = mosaic_imagery(mosaic)  # with balance, the corrected tiles on the same grid
        with progress("sample and fit"):
            model = replace(_fit(data, config, mosaic, balanced), postprocess=cleanup)
        origin.timings.update(model.fit.timings_s)
        out = config.output
        result = write_classified(
            data, config.output_path, model=model, confidence=out.confidence, chunk=config.dask.chunk, overviews=out.overviews,
            raw=out.raw, overwrite=out.overwrite, resume=resume, origin=origin, progress=progress,
        )
        if any(t.path.remote for t in mosaic.tiles):
            _log_retries(summed_over_processes(remote_counts) - retries_before)
        return result


def _log_retries(counts: Counter) -> None:
    """How the remote reads went, over every process: a state run should see few retries."""
    log.info(
        "remote reads: %d retr%s (%.1f s waited), %d token(s) renewed after a refusal",
        counts["retries"], "y" if counts["retries"] == 1 else "ies", counts["waited_s"], counts["renewed"],
    )


def balance_stage(mosaic: Mosaic, config: Config, timings: dict[str, float], progress: Progress) -> tuple[Mosaic, Balance | None]:
    """The mosaic with each tile's radiometric correction (``features.balance``), and the corrections."""
    if config.features.balance == "none":
        return mosaic, None
    with timed(timings, "balance"), progress("balance"):
        return balance(mosaic, method=config.features.balance, seed=config.sample.seed)


def _refuse_before_reading(config: Config, mosaic: Mosaic, data: Imagery, origin: Origin, *, resume: bool) -> Cleanup | None:
    """Every mistake that can be found before a pixel is read: features, class order, cleanup,
    output; return the cleanup (None without one)."""
    features_of(config.features, mosaic.band_names)
    grid = raster_grid(data)
    cleanup = cleanup_of(config.postprocess, pixel_area_m2=grid.pixel_area_m2, chunk=config.dask.chunk)
    check_bands(config, mosaic.band_names)
    output = check_output(
        config.output_path, inputs=origin.inputs, overwrite=config.output.overwrite, key="output.path",
        overwrite_hint="set output.overwrite: true",
    )
    known = parts_fingerprint(grid, config.dask.chunk, origin)  # all but the model
    refuse_leftover_parts(output, known, resume=resume, hint=RESUME_HINT)
    return cleanup


def _fit(data: Imagery, config: Config, mosaic: Mosaic, balanced) -> Model:
    """``fit`` with the config's settings, recording the files (or the STAC search) it read."""
    m = config.model
    model = fit(
        data, k=m.k, sample_size=config.sample.size, seed=config.sample.seed, features=config.features, init=m.init,
        n_init=m.n_init, max_iter=m.max_iter, tol=m.tol, order_by=m.order_by, classes=config.classes, method=m.method,
        isodata=m.isodata,
    )
    if config.input.stac is not None:  # the search, not thousands of hrefs
        inputs: dict[str, Any] = {"stac": config.input.stac.model_dump(mode="json"), "items": len(mosaic.tiles)}
    else:
        inputs = {"paths": tuple(str(t.path) for t in mosaic.tiles)}
    source = SourceRecord(
        dtype=mosaic.dtype, count=mosaic.count, crs=mosaic.crs, nodata=config.input.nodata, alpha=config.input.alpha, **inputs
    )
    return replace(model, bands=mosaic.bands, source=source, balance=None if balanced is None else balanced.record())
