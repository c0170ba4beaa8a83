"""The COG writer: the label pass writes the COG's own tiles; the client writes only the header.

Each chunk task cuts its layer (labels, or the confidence margin) into the COG's 512 x 512 tiles,
decimates it into the overview levels that fall inside the chunk, compresses every tile and writes
them as one part file per level. Coarser levels come from a quadtree: a node concatenates its
(up to) four children's decimated arrays (256 x 256 for 2048-pixel chunks), writes the tiles of its
level and passes its own decimated array up; the root writes the last levels. No full-resolution
pixel leaves a chunk task. The client then turns byte counts into offsets, writes the header (one
IFD per level, ``tiff``) and tasks copy the parts into place: the file is IFDs, then the levels'
tiles from the smallest overview to full resolution, as a COG reader expects.

Overviews of labels are NEAREST decimations: level l is ``labels[::2**l, ::2**l]``. That costs a
strided copy, never invents a class, and composes exactly (a level decimated again is the next
level), so a chunk's, a node's and the root's arrays give the same bytes as one global pass in any
chunking. MODE built level by level is a mode of modes, not the mode of the 2**l block, and a
numba 2 x 2 MODE took 15 ms of CPU per 2048-pixel chunk for levels 1-2, against 0.6 ms for NEAREST
and 22 ms for compressing the chunk's 21 tiles: not worth it for overviews that are looked at, not
measured. The margin (continuous) is averaged 2 x 2, ignoring NaN, in a fixed order of additions,
so its bytes never depend on where a block was averaged.

DEFLATE is libdeflate's (imagecodecs), level 1: on the benchmark's 600 MP NAIP labels it took
1.6x less CPU than zlib level 1 (276 against 175 MB/s) for 16 % fewer bytes; zlib-ng level 1 was
faster still (480 MB/s) but 63 % larger. GDAL and every TIFF reader decode it as zlib. No
predictor: it hurts label rasters, and PREDICTOR=3 made the NAIP margin larger (2.76 against
2.66 MB).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from operator import getitem
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import dask
import imagecodecs
import numpy as np
import rasterio
from affine import Affine

from . import tiff

TILE = 512
DEFLATE_LEVEL = 1
PLACE_BATCH = 64  # parts copied per task: a few large tasks, not one per tile (odc-geo #206)
Key = tuple  # a dask key: (name, index, ...)
Node = tuple[int, int, int]
"""(depth, row, column): depth 0 is the mosaic's chunk (row, column); depth d groups 2**d x 2**d chunks."""


@dataclass(frozen=True)
class Layer:
    """One COG the label pass writes."""

    name: str
    """Prefix of its part files."""
    dtype: str
    nodata: float
    """Also fills the edge tiles past the mosaic."""
    resampling: Literal["nearest", "average"]
    """How each overview level is made from the one before."""


LABELS = Layer("labels", "uint8", 0, "nearest")
MARGIN = Layer("confidence", "float32", float("nan"), "average")


@dataclass(frozen=True)
class Pyramid:
    """The levels of a COG over a mosaic chunked in ``chunk`` pixels, and which task writes which."""

    height: int
    width: int
    chunk: int

    @cached_property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """(height, width) of full resolution, then of each overview, down to one tile."""
        shapes = [(self.height, self.width)]
        while max(shapes[-1]) > TILE:
            h, w = shapes[-1]
            shapes.append((-(-h // 2), -(-w // 2)))
        return tuple(shapes)

    @property
    def inner(self) -> int:
        """The coarsest level whose tiles each lie inside one chunk (chunk = 512 x 2**inner x odd)."""
        m = self.chunk // TILE
        return min((m & -m).bit_length() - 1, len(self.shapes) - 1)

    def grid(self, depth: int) -> tuple[int, int]:
        side = self.chunk << depth
        return -(-self.height // side), -(-self.width // side)

    def depths(self) -> range:
        """Tree depths with nodes: until a depth writes the last level."""
        depth = 0
        while self.levels((depth, 0, 0)).stop < len(self.shapes):
            depth += 1
        return range(1, depth + 1)

    def levels(self, node: Node) -> range:
        depth = node[0]
        first = 0 if depth == 0 else self.inner + depth
        last = len(self.shapes) - 1 if self.grid(depth) == (1, 1) else self.inner + depth
        return range(first, min(last, len(self.shapes) - 1) + 1)

    def nodes(self, depth: int) -> list[Node]:
        rows, cols = self.grid(depth)
        return [(depth, i, j) for i in range(rows) for j in range(cols)]

    def children(self, node: Node) -> list[list[Node]]:
        """The node's children as rows of columns (for ``np.block``)."""
        depth, i, j = node
        rows, cols = self.grid(depth - 1)
        return [[(depth - 1, r, c) for c in (2 * j, 2 * j + 1) if c < cols] for r in (2 * i, 2 * i + 1) if r < rows]

    def tiles(self, node: Node, level: int) -> tuple[int, int, int, int]:
        """First and end tile row, first and end tile column of the node at ``level``."""
        depth, i, j = node
        side = self.chunk << depth
        h, w = self.shapes[level]
        row0, col0 = (i * side) >> level, (j * side) >> level
        row1 = min(h, -(-min(self.height, (i + 1) * side) // (1 << level)))
        col1 = min(w, -(-min(self.width, (j + 1) * side) // (1 << level)))
        return row0 // TILE, -(-row1 // TILE), col0 // TILE, -(-col1 // TILE)

    def tile_grid(self, level: int) -> tuple[int, int]:
        h, w = self.shapes[level]
        return -(-h // TILE), -(-w // TILE)


# --- on the workers: pure pieces, then the part files --------------------------------------------


def halve(array: np.ndarray, resampling: str) -> np.ndarray:
    """The next overview level of ``array`` (whose origin is on an even pixel)."""
    if resampling == "nearest":
        return np.ascontiguousarray(array[::2, ::2])
    h, w = array.shape
    padded = np.full((h + h % 2, w + w % 2), np.nan, dtype=np.float32)
    padded[:h, :w] = array
    quads = [padded[r::2, c::2] for r in (0, 1) for c in (0, 1)]
    total = np.zeros_like(quads[0])
    count = np.zeros(quads[0].shape, dtype=np.float32)
    for quad in quads:  # one fixed order of additions
        valid = ~np.isnan(quad)
        total += np.where(valid, quad, 0)
        count += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count  # 0 / 0 = NaN where all four are nodata


def tiles_of(array: np.ndarray, layer: Layer) -> list[bytes]:
    """The compressed 512 x 512 tiles of ``array`` (origin on a tile corner), row-major; edge
    tiles are padded with nodata."""
    dtype = np.dtype(layer.dtype).newbyteorder("<")
    out = []
    for r in range(0, array.shape[0], TILE):
        for c in range(0, array.shape[1], TILE):
            tile = array[r : r + TILE, c : c + TILE]
            if tile.shape != (TILE, TILE):
                padded = np.full((TILE, TILE), layer.nodata, dtype=dtype)
                padded[: tile.shape[0], : tile.shape[1]] = tile
                tile = padded
            out.append(imagecodecs.deflate_encode(np.ascontiguousarray(tile, dtype=dtype), level=DEFLATE_LEVEL))
    return out


def part_path(folder: Path, layer: Layer, pyramid: Pyramid, node: Node, level: int) -> Path:
    row, _, col, _ = pyramid.tiles(node, level)
    return folder / f"{layer.name}-{level:02d}-{row:05d}-{col:05d}.tiles"


def write_levels(
    folder: Path, layer: Layer, pyramid: Pyramid, node: Node, array: np.ndarray
) -> tuple[list[list[int]], np.ndarray | None]:
    """Write the node's levels of ``array`` (the node's window at its first level) as part files;
    return the tile byte counts per level and the array the parent needs (None at the top)."""
    levels = pyramid.levels(node)
    sizes = []
    for level in levels:
        if level > levels.start:
            array = halve(array, layer.resampling)
        tiles = tiles_of(array, layer)
        _write_atomically(part_path(folder, layer, pyramid, node, level), b"".join(tiles))
        sizes.append([len(t) for t in tiles])
    up = halve(array, layer.resampling) if levels.stop < len(pyramid.shapes) else None
    return sizes, up


def merge_node(
    folder: Path, layers: Sequence[Layer], pyramid: Pyramid, node: Node, children: list[list[dict[str, np.ndarray]]]
) -> tuple[dict[str, list[list[int]]], dict[str, np.ndarray]]:
    """A tree node: its children's decimated arrays side by side, written as its levels."""
    sizes, ups = {}, {}
    for layer in layers:
        array = np.block([[child[layer.name] for child in row] for row in children])
        sizes[layer.name], up = write_levels(folder, layer, pyramid, node, array)
        if up is not None:
            ups[layer.name] = up
    return sizes, ups


def _write_atomically(path: Path, data: bytes) -> None:
    # A task may run twice (a worker lost mid-write): each attempt writes its own file, renamed.
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def tree(
    pyramid: Pyramid, layers: Sequence[Layer], folder: Path, chunks: dict[tuple[int, int], Key], name: str
) -> tuple[dict, dict[Node, Key]]:
    """The tree's tasks over the chunk tasks ``chunks`` (each returning (summary, decimated
    arrays)), as a plain graph: a dask.delayed call costs ~0.5 ms to build and Iowa has 130,000
    tasks. Returns the graph and the key of each node's byte counts."""
    graph: dict = {}
    results: dict[Node, Key] = {(0, i, j): key for (i, j), key in chunks.items()}
    sizes: dict[Node, Key] = {}
    for depth in pyramid.depths():
        for node in pyramid.nodes(depth):
            ups = []
            for row in pyramid.children(node):
                ups.append([])
                for child in row:
                    graph[(f"up-{name}", *child)] = (getitem, results[child], 1)
                    ups[-1].append((f"up-{name}", *child))
            results[node] = (f"merge-{name}", *node)
            graph[results[node]] = (merge_node, folder, layers, pyramid, node, ups)
            sizes[node] = (f"sizes-{name}", *node)
            graph[sizes[node]] = (getitem, results[node], 0)
    return graph, sizes


# --- on the client: the header, then the parts copied into place --------------------------------


def write_template(
    path: Path,
    *,
    layer: Layer,
    crs: str,
    transform: Affine,
    palette: dict[int, tuple[int, int, int]] | None,
    tags: dict[str, str],
    description: str,
) -> None:
    """A one-pixel GeoTIFF written by GDAL with the COG's georeferencing, nodata, palette, tags
    and band description: the header copies those tags from it."""
    profile = dict(driver="GTiff", height=1, width=1, count=1, dtype=layer.dtype, crs=crs, transform=transform)
    with rasterio.open(path, "w", nodata=layer.nodata, **profile) as dst:
        if palette is not None:
            dst.write_colormap(1, {i: (*palette.get(i, (0, 0, 0)), 0 if i == 0 else 255) for i in range(256)})
        dst.update_tags(**tags)
        dst.set_band_description(1, description)
        dst.write(np.full((1, 1, 1), layer.nodata, dtype=layer.dtype))


Placement = tuple[Node, int, list[tuple[int, int, int]]]
"""A part (node, level) and its runs: (start in the part, offset in the file, length)."""


def layout(
    pyramid: Pyramid, layer: Layer, sizes: dict[Node, list[list[int]]], copied: list[tiff.Tag], *, bigtiff: bool | None = None
) -> tuple[bytes, int, list[Placement]]:
    """The header, the file's length and where each part's tile rows go, from ``sizes`` (per
    node, per level, the byte counts of its tiles). Each level's tiles are stored row-major, so the
    bytes do not depend on the chunking. ``bigtiff`` None = only past classic TIFF's 4 GB."""
    counts = [np.zeros(pyramid.tile_grid(level), dtype=np.int64) for level in range(len(pyramid.shapes))]
    for node, node_sizes in sizes.items():
        for level, level_sizes in zip(pyramid.levels(node), node_sizes):
            r0, r1, c0, c1 = pyramid.tiles(node, level)
            counts[level][r0:r1, c0:c1] = np.reshape(level_sizes, (r1 - r0, c1 - c0))
    data = int(sum(c.sum() for c in counts))
    if bigtiff is None:
        classic = tiff.header_size(_ifds(pyramid, layer, copied, counts, counts, bigtiff=False), bigtiff=False)
        bigtiff = classic + data > tiff.CLASSIC_LIMIT
    cursor = tiff.header_size(_ifds(pyramid, layer, copied, counts, counts, bigtiff=bigtiff), bigtiff=bigtiff)
    offsets = [np.zeros_like(c) for c in counts]
    for level in reversed(range(len(counts))):  # the smallest overview first, full resolution last
        flat = counts[level].ravel()
        offsets[level] = (cursor + np.cumsum(flat) - flat).reshape(counts[level].shape)
        cursor += int(flat.sum())
    placements = []
    for node in sizes:
        for level in pyramid.levels(node):
            r0, r1, c0, c1 = pyramid.tiles(node, level)
            rows = counts[level][r0:r1, c0:c1].sum(axis=1)  # a part's tile rows are runs in the file
            starts = np.cumsum(rows) - rows
            runs = [(int(a), int(offsets[level][r, c0]), int(n)) for a, r, n in zip(starts, range(r0, r1), rows)]
            placements.append((node, level, runs))
    return tiff.header(_ifds(pyramid, layer, copied, offsets, counts, bigtiff=bigtiff), bigtiff=bigtiff), cursor, placements


def write_header(
    destination: Path,
    *,
    layer: Layer,
    pyramid: Pyramid,
    sizes: dict[Node, list[list[int]]],
    template: Path,
    bigtiff: bool | None = None,
) -> list[Placement]:
    """The client's share of the COG: its header, in a file of the COG's full length; returns
    where the parts go (``place_parts``)."""
    header, length, placements = layout(pyramid, layer, sizes, tiff.read_tags(template), bigtiff=bigtiff)
    with open(destination, "wb") as out:
        out.write(header)
        out.truncate(length)
    return placements


def place_parts(destination: Path, *, folder: Path, layer: Layer, pyramid: Pyramid, placements: list[Placement]) -> None:
    """Copy the parts into the COG, in dask tasks of ``PLACE_BATCH`` parts."""
    parts = [(str(part_path(folder, layer, pyramid, node, level)), runs) for node, level, runs in placements]
    batches = [parts[k : k + PLACE_BATCH] for k in range(0, len(parts), PLACE_BATCH)]
    dask.compute(*(dask.delayed(place)(str(destination), batch) for batch in batches))


def place(destination: str, parts: list[tuple[str, list[tuple[int, int, int]]]]) -> None:
    """Copy runs of part files (start in the part, offset in the file, length) into
    ``destination``, which exists at full length."""
    fd = os.open(destination, os.O_WRONLY)
    try:
        for path, runs in parts:
            data = Path(path).read_bytes()
            if len(data) != sum(n for _, _, n in runs):
                raise OSError(f"{path}: {len(data)} bytes, not the {sum(n for _, _, n in runs)} recorded; run again")
            for start, offset, n in runs:
                os.pwrite(fd, data[start : start + n], offset)
    finally:
        os.close(fd)


def _ifds(
    pyramid: Pyramid, layer: Layer, copied: list[tiff.Tag], offsets: list[np.ndarray], counts: list[np.ndarray], *, bigtiff: bool
) -> list[list[tiff.Tag]]:
    dtype = np.dtype(layer.dtype)
    palette = [t for t in copied if t.code == 320]
    index = tiff.LONG8 if bigtiff else tiff.LONG
    ifds = []
    for level, (h, w) in enumerate(pyramid.shapes):
        tags = [
            tiff.tag(256, tiff.LONG, [w]),
            tiff.tag(257, tiff.LONG, [h]),
            tiff.tag(258, tiff.SHORT, [dtype.itemsize * 8]),
            tiff.tag(259, tiff.SHORT, [8]),  # Adobe DEFLATE
            tiff.tag(262, tiff.SHORT, [3 if palette else 1]),  # palette or min-is-black
            tiff.tag(277, tiff.SHORT, [1]),
            tiff.tag(284, tiff.SHORT, [1]),
            tiff.tag(322, tiff.SHORT, [TILE]),
            tiff.tag(323, tiff.SHORT, [TILE]),
            tiff.tag(tiff.TILE_OFFSETS, index, offsets[level].ravel().tolist()),
            tiff.tag(tiff.TILE_BYTE_COUNTS, index, counts[level].ravel().tolist()),
            tiff.tag(339, tiff.SHORT, [3 if dtype.kind == "f" else 1]),
        ]
        if level == 0:
            tags += copied
        else:
            tags += [tiff.tag(254, tiff.LONG, [1]), *palette]  # a reduced-resolution image
        ifds.append(tags)
    return ifds
