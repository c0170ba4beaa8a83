"""The write's one streaming pass: every block into the COG's tiles, then its header and placement.

Each chunk task cuts its block into the COG's tiles and in-chunk overviews (``cog/encode.py``)
and, given the imagery too, sums its pixels per class for the report and keeps every n-th pixel
for the report's true-colour view, reading each block once. Labels are either given (a dask
array of them) or computed in the task from the imagery's block (``Blocks.labelled``), in the
kernel's pass that also sums the features per class: the same bytes, one task per block. A
chunk's record in the parts folder means it is finished; a resumed write reads it instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from operator import getitem
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from pipeline.algo.cleanup import Cleaned, Cleanup
from pipeline.algo.features import Features, rgb_bands
from pipeline.algo.kernel import class_statistics, label_block
from pipeline.algo.model import Model
from pipeline.cog import (
    LABELS,
    MARGIN,
    RAW,
    Grid,
    Layer,
    Node,
    Pyramid,
    place_parts,
    tree,
    write_header,
    write_levels,
    write_template,
)
from pipeline.errors import OutputError
from pipeline.products.halo import Halo, spill, unspill
from pipeline.products.html import thumbnail, thumbnail_step
from pipeline.products.parts import load_record, record_path, save_record
from pipeline.runtime.scheduler import task_slots

log = logging.getLogger(__name__)

Sizes = dict[str, dict[Node, list[list[int]]]]
"""Per layer, every node's tile byte counts per level."""

BATCH_DEPTHS = range(4, 8)  # a graph of 16 x 16 to 128 x 128 chunks: 16 to 274 MB of graph and dask's state on the client
BATCH_PER_THREAD = 64  # chunks a thread labels per batch: the batch's tail, threads idle at its end, is ~1/64 of it
HALO_BATCH_DEPTH = 6  # with the cleanup, the ring of chunks labelled again around a batch costs +6.5 % from here (+27 % at depth 4)
CHUNK_TASK = "write_chunk"  # the name of the pass's per-chunk store tasks (their keys start with it)


@dataclass(frozen=True)
class Blocks:
    """What the chunk tasks read, in square chunks of the COG's chunk side."""

    labels: da.Array | None
    """uint8 (y, x) labels; None: each task labels its own block of ``pixels`` with the model."""
    pixels: da.Array | None
    """float32 (band, y, x) imagery (NaN = invalid), one chunk along the bands; or None."""
    margins: da.Array | None = None
    """float32 (y, x) margins to write beside the labels (given labels only)."""
    with_margin: bool = False
    """Whether a margin layer is written (computed in the tasks when ``labels`` is None)."""
    cleanup: Cleanup | None = None
    """Labelled blocks only: the majority filter and sieve applied in the pass (block + halo)."""
    labels_layer: Layer = LABELS
    """The labels' layer (its overviews' resampling)."""
    raw: bool = False
    """With ``cleanup``, also write the labels before it (``RAW``)."""

    @property
    def labelled(self) -> bool:
        return self.labels is None

    @property
    def grid(self) -> da.Array:
        """An array on the chunks' grid (y, x chunks; its name stands for the labels)."""
        return self.labels if self.labels is not None else self.pixels[0]

    @property
    def layers(self) -> tuple[Layer, ...]:
        raw = (replace(RAW, resampling=self.labels_layer.resampling),) if self.raw else ()
        return (self.labels_layer, *raw, *((MARGIN,) if self.with_margin else ()))

    @property
    def cleaning(self) -> bool:
        return self.cleanup is not None and self.cleanup.active

    @property
    def inputs(self) -> list[da.Array]:
        return [a for a in (self.labels, self.pixels, self.margins) if a is not None]

    @property
    def name(self) -> str:
        """What the labels are made of, for a fingerprint without input files."""
        return self.labels.name if self.labels is not None else f"classified-{self.pixels.name}"


def label_chunk(
    labels: np.ndarray | None,
    block: np.ndarray | None,
    margin: np.ndarray | None,
    *,
    features: Features,
    labeller: tuple[np.ndarray, bool] | None,
    k: int,
    true_colour: tuple[list[int], int, int, int],
) -> dict[str, Any]:
    """A block's labels (given, or with ``labeller``, centroids and whether the margin is
    written, computed from the imagery in the kernel's pass that also sums the features per
    class), its margin, its statistics (per class: pixels, and given the imagery, sums per input
    band and feature) and its share of the true-colour thumbnail."""
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
    return {"labels": labels, "margin": margin, "stats": stats, "thumbnail": preview}


def store_chunk(
    labelled: dict[str, Any],
    cleaned: Cleaned | None = None,
    *,
    index: tuple[int, int],
    folder: Path,
    pyramid: Pyramid,
    layers: tuple[Layer, ...],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Write one block's tiles and in-chunk overviews as parts and record the chunk; return its
    summary (statistics, thumbnail, tile byte counts per layer and, with ``cleaned``, what the
    cleanup changed) and the decimated arrays for the tree. ``cleaned``: the cleaned labels go
    into the labels layer, the labels as classified into the raw layer."""
    summary: dict[str, Any] = {"stats": labelled["stats"], "thumbnail": labelled["thumbnail"]}
    arrays = {LABELS.name: labelled["labels"], MARGIN.name: labelled["margin"]}
    if cleaned is not None:
        arrays.update({LABELS.name: cleaned.labels, RAW.name: labelled["labels"]})
        summary["cleanup"] = _cleanup_summary(cleaned, labelled["stats"][:, 0])
    ups = {}
    for layer in layers:
        summary[layer.name], up = write_levels(folder, layer, pyramid, (0, *index), arrays[layer.name])
        if up is not None:
            ups[layer.name] = up
    save_record(record_path(folder, index), summary, ups)
    return summary, ups


def _cleanup_summary(cleaned: Cleaned, before: np.ndarray) -> np.ndarray:
    """(4, k + 1) per class: pixels after the cleanup (from those ``before`` it), pixels the
    majority filter and the sieve changed (by the class they had before), and in column 0 of
    the last row, patches removed."""
    removed = np.zeros(len(before), dtype=np.int64)
    removed[0] = cleaned.patches_removed
    return np.stack([cleaned.pixels(before.astype(np.int64)), cleaned.majority_changed, cleaned.sieve_changed, removed]).astype(np.int64)


def write_chunks(
    blocks: Blocks, model: Model, folder: Path, pyramid: Pyramid, *, parts_done: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, Sizes]:
    """One streaming pass: every block into the COG's tiles (chunks finished by an earlier run
    are read from their records), then the tree of coarse levels; return the class statistics,
    what the cleanup changed (``_cleanup_summary`` summed; None without it), a (3, y, x)
    true-colour thumbnail (None without the imagery) and every node's tile byte counts.

    A large mosaic is written one subtree of the tree at a time (``batch_depth``: 256 to 16,384
    chunks), a graph each, then the levels above them: a graph and dask's state for it cost
    ~17 kB per chunk on the client, 8 GB for Texas in one graph. The bytes are the same (the
    halo's neighbours across a batch's edge are labelled again). ``parts_done(batches done,
    batches)`` is called before each batch's computation and the top graph's."""
    cleanup = blocks.cleanup.to_json() if blocks.cleaning else None
    name = f"{CHUNK_TASK}-{tokenize(*(a.name for a in blocks.inputs), str(folder), blocks.layers, blocks.labelled, cleanup)}"
    step = thumbnail_step(*blocks.grid.shape)
    depth = min(batch_depth(task_slots(), halo=blocks.cleaning), pyramid.depths().stop - 1)  # at the root's depth, one batch
    inputs = HighLevelGraph.merge(*(a.__dask_graph__() for a in blocks.inputs))
    preview = None if blocks.pixels is None else _empty_thumbnail(blocks.grid.shape, step)
    sizes: Sizes = {layer.name: {} for layer in blocks.layers}
    stats, cleaned, roots = [], [], {}
    batches = pyramid.nodes(depth)
    for n, root in enumerate(batches, 1):
        if parts_done is not None:
            parts_done(n - 1, len(batches))
        if len(batches) > 1:
            log.debug("label and write: batch %d of %d", n, len(batches))  # the stage's bar shows it
        summaries, node_sizes, roots[root] = _write_batch(blocks, model, folder, pyramid, name, step, inputs, root)
        for (i, j), chunk in summaries.items():
            for layer in blocks.layers:
                sizes[layer.name][0, i, j] = chunk[layer.name]
            if preview is not None:
                _paste_thumbnail(preview, (i, j), chunk["thumbnail"], pyramid.chunk, step)
        _add_node_sizes(sizes, node_sizes)
        stats.append(np.sum([chunk["stats"] for chunk in summaries.values()], axis=0))
        if blocks.cleaning:
            cleaned.append(np.sum([chunk["cleanup"] for chunk in summaries.values()], axis=0))
    if len(roots) > 1:  # the levels above the batches, from their roots' decimated arrays
        if parts_done is not None:
            parts_done(len(batches), len(batches))
        name = f"{name}-top"
        leaves = {root: (f"batch-{name}", *root) for root in roots}
        graph, tree_sizes = tree(pyramid, blocks.layers, folder, leaves, name)
        graph.update({key: (partial(_given, roots[root]),) for root, key in leaves.items()})
        graph[name] = (list, list(tree_sizes.values()))
        _add_node_sizes(sizes, dict(zip(tree_sizes, Delayed(name, graph).compute())))
    return np.sum(stats, axis=0), np.sum(cleaned, axis=0) if blocks.cleaning else None, preview, sizes


def batch_depth(threads: int, *, halo: bool = False) -> int:
    """The tree depth whose subtrees are the label pass's batches: ``BATCH_PER_THREAD`` chunks a
    thread at least, within ``BATCH_DEPTHS`` (from ``HALO_BATCH_DEPTH`` with the cleanup's halo).
    Small batches read nearby chunks together: on the rehearsal's 5,120 tiles, batches of 256
    chunks peaked at 0.86-0.90 GB against 0.92-1.07 GB in one graph."""
    depths = range(max(BATCH_DEPTHS.start, HALO_BATCH_DEPTH) if halo else BATCH_DEPTHS.start, BATCH_DEPTHS.stop)
    return next((depth for depth in depths if 4**depth >= BATCH_PER_THREAD * threads), depths[-1])


def _write_batch(
    blocks: Blocks, model: Model, folder: Path, pyramid: Pyramid, name: str, step: int, inputs: HighLevelGraph, root: Node
) -> tuple[dict[tuple[int, int], dict[str, Any]], dict[Node, Any], Any]:
    """The chunks under ``root`` and its subtree in one graph: each chunk's summary, each node's
    byte counts, and the root's result (its byte counts or summary, and its decimated arrays)."""
    depth, row, col = root
    name = f"{name}-{depth}-{row}-{col}"  # keys of their own: a cluster may still hold the last batch's
    batch = [(i, j) for _, i, j in pyramid.nodes(0, under=root)]
    graph, chunks = _chunk_tasks(blocks, model, folder, pyramid, name, step, batch)
    nodes, tree_sizes = tree(pyramid, blocks.layers, folder, {(0, *chunk): key for chunk, key in chunks.items()}, name, under=root)
    graph.update(nodes)
    names = {a.name for a in blocks.inputs}
    graph.update(inputs.cull({key for task in graph.values() for key in _input_keys(task, names)}))
    releases = [key for key in graph if key[0] == f"release-{name}"]
    top = (f"merge-{name}", *root) if depth else chunks[root[1:]]
    graph[name] = (tuple, [[(f"summary-{name}", *chunk) for chunk in batch], list(tree_sizes.values()), releases, top])
    summaries, node_sizes, _, result = Delayed(name, graph).compute()
    return dict(zip(batch, summaries)), dict(zip(tree_sizes, node_sizes)), result


def _input_keys(task: Any, names: set[str]) -> list[tuple]:
    """The keys of blocks of the input arrays (``names``) a chunk task names."""
    return [arg for arg in task[1:] if isinstance(arg, tuple) and arg and arg[0] in names] if isinstance(task, tuple) else []


def _given(value: Any) -> Any:
    return value


def _add_node_sizes(sizes: Sizes, node_sizes: dict[Node, dict[str, list[list[int]]]]) -> None:
    for node, per_layer in node_sizes.items():
        for layer, counts in per_layer.items():
            sizes[layer][node] = counts


def _chunk_tasks(
    blocks: Blocks, model: Model, folder: Path, pyramid: Pyramid, name: str, step: int, batch: list[tuple[int, int]]
) -> tuple[dict, dict[tuple[int, int], tuple]]:
    """The chunk tasks as a plain graph: building a dask.delayed call costs ~0.5 ms, and a state
    has ~10^5 chunks. A chunk whose record exists is loaded, neither read nor labelled (with the
    cleanup, unless an unfinished neighbour needs its labels for its halo)."""
    rgb = list(rgb_bands(model.band_names))
    labeller = (model.centroids, blocks.with_margin) if blocks.labelled else None
    side = pyramid.chunk
    unfinished = {chunk for chunk in batch if not record_path(folder, chunk).exists()}
    halo = Halo(blocks.grid.shape, side, blocks.cleanup.halo) if blocks.cleaning else None
    labelled = unfinished if halo is None else {n for chunk in unfinished for n in halo.neighbours(*chunk)}
    graph: dict = {}
    for i, j in labelled:
        label = partial(label_chunk, features=model.features, labeller=labeller, k=model.k, true_colour=(rgb, i * side, j * side, step))
        if halo is not None:
            label = partial(_spilled, label, folder=folder, index=(i, j))
        graph[f"label-{name}", i, j] = (
            label,
            None if blocks.labels is None else (blocks.labels.name, i, j),
            None if blocks.pixels is None else (blocks.pixels.name, 0, i, j),
            None if blocks.margins is None else (blocks.margins.name, i, j),
        )
    if halo is not None:
        keys = {chunk: (f"label-{name}", *chunk) for chunk in labelled}
        cleaners = halo.cleaners(keys, unfinished, cleanup=blocks.cleanup, k=model.k)
        written = {layer.name for layer in blocks.layers}  # the spilled arrays a store reads back
        wanted = tuple(what for layer, what in ((RAW, "labels"), (MARGIN, "margin")) if layer.name in written)
        graph.update(halo.release_tasks(unfinished, labelled, folder=folder, name=name))
    chunks = {}
    for i, j in batch:
        if (i, j) not in unfinished:
            graph[name, i, j] = (load_record, record_path(folder, (i, j)))
        else:
            store = partial(store_chunk, index=(i, j), folder=folder, pyramid=pyramid, layers=blocks.layers)
            if halo is None:
                graph[name, i, j] = (store, (f"label-{name}", i, j))
            else:
                clean, window = cleaners[i, j]
                graph[name, i, j] = (partial(_store_cleaned, store, clean, wanted), (f"label-{name}", i, j), window)
        graph[f"summary-{name}", i, j] = (getitem, (name, i, j), 0)
        chunks[i, j] = (name, i, j)
    return graph, chunks


def _store_cleaned(store: Any, clean: Any, wanted: tuple[str, ...], labelled: dict[str, Any], window: list[list[dict[str, Any]]]) -> Any:
    """Store a spilled chunk: its window cleaned, and the arrays of its own its layers write read back."""
    return store(unspill(labelled, wanted), clean(window))


def _spilled(label: Any, *blocks: np.ndarray | None, folder: Path, index: tuple[int, int]) -> dict[str, Any]:
    return spill(label(*blocks), folder=folder, index=index)


def _empty_thumbnail(shape: tuple[int, int], step: int) -> np.ndarray:
    height, width = shape
    return np.full((3, -(-height // step), -(-width // step)), np.nan, dtype=np.float32)


def _paste_thumbnail(preview: np.ndarray, index: tuple[int, int], part: np.ndarray, side: int, step: int) -> None:
    """A chunk's share of the true-colour thumbnail into its place."""
    top, left = -(-(index[0] * side) // step), -(-(index[1] * side) // step)
    preview[:, top : top + part.shape[1], left : left + part.shape[2]] = part


def finalise(
    layer: Layer,
    destination: Path,
    *,
    grid: Grid,
    pyramid: Pyramid,
    parts: Path,
    sizes: Sizes,
    timings: dict[str, float],
    **band: Any,
) -> None:
    """The client writes the header for the parts' tiles, tasks place the parts behind it
    (timed as "place"), the client validates the COG."""
    template = destination.with_name(f"{layer.name}.template.tif")
    write_template(template, layer=layer, crs=grid.crs, transform=grid.transform, **band)
    placements = write_header(destination, layer=layer, pyramid=pyramid, sizes=sizes[layer.name], template=template)
    start = time.perf_counter()
    place_parts(destination, folder=parts, layer=layer, pyramid=pyramid, placements=placements)
    timings["place"] = timings.get("place", 0.0) + time.perf_counter() - start  # workers' share
    from rio_cogeo.cogeo import cog_validate  # imports morecantile: at the end, not at start-up

    valid, errors, _ = cog_validate(str(destination), quiet=True)
    if not valid:
        raise OutputError(f"{destination}: the COG written is invalid ({'; '.join(errors)}); please report this")
