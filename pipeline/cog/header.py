"""On the client: the COG's header (one IFD per level) from the parts' byte counts, and where each
part goes in the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from pipeline.cog import tiff
from pipeline.cog.pyramid import TILE, Layer, Node, Pyramid


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
