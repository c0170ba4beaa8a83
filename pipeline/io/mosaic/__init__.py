"""The mosaic: many tiles as one lazy raster (plan: the grid and tile index; read: one window;
array: the dask array and DataArray)."""

from pipeline.io.mosaic.array import (
    MosaicArray,
    open_mosaic,
    to_dask,
    to_xarray,
)
from pipeline.io.mosaic.plan import Mosaic, Tile, TileIndex, WindowRead, plan_mosaic
from pipeline.io.mosaic.read import read, read_window

__all__ = [
    "Mosaic", "MosaicArray", "Tile", "TileIndex", "WindowRead",
    "open_mosaic", "plan_mosaic", "read", "read_window", "to_dask", "to_xarray",
]
