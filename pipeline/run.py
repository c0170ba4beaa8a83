"""``run(config)``: open → sample → fit → label and write → finalise, each a call into its module."""

from __future__ import annotations

import logging
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
from affine import Affine
from rasterio.windows import transform as window_transform
from rio_cogeo.cogeo import cog_validate

from .config import Config
from .errors import DataError, OutputError
from .fit import fit_kmeans
from .html_report import report_paths, write_report
from .label import assign_labels, class_statistics
from .legend import apply_class_colours, legend, stac_item
from .mosaic import Mosaic, open_mosaic
from .report import Model, class_report, class_tags, palette_from_centroids, write_json, write_quicklook
from .sample import draw_sample, full_matrix
from .write import build_vrt, chunk_path, publish, staging_dir, translate_to_cog, write_chunk

log = logging.getLogger(__name__)

Progress = Callable[[str], AbstractContextManager[Any]]
PALETTE_SAMPLE = 100_000  # pixels used to stretch palette colours when fitting on "all"


@dataclass(frozen=True)
class RunResult:
    output: Path
    model_path: Path
    report_path: Path
    quicklook_path: Path
    model: Model
    report: dict[str, Any]
    html_path: Path


def sidecar_paths(output: Path) -> dict[str, Path]:
    stem = output.with_suffix("")
    return {
        "model": stem.with_name(stem.name + ".model.json"),
        "report": stem.with_name(stem.name + ".report.json"),
        "quicklook": stem.with_name(stem.name + ".png"),
        "legend": stem.with_name(stem.name + ".legend.json"),
        "stac": stem.with_name(stem.name + ".stac-item.json"),
    }


def run(config: Config, *, progress: Progress | None = None) -> RunResult:
    """Cluster the configured imagery and write the COG, model, report and quicklook."""
    progress = progress or (lambda stage: nullcontext())
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with _timed(timings, "open"):
        mosaic = open_mosaic(config.input, chunk=config.dask.chunk)
        output = _check_output(config, mosaic)
        data = mosaic.to_dask()

    with _timed(timings, "sample"), progress("sample"):
        if config.sample.size == "all":
            matrix: np.ndarray | da.Array = full_matrix(data)
            sample = draw_sample(data, size=PALETTE_SAMPLE, seed=config.sample.seed)
        else:
            matrix = sample = draw_sample(data, size=config.sample.size, seed=config.sample.seed)
        if len(sample) == 0:
            raise DataError(
                f"{mosaic.tiles[0].path}: no valid pixel in the input; check input.nodata and the rasters' masks"
            )

    with _timed(timings, "fit"):
        m = config.model
        fit = fit_kmeans(matrix, k=m.k, n_init=m.n_init, max_iter=m.max_iter, tol=m.tol, seed=config.sample.seed)
    palette = apply_class_colours(palette_from_centroids(fit.centroids, sample, mosaic.band_names), config.classes)
    names = config.class_names()
    model = Model(
        centroids=fit.centroids,
        bands=mosaic.bands,
        band_names=mosaic.band_names,
        palette=palette,
        sample_size=fit.n_pixels,
        seed=config.sample.seed,
        inertia=fit.inertia,
        extra={
            "fit": {"init": m.init, "n_init": m.n_init, "max_iter": m.max_iter, "n_iter": fit.n_iter, "tol": m.tol, "tol_absolute": fit.tol_absolute},
            "input": {"paths": [t.path for t in mosaic.tiles], "crs": mosaic.crs, "dtype": mosaic.dtype},
            "class_names": list(names),
        },
    )

    sidecars = sidecar_paths(output)
    pages = report_paths(output)
    with staging_dir(output) as staging:
        with _timed(timings, "label_write"), progress("label and write"):
            stats = _label_and_write(data, mosaic, fit.centroids, staging)
        with _timed(timings, "finalise"):
            staged_cog = staging / output.name
            _finalise_cog(mosaic, model, names, staging, staged_cog)
            write_quicklook(staged_cog, staging / sidecars["quicklook"].name, palette)
        timings["total"] = time.perf_counter() - started
        report = class_report(
            stats, band_names=mosaic.band_names, palette=palette, pixel_area=mosaic.pixel_area(), crs=mosaic.crs, timings=timings,
            names=names,
        )
        report["config"] = config.model_dump(mode="json")  # for the HTML page and to re-run
        _write_sidecars(staging, staged_cog, output, model, report)
        for path in [*sidecars.values(), *pages.values()]:
            publish(staging / path.name, path)
        publish(staged_cog, output)  # last: a COG at the output path means the run completed
    log.info("wrote %s (%d classes) in %.1f s", output, model.k, timings["total"])
    return RunResult(output, sidecars["model"], sidecars["report"], sidecars["quicklook"], model, report, pages["html"])


def _write_sidecars(staging: Path, staged_cog: Path, output: Path, model: Model, report: dict[str, Any]) -> None:
    """Model, report, legend and STAC JSONs and the HTML page, into the staging folder."""
    sidecars = sidecar_paths(output)
    write_json(staging / sidecars["model"].name, model.to_json())
    write_json(staging / sidecars["report"].name, report)
    write_json(staging / sidecars["legend"].name, legend(report))
    metadata = {key: sidecars[key].name for key in ("model", "report", "legend")}
    item = stac_item(staged_cog, report, href=output.name, item_id=output.stem, sidecars=metadata)
    write_json(staging / sidecars["stac"].name, item)
    pages = {key: staging / path.name for key, path in report_paths(output).items()}
    write_report(staged_cog, model.to_json(), report, pages, name=output.name)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    log.info("%s: %.2f s", stage, timings[stage])


def _check_output(config: Config, mosaic: Mosaic) -> Path:
    """Refuse outputs that would clobber something, before any pixel is read."""
    output = config.output_path
    if output.resolve() in {Path(t.path).resolve() for t in mosaic.tiles}:
        raise OutputError(f"output.path: {output} is one of the inputs; choose another output.path")
    if output.is_dir():
        raise OutputError(f"output.path: {output} is a directory; give a file name such as {output / 'labels.tif'}")
    if output.exists() and not config.output.overwrite:
        raise OutputError(f"{output}: already exists; set output.overwrite: true or choose another output.path")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"output.path: cannot create folder {output.parent} ({exc.strerror}); choose a writable place") from None
    if not os.access(output.parent, os.W_OK):
        raise OutputError(f"output.path: folder {output.parent} is not writable; choose a writable place")
    return output


def _write_labels(labels: np.ndarray, block: np.ndarray, path: Path, transform: Affine, k: int) -> np.ndarray:
    write_chunk(labels, path, transform)
    return class_statistics(block, labels, k)


def _label_and_write(data: da.Array, mosaic: Mosaic, centroids: np.ndarray, staging: Path) -> np.ndarray:
    """One streaming pass: label every block, write it as a chunk file, return class statistics."""
    k = len(centroids)
    labels = data.map_blocks(assign_labels, centroids.astype(np.float32), drop_axis=0, dtype=np.uint8)
    label_blocks = labels.to_delayed()
    data_blocks = data.to_delayed()[0]
    tasks = [
        dask.delayed(_write_labels)(
            label_blocks[i, j], data_blocks[i, j], chunk_path(staging, (i, j)), window_transform(window, mosaic.transform), k
        )
        for (i, j), window in mosaic.windows()
    ]
    return np.sum(dask.compute(*tasks), axis=0)


def _finalise_cog(mosaic: Mosaic, model: Model, names: tuple[str, ...], staging: Path, destination: Path) -> None:
    vrt = staging / "labels.vrt"
    build_vrt(
        vrt,
        [(chunk_path(staging, index), window) for index, window in mosaic.windows()],
        width=mosaic.width,
        height=mosaic.height,
        crs=mosaic.crs,
        transform=tuple(mosaic.transform)[:6],
        palette=model.palette,
        tags=class_tags(model.centroids, model.band_names, names),
        description=f"land-cover class (1..{model.k}, 0 = nodata)",
    )
    translate_to_cog(vrt, destination)
    valid, errors, _ = cog_validate(str(destination), quiet=True)
    if not valid:
        raise OutputError(f"{destination}: GDAL wrote an invalid COG ({'; '.join(errors)}); please report this")
