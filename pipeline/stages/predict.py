"""``predict(model, inputs)``: label new imagery with a saved model, as ``run`` labels its own.

The model JSON carries the centroids (in label order), the features with their scaling statistics
and the input settings (bands, alpha, nodata). The new imagery is opened with those settings and
refused, before any pixel is read, when its band count, dtype or band names differ from the
model's; labelling and writing are ``run``'s own stage, so a run's model applied to the run's
input gives the run's labels. A model fitted with ``features.balance: overlaps`` carries each
tile's correction: tiles it knows (by path) get theirs, new tiles are balanced among themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from pipeline.algo.balance import balance_for_predict
from pipeline.algo.cleanup import Cleanup
from pipeline.algo.model import Model, load_model, match_bands
from pipeline.cog import Grid
from pipeline.config import DaskConfig, InputConfig, PostprocessConfig
from pipeline.errors import InputError
from pipeline.io.imagery import mosaic_imagery
from pipeline.io.mosaic import Mosaic, open_mosaic
from pipeline.io.remote import where
from pipeline.runtime.scheduler import computing
from pipeline.stages.edge import cleanup_of, input_spec, scheduler
from pipeline.stages.write import (
    Origin,
    Progress,
    RunResult,
    check_output,
    timed,
    write_classified,
)

log = logging.getLogger(__name__)


def predict(
    model_path: str | Path,
    inputs: Sequence[str],
    *,
    out: str | Path,
    overwrite: bool = False,
    confidence: bool = False,
    dask: DaskConfig | None = None,
    postprocess: PostprocessConfig | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Label ``inputs`` (files, globs or a .vrt) with the model at ``model_path``; write ``out``
    and its sidecars as ``run`` does, on the scheduler and in the chunks of ``dask`` (a run's
    ``dask`` section; default threads, 2048-pixel chunks), cleaned as the model records unless
    ``postprocess`` sets keys (those it sets replace the model's)."""
    dask = dask or DaskConfig()
    progress = progress or (lambda stage: nullcontext())
    origin = Origin(started=time.perf_counter(), resume_hint="delete the folder to start again")
    with timed(origin.timings, "open"):
        model_path = Path(model_path)
        model = load_model(model_path)
        source = model.source
        spec = InputConfig(paths=tuple(inputs), nodata=source and source.nodata, alpha=source.alpha if source else "auto")
        mosaic = matching_mosaic(open_mosaic(input_spec(spec), chunk=dask.chunk), model, model_path)
        # The report's true-colour view shows these inputs.
        origin = replace(origin, config={"input": spec.model_dump(mode="json")}, inputs=tuple(t.path for t in mosaic.tiles))
        output = check_output(Path(out), inputs=origin.inputs, overwrite=overwrite, key="--out", overwrite_hint="pass --overwrite")
        grid = Grid(mosaic.crs, mosaic.transform, mosaic.height, mosaic.width)
        model = replace(model, postprocess=_cleanup(model, postprocess, grid, dask.chunk))
    with computing(scheduler(dask)):
        if model.balance is not None:
            with timed(origin.timings, "balance"), progress("balance"):
                mosaic, balanced = balance_for_predict(mosaic, model.balance, seed=model.seed)
            model = replace(model, balance=balanced.record())
        return write_classified(
            mosaic_imagery(mosaic), output, model=model, confidence=confidence, chunk=dask.chunk, overwrite=overwrite,
            origin=origin, progress=progress,
        )


def _cleanup(model: Model, overrides: PostprocessConfig | None, grid: Grid, chunk: int) -> Cleanup | None:
    """The model's cleanup, with the keys ``overrides`` sets replaced (in pixels of this grid)."""
    recorded = model.postprocess.to_json() if model.postprocess is not None else {}
    given = {} if overrides is None else {key: getattr(overrides, key) for key in overrides.model_fields_set}
    config = PostprocessConfig(**{**recorded, **given})
    return cleanup_of(config, pixel_area_m2=grid.pixel_area_m2, chunk=chunk)


def matching_mosaic(mosaic: Mosaic, model: Model, model_path: Path) -> Mosaic:
    """The mosaic reading the model's bands under the model's names, or an error naming the
    first input file and what differs from the model."""
    first = where(mosaic.tiles[0].path, mosaic.tiles[0].item)
    source = model.source
    fix = f"predict needs imagery with the bands of the model's imagery ({model_path.name})"
    count = source and source.count
    if count is not None and mosaic.count != count:
        raise InputError(f"{first}: has {mosaic.count} band(s) but the model was fitted on {count}-band imagery; {fix}")
    dtype = source and source.dtype
    if dtype is not None and mosaic.dtype != dtype:
        raise InputError(f"{first}: dtype {mosaic.dtype} differs from the model's {dtype}; {fix} (convert it first)")
    for band, expected in zip(model.bands, model.band_names):
        if band not in mosaic.bands:
            raise InputError(f"{first}: band {band} is its alpha band, but the model uses it as '{expected}'; {fix}")
    names = tuple(mosaic.band_names[mosaic.bands.index(band)] for band in model.bands)
    match_bands(names, model.bands, model, subject=first, fix=fix)
    log.info("predict: %s matches the model's bands %s", first, list(model.band_names))
    return replace(mosaic, bands=model.bands, band_names=model.band_names)
