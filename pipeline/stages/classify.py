"""The classify stage: the labelling kernel (``algo/kernel.py``) mapped lazily over any (band, y, x)
raster with a fitted model, block by block; nothing is read until the result is computed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from pipeline.algo.kernel import label_block
from pipeline.algo.model import match_bands
from pipeline.io.imagery import Imagery, as_imagery

if TYPE_CHECKING:
    from pipeline.algo.features import Features
    from pipeline.algo.model import Model


def labels_of(block: np.ndarray, *, features: Features, centroids: np.ndarray) -> np.ndarray:
    """A float32 (band, y, x) block of input bands (NaN = invalid) → uint8 (y, x) labels."""
    return label_block(features.apply(block), centroids)[0]


def margin_of(block: np.ndarray, *, features: Features, centroids: np.ndarray) -> np.ndarray:
    """A float32 (band, y, x) block → the float32 (y, x) margin of ``label_block``."""
    return label_block(features.apply(block), centroids, with_margin=True)[2]


def classify(data: xr.DataArray | xr.Dataset, model: Model, *, nodata: float | None = None) -> xr.DataArray:
    """Lazy uint8 (y, x) labels of ``data`` by ``model``: classes 1..k, 0 where a pixel is
    invalid; the array's CRS, transform and coordinates are kept. Nothing is read until the
    labels are computed or written."""
    return _lazy(data, model, labels_of, np.uint8, nodata=nodata, fill=0, name="labels")


def confidence(data: xr.DataArray | xr.Dataset, model: Model, *, nodata: float | None = None) -> xr.DataArray:
    """Lazy float32 (y, x) margin of every pixel: distance to the second-nearest centroid minus
    distance to the nearest, in feature units (small = doubtful); NaN where the label is 0."""
    return _lazy(data, model, margin_of, np.float32, nodata=nodata, fill=np.nan, name="confidence")


def _lazy(data, model: Model, kernel, dtype, *, nodata: float | None, fill: float, name: str) -> xr.DataArray:
    imagery = matching_imagery(as_imagery(data, nodata=nodata), model)
    pixels = imagery.data()
    blocks = pixels.map_blocks(
        kernel, features=model.features, centroids=model.centroids, drop_axis=0, dtype=dtype, token=name
    )
    labels = xr.DataArray(blocks, dims=imagery.dims, coords=imagery.coords, name=name)
    labels = labels.rio.write_transform(imagery.transform).rio.write_nodata(fill)
    return labels if imagery.crs is None else labels.rio.write_crs(imagery.crs)


def matching_imagery(imagery: Imagery, model: Model) -> Imagery:
    """The imagery, if it has the model's bands in the model's order; else one line naming what differs."""
    match_bands(imagery.band_names, imagery.bands, model, subject="data", fix="give the bands the model was fitted on, in its order")
    return imagery
