"""Render one level of a labels COG as a PNG in the COG's palette, e.g. to put the NEAREST and the
MODE overviews (``output.overviews: nearest | mode``) side by side at the scale a map shows them.

    python scripts/overview_views.py LABELS.tif OUT.png --level 2
    python scripts/overview_views.py LABELS.tif OUT.png --scale 1:100000 [--pixel-mm 0.28]

``--level`` 0 is full resolution, N the N-th overview (GDAL's OVERVIEW_LEVEL=N-1). ``--scale``
picks the level whose pixel is nearest to scale x screen pixel (0.28 mm, the OGC standard
rendering pixel: 1:100000 -> 28 m). Nodata (and classes without a colour) are transparent. Prints
the level, its decimation factor and pixel size. No library code depends on this script.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image


def pixel_metres(src) -> float:
    """The full-resolution pixel's side in metres (degrees taken at the raster's centre latitude)."""
    res = abs(src.res[0])
    if src.crs is not None and src.crs.is_geographic:
        lat = math.radians((src.bounds.top + src.bounds.bottom) / 2)
        return res * 111_320 * math.sqrt(abs(math.cos(lat)))  # geometric mean of the x and y metres
    if src.crs is not None:
        return res * src.crs.linear_units_factor[1]
    return res


def parse_scale(text: str) -> float:
    denominator = text.split(":", 1)[1] if ":" in text else text
    return float(denominator.replace(",", "").replace("_", ""))


def choose_level(factors: list[int], pixel: float, target: float) -> int:
    """The level (0 = full resolution) whose pixel is nearest to ``target`` metres."""
    sizes = [pixel * f for f in factors]
    return min(range(len(sizes)), key=lambda i: abs(sizes[i] - target))


def lookup_table(src) -> np.ndarray:
    """256 x RGBA from the band's colormap; grey levels if it has none. Nodata is transparent."""
    table = np.zeros((256, 4), dtype=np.uint8)
    try:
        for value, rgba in src.colormap(1).items():
            table[value] = rgba
    except ValueError:
        print("warning: no colormap; grey levels", file=sys.stderr)
        table[:, :3] = np.arange(256)[:, None]
        table[:, 3] = 255
    if src.nodata is not None and 0 <= src.nodata <= 255:
        table[int(src.nodata), 3] = 0
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cog", type=Path, help="a labels COG (uint8, one band)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--level", type=int, help="0 = full resolution, N = the N-th overview")
    which.add_argument("--scale", type=parse_scale, help="map scale, e.g. 1:100000")
    parser.add_argument("--pixel-mm", type=float, default=0.28, help="the screen's pixel in mm (default 0.28)")
    args = parser.parse_args(argv)

    with rasterio.open(args.cog) as src:
        factors = [1, *src.overviews(1)]
        pixel = pixel_metres(src)
        table = lookup_table(src)
    if args.scale is not None:
        target = args.scale * args.pixel_mm / 1000
        level = choose_level(factors, pixel, target)
        print(f"1:{args.scale:g} at {args.pixel_mm} mm = {target:g} m per screen pixel")
    else:
        level = args.level
        if not 0 <= level < len(factors):
            parser.error(f"--level {level}: the COG has levels 0..{len(factors) - 1} (factors {factors})")
    options = {"OVERVIEW_LEVEL": level - 1} if level > 0 else {}
    with rasterio.open(args.cog, **options) as src:
        labels = src.read(1)
    if labels.dtype != np.uint8:
        sys.exit(f"error: {args.cog} is {labels.dtype}, not uint8 labels")
    Image.fromarray(table[labels], "RGBA").save(args.out)
    print(f"level {level}: factor {factors[level]}, {pixel * factors[level]:g} m pixels, "
          f"{labels.shape[1]} x {labels.shape[0]} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
