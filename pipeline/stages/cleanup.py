"""The cleanup from Python: ``majority(labels, 3)`` and ``sieve(labels, 16, 8)`` on lazy (y, x)
label DataArrays, each a dask ``map_overlap`` of ``algo/cleanup.py`` with the halo its rule needs,
so the result does not depend on the labels' chunks. ``landcover run`` does both in its write
pass instead (``write_classified`` with ``model.postprocess``), with the same result."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from pipeline.algo.cleanup import Cleanup, clean_window
from pipeline.config import PostprocessConfig, parse_config
from pipeline.errors import InputError
from pipeline.runtime.memory import give_back_freed

MAX_CLASS = 255


def majority(labels: xr.DataArray, size: int) -> xr.DataArray:
    """Each valid pixel takes the most frequent valid class of the ``size`` x ``size`` window
    centred on it (ties: its own class if tied, else the smallest); 0 (nodata) never votes."""
    return _cleaned(labels, {"majority": size}, "majority")


def sieve(labels: xr.DataArray, min_pixels: int, connectivity: int = 4) -> xr.DataArray:
    """Patches of fewer than ``min_pixels`` pixels that touch another class take the class of
    their largest neighbouring patch (see ``algo/cleanup.py`` for the exact rule)."""
    return _cleaned(labels, {"sieve": min_pixels, "connectivity": connectivity}, "sieve")


def _cleaned(labels: xr.DataArray, keys: dict[str, int], name: str) -> xr.DataArray:
    if not isinstance(labels, xr.DataArray) or labels.ndim != 2 or labels.dtype != np.uint8:
        got = f"{labels.dtype} {labels.dims}" if isinstance(labels, xr.DataArray) else type(labels).__name__
        raise InputError(f"{name}: expected the uint8 (y, x) labels DataArray pipeline.classify returns, got {got}")
    config = parse_config(keys, source=name, schema=PostprocessConfig)
    if isinstance(config.sieve, str):
        raise InputError(f"{name}: give min_pixels as a number of pixels (areas are converted by landcover run)")
    cleanup = Cleanup(majority=config.majority, sieve=config.sieve, connectivity=config.connectivity)
    if not cleanup.active:
        return labels
    data = labels.data if isinstance(labels.data, da.Array) else da.from_array(labels.data, chunks=2048)
    halo = cleanup.halo
    chunks = tuple(_at_least(c, halo) for c in data.chunks)
    data = data.rechunk(chunks) if chunks != data.chunks else data
    starts = tuple(tuple(np.cumsum((0, *c[:-1])).tolist()) for c in data.chunks)
    cleaned = data.map_overlap(
        _clean_block, depth=halo, boundary="none", trim=True, dtype=np.uint8, cleanup=cleanup, starts=starts, sizes=data.chunks
    )
    return labels.copy(data=cleaned.rechunk(labels.data.chunks) if isinstance(labels.data, da.Array) else cleaned)


def _at_least(chunks: tuple[int, ...], halo: int) -> tuple[int, ...]:
    """Chunks along one axis, each at least ``halo`` wide (or the whole axis): map_overlap would
    rechunk them otherwise, and the blocks' places in the raster are counted from these."""
    if min(chunks) >= halo:
        return chunks
    side, total = max(halo, max(chunks)), sum(chunks)
    full, rest = divmod(total, side)
    if full == 0:
        return (total,)
    return (side,) * (full - 1) + ((side + rest,) if rest < halo else (side, rest))


def _clean_block(
    window: np.ndarray, block_id: tuple[int, int], *, cleanup: Cleanup, starts: tuple[tuple[int, ...], ...], sizes: tuple[tuple[int, ...], ...]
) -> np.ndarray:
    # The window starts a halo before its chunk, or at the raster's edge; only the chunk is
    # cleaned (the result is exact there), and map_overlap keeps only the chunk of what we return.
    place = tuple(max(0, axis[index] - cleanup.halo) for axis, index in zip(starts, block_id))
    core = tuple(slice(axis[index] - at, axis[index] - at + size[index]) for axis, size, index, at in zip(starts, sizes, block_id, place))
    out = window.copy()
    out[core] = clean_window(window, cleanup, core=core, k=MAX_CLASS, place=place).labels
    give_back_freed()  # the window's temporaries, as the write pass does (runtime/memory.py)
    return out
