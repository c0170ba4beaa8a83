"""Real GeoTIFFs for tests, written with rasterio, with planted spectral classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

from pipeline.algo.kernel import label_block

CRS = "EPSG:32614"
ORIGIN = (500_000.0, 5_200_000.0)
RESOLUTION = 2.0


def planted_classes(height: int, width: int, k: int, *, seed: int, patch: int = 37) -> np.ndarray:
    """A (height, width) truth map of classes 0..k-1 in square patches that straddle chunk borders."""
    rng = np.random.default_rng(seed)
    rows, cols = -(-height // patch), -(-width // patch)
    # Every class appears at least once, the rest at random.
    cells = np.concatenate([np.arange(k), rng.integers(0, k, rows * cols - k)])
    rng.shuffle(cells)
    grid = cells.reshape(rows, cols)
    return np.kron(grid, np.ones((patch, patch), dtype=grid.dtype))[:height, :width]


def class_centres(k: int, bands: int, *, low: float, high: float, seed: int) -> np.ndarray:
    """k well-separated (k, bands) centres between low and high."""
    rng = np.random.default_rng(seed)
    centres = [rng.uniform(low, high, bands)]
    spread = (high - low) / (2 * k ** (1 / bands))
    while len(centres) < k:
        candidate = rng.uniform(low, high, bands)
        if min(np.linalg.norm(candidate - c) for c in centres) > spread:
            centres.append(candidate)
    return np.array(centres)


def planted_image(truth: np.ndarray, centres: np.ndarray, *, noise: float, dtype: str, seed: int) -> np.ndarray:
    """(band, y, x) pixels around each class centre, in the given dtype."""
    rng = np.random.default_rng(seed)
    image = centres[truth].transpose(2, 0, 1) + rng.normal(0, noise, (centres.shape[1], *truth.shape))
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        image = np.clip(np.rint(image), info.min + 1, info.max)
    return image.astype(dtype)


def write_raster(
    path: Path,
    image: np.ndarray,
    *,
    nodata: float | None = None,
    origin: tuple[float, float] = ORIGIN,
    crs: str | None = CRS,
    alpha: np.ndarray | None = None,
    block: int = 512,
) -> Path:
    """A tiled, DEFLATE GeoTIFF of a (band, y, x) image, with an optional alpha band appended."""
    bands = list(image) + ([alpha.astype(image.dtype)] if alpha is not None else [])
    profile = {
        "driver": "GTiff",
        "height": image.shape[1],
        "width": image.shape[2],
        "count": len(bands),
        "dtype": image.dtype,
        "transform": Affine(RESOLUTION, 0, origin[0], 0, -RESOLUTION, origin[1]),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "DEFLATE",
        # As real NAIP: otherwise GDAL marks band 4 of a 4-band uint8 file as alpha.
        "photometric": "MINISBLACK",
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        if alpha is not None:  # must be set before the pixels are written to stick
            dst.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (image.shape[0] - 1) + [ColorInterp.alpha]
        dst.write(np.stack(bands))
    return path


def read_labels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def assign_labels(block: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The labels of one (band, y, x) float block, as the pipeline computes them."""
    return label_block(block, centroids)[0]
