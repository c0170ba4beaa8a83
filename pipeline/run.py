"""``run(config)``: open → sample → fit → label and write → finalise, each a call into its module.

``write_products`` (label, write, finalise) is shared with ``predict``, which applies a saved model.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import transform as window_transform
from rio_cogeo.cogeo import cog_validate

from .balance import balance, summary
from .config import Config
from .errors import DataError, OutputError
from .features import Features, features_from_config, ndvi_bands
from .fit import class_order, fit_kmeans
from .html_report import report_paths, thumbnail, thumbnail_step, write_report
from .label import class_statistics, label_block, nearest
from .legend import apply_class_colours, legend, stac_item
from .mosaic import Mosaic, open_mosaic
from .report import Model, class_report, class_tags, palette_from_centroids, rgb_bands, write_json, write_quicklook
from .sample import draw_sample, full_matrix
from .scheduler import for_in_memory_data, use_scheduler
from .write import build_vrt, chunk_path, publish, sidecar_paths, staging_dir, translate_to_cog, write_chunk

log = logging.getLogger(__name__)

Progress = Callable[[str], AbstractContextManager[Any]]
PALETTE_SAMPLE = 100_000  # pixels for scaling statistics, class order and palette when fitting on "all"
GDAL_CACHE_MB = 256


@dataclass(frozen=True)
class RunResult:
    output: Path
    model_path: Path
    report_path: Path
    quicklook_path: Path
    model: Model
    report: dict[str, Any]
    html_path: Path
    confidence_path: Path | None = None


def run(config: Config, *, progress: Progress | None = None) -> RunResult:
    """Cluster the configured imagery and write the COG, model, report and quicklook."""
    # GDAL's block cache defaults to 5 % of RAM per process, unseen by dask. Each block is
    # decoded about once here, so a small cache holds what overlapping windows share.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return _run(config, progress or (lambda stage: nullcontext()))


def _run(config: Config, progress: Progress) -> RunResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with _timed(timings, "open"):
        mosaic = open_mosaic(config.input, chunk=config.dask.chunk)
        features = features_from_config(config.features, mosaic.band_names)
        if config.model.order_by == "ndvi":  # refused here, before any pixel is read
            ndvi_bands(mosaic.band_names, "model.order_by: ndvi")
        output = check_output(config.output_path, mosaic, overwrite=config.output.overwrite)
        data = mosaic.to_dask()

    with use_scheduler(config.dask):
        return _classify(config, mosaic, features, output, data, progress=progress, timings=timings, started=started)


def _classify(
    config: Config,
    mosaic: Mosaic,
    features: Features,
    output: Path,
    data: da.Array,
    *,
    progress: Progress,
    timings: dict[str, float],
    started: float,
) -> RunResult:
    """Sample, fit, label and write, publish: the stages that compute on the scheduler."""
    balanced = None
    if config.features.balance != "none":
        with _timed(timings, "balance"), progress("balance"):
            mosaic, balanced = balance(mosaic, method=config.features.balance, seed=config.sample.seed)
            data = mosaic.to_dask()  # reads the corrected tiles
    with _timed(timings, "sample"), progress("sample"):
        fit_on_all = config.sample.size == "all"
        sample = draw_sample(mosaic, size=PALETTE_SAMPLE if fit_on_all else config.sample.size, seed=config.sample.seed)
        if len(sample) == 0:
            raise DataError(
                f"{mosaic.tiles[0].path}: no valid pixel in the input; check input.nodata and the rasters' masks"
            )
        features = features.fitted(sample)  # scaling statistics come from the sample
        sample_features = features.apply(sample.T).T
        matrix: np.ndarray | da.Array = _feature_rows(full_matrix(data), features) if fit_on_all else sample_features

    with _timed(timings, "fit"), for_in_memory_data(config.dask):
        m = config.model
        fit = fit_kmeans(
            matrix, seeds_from=sample_features, k=m.k, n_init=m.n_init, max_iter=m.max_iter, tol=m.tol, seed=config.sample.seed
        )
    # Each class's mean spectrum in input units (on the sample) numbers and colours the classes.
    labels, _ = nearest(sample_features.T, fit.centroids)
    stats = class_statistics(sample.T, labels, m.k)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        spectra = stats[:, 1:] / stats[:, :1]
    order = class_order(spectra, mosaic.band_names, m.order_by)
    model = Model(
        centroids=fit.centroids[order],
        bands=mosaic.bands,
        band_names=mosaic.band_names,
        features=features,
        palette=apply_class_colours(palette_from_centroids(spectra[order], sample, mosaic.band_names), config.classes),
        sample_size=fit.n_pixels,
        seed=config.sample.seed,
        inertia=fit.inertia,
        extra={
            "fit": {
                "init": m.init, "n_init": m.n_init, "max_iter": m.max_iter, "n_iter": fit.n_iter, "tol": m.tol,
                "tol_absolute": fit.tol_absolute, "order_by": m.order_by,
                "seeding": "k-means++", "unstable": fit.restarts.unstable, "restarts": fit.restarts.to_json(),
            },
            "input": {
                "paths": [t.path for t in mosaic.tiles], "crs": mosaic.crs, "dtype": mosaic.dtype, "count": mosaic.count,
                "nodata": config.input.nodata, "alpha": config.input.alpha,
            },
            "class_names": list(config.class_names()),
            **({} if balanced is None else {"balance": balanced.to_json()}),
        },
    )
    return write_products(
        mosaic,
        model,
        output,
        confidence=config.output.confidence,
        timings=timings,
        started=started,
        progress=progress,
        config_record=config.model_dump(mode="json"),
    )


def write_products(
    mosaic: Mosaic,
    model: Model,
    output: Path,
    *,
    confidence: bool,
    timings: dict[str, float],
    started: float,
    progress: Progress,
    config_record: dict[str, Any] | None = None,
) -> RunResult:
    """Label the mosaic with a model and write the COG and its sidecars (shared by run and predict)."""
    sidecars = sidecar_paths(output)
    if not confidence:
        del sidecars["confidence"]
    pages = report_paths(output)
    with staging_dir(output) as staging:
        with _timed(timings, "label_write"), progress("label and write"):
            stats, true_colour = _label_and_write(mosaic, model, staging, confidence=confidence)
        features = model.features
        if features.mean is not None:  # report feature means in the features' own units
            sums = stats[:, 1 + len(mosaic.bands) :]
            sums[:] = sums * np.asarray(features.std) + stats[:, :1] * np.asarray(features.mean)
        with _timed(timings, "finalise"):
            staged_cog = staging / output.name
            _finalise_cog(mosaic, model, staging, staged_cog)
            if confidence:
                _finalise_confidence(mosaic, staging / "confidence", staging / sidecars["confidence"].name)
            write_quicklook(staged_cog, staging / sidecars["quicklook"].name, model.palette)
        timings["total"] = time.perf_counter() - started
        report = class_report(
            stats,
            band_names=mosaic.band_names,
            feature_names=features.names,
            palette=model.palette,
            pixel_area=mosaic.pixel_area(),
            crs=mosaic.crs,
            timings=timings,
            names=class_names(model),
        )
        if "balance" in model.extra:  # the per-tile corrections are in the model JSON
            report["balance"] = summary(model.extra["balance"])
        if config_record is not None:
            report["config"] = config_record  # for the HTML page and to re-run
        _write_sidecars(staging, staged_cog, output, sidecars, pages, model, report, true_colour)
        for path in [*sidecars.values(), *pages.values()]:
            publish(staging / path.name, path)
        publish(staged_cog, output)  # last: a COG at the output path means the run completed
    log.info("wrote %s (%d classes) in %.1f s", output, model.k, timings["total"])
    return RunResult(
        output, sidecars["model"], sidecars["report"], sidecars["quicklook"], model, report, pages["html"], sidecars.get("confidence")
    )


def class_names(model: Model) -> tuple[str, ...]:
    """The names a run gave the classes (``classes:``), else "class 1", "class 2", ..."""
    return tuple(model.extra.get("class_names") or (f"class {i}" for i in range(1, model.k + 1)))


def _write_sidecars(
    staging: Path,
    staged_cog: Path,
    output: Path,
    sidecars: dict[str, Path],
    pages: dict[str, Path],
    model: Model,
    report: dict[str, Any],
    true_colour: np.ndarray,
) -> None:
    """Model, report, legend and STAC JSONs and the HTML page, into the staging folder."""
    model_doc = model.to_json()
    write_json(staging / sidecars["model"].name, model_doc)
    write_json(staging / sidecars["report"].name, report)
    write_json(staging / sidecars["legend"].name, legend(report))
    metadata = {key: sidecars[key].name for key in ("model", "report", "legend")}
    item = stac_item(staged_cog, report, href=output.name, item_id=output.stem, sidecars=metadata)
    write_json(staging / sidecars["stac"].name, item)
    staged_pages = {key: staging / path.name for key, path in pages.items()}
    write_report(staged_cog, model_doc, report, staged_pages, name=output.name, true_colour=true_colour)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    log.info("%s: %.2f s", stage, timings[stage])


def check_output(
    output: Path,
    mosaic: Mosaic,
    *,
    overwrite: bool,
    key: str = "output.path",
    overwrite_hint: str = "set output.overwrite: true",
) -> Path:
    """Refuse outputs that would clobber something, before any pixel is read; errors name ``key``."""
    if output.resolve() in {Path(t.path).resolve() for t in mosaic.tiles}:
        raise OutputError(f"{key}: {output} is one of the inputs; choose another {key}")
    if output.is_dir():
        raise OutputError(f"{key}: {output} is a directory; give a file name such as {output / 'labels.tif'}")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: already exists; {overwrite_hint} or choose another {key}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{key}: cannot create folder {output.parent} ({exc.strerror}); choose a writable place") from None
    if not os.access(output.parent, os.W_OK):
        raise OutputError(f"{key}: folder {output.parent} is not writable; choose a writable place")
    return output


def _feature_rows(matrix: da.Array, features: Features) -> da.Array:
    """An (n, band) pixel matrix as (n, feature), block by block."""
    n_features = len(features.names)
    return matrix.map_blocks(lambda m: features.apply(m.T).T, chunks=(matrix.chunks[0], (n_features,)), dtype=np.float32)


def _label_chunk(
    block: np.ndarray,
    *,
    model: Model,
    transform: Affine,
    label_path: Path,
    confidence_path: Path | None,
    true_colour: tuple[list[int], int, int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Label one block (and write its margin), write it; return its statistics per input band
    and feature, and its share of the report's true-colour thumbnail."""
    features = model.features.apply(block)
    labels, feature_stats, margin = label_block(features, model.centroids, with_margin=confidence_path is not None)
    if confidence_path is not None:
        write_chunk(margin, confidence_path, transform)
    write_chunk(labels, label_path, transform)
    stats = feature_stats if features is block else class_statistics(block, labels, model.k)
    bands, row_off, col_off, step = true_colour
    return np.concatenate([stats, feature_stats[:, 1:]], axis=1), thumbnail(block, row_off, col_off, step)[bands]


def _label_and_write(mosaic: Mosaic, model: Model, staging: Path, *, confidence: bool) -> tuple[np.ndarray, np.ndarray]:
    """One streaming pass: label every block, write it as a chunk file; return the class
    statistics and a (3, y, x) true-colour thumbnail of the mosaic for the report."""
    margins = staging / "confidence"
    if confidence:
        margins.mkdir()
    blocks = mosaic.to_dask().to_delayed()[0]
    rgb = list(rgb_bands(mosaic.band_names))
    step = thumbnail_step(mosaic.height, mosaic.width)
    windows = mosaic.windows()
    tasks = [
        dask.delayed(_label_chunk)(
            blocks[i, j],
            model=model,
            transform=window_transform(window, mosaic.transform),
            label_path=chunk_path(staging, (i, j)),
            confidence_path=chunk_path(margins, (i, j)) if confidence else None,
            true_colour=(rgb, int(window.row_off), int(window.col_off), step),
        )
        for (i, j), window in windows
    ]
    results = dask.compute(*tasks)
    preview = np.full((3, -(-mosaic.height // step), -(-mosaic.width // step)), np.nan, dtype=np.float32)
    for (_, window), (_, part) in zip(windows, results):
        top, left = -(-int(window.row_off) // step), -(-int(window.col_off) // step)
        preview[:, top : top + part.shape[1], left : left + part.shape[2]] = part
    return np.sum([stats for stats, _ in results], axis=0), preview


def _chunks_vrt(mosaic: Mosaic, folder: Path, name: str, **band: Any) -> Path:
    """A VRT placing the chunk files of ``folder`` on the mosaic's grid."""
    vrt = folder / name
    build_vrt(
        vrt,
        [(chunk_path(folder, index), window) for index, window in mosaic.windows()],
        width=mosaic.width,
        height=mosaic.height,
        crs=mosaic.crs,
        transform=tuple(mosaic.transform)[:6],
        **band,
    )
    return vrt


def _finalise_cog(mosaic: Mosaic, model: Model, staging: Path, destination: Path) -> None:
    vrt = _chunks_vrt(
        mosaic,
        staging,
        "labels.vrt",
        palette=model.palette,
        tags=class_tags(model.features.unscale(model.centroids), model.features.names, class_names(model)),
        description=f"land-cover class (1..{model.k}, 0 = nodata)",
    )
    translate_to_cog(vrt, destination)
    _validate(destination)


def _finalise_confidence(mosaic: Mosaic, folder: Path, destination: Path) -> None:
    vrt = _chunks_vrt(
        mosaic,
        folder,
        "confidence.vrt",
        palette=None,
        tags={},
        description="distance to the second-nearest centroid minus distance to the nearest (feature units)",
        data_type="Float32",
        nodata=math.nan,
    )
    # float32 keeps the margin exact and in feature units, comparable across runs and predicts of
    # one model (a uint8 scale would differ per run). Continuous, so overviews are averaged.
    # PREDICTOR=3 made the NAIP margin larger (2.76 MB against 2.66 MB), so plain DEFLATE.
    translate_to_cog(vrt, destination, OVERVIEW_RESAMPLING="AVERAGE")
    _validate(destination)


def _validate(cog: Path) -> None:
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    if not valid:
        raise OutputError(f"{cog}: GDAL wrote an invalid COG ({'; '.join(errors)}); please report this")
