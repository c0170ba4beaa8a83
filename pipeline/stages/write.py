"""The write stage: ``write_cog(labels, path, model=...)`` writes the labels COG and its sidecars.

One streaming pass over the label blocks: each chunk task cuts its block into the COG's tiles and
in-chunk overviews (``cog.py``) and, given the imagery too, sums its pixels per class for the
report and keeps every n-th pixel for the report's true-colour view, reading each block once. The
client then writes the header, tasks copy the parts into place, and the sidecars are written.
Everything is staged beside the output and published last (``write.py``): a COG at the output path
means the products are complete.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from operator import getitem
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from rio_cogeo.cogeo import cog_validate

from pipeline.algo.features import Features, rgb_bands
from pipeline.algo.kernel import class_statistics, label_block
from pipeline.algo.model import Model
from pipeline.cog import (
    LABELS,
    MARGIN,
    TILE,
    Layer,
    Node,
    Pyramid,
    place_parts,
    tree,
    write_header,
    write_levels,
    write_template,
)
from pipeline.errors import InputError, OutputError
from pipeline.io.imagery import Imagery, as_imagery
from pipeline.io.remote import is_remote
from pipeline.products.html import report_paths, thumbnail, thumbnail_step, write_report
from pipeline.products.legend import legend, stac_item
from pipeline.products.parts import (
    fingerprint,
    fresh_dir,
    load_record,
    parts_dir,
    publish,
    record_path,
    save_record,
    sidecar_paths,
)
from pipeline.products.report import (
    Report,
    class_report,
    class_tags,
    write_json,
    write_quicklook,
)
from pipeline.stages.classify import classify, matching_imagery
from pipeline.stages.classify import confidence as margins_of

log = logging.getLogger(__name__)

Progress = Callable[[str], AbstractContextManager[Any]]
CHUNK = 2048  # the writer's chunk when the labels' own is not a square multiple of the COG's tiles
LABELS_DESCRIPTION = "land-cover class (1..{k}, 0 = nodata)"
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


@dataclass(frozen=True)
class Origin:
    """What made the labels, for the report and for ``resume`` (``run`` and ``predict`` fill it)."""

    config: dict[str, Any] | None = None
    """The config record: in the report and the HTML page, and in the parts' fingerprint."""
    inputs: tuple[str, ...] | None = None
    """Input files: their sizes and times are in the parts' fingerprint (None: the labels' graph is)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds of the stages before the write, for the report."""
    started: float | None = None
    resume_hint: str = "delete the folder to start again"


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
    overwrite: bool = False,
    resume: bool = False,
    origin: Origin = Origin(),
    progress: Progress | None = None,
) -> RunResult:
    """Write ``labels`` (from ``classify``) as a COG at ``path``, with the model, report, legend,
    STAC item, quicklook and HTML page beside it; ``confidence`` (from ``pipeline.confidence``)
    as ``<stem>.confidence.tif``. Given ``data``, the imagery the labels were made from, the report
    holds each class's mean per band and the page a true-colour view (each block is read once);
    without it, class areas only. ``chunk``: the side of the write tasks' blocks (default the
    labels' own chunks; the bytes do not depend on it). ``resume`` reuses the parts an
    interrupted write left."""
    progress = progress or (lambda stage: nullcontext())
    started = time.perf_counter() if origin.started is None else origin.started
    timings = dict(origin.timings)
    _check_labels(labels)
    grid = raster_grid(labels)
    output = check_output(Path(path), inputs=origin.inputs or (), overwrite=overwrite)
    blocks, side = _square_chunks(labels.data, chunk)
    imagery = None if data is None else matching_imagery(as_imagery(data, nodata=nodata), model)
    pixels = None if imagery is None else imagery.data().rechunk((-1, *blocks.chunks))
    # Labels that are exactly classify(data, model) (their graphs' names say so) are computed in
    # the write tasks themselves: one task per block, and the kernel's own sums per class.
    fused = data is not None and labels.data.name == classify(data, model, nodata=nodata).data.name
    fused = fused and (confidence is None or confidence.data.name == margins_of(data, model, nodata=nodata).data.name)
    margins = None if confidence is None else confidence.data.rechunk(blocks.chunks)
    if pixels is not None and pixels.shape[1:] != blocks.shape:
        raise InputError(f"data: its shape {pixels.shape[1:]} differs from the labels' {blocks.shape}; give the imagery the labels were made from")
    layers = (LABELS, MARGIN) if margins is not None else (LABELS,)
    pyramid = Pyramid(*blocks.shape, side)
    labeller = {"centroids": model.centroids.tolist(), "features": model.features.to_json(), "layers": [la.name for la in layers]}
    prints = parts_fingerprint(grid, pyramid.chunk, origin, labels=blocks.name, model=labeller)
    sidecars = sidecar_paths(output)
    if margins is None:
        del sidecars["confidence"]
    pages = report_paths(output)
    with parts_dir(output, prints, resume=resume, hint=origin.resume_hint) as parts:
        staging = fresh_dir(parts / "staged")  # the COG and sidecars until published
        with timed(timings, "label_write"), progress("label and write"):
            stats, true_colour, sizes = _write_chunks(blocks, pixels, margins, model, parts, pyramid, layers, fused=fused)
        features = model.features
        if pixels is not None and features.mean is not None:  # report feature means in the features' own units
            sums = stats[:, 1 + len(model.band_names) :]
            sums[:] = sums * np.asarray(features.std) + stats[:, :1] * np.asarray(features.mean)
        with timed(timings, "finalise"):
            staged_cog = staging / output.name
            tags = class_tags(features.unscale(model.centroids), features.names, model.names)
            common = {"grid": grid, "pyramid": pyramid, "parts": parts, "sizes": sizes, "timings": timings}
            _finalise(LABELS, staged_cog, palette=model.palette, tags=tags, description=LABELS_DESCRIPTION.format(k=model.k), **common)
            if margins is not None:
                # float32 keeps the margin exact and in feature units, comparable across runs and
                # predicts of one model; continuous, so its overviews are averaged.
                margin = staging / sidecars["confidence"].name
                _finalise(MARGIN, margin, palette=None, tags={}, description=MARGIN_DESCRIPTION, **common)
            write_quicklook(staged_cog, staging / sidecars["quicklook"].name, model.palette)
        timings["finalise"] -= timings["place"]  # stages are disjoint: "finalise" is the client's share
        timings["total"] = time.perf_counter() - started
        report = class_report(stats, model, pixel_area=grid["pixel_area"], crs=grid["crs"], timings=timings, config=origin.config)
        _write_sidecars(staging, staged_cog, output, sidecars, pages, model, report, true_colour)
        for path in [*sidecars.values(), *pages.values()]:
            publish(staging / path.name, path)
        publish(staged_cog, output)  # last: a COG at the output path means the products are complete
    log.info("wrote %s (%d classes) in %.1f s", output, model.k, timings["total"])
    return RunResult(
        output, sidecars["model"], sidecars["report"], sidecars["quicklook"], model, report, pages["html"], sidecars.get("confidence")
    )


def check_output(
    output: Path,
    *,
    inputs: Sequence[str] = (),
    overwrite: bool,
    key: str = "path",
    overwrite_hint: str = "pass overwrite=True",
) -> Path:
    """Refuse outputs that would clobber something, before any pixel is read; errors name ``key``."""
    if output.resolve() in {Path(p).resolve() for p in inputs if not is_remote(p)}:
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


def parts_fingerprint(
    grid: dict[str, Any], chunk: int, origin: Origin, *, labels: str | None = None, model: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the bytes of the COG's parts depend on: the config, the grid, the input files (or,
    without them, the labels' graph) and the model (without ``model``: what is known before the fit)."""
    source = {"labels": labels} if origin.inputs is None else {}
    return fingerprint(origin.config, grid={**grid, "chunk": chunk, **source}, inputs=list(origin.inputs or ()), model=model)


def raster_grid(array: xr.DataArray | Imagery) -> dict[str, Any]:
    """The grid of a (..., y, x) raster, as the COG header and the fingerprint record it."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    if isinstance(array, Imagery):
        crs, transform, (height, width), name = array.crs, array.transform, (array.height, array.width), "data"
    else:
        crs = None if array.rio.crs is None else array.rio.crs.to_string()
        transform, (height, width), name = array.rio.transform(), array.shape[-2:], array.name or "labels"
    if crs is None:
        raise InputError(f"{name}: no CRS, so the COG could not be placed on a map; set one with .rio.write_crs('EPSG:...')")
    return {
        "crs": crs,
        "transform": list(transform)[:6],
        "height": int(height),
        "width": int(width),
        "pixel_area": abs(transform.a * transform.e),
    }


def _check_labels(labels: xr.DataArray) -> None:
    if not isinstance(labels, xr.DataArray) or labels.ndim != 2 or labels.dtype != np.uint8:
        got = f"{labels.dtype} {labels.dims}" if isinstance(labels, xr.DataArray) else type(labels).__name__
        raise InputError(f"labels: expected the uint8 (y, x) DataArray pipeline.classify returns, got {got}; use pipeline.classify")


def _square_chunks(blocks: da.Array, side: int | None) -> tuple[da.Array, int]:
    """The labels in square chunks of ``side`` pixels (default: their own, if a multiple of the
    COG's tiles), and that side: the chunk tasks cut whole tiles."""
    if not isinstance(blocks, da.Array):
        blocks = da.from_array(blocks, chunks=side or CHUNK)
    side = side or max(c[0] for c in blocks.chunks)
    if side % TILE:
        side = CHUNK
    if not all(set(c[:-1]) <= {side} and c[-1] <= side for c in blocks.chunks):
        blocks = blocks.rechunk(side)
    return blocks, side


def _write_chunk(
    labels: np.ndarray | None,
    block: np.ndarray | None,
    margin: np.ndarray | None,
    *,
    features: Features,
    labeller: tuple[np.ndarray, bool] | None,
    k: int,
    index: tuple[int, int],
    folder: Path,
    pyramid: Pyramid,
    layers: tuple[Layer, ...],
    true_colour: tuple[list[int], int, int, int],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Write one block's tiles and in-chunk overviews as parts and record the chunk; return its
    summary (per class: pixels, and given the imagery, sums per input band and feature; its share
    of the true-colour thumbnail; tile byte counts) and the decimated arrays for the tree. With
    ``labeller`` (centroids, and whether the margin is written) the labels are computed here from
    the block, in the kernel's pass that also sums the features per class."""
    bands, row_off, col_off, step = true_colour
    if labeller is not None:
        centroids, with_margin = labeller
        values = features.apply(block)
        labels, feature_stats, margin = label_block(values, centroids, with_margin=with_margin)
        band_stats = feature_stats if values is block else class_statistics(block, labels, k)
    elif block is not None:
        band_stats = class_statistics(block, labels, k)
        feature_stats = band_stats if features.is_identity else class_statistics(features.apply(block), labels, k)
    if block is None:  # labels alone: pixels per class only
        stats = np.bincount(labels.ravel(), minlength=k + 1).astype(np.float64)[:, None]
        preview = np.empty((3, 0, 0), dtype=np.float32)
    else:
        stats = np.concatenate([band_stats, feature_stats[:, 1:]], axis=1)
        preview = thumbnail(block, row_off, col_off, step)[bands]
    summary: dict[str, Any] = {"stats": stats, "thumbnail": preview}
    ups = {}
    for layer, array in zip(layers, (labels, margin)):
        summary[layer.name], up = write_levels(folder, layer, pyramid, (0, *index), array)
        if up is not None:
            ups[layer.name] = up
    save_record(record_path(folder, index), summary, ups)
    return summary, ups


def _write_chunks(
    blocks: da.Array,
    pixels: da.Array | None,
    margins: da.Array | None,
    model: Model,
    folder: Path,
    pyramid: Pyramid,
    layers: tuple[Layer, ...],
    *,
    fused: bool,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, dict[Node, list[list[int]]]]]:
    """One streaming pass: every label block into the COG's tiles (chunks finished by an earlier
    run are read from their records), then the tree of coarse levels; return the class
    statistics, a (3, y, x) true-colour thumbnail (None without the imagery) and every node's
    tile byte counts. ``fused``: the labels (and margins) are ``classify`` (``confidence``) of
    ``pixels`` with ``model``, so each chunk task labels its own block, as they would."""
    inputs = [pixels] if fused else [a for a in (blocks, pixels, margins) if a is not None]
    name = f"write_chunk-{tokenize(*(a.name for a in inputs), str(folder), layers)}"
    rgb = list(rgb_bands(model.band_names))
    height, width = blocks.shape
    step = thumbnail_step(height, width)
    side = pyramid.chunk
    # A plain graph: building a dask.delayed call costs ~0.5 ms, and a state has ~10^5 chunks.
    graph: dict = {}
    chunks = {}
    windows = [(i, j) for i in range(blocks.numblocks[0]) for j in range(blocks.numblocks[1])]
    for i, j in windows:
        record = record_path(folder, (i, j))
        if record.exists():  # finished by an interrupted run: no read, no labelling
            graph[name, i, j] = (load_record, record)
        else:
            write = partial(
                _write_chunk,
                features=model.features,
                labeller=(model.centroids, margins is not None) if fused else None,
                k=model.k,
                index=(i, j),
                folder=folder,
                pyramid=pyramid,
                layers=layers,
                true_colour=(rgb, i * side, j * side, step),
            )
            graph[name, i, j] = (
                write,
                None if fused else (blocks.name, i, j),
                None if pixels is None else (pixels.name, 0, i, j),
                None if fused or margins is None else (margins.name, i, j),
            )
        graph[f"summary-{name}", i, j] = (getitem, (name, i, j), 0)
        chunks[i, j] = (name, i, j)
    nodes, tree_sizes = tree(pyramid, layers, folder, chunks, name)
    graph.update(nodes)
    graph[name] = (tuple, [[(f"summary-{name}", i, j) for i, j in chunks], list(tree_sizes.values())])
    summaries, node_sizes = Delayed(name, HighLevelGraph.from_collections(name, graph, dependencies=inputs)).compute()
    tree_sizes = dict(zip(tree_sizes, node_sizes))
    preview = None
    if pixels is not None:
        preview = np.full((3, -(-height // step), -(-width // step)), np.nan, dtype=np.float32)
    sizes: dict[str, dict[Node, list[list[int]]]] = {layer.name: {} for layer in layers}
    for (i, j), chunk in zip(windows, summaries):
        if preview is not None:
            part = chunk["thumbnail"]
            top, left = -(-(i * side) // step), -(-(j * side) // step)
            preview[:, top : top + part.shape[1], left : left + part.shape[2]] = part
        for layer in layers:
            sizes[layer.name][0, i, j] = chunk[layer.name]
    for node, node_sizes in tree_sizes.items():
        for layer in layers:
            sizes[layer.name][node] = node_sizes[layer.name]
    return np.sum([chunk["stats"] for chunk in summaries], axis=0), preview, sizes


def _finalise(
    layer: Layer,
    destination: Path,
    *,
    grid: dict[str, Any],
    pyramid: Pyramid,
    parts: Path,
    sizes: dict[str, dict[Node, list[list[int]]]],
    timings: dict[str, float],
    **band: Any,
) -> None:
    """The client writes the header for the parts' tiles, tasks place the parts behind it
    (timed as "place"), the client validates the COG."""
    template = destination.with_name(f"{layer.name}.template.tif")
    write_template(template, layer=layer, crs=grid["crs"], transform=Affine(*grid["transform"]), **band)
    placements = write_header(destination, layer=layer, pyramid=pyramid, sizes=sizes[layer.name], template=template)
    start = time.perf_counter()
    place_parts(destination, folder=parts, layer=layer, pyramid=pyramid, placements=placements)
    timings["place"] = timings.get("place", 0.0) + time.perf_counter() - start  # workers' share
    valid, errors, _ = cog_validate(str(destination), quiet=True)
    if not valid:
        raise OutputError(f"{destination}: the COG written is invalid ({'; '.join(errors)}); please report this")


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
