"""Before and after the cleanup: the raw and cleaned labels of a run side by side, and what changed.

    python scripts/cleanup_figure.py out/naip/labels.raw.tif out/naip/labels.tif docs/images/cleanup.png
        [--window ROW COL HEIGHT WIDTH] [--connectivity 8] [--json cleanup.json]

The run must have written ``output.raw: true``. Prints (and with ``--json`` writes) the share of
valid pixels changed, and the number of patches (connected pieces of one class, at the given
connectivity) before and after, over the whole raster; the PNG shows the window (default: a
512 x 768 window at the centre) in the COG's palette, raw on the left.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
from matplotlib.image import imsave
from rasterio.windows import Window
from scipy import ndimage


def patches(labels: np.ndarray, connectivity: int) -> int:
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    return sum(ndimage.label(labels == c, structure=structure)[1] for c in np.unique(labels) if c != 0)


def coloured(labels: np.ndarray, colormap: dict[int, tuple[int, ...]]) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for value, rgba in colormap.items():
        lut[value] = rgba[:3]
    return lut[labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("cleaned", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--window", type=int, nargs=4, metavar=("ROW", "COL", "HEIGHT", "WIDTH"))
    parser.add_argument("--connectivity", type=int, choices=(4, 8), default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with rasterio.open(args.raw) as src:
        raw, colormap = src.read(1), src.colormap(1)
    with rasterio.open(args.cleaned) as src:
        cleaned = src.read(1)
    valid = raw > 0
    summary = {
        "valid_pixels": int(valid.sum()),
        "changed_percent": round(100.0 * float((raw != cleaned)[valid].mean()), 3),
        "patches_before": patches(raw, args.connectivity),
        "patches_after": patches(cleaned, args.connectivity),
        "connectivity": args.connectivity,
    }
    height, width = raw.shape
    row, col, h, w = args.window or ((height - 512) // 2, (width - 768) // 2, 512, 768)
    window = Window(col, row, w, h).toslices()
    gap = np.full((h, 8, 3), 255, dtype=np.uint8)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    imsave(args.png, np.concatenate([coloured(raw[window], colormap), gap, coloured(cleaned[window], colormap)], axis=1))
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
