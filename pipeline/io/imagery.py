"""Any (band, y, x) raster as the stages read it: from rioxarray, odc-stac, stackstac or our mosaic.

The stages (``fit``, ``classify``, ``write_cog``) take an xarray ``DataArray`` (or an odc-stac
``Dataset``). ``as_imagery`` checks it once, at the edge, and turns it into an ``Imagery``: the
caller's array as given (so that slicing a window of it still reads only that window: dask fuses
a slice into rioxarray's and the mosaic's readers), its grid and band names, and how invalid
pixels are marked. ``as_float`` then turns any block of it into float32 with NaN where invalid,
the values every stage computes on, with the rule of the mosaic reader: a pixel is invalid where
any band is NaN or infinite, or where *every* band equals nodata (NAIP water reads 0 in NIR
alone). A time dimension of length 1 (stackstac, odc-stac) is dropped; longer ones are refused.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine

from pipeline.errors import InputError
from pipeline.io.mosaic import Mosaic, to_xarray

BAND_DIMS = ("band", "bands", "variable")
"""Names of the band dimension: rioxarray's, and odc-stac's ``Dataset.to_array()`` default."""
TIME_DIMS = ("time",)
DEFAULT_CHUNK = 2048  # an in-memory array is chunked like the config's default


@dataclass(frozen=True)
class Imagery:
    """A checked (band, y, x) raster and how to read valid pixels out of it."""

    raw: da.Array
    """(band, y, x) in the caller's dtype and chunking: slicing it reads only the slice."""
    band_names: tuple[str, ...]
    bands: tuple[int, ...]
    """1-based band numbers (the band coordinate where it holds them; else 1..n)."""
    crs: str | None
    transform: Affine
    nodata: float | None
    """Where every band equals it, a pixel is invalid (None: only NaN and infinity are)."""
    dtype: str
    """Of the caller's values."""
    dims: tuple[str, str] = ("y", "x")
    """The names of the caller's spatial dimensions."""
    coords: dict[str, xr.Variable] = field(default_factory=dict, compare=False)
    """The caller's coordinates along them (the labels keep them)."""
    mosaic: Mosaic | None = None
    """The mosaic the array reads, when the imagery was made by ``mosaic_imagery``: its tiles'
    footprints tell the sample which windows hold pixels, and its windows are read tile by tile."""

    @property
    def height(self) -> int:
        return int(self.raw.shape[1])

    @property
    def width(self) -> int:
        return int(self.raw.shape[2])

    def covered(self, size: int) -> np.ndarray:
        """(rows, cols) booleans: which ``size``-wide windows may hold valid pixels."""
        if self.mosaic is not None:
            return self.mosaic.covered(size)
        return np.ones((-(-self.height // size), -(-self.width // size)), dtype=bool)

    def data(self) -> da.Array:
        """Lazy float32 (band, y, x), NaN where invalid, one chunk along the bands."""
        raw = self.raw if self.raw.numblocks[0] == 1 else self.raw.rechunk({0: -1})
        if raw.dtype == np.float32 and self.nodata is None and self.mosaic is not None:
            return raw  # the mosaic reader already marks invalid pixels NaN
        return raw.map_blocks(as_float, nodata=self.nodata, dtype=np.float32)


def as_float(block: np.ndarray, *, nodata: float | None) -> np.ndarray:
    """A (band, ...) block as float32 with NaN where the pixel is invalid (see the module docstring)."""
    out = block.astype(np.float32)  # a copy: the caller's block is never written to
    invalid = ~np.isfinite(out).all(axis=0) if block.dtype.kind == "f" else np.zeros(out.shape[1:], dtype=bool)
    if nodata is not None and not math.isnan(nodata):
        invalid |= (block == nodata).all(axis=0)
    if invalid.any():
        out[:, invalid] = np.nan
    return out


def mosaic_imagery(mosaic: Mosaic) -> Imagery:
    """The mosaic as the stages read it: its DataArray, and the mosaic itself (said, never guessed
    from the array), so that the sample knows its tiles' footprints and reads them tile by tile."""
    return dataclasses.replace(as_imagery(to_xarray(mosaic)), mosaic=mosaic)


def as_imagery(data: xr.DataArray | xr.Dataset | Imagery, *, nodata: float | None = None, name: str = "data") -> Imagery:
    """Check ``data`` and describe it for the stages; ``nodata`` overrides the array's own
    (``_FillValue``/``nodata`` attributes, as rioxarray reads them). Errors name ``name``."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    if isinstance(data, Imagery):
        return data if nodata is None else dataclasses.replace(data, nodata=float(nodata))

    if isinstance(data, xr.Dataset):
        data, nodata = _from_dataset(data, nodata, name)
    if not isinstance(data, xr.DataArray):
        raise InputError(
            f"{name}: expected an xarray.DataArray (band, y, x), got {type(data).__name__}; open rasters with "
            "rioxarray.open_rasterio(path, chunks={'band': -1, 'y': 2048, 'x': 2048}, lock=False)"
        )
    data = _squeeze_time(data, name)
    band_dim = _band_dim(data, name)
    try:
        y_dim, x_dim = data.rio.y_dim, data.rio.x_dim
    except Exception as exc:  # rioxarray's MissingSpatialDimensionError and kin
        raise InputError(f"{name}: no spatial dimensions ({exc}); name them y and x, e.g. data.rename({{'lat': 'y', 'lon': 'x'}})") from None
    extra = [d for d in data.dims if d not in (band_dim, y_dim, x_dim)]
    if extra:
        raise InputError(f"{name}: dimension {extra[0]!r} ({data.sizes[extra[0]]}) is not band, y or x; select one, e.g. data.isel({extra[0]}=0)")
    if data.dtype.kind not in "uif":
        raise InputError(f"{name}: dtype {data.dtype} is not a number type; convert it first, e.g. data.astype('float32')")
    if (band_dim, y_dim, x_dim) != data.dims:
        data = data.transpose(band_dim, y_dim, x_dim)
    raw = data.data if isinstance(data.data, da.Array) else da.from_array(data.data, chunks=(-1, DEFAULT_CHUNK, DEFAULT_CHUNK))
    return Imagery(
        raw=raw,
        band_names=_band_names(data, band_dim),
        bands=_band_numbers(data, band_dim),
        crs=None if data.rio.crs is None else data.rio.crs.to_string(),
        transform=data.rio.transform(),
        nodata=_nodata(data, nodata),
        dtype=str(data.dtype),
        dims=(str(y_dim), str(x_dim)),
        coords={str(d): data[d].variable for d in (y_dim, x_dim) if d in data.coords},
    )


def _from_dataset(dataset: xr.Dataset, nodata: float | None, name: str) -> tuple[xr.DataArray, float | None]:
    """odc-stac's ``load`` gives one variable per band: stack them, keeping their common nodata."""
    if not dataset.data_vars:
        raise InputError(f"{name}: the Dataset has no variables; load some bands")
    if nodata is None:
        values = {v.attrs.get("nodata", v.attrs.get("_FillValue")) for v in dataset.data_vars.values()}
        if len(values) > 1:
            raise InputError(f"{name}: the bands have different nodata values {sorted(map(str, values))}; pass nodata=")
        nodata = values.pop()
    return dataset.to_array("band"), nodata


def _squeeze_time(data: xr.DataArray, name: str) -> xr.DataArray:
    for dim in TIME_DIMS:
        if dim in data.dims:
            if data.sizes[dim] != 1:
                raise InputError(
                    f"{name}: {dim} has {data.sizes[dim]} steps; classify one scene at a time "
                    f"(data.isel({dim}=0)) or composite them first (data.median('{dim}'))"
                )
            data = data.isel({dim: 0})  # a slice: reading still reads only what a window needs
    return data


def _band_dim(data: xr.DataArray, name: str) -> str:
    found = [d for d in data.dims if d in BAND_DIMS]
    if found:
        return str(found[0])
    if data.ndim == 2:
        raise InputError(f"{name}: a 2-D array has no band dimension; add one with data.expand_dims('band')")
    raise InputError(f"{name}: dimensions {tuple(data.dims)} have no band dimension ({', '.join(BAND_DIMS)}); rename yours to 'band'")


def _band_names(data: xr.DataArray, band_dim: str) -> tuple[str, ...]:
    """The bands' descriptions (rioxarray's ``long_name``), else string band labels (odc-stac,
    stackstac), else band1, band2, ... as GDAL names undescribed bands."""
    count = data.sizes[band_dim]
    long_name = data.attrs.get("long_name")
    if isinstance(long_name, (tuple, list)) and len(long_name) == count and all(long_name):
        return tuple(str(n) for n in long_name)
    labels = data[band_dim].values if band_dim in data.coords else None
    if labels is not None and labels.dtype.kind in "UO":
        return tuple(str(v) for v in labels)
    return tuple(f"band{b}" for b in _band_numbers(data, band_dim))


def _band_numbers(data: xr.DataArray, band_dim: str) -> tuple[int, ...]:
    labels = data[band_dim].values if band_dim in data.coords else None
    if labels is not None and labels.dtype.kind in "iu":
        return tuple(int(v) for v in labels)
    return tuple(range(1, data.sizes[band_dim] + 1))


def _nodata(data: xr.DataArray, nodata: float | None) -> float | None:
    if nodata is not None:
        return float(nodata)
    if data.rio.encoded_nodata is not None:  # opened with masked=True: invalid pixels are NaN already
        return None
    value = data.rio.nodata
    return None if value is None or math.isnan(float(value)) else float(value)
