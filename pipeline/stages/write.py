"""The write stage: ``write_cog(labels, path, model=...)`` writes the labels COG and its sidecars;
``write_classified(data, path, model=...)`` the same bytes, labelling in the write tasks.

One streaming pass over the blocks (``products/chunks.py``) writes the COG's tiles into the parts
folder; the client then writes the header, tasks copy the parts into place, and the sidecars are
written. Everything is staged beside the output and published last (``products/parts.py``): a
COG at the output path means the products are complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from pipeline.algo.cleanup import Cleanup
from pipeline.algo.model import Model
from pipeline.cog import (
    LABELS,
    LABELS_MODE,
    MARGIN,
    RAW,
    TILE,
    Grid,
    Layer,
    Pyramid,
)
from pipeline.config import PostprocessConfig, parse_config
from pipeline.errors import InputError, OutputError
from pipeline.io.imagery import Imagery, as_imagery
from pipeline.io.remote import Href
from pipeline.products.chunks import Blocks, Sizes, finalise, write_chunks
from pipeline.products.html import report_paths, write_report
from pipeline.products.legend import legend, stac_item
from pipeline.products.parts import (
    check_folder,
    fingerprint,
    fresh_dir,
    make_folder,
    parts_dir,
    publish,
    sidecar_paths,
)
from pipeline.products.report import (
    Report,
    class_report,
    class_tags,
    write_json,
    write_quicklook,
)
from pipeline.stages.classify import matching_imagery
from pipeline.stages.edge import cleanup_of

log = logging.getLogger(__name__)

Progress = Callable[[str], AbstractContextManager[Any]]
"""A stage's name → a context around the stage; what it yields, if not None, is called with
(parts done, parts in all) before each part of a stage run in parts (the label pass's batches)."""
CHUNK = 2048  # the writer's chunk when the labels' own is not a square multiple of the COG's tiles
LABELS_DESCRIPTION = "land-cover class (1..{k}, 0 = nodata)"
RAW_DESCRIPTION = "land-cover class before postprocess (1..{k}, 0 = nodata)"
MARGIN_DESCRIPTION = "distance to the second-nearest centroid minus distance to the nearest (feature units)"


@dataclass(frozen=True)
class RunResult:
    """What a run, a predict or ``write_cog`` wrote."""

    output: Path
    model_path: Path
    report_path: Path
    quicklook_path: Path
    model: Model
    report: Report
    html_path: Path
    confidence_path: Path | None = None
    raw_path: Path | None = None


@dataclass(frozen=True)
class Origin:
    """What made the labels, for the report and for ``resume`` (``run`` and ``predict`` fill it)."""

    config: dict[str, Any] | None = None
    """The config record: in the report and the HTML page, and in the parts' fingerprint."""
    inputs: tuple[Href, ...] | None = None
    """Input files: their sizes and times are in the parts' fingerprint (None: the labels' graph is)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds of the stages before the write, for the report."""
    started: float | None = None
    resume_hint: str = "pass resume=True to finish it, or delete the folder to start again"


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    log.info("%s: %.2f s", stage, timings[stage])


def write_cog(
    labels: xr.DataArray,
    path: str | Path,
    *,
    model: Model,
    data: xr.DataArray | xr.Dataset | None = None,
    confidence: xr.DataArray | None = None,
    nodata: float | None = None,
    chunk: int | None = None,
    overviews: str = "mode",
    overwrite: bool = False,
    resume: bool = False,
    origin: Origin = Origin(),
    progress: Progress | None = None,
) -> RunResult:
    """Write ``labels`` (from ``classify``, or cleaned by ``majority`` and ``sieve``) as a COG at
    ``path``, with the model, report, legend, STAC item, quicklook and HTML page beside it; ``confidence`` (from ``pipeline.confidence``)
    as ``<stem>.confidence.tif``. Given ``data``, the imagery the labels were made from, the report
    holds each class's mean per band and the page a true-colour view (each block is read once);
    without it, class areas only. ``chunk``: the side of the write tasks' blocks (default the
    labels' own chunks; the bytes do not depend on it). ``resume`` reuses the parts an
    interrupted write left. ``overviews``: "mode" or "nearest" (``output.overviews``).
    ``write_classified(data, path, model=...)`` writes the same bytes from the imagery alone,
    labelling in the write tasks."""
    _check_labels(labels)
    grid = raster_grid(labels)
    output = check_output(Path(path), inputs=origin.inputs or (), overwrite=overwrite)
    side = _chunk_side(labels.data, chunk)
    squares = _square_chunks(labels.data, side)
    imagery = None if data is None else matching_imagery(as_imagery(data, nodata=nodata), model)
    pixels = None if imagery is None else imagery.data().rechunk((-1, *squares.chunks))
    if pixels is not None and pixels.shape[1:] != squares.shape:
        raise InputError(f"data: its shape {pixels.shape[1:]} differs from the labels' {squares.shape}; give the imagery the labels were made from")
    margins = None if confidence is None else confidence.data.rechunk(squares.chunks)
    blocks = Blocks(
        labels=squares, pixels=pixels, margins=margins, with_margin=margins is not None, labels_layer=labels_layer(overviews)
    )
    return _write(blocks, grid, output, model, side, resume=resume, origin=origin, progress=progress)


def write_classified(
    data: xr.DataArray | xr.Dataset,
    path: str | Path,
    *,
    model: Model,
    confidence: bool = False,
    nodata: float | None = None,
    chunk: int | None = None,
    overviews: str = "mode",
    postprocess: Mapping[str, Any] | None = None,
    raw: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    origin: Origin = Origin(),
    progress: Progress | None = None,
) -> RunResult:
    """``write_cog(classify(data, model), path, model=model, data=data)``, with ``confidence``
    the margin layer too, in one task per block: each write task labels its own block of the
    imagery (the bytes are the same; nothing is labelled twice or held between stages).

    With ``postprocess`` (the YAML section's keys, e.g. ``{"majority": 3, "sieve": 16,
    "connectivity": 8}``; default: ``model.postprocess``), the labels are cleaned in the same
    pass: each chunk is labelled once and cleaned with its neighbours' labels around it, the
    bytes of ``write_cog(sieve(majority(classify(data, model), 3), 16, 8), ...)``; the model
    written records it. ``raw`` also writes the labels before the cleanup as ``<stem>.raw.tif``."""
    imagery = matching_imagery(as_imagery(data, nodata=nodata), model)
    grid = raster_grid(imagery)
    output = check_output(Path(path), inputs=origin.inputs or (), overwrite=overwrite)
    pixels = imagery.data()
    side = _chunk_side(pixels[0], chunk)
    if postprocess is not None:
        config = parse_config(dict(postprocess), source="postprocess", schema=PostprocessConfig)
        model = replace(model, postprocess=cleanup_of(config, pixel_area_m2=grid.pixel_area_m2, chunk=side))
    cleanup = model.postprocess if model.postprocess is not None and model.postprocess.active else None
    if raw and cleanup is None:
        raise InputError("raw: the labels before the cleanup are the labels, as the model has no postprocess; drop raw=True or give the model one")
    if cleanup is not None and cleanup.halo > side:
        raise InputError(
            f"postprocess: the cleanup needs {cleanup.halo} pixels of context, more than the {side}-pixel chunks hold; "
            "lower postprocess.sieve or raise dask.chunk"
        )
    blocks = Blocks(
        labels=None, pixels=_square_chunks(pixels, side), with_margin=confidence, cleanup=cleanup, labels_layer=labels_layer(overviews), raw=raw
    )
    return _write(blocks, grid, output, model, side, resume=resume, origin=origin, progress=progress)


def _write(
    blocks: Blocks, grid: Grid, output: Path, model: Model, side: int, *, resume: bool, origin: Origin, progress: Progress | None
) -> RunResult:
    """The chunk pass into the parts folder, then the COG(s) and sidecars staged and published."""
    progress = progress or (lambda stage: nullcontext())
    started = time.perf_counter() if origin.started is None else origin.started
    timings = dict(origin.timings)
    pyramid = Pyramid(*blocks.grid.shape, side)
    labeller = {
        "centroids": model.centroids.tolist(), "features": model.features.to_json(),
        "layers": [[la.name, la.resampling] for la in blocks.layers], "cleanup": blocks.cleanup.to_json() if blocks.cleaning else None,
    }
    prints = parts_fingerprint(grid, pyramid.chunk, origin, labels=blocks.name, model=labeller)
    sidecars = sidecar_paths(output)
    for key, written in (("confidence", blocks.with_margin), ("raw", blocks.raw)):
        if not written:
            del sidecars[key]
    pages = report_paths(output)
    make_folder(output.parent, key=str(output))
    with parts_dir(output, prints, resume=resume, hint=origin.resume_hint) as parts:
        staging = fresh_dir(parts / "staged")  # the COG and sidecars until published
        with timed(timings, "label_write"), progress("label and write") as parts_done:
            parts_done = parts_done if callable(parts_done) else None  # a caller's context may yield anything
            stats, cleaned, true_colour, sizes = write_chunks(blocks, model, parts, pyramid, parts_done=parts_done)
        with timed(timings, "finalise"):
            staged_cog = _finalise_layers(blocks, model, grid, pyramid, parts, sizes, timings, staging, sidecars, output)
        timings["finalise"] -= timings["place"]  # stages are disjoint: "finalise" is the client's share
        timings["total"] = time.perf_counter() - started
        report = class_report(
            _in_feature_units(stats, model, blocks.pixels is not None), model, pixel_area=grid.pixel_area, crs=grid.crs,
            timings=timings, config=origin.config, cleaned=cleaned,
        )
        _write_sidecars(staging, staged_cog, output, sidecars, pages, model, report, true_colour)
        for path in [*sidecars.values(), *pages.values()]:
            publish(staging / path.name, path)
        publish(staged_cog, output)  # last: a COG at the output path means the products are complete
    log.info("wrote %s (%d classes) in %.1f s", output, model.k, timings["total"])
    return RunResult(
        output, sidecars["model"], sidecars["report"], sidecars["quicklook"], model, report, pages["html"], sidecars.get("confidence"),
        sidecars.get("raw"),
    )


def _finalise_layers(
    blocks: Blocks, model: Model, grid: Grid, pyramid: Pyramid, parts: Path, sizes: Sizes,
    timings: dict[str, float], staging: Path, sidecars: dict[str, Path], output: Path,
) -> Path:
    """The labels COG (and the margin's) and the quicklook, staged; return the staged COG."""
    staged_cog = staging / output.name
    tags = class_tags(model.features.unscale(model.centroids), model.features.names, model.names)
    common = {"grid": grid, "pyramid": pyramid, "parts": parts, "sizes": sizes, "timings": timings}
    description = LABELS_DESCRIPTION.format(k=model.k) + (f"; {_described(blocks.cleanup)}" if blocks.cleaning else "")
    finalise(blocks.labels_layer, staged_cog, palette=model.palette, tags=tags, description=description, **common)
    if blocks.with_margin:
        # float32 keeps the margin exact and in feature units, comparable across runs and
        # predicts of one model; continuous, so its overviews are averaged.
        margin = staging / sidecars["confidence"].name
        finalise(MARGIN, margin, palette=None, tags={}, description=MARGIN_DESCRIPTION, **common)
    if blocks.raw:
        raw_layer = next(layer for layer in blocks.layers if layer.name == RAW.name)
        description = RAW_DESCRIPTION.format(k=model.k)
        finalise(raw_layer, staging / sidecars["raw"].name, palette=model.palette, tags=tags, description=description, **common)
    write_quicklook(staged_cog, staging / sidecars["quicklook"].name, model.palette)
    return staged_cog


def _described(cleanup: Cleanup) -> str:
    """E.g. "majority 3 x 3, then sieve 16 px (8-connected)", for the COG's band description."""
    steps = [f"majority {cleanup.majority} x {cleanup.majority}"] if cleanup.majority > 1 else []
    steps += [f"sieve {cleanup.sieve} px ({cleanup.connectivity}-connected)"] if cleanup.sieve > 1 else []
    return "cleaned: " + ", then ".join(steps)


def _in_feature_units(stats: np.ndarray, model: Model, with_imagery: bool) -> np.ndarray:
    """The chunk pass's per-class sums, with the feature sums in the features' own units (the
    kernel sums scaled values) for the report's feature means."""
    features = model.features
    if with_imagery and features.mean is not None:
        sums = stats[:, 1 + len(model.band_names) :]
        sums[:] = sums * np.asarray(features.std) + stats[:, :1] * np.asarray(features.mean)
    return stats


def check_output(
    output: Path,
    *,
    inputs: Sequence[Href] = (),
    overwrite: bool,
    key: str = "path",
    overwrite_hint: str = "pass overwrite=True",
) -> Path:
    """Refuse outputs that would clobber something, before any pixel is read; errors name ``key``."""
    if output.resolve() in {Path(p.gdal).resolve() for p in inputs if not p.remote}:
        raise OutputError(f"{key}: {output} is one of the inputs; choose another {key}")
    if output.is_dir():
        raise OutputError(f"{key}: {output} is a directory; give a file name such as {output / 'labels.tif'}")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: already exists; {overwrite_hint} or choose another {key}")
    check_folder(output.parent, key=key)
    return output


def parts_fingerprint(
    grid: Grid, chunk: int, origin: Origin, *, labels: str | None = None, model: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the bytes of the COG's parts depend on: the config, the grid, the input files (or,
    without them, the labels' graph) and the model (without ``model``: what is known before the fit)."""
    source = {"labels": labels} if origin.inputs is None else {}
    return fingerprint(origin.config, grid={**grid.to_json(), "chunk": chunk, **source}, inputs=list(origin.inputs or ()), model=model)


def raster_grid(array: xr.DataArray | Imagery) -> Grid:
    """The grid of a (..., y, x) raster, as the COG header and the fingerprint record it."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    if isinstance(array, Imagery):
        crs, transform, (height, width), name = array.crs, array.transform, (array.height, array.width), "data"
    else:
        crs = None if array.rio.crs is None else array.rio.crs.to_string()
        transform, (height, width), name = array.rio.transform(), array.shape[-2:], array.name or "labels"
    if crs is None:
        raise InputError(f"{name}: no CRS, so the COG could not be placed on a map; set one with .rio.write_crs('EPSG:...')")
    return Grid(crs, transform, int(height), int(width))


def labels_layer(overviews: str) -> Layer:
    """The labels' layer whose overviews are made by ``overviews`` ("mode" or "nearest")."""
    if overviews not in ("mode", "nearest"):
        raise InputError(f'overviews: {overviews!r} is not a resampling of class maps; use "mode" or "nearest"')
    return LABELS_MODE if overviews == "mode" else LABELS


def _check_labels(labels: xr.DataArray) -> None:
    if not isinstance(labels, xr.DataArray) or labels.ndim != 2 or labels.dtype != np.uint8:
        got = f"{labels.dtype} {labels.dims}" if isinstance(labels, xr.DataArray) else type(labels).__name__
        raise InputError(f"labels: expected the uint8 (y, x) DataArray pipeline.classify returns, got {got}; use pipeline.classify")


def _chunk_side(array: da.Array, side: int | None) -> int:
    """The side of the write's square chunks: ``side``, else the array's own chunk if a multiple
    of the COG's tiles (the chunk tasks cut whole tiles), else ``CHUNK``."""
    own = max(c[0] for c in array.chunks[-2:]) if isinstance(array, da.Array) else None
    side = side or own or CHUNK
    return CHUNK if side % TILE else side


def _square_chunks(array: da.Array | np.ndarray, side: int) -> da.Array:
    """A (..., y, x) array in square chunks of ``side`` pixels (and one chunk along the rest)."""
    if not isinstance(array, da.Array):
        array = da.from_array(array, chunks=side)
    leading = {axis: -1 for axis in range(array.ndim - 2)}
    if not all(set(c[:-1]) <= {side} and c[-1] <= side for c in array.chunks[-2:]) or any(len(c) > 1 for c in array.chunks[:-2]):
        array = array.rechunk({**leading, array.ndim - 2: side, array.ndim - 1: side})
    return array


def _write_sidecars(
    staging: Path,
    staged_cog: Path,
    output: Path,
    sidecars: dict[str, Path],
    pages: dict[str, Path],
    model: Model,
    report: Report,
    true_colour: np.ndarray | None,
) -> None:
    """Model, report, legend and STAC JSONs and the HTML page, into the staging folder."""
    write_json(staging / sidecars["model"].name, model.to_json())
    write_json(staging / sidecars["report"].name, report.to_json())
    write_json(staging / sidecars["legend"].name, legend(report))
    metadata = {key: sidecars[key].name for key in ("model", "report", "legend")}
    item = stac_item(staged_cog, report, href=output.name, item_id=output.stem, sidecars=metadata)
    write_json(staging / sidecars["stac"].name, item)
    staged_pages = {key: staging / path.name for key, path in pages.items()}
    write_report(staged_cog, model, report, staged_pages, name=output.name, true_colour=true_colour)
