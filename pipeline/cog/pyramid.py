"""The COG's levels over a chunked mosaic, and which task writes which: pure geometry."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from affine import Affine

TILE = 512


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
    resampling: Literal["nearest", "mode", "average"]
    """How each overview level is made from the one before (``encode.halve``)."""


def linear_unit_metres(crs: str) -> float | None:
    """Metres per CRS unit, or None for a geographic CRS (pixel area is not constant)."""
    from rasterio.crs import CRS

    parsed = CRS.from_user_input(crs)
    if parsed.is_geographic:
        return None
    return float(parsed.linear_units_factor[1])


LABELS = Layer("labels", "uint8", 0, "nearest")


LABELS_MODE = Layer("labels", "uint8", 0, "mode")
"""The labels with 2 x 2 MODE overviews (``output.overviews: mode``); the same part files' prefix."""


RAW = Layer("raw", "uint8", 0, "nearest")
"""The labels before the cleanup (``output.raw``), written as ``<stem>.raw.tif``."""


MARGIN = Layer("confidence", "float32", float("nan"), "average")


@dataclass(frozen=True)
class Grid:
    """Where a raster sits on the map: what the COG header and the parts' fingerprint record."""

    crs: str
    transform: Affine
    height: int
    width: int

    @property
    def pixel_area(self) -> float:
        """In the CRS's units squared."""
        return abs(self.transform.a * self.transform.e)

    @property
    def pixel_area_m2(self) -> float | None:
        """In square metres; None in a geographic CRS, where a pixel has no fixed area."""
        metres = linear_unit_metres(self.crs)
        return None if metres is None else self.pixel_area * metres**2

    def to_json(self) -> dict[str, Any]:
        return {
            "crs": self.crs, "transform": list(self.transform)[:6], "height": self.height, "width": self.width,
            "pixel_area": self.pixel_area,
        }


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

    def nodes(self, depth: int, under: Node | None = None) -> list[Node]:
        """The nodes of ``depth``, row-major; ``under``: only those in that node's subtree (the
        node itself at its own depth), found without visiting the others."""
        rows, cols = self.grid(depth)
        if under is None:
            return [(depth, i, j) for i in range(rows) for j in range(cols)]
        shift = under[0] - depth
        if shift < 0:
            return []
        below = (range(under[1] << shift, min(rows, (under[1] + 1) << shift)), range(under[2] << shift, min(cols, (under[2] + 1) << shift)))
        return [(depth, i, j) for i in below[0] for j in below[1]]

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
