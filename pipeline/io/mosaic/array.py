"""The mosaic as a lazy float32 (band, y, x) dask array and DataArray, and opening one.

The dask array holds the tiles in one graph key (``MosaicArray``, sent once to each worker); its
tasks name that key and a window, so no task grows with the number of tiles.
"""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
import xarray as xr
from rasterio.windows import Window

from pipeline.io.mosaic.plan import Mosaic, plan_mosaic
from pipeline.io.mosaic.read import read
from pipeline.io.sources import expand_paths, left_in, read_headers
from pipeline.io.spec import InputSpec


class MosaicArray:
    """The mosaic as an array for ``dask.array.from_array``: indexing reads that window of it."""

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, mosaic: Mosaic) -> None:
        self.mosaic = mosaic
        self.shape = (len(mosaic.bands), mosaic.height, mosaic.width)

    def __reduce__(self):
        # Without the mosaic's cached tile index: each worker process builds its own once.
        return MosaicArray, (dataclasses.replace(self.mosaic),)

    def __getitem__(self, key) -> np.ndarray:
        """``mosaic[key]`` as numpy indexes it: the bounding window is read, then indexed."""
        key = key + (slice(None),) * (3 - len(key)) if isinstance(key, tuple) else (key, slice(None), slice(None))
        rows, cols = (np.atleast_1d(np.arange(n)[k]) for n, k in zip(self.shape[1:], key[1:]))
        if rows.size == 0 or cols.size == 0:  # nothing to read: only the shape of the result
            return np.broadcast_to(np.float32(np.nan), self.shape)[key].copy()
        top, left = int(rows.min()), int(cols.min())
        window = Window(left, top, int(cols.max()) - left + 1, int(rows.max()) - top + 1)
        return read(self.mosaic.plan(window))[key[0], _shifted(key[1], top, self.shape[1]), _shifted(key[2], left, self.shape[2])]


def _shifted(index, offset: int, length: int):
    """An index along one axis of the mosaic, made relative to a window starting at ``offset``."""
    if isinstance(index, slice):
        start, stop, step = index.indices(length)
        return slice(start - offset, None if stop - offset < 0 else stop - offset, step)
    return np.asarray(index) % length - offset


def to_dask(mosaic: Mosaic) -> da.Array:
    """Lazy float32 (band, y, x) array; NaN marks invalid pixels. A slice of it reads only
    the slice (dask fuses slicing into the reader), through the tile index."""
    return da.from_array(
        MosaicArray(mosaic),
        chunks=mosaic.chunks,
        name=f"read-mosaic-{mosaic.token}",
        asarray=False,
        meta=np.empty((0, 0, 0), dtype=np.float32),
        inline_array=False,  # one graph key holds the tiles; tasks name it, never copy it
    )


def to_xarray(mosaic: Mosaic) -> xr.DataArray:
    """The mosaic with coordinates, CRS and band names (rioxarray's conventions), as the
    stages and Python users read it."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    xs = mosaic.transform.c + mosaic.transform.a * (np.arange(mosaic.width) + 0.5)
    ys = mosaic.transform.f + mosaic.transform.e * (np.arange(mosaic.height) + 0.5)
    array = xr.DataArray(
        to_dask(mosaic),
        dims=("band", "y", "x"),
        coords={"band": list(mosaic.bands), "y": ys, "x": xs},
        attrs={"long_name": mosaic.band_names},
    )
    return array.rio.write_crs(mosaic.crs).rio.write_transform(mosaic.transform).rio.write_nodata(np.nan)


def open_mosaic(spec: InputSpec, *, chunk: int) -> Mosaic:
    """Read the header of every input file (or of the STAC search's items) and plan the mosaic;
    no pixel is read."""
    if spec.stac is not None:
        # pystac is imported only for STAC inputs
        from pipeline.io.stac import headers_from_stac

        headers = headers_from_stac(spec)
    else:
        paths = expand_paths(spec.paths)
        headers = read_headers([paths[n] for n in left_in(paths, spec.exclude)], spec)
    return plan_mosaic(headers, spec, chunk=chunk)
