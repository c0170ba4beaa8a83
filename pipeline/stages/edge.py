"""The config's sections as the core's frozen types: converted here, once, at the stages' edge.

Below the stages nothing imports the config: readers take an ``InputSpec``, the scheduler a
``Scheduler``, the kernels a ``Features``.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from pipeline.algo.cleanup import Cleanup
from pipeline.algo.features import Features, Index, band_named, ndvi_bands
from pipeline.config import (
    DaskConfig,
    FeaturesConfig,
    InputConfig,
    PostprocessConfig,
    parse_config,
)
from pipeline.errors import ConfigError
from pipeline.io.access import access_of
from pipeline.io.mosaic import open_mosaic, to_xarray
from pipeline.io.spec import InputSpec, StacQuery
from pipeline.runtime.scheduler import Scheduler


def input_spec(config: InputConfig) -> InputSpec:
    stac = None if config.stac is None else StacQuery(**dict(config.stac))
    remote = None if config.remote is None else config.remote.model_dump()
    values = {key: value for key, value in dict(config).items() if key != "remote"}
    return InputSpec(**{**values, "stac": stac}, access=access_of(remote, sign="none" if stac is None else stac.sign))


def scheduler(config: DaskConfig) -> Scheduler:
    return Scheduler(
        name=config.scheduler,
        chosen="scheduler" in config.model_fields_set,
        workers=config.workers,
        threads_per_worker=config.threads_per_worker,
        memory_limit=config.memory_limit,
    )


def features_of(config: FeaturesConfig, band_names: tuple[str, ...]) -> Features:
    """The features a config asks for, with band names resolved (ignoring case) against the input's."""
    bands = band_names if config.bands is None else tuple(band_named(name, band_names, "features.bands") for name in config.bands)
    indices = []
    for n, entry in enumerate(config.indices):
        if entry == "ndvi":
            red, nir = ndvi_bands(band_names, "features.indices: ndvi")
            indices.append(Index("ndvi", band_names[nir], band_names[red]))
        else:
            key = f"features.indices[{n}] ({entry.name})"
            indices.append(Index(entry.name, band_named(entry.a, band_names, key), band_named(entry.b, band_names, key)))
    return Features(band_names=band_names, bands=bands, indices=tuple(indices), scaling=config.scaling)


def cleanup_of(config: PostprocessConfig, *, pixel_area_m2: float | None, chunk: int, key: str = "postprocess") -> Cleanup | None:
    """The cleanup a ``postprocess`` section asks for (an area in pixels of the grid), or None
    when it asks for none; refused when its halo does not fit in a chunk."""
    try:
        sieve = config.sieve_pixels(pixel_area_m2)
    except ValueError as exc:
        raise ConfigError(f"{key}.sieve: {exc}") from None
    cleanup = Cleanup(majority=config.majority, sieve=sieve, connectivity=config.connectivity)
    if not cleanup.active:
        return None
    if cleanup.halo > chunk:
        unit = f" ({config.sieve} is {sieve} pixels here)" if isinstance(config.sieve, str) else ""
        raise ConfigError(
            f"{key}.sieve: an exact cleanup needs {cleanup.halo} pixels of context around each chunk{unit}, more than "
            f"dask.chunk ({chunk}); raise dask.chunk to {-(-cleanup.halo // 512) * 512} or more, or lower {key}.sieve"
        )
    return cleanup


def open_imagery(paths: str | list[str] | tuple[str, ...], *, chunk: int = 2048, **options: Any) -> xr.DataArray:
    """Files, globs, a .vrt or URLs as one lazy float32 (band, y, x) DataArray (NaN = invalid),
    as ``landcover run`` reads them; ``options`` are the config's other ``input`` keys (``crs``,
    ``nodata``, ``alpha``, ``band_names``, ...), checked as the config checks them."""
    config = parse_config({"paths": paths, **options}, source="open_imagery", schema=InputConfig)
    return to_xarray(open_mosaic(input_spec(config), chunk=chunk))
