"""``run(config)``: open → sample → fit → label and write → finalise, each a call into its module.

``write_products`` (label, write, finalise) is shared with ``predict``, which applies a saved model.
"""

from __future__ import annotations

import logging
import os
import time
from functools import partial
from operator import getitem
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from rio_cogeo.cogeo import cog_validate

from .balance import balance
from .cog import LABELS, MARGIN, Layer, Node, Pyramid, place_parts, tree, write_header, write_levels, write_template
from .config import Config
from .errors import DataError, OutputError
from .features import Features, features_from_config, ndvi_bands
from .kmeans import class_order, fit_kmeans
from .html_report import report_paths, thumbnail, thumbnail_step, write_report
from .label import class_statistics, label_block, nearest
from .legend import apply_class_colours, legend, stac_item
from .mosaic import Mosaic, open_mosaic
from .remote import is_remote, redact, where
from .model import FitRecord, Model, SourceRecord
from .report import Report, class_report, class_tags, palette_from_centroids, rgb_bands, write_json, write_quicklook
from .sample import draw_sample, full_matrix
from .scheduler import for_in_memory_data, use_scheduler
from .write import (
    fingerprint, fresh_dir, load_record, parts_dir, publish, record_path, refuse_leftover_parts, save_record, sidecar_paths,
)

log = logging.getLogger(__name__)

Progress = Callable[[str], AbstractContextManager[Any]]
PALETTE_SAMPLE = 100_000  # pixels for scaling statistics, class order and palette when fitting on "all"
GDAL_CACHE_MB = 256
RESUME_HINT = "run again with --resume to finish it, or delete the folder to start again"
LABELS_DESCRIPTION = "land-cover class (1..{k}, 0 = nodata)"
MARGIN_DESCRIPTION = "distance to the second-nearest centroid minus distance to the nearest (feature units)"


@dataclass(frozen=True)
class RunResult:
    output: Path
    model_path: Path
    report_path: Path
    quicklook_path: Path
    model: Model
    report: Report
    html_path: Path
    confidence_path: Path | None = None


def run(config: Config, *, progress: Progress | None = None, resume: bool = False) -> RunResult:
    """Cluster the configured imagery and write the COG, model, report and quicklook; with
    ``resume``, reuse the parts an interrupted run of the same config left beside the output."""
    # GDAL's block cache defaults to 5 % of RAM per process, unseen by dask. Each block is
    # decoded about once here, so a small cache holds what overlapping windows share.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return _run(config, progress or (lambda stage: nullcontext()), resume=resume)


def _run(config: Config, progress: Progress, *, resume: bool) -> RunResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with _timed(timings, "open"):
        mosaic = open_mosaic(config.input, chunk=config.dask.chunk)
        features = features_from_config(config.features, mosaic.band_names)
        if config.model.order_by == "ndvi":  # refused here, before any pixel is read
            ndvi_bands(mosaic.band_names, "model.order_by: ndvi")
        output = check_output(config.output_path, mosaic, overwrite=config.output.overwrite)
        known = parts_fingerprint(mosaic, config.model_dump(mode="json"))  # all but the model
        refuse_leftover_parts(output, known, resume=resume, hint=RESUME_HINT)

    with use_scheduler(config.dask):
        return _classify(config, mosaic, features, output, progress=progress, timings=timings, started=started, resume=resume)


def _classify(
    config: Config,
    mosaic: Mosaic,
    features: Features,
    output: Path,
    *,
    progress: Progress,
    timings: dict[str, float],
    started: float,
    resume: bool,
) -> RunResult:
    """Sample, fit, label and write, publish: the stages that compute on the scheduler."""
    balanced = None
    if config.features.balance != "none":
        with _timed(timings, "balance"), progress("balance"):
            mosaic, balanced = balance(mosaic, method=config.features.balance, seed=config.sample.seed)
    with _timed(timings, "sample"), progress("sample"):
        fit_on_all = config.sample.size == "all"
        sample = draw_sample(mosaic, size=PALETTE_SAMPLE if fit_on_all else config.sample.size, seed=config.sample.seed)
        if len(sample) == 0:
            raise DataError(
                f"{where(mosaic.tiles[0].path, mosaic.tiles[0].item)}: no valid pixel in the input; check input.nodata and the rasters' masks"
            )
        features = features.fitted(sample)  # scaling statistics come from the sample
        sample_features = features.apply(sample.T).T
        matrix: np.ndarray | da.Array = _feature_rows(full_matrix(mosaic.to_dask()), features) if fit_on_all else sample_features

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
        class_names=config.class_names() if config.classes else (),
        fit=FitRecord(
            init=m.init, n_init=m.n_init, max_iter=m.max_iter, n_iter=fit.n_iter, tol=m.tol, tol_absolute=fit.tol_absolute,
            order_by=m.order_by, seeding="k-means++", unstable=fit.restarts.unstable, restarts=fit.restarts.to_json(),
        ),
        source=SourceRecord(
            dtype=mosaic.dtype, count=mosaic.count, crs=mosaic.crs, nodata=config.input.nodata, alpha=config.input.alpha,
            **_input_record(config, mosaic),
        ),
        balance=None if balanced is None else balanced.to_json(),
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
        resume=resume,
        resume_hint=RESUME_HINT,
    )


def _input_record(config: Config, mosaic: Mosaic) -> dict[str, Any]:
    """What the model says it was fitted on: the STAC search (not thousands of hrefs), or the
    files; hrefs without their query (signatures)."""
    if config.input.stac is not None:
        return {"stac": config.input.stac.model_dump(mode="json"), "items": len(mosaic.tiles)}
    return {"paths": tuple(redact(t.path) for t in mosaic.tiles)}


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
    resume: bool = False,
    resume_hint: str = "delete the folder to start again",
) -> RunResult:
    """Label the mosaic with a model and write the COG and its sidecars (shared by run and predict)."""
    sidecars = sidecar_paths(output)
    if not confidence:
        del sidecars["confidence"]
    pages = report_paths(output)
    layers = (LABELS, MARGIN) if confidence else (LABELS,)
    pyramid = Pyramid(mosaic.height, mosaic.width, mosaic.chunk)
    labeller = {"centroids": model.centroids.tolist(), "features": model.features.to_json(), "layers": [la.name for la in layers]}
    prints = parts_fingerprint(mosaic, config_record, model=labeller)
    with parts_dir(output, prints, resume=resume, hint=resume_hint) as parts:
        staging = fresh_dir(parts / "staged")  # the COG and sidecars until published
        with _timed(timings, "label_write"), progress("label and write"):
            stats, true_colour, sizes = _label_and_write(mosaic, model, parts, pyramid, layers)
        features = model.features
        if features.mean is not None:  # report feature means in the features' own units
            sums = stats[:, 1 + len(mosaic.bands) :]
            sums[:] = sums * np.asarray(features.std) + stats[:, :1] * np.asarray(features.mean)
        with _timed(timings, "finalise"):
            staged_cog = staging / output.name
            tags = class_tags(features.unscale(model.centroids), features.names, model.names)
            common = {"mosaic": mosaic, "pyramid": pyramid, "parts": parts, "sizes": sizes, "timings": timings}
            description = LABELS_DESCRIPTION.format(k=model.k)
            _finalise(LABELS, staged_cog, palette=model.palette, tags=tags, description=description, **common)
            if confidence:
                # float32 keeps the margin exact and in feature units, comparable across runs and
                # predicts of one model; continuous, so its overviews are averaged.
                margin = staging / sidecars["confidence"].name
                _finalise(MARGIN, margin, palette=None, tags={}, description=MARGIN_DESCRIPTION, **common)
            write_quicklook(staged_cog, staging / sidecars["quicklook"].name, model.palette)
        timings["finalise"] -= timings["place"]  # stages are disjoint: "finalise" is the client's share
        timings["total"] = time.perf_counter() - started
        report = class_report(stats, model, pixel_area=mosaic.pixel_area(), crs=mosaic.crs, timings=timings, config=config_record)
        _write_sidecars(staging, staged_cog, output, sidecars, pages, model, report, true_colour)
        for path in [*sidecars.values(), *pages.values()]:
            publish(staging / path.name, path)
        publish(staged_cog, output)  # last: a COG at the output path means the run completed
    log.info("wrote %s (%d classes) in %.1f s", output, model.k, timings["total"])
    return RunResult(
        output, sidecars["model"], sidecars["report"], sidecars["quicklook"], model, report, pages["html"], sidecars.get("confidence")
    )


def parts_fingerprint(
    mosaic: Mosaic, config_record: dict[str, Any] | None, *, model: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the bytes of the COG's parts depend on (without ``model``: what is known before the fit)."""
    grid = {
        "crs": mosaic.crs, "transform": list(mosaic.transform)[:6], "height": mosaic.height, "width": mosaic.width,
        "chunk": mosaic.chunk, "band_names": list(mosaic.band_names),
    }
    return fingerprint(config_record, grid=grid, inputs=[t.path for t in mosaic.tiles], model=model)


def _write_sidecars(
    staging: Path,
    staged_cog: Path,
    output: Path,
    sidecars: dict[str, Path],
    pages: dict[str, Path],
    model: Model,
    report: Report,
    true_colour: np.ndarray,
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
    if output.resolve() in {Path(t.path).resolve() for t in mosaic.tiles if not is_remote(t.path)}:
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
    labeller: tuple[Features, np.ndarray],
    index: tuple[int, int],
    folder: Path,
    pyramid: Pyramid,
    layers: tuple[Layer, ...],
    true_colour: tuple[list[int], int, int, int],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Label one block (and its margin), write their tiles and in-chunk overviews as parts, and
    record the chunk; return its summary (statistics per input band and feature, share of the
    report's true-colour thumbnail, tile byte counts) and the decimated arrays for the tree."""
    features_of, centroids = labeller
    features = features_of.apply(block)
    with_margin = MARGIN.name in {layer.name for layer in layers}  # by name: NaN != NaN once unpickled
    labels, feature_stats, margin = label_block(features, centroids, with_margin=with_margin)
    stats = feature_stats if features is block else class_statistics(block, labels, len(centroids))
    bands, row_off, col_off, step = true_colour
    summary: dict[str, Any] = {
        "stats": np.concatenate([stats, feature_stats[:, 1:]], axis=1),
        "thumbnail": thumbnail(block, row_off, col_off, step)[bands],
    }
    ups = {}
    for layer, array in zip(layers, (labels, margin)):
        summary[layer.name], up = write_levels(folder, layer, pyramid, (0, *index), array)
        if up is not None:
            ups[layer.name] = up
    save_record(record_path(folder, index), summary, ups)
    return summary, ups


def _label_and_write(
    mosaic: Mosaic, model: Model, folder: Path, pyramid: Pyramid, layers: tuple[Layer, ...]
) -> tuple[np.ndarray, np.ndarray, dict[str, dict[Node, list[list[int]]]]]:
    """One streaming pass: label every block into the COG's tiles (chunks finished by an earlier
    run are read from their records), then the tree of coarse levels; return the class
    statistics, a (3, y, x) true-colour thumbnail of the mosaic and every node's tile byte counts."""
    data = mosaic.to_dask()
    name = f"label_chunk-{tokenize(data.name, str(folder), layers, model.centroids)}"
    rgb = list(rgb_bands(mosaic.band_names))
    step = thumbnail_step(mosaic.height, mosaic.width)
    windows = mosaic.windows()
    # A plain graph: building a dask.delayed call costs ~0.5 ms, and a state has ~10^5 chunks.
    graph: dict = {}
    chunks = {}
    for (i, j), window in windows:
        record = record_path(folder, (i, j))
        if record.exists():  # finished by an interrupted run: no read, no labelling
            graph[name, i, j] = (load_record, record)
        else:
            label = partial(
                _label_chunk,
                labeller=(model.features, model.centroids),  # not the model: its extra lists every input file
                index=(i, j),
                folder=folder,
                pyramid=pyramid,
                layers=layers,
                true_colour=(rgb, int(window.row_off), int(window.col_off), step),
            )
            graph[name, i, j] = (label, (data.name, 0, i, j))
        graph[f"summary-{name}", i, j] = (getitem, (name, i, j), 0)
        chunks[i, j] = (name, i, j)
    nodes, tree_sizes = tree(pyramid, layers, folder, chunks, name)
    graph.update(nodes)
    graph[name] = (tuple, [[(f"summary-{name}", i, j) for i, j in chunks], list(tree_sizes.values())])
    summaries, node_sizes = Delayed(name, HighLevelGraph.from_collections(name, graph, dependencies=[data])).compute()
    tree_sizes = dict(zip(tree_sizes, node_sizes))
    preview = np.full((3, -(-mosaic.height // step), -(-mosaic.width // step)), np.nan, dtype=np.float32)
    sizes: dict[str, dict[Node, list[list[int]]]] = {layer.name: {} for layer in layers}
    for ((i, j), window), summary in zip(windows, summaries):
        part = summary["thumbnail"]
        top, left = -(-int(window.row_off) // step), -(-int(window.col_off) // step)
        preview[:, top : top + part.shape[1], left : left + part.shape[2]] = part
        for layer in layers:
            sizes[layer.name][0, i, j] = summary[layer.name]
    for node, node_sizes in tree_sizes.items():
        for layer in layers:
            sizes[layer.name][node] = node_sizes[layer.name]
    return np.sum([summary["stats"] for summary in summaries], axis=0), preview, sizes


def _finalise(
    layer: Layer,
    destination: Path,
    *,
    mosaic: Mosaic,
    pyramid: Pyramid,
    parts: Path,
    sizes: dict[str, dict[Node, list[list[int]]]],
    timings: dict[str, float],
    **band: Any,
) -> None:
    """The client writes the header for the parts' tiles, tasks place the parts behind it
    (timed as "place"), the client validates the COG."""
    template = destination.with_name(f"{layer.name}.template.tif")
    write_template(template, layer=layer, crs=mosaic.crs, transform=mosaic.transform, **band)
    placements = write_header(destination, layer=layer, pyramid=pyramid, sizes=sizes[layer.name], template=template)
    start = time.perf_counter()
    place_parts(destination, folder=parts, layer=layer, pyramid=pyramid, placements=placements)
    timings["place"] = timings.get("place", 0.0) + time.perf_counter() - start  # workers' share
    _validate(destination)


def _validate(cog: Path) -> None:
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    if not valid:
        raise OutputError(f"{cog}: the COG written is invalid ({'; '.join(errors)}); please report this")
