"""The write's one streaming pass: every block into the COG's tiles, then its header and placement.

Each chunk task cuts its block into the COG's tiles and in-chunk overviews (``cog/encode.py``)
and, given the imagery too, sums its pixels per class for the report and keeps every n-th pixel
for the report's true-colour view, reading each block once. Labels are either given (a dask
array of them) or computed in the task from the imagery's block (``Blocks.labelled``), in the
kernel's pass that also sums the features per class: the same bytes, one task per block. A
chunk's record in the parts folder means it is finished; a resumed write reads it instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from operator import getitem
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
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
from pipeline.products.html import thumbnail, thumbnail_step
from pipeline.products.parts import load_record, record_path, save_record

Sizes = dict[str, dict[Node, list[list[int]]]]
"""Per layer, every node's tile byte counts per level."""


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

    @property
    def labelled(self) -> bool:
        return self.labels is None

    @property
    def grid(self) -> da.Array:
        """An array on the chunks' grid (y, x chunks; its name stands for the labels)."""
        return self.labels if self.labels is not None else self.pixels[0]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (LABELS, MARGIN) if self.with_margin else (LABELS,)

    @property
    def inputs(self) -> list[da.Array]:
        return [a for a in (self.labels, self.pixels, self.margins) if a is not None]

    @property
    def name(self) -> str:
        """What the labels are made of, for a fingerprint without input files."""
        return self.labels.name if self.labels is not None else f"classified-{self.pixels.name}"


def write_chunk(
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


def write_chunks(
    blocks: Blocks, model: Model, folder: Path, pyramid: Pyramid
) -> tuple[np.ndarray, np.ndarray | None, Sizes]:
    """One streaming pass: every block into the COG's tiles (chunks finished by an earlier run
    are read from their records), then the tree of coarse levels; return the class statistics,
    a (3, y, x) true-colour thumbnail (None without the imagery) and every node's tile byte
    counts."""
    name = f"write_chunk-{tokenize(*(a.name for a in blocks.inputs), str(folder), blocks.layers, blocks.labelled)}"
    step = thumbnail_step(*blocks.grid.shape)
    graph, chunks = _chunk_tasks(blocks, model, folder, pyramid, name, step)
    nodes, tree_sizes = tree(pyramid, blocks.layers, folder, chunks, name)
    graph.update(nodes)
    graph[name] = (tuple, [[(f"summary-{name}", i, j) for i, j in chunks], list(tree_sizes.values())])
    summaries, node_sizes = Delayed(name, HighLevelGraph.from_collections(name, graph, dependencies=blocks.inputs)).compute()
    preview = None if blocks.pixels is None else _gathered_thumbnail(list(chunks), summaries, blocks.grid.shape, pyramid.chunk, step)
    sizes: Sizes = {layer.name: {} for layer in blocks.layers}
    for (i, j), chunk in zip(chunks, summaries):
        for layer in blocks.layers:
            sizes[layer.name][0, i, j] = chunk[layer.name]
    for node, per_layer in zip(tree_sizes, node_sizes):
        for layer in blocks.layers:
            sizes[layer.name][node] = per_layer[layer.name]
    return np.sum([chunk["stats"] for chunk in summaries], axis=0), preview, sizes


def _chunk_tasks(
    blocks: Blocks, model: Model, folder: Path, pyramid: Pyramid, name: str, step: int
) -> tuple[dict, dict[tuple[int, int], tuple]]:
    """The chunk tasks as a plain graph: building a dask.delayed call costs ~0.5 ms, and a state
    has ~10^5 chunks. A chunk whose record exists is loaded, neither read nor labelled."""
    rgb = list(rgb_bands(model.band_names))
    labeller = (model.centroids, blocks.with_margin) if blocks.labelled else None
    rows, cols = blocks.grid.numblocks
    graph: dict = {}
    chunks = {}
    for i in range(rows):
        for j in range(cols):
            record = record_path(folder, (i, j))
            if record.exists():
                graph[name, i, j] = (load_record, record)
            else:
                write = partial(
                    write_chunk, features=model.features, labeller=labeller, k=model.k, index=(i, j), folder=folder,
                    pyramid=pyramid, layers=blocks.layers, true_colour=(rgb, i * pyramid.chunk, j * pyramid.chunk, step),
                )
                graph[name, i, j] = (
                    write,
                    None if blocks.labels is None else (blocks.labels.name, i, j),
                    None if blocks.pixels is None else (blocks.pixels.name, 0, i, j),
                    None if blocks.margins is None else (blocks.margins.name, i, j),
                )
            graph[f"summary-{name}", i, j] = (getitem, (name, i, j), 0)
            chunks[i, j] = (name, i, j)
    return graph, chunks


def _gathered_thumbnail(
    windows: list[tuple[int, int]], summaries: list[dict[str, Any]], shape: tuple[int, int], side: int, step: int
) -> np.ndarray:
    """The chunks' shares of the true-colour thumbnail, as one (3, y, x) array."""
    height, width = shape
    preview = np.full((3, -(-height // step), -(-width // step)), np.nan, dtype=np.float32)
    for (i, j), chunk in zip(windows, summaries):
        part = chunk["thumbnail"]
        top, left = -(-(i * side) // step), -(-(j * side) // step)
        preview[:, top : top + part.shape[1], left : left + part.shape[2]] = part
    return preview


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
    valid, errors, _ = cog_validate(str(destination), quiet=True)
    if not valid:
        raise OutputError(f"{destination}: the COG written is invalid ({'; '.join(errors)}); please report this")
