"""The client's memory per chunk and per tile, measured, and projected to Iowa and Texas.

    python scripts/memory_model.py [--tiles 'DIR/*.vrt'] [--out benchmark-memory.json]

What a run's client holds besides the libraries (with the threads scheduler, the client is the
run's one process; the workers' blocks and GDAL's caches do not grow with the mosaic):
- per tile: its record in the mosaic (path, grid, CRS) and the tile index;
- per chunk of the batch being written: the label pass's graph and dask's order and state for it
  (``write_chunks`` writes a subtree of 256 to 16,384 chunks per graph, so this is bounded);
- per chunk of the mosaic: its tiles' byte counts, kept for the header, and at the end the
  header's arrays and where each part goes (``cog.layout``).

Each is Python's heap (``tracemalloc``; numpy's arrays included) on the real code: the pass's
graph and dask's state when dask is about to run its first task (on a lazy all-zero mosaic of
2048-pixel chunks, nothing computed), the header from byte counts of a real chunk's tiles. Per
chunk and per tile are slopes between two sizes.
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
from bench_common import REPO
from dask.callbacks import Callback

CHUNK = 2048
K = 7
STATES = {"Iowa": {"tiles": 4_200, "pixels": 0.4e12}, "Texas": {"tiles": 17_000, "pixels": 2.0e12}}
SCENES = REPO.parent / "shared" / "data" / "naip"
MiB = 2**20


def real_block() -> np.ndarray:
    """One 2048-pixel chunk of a real NAIP scene (tiled), float32 as the reader gives it."""
    with rasterio.open(min(SCENES.glob("*.tif"))) as src:
        a = src.read().astype(np.float32)
    reps = (1, -(-CHUNK // a.shape[1]), -(-CHUNK // a.shape[2]))
    return np.tile(a, reps)[:, :CHUNK, :CHUNK].copy()


def fitted(block: np.ndarray):
    import xarray as xr

    from pipeline import fit

    return fit(xr.DataArray(block, dims=("band", "y", "x")), k=K, sample_size=50_000, seed=0)


class _Measured(Exception):
    """Raised once dask's state is built: no task runs."""


class _AtStart(Callback):
    """The heap when dask's local scheduler is about to run the first task of a graph."""

    def _start_state(self, dsk, state) -> None:
        gc.collect()
        self.heap = tracemalloc.get_traced_memory()[0]
        self.tasks = len(dsk)
        raise _Measured


def pass_heap(n_chunks: int, model, folder: Path, *, threads: int, one_graph: bool = False) -> dict[str, Any]:
    """The heap of the label pass's first graph (graph, order, state) on a square mosaic of
    about ``n_chunks`` chunks, for a scheduler of ``threads`` (or the whole pass in one graph)."""
    import dask.threaded

    from pipeline.cog import Pyramid
    from pipeline.products import chunks
    from pipeline.products.chunks import Blocks, write_chunks

    side = int(n_chunks**0.5) * CHUNK
    pixels = da.zeros((len(model.band_names), side, side), dtype=np.float32, chunks=(-1, CHUNK, CHUNK))
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    depths = chunks.BATCH_DEPTHS
    chunks.BATCH_DEPTHS = range(16, 17) if one_graph else depths
    try:
        with _AtStart() as at_start, dask.config.set(scheduler=dask.threaded.get, num_workers=threads):
            try:
                write_chunks(Blocks(labels=None, pixels=pixels), model, folder, Pyramid(side, side, CHUNK))
            except _Measured:
                pass
    finally:
        chunks.BATCH_DEPTHS = depths
    return {
        "chunks": (side // CHUNK) ** 2, "threads": None if one_graph else threads, "graph_tasks": at_start.tasks,
        "heap_mb": round((at_start.heap - before) / MiB, 1), "seconds": round(time.perf_counter() - start, 1),
    }


def chunk_tile_sizes(block: np.ndarray, model, folder: Path) -> list[list[int]]:
    """A real chunk's tile byte counts per level, as its summary gives them to the header."""
    from pipeline.cog import LABELS, Pyramid
    from pipeline.products.chunks import label_chunk, store_chunk

    labelled = label_chunk(None, block, None, features=model.features, labeller=(model.centroids, False), k=model.k, true_colour=([0, 1, 2], 0, 0, 64))
    summary, _ = store_chunk(labelled, index=(0, 0), folder=folder, pyramid=Pyramid(64 * CHUNK, 64 * CHUNK, CHUNK), layers=(LABELS,))
    return summary[LABELS.name]


def header_heap(n_chunks: int, counts: list[list[int]]) -> dict[str, Any]:
    """The heap of every node's byte counts (kept through the pass) and the peak while the
    header is laid out from them, on a square mosaic of about ``n_chunks`` chunks."""
    from pipeline.cog import LABELS, Pyramid, layout

    side = int(n_chunks**0.5) * CHUNK
    pyramid = Pyramid(side, side, CHUNK)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    sizes = {}
    for depth in (0, *pyramid.depths()):
        for node in pyramid.nodes(depth):
            shape = [pyramid.tiles(node, level) for level in pyramid.levels(node)]
            # Fresh ints, as each chunk's own counts are: depth 0 from a real chunk, nodes alike.
            sizes[node] = [[int(str(counts[min(n, len(counts) - 1)][0])) for _ in range((r1 - r0) * (c1 - c0))] for n, (r0, r1, c0, c1) in enumerate(shape)]
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.reset_peak()
    start = time.perf_counter()
    header, _, placements = layout(pyramid, LABELS, sizes, copied=[])
    peak = tracemalloc.get_traced_memory()[1] - before
    return {
        "chunks": (side // CHUNK) ** 2, "sizes_mb": round(kept / MiB, 1), "peak_mb": round(peak / MiB, 1),
        "header_mb": round(len(header) / MiB, 1), "seconds": round(time.perf_counter() - start, 1),
    }


def tile_heap(pattern: str, crs: str | None) -> dict[str, Any]:
    """The heap of the mosaic's records and tile index, opened as a run opens them, per tile."""
    from pipeline.io.mosaic import open_mosaic
    from pipeline.io.spec import InputSpec

    paths = sorted(glob.glob(pattern))
    if len(paths) < 8:
        return {"skipped": f"fewer than 8 files match {pattern}: build the state rehearsal's tiles first (benchmark.py --state --steps graph)"}
    heaps = {}
    for n in (len(paths) // 4, len(paths)):
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        mosaic = open_mosaic(InputSpec(paths=tuple(paths[:n]), crs=crs), chunk=CHUNK)
        _ = mosaic.index  # built on first use, as the run's planning does
        gc.collect()
        heaps[n] = tracemalloc.get_traced_memory()[0] - before
        del mosaic, _
    (n0, b0), (n1, b1) = heaps.items()
    return {"files": n1, "mosaic_mb": round(b1 / MiB, 1), "per_tile_bytes": round((b1 - b0) / (n1 - n0))}


def slope(small: dict[str, Any], large: dict[str, Any], key: str) -> float:
    return (large[key] - small[key]) * MiB / (large["chunks"] - small["chunks"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default=str(REPO / "benchmark-data" / "state" / "tiles-64x80" / "*.vrt"), help="glob of tile files (the state rehearsal's)")
    parser.add_argument("--crs", default="EPSG:26914", help="the mosaic's CRS (the rehearsal's tiles span two UTM zones)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-memory.json"))
    args = parser.parse_args()
    block = real_block()
    model = fitted(block)
    tracemalloc.start()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        counts = chunk_tile_sizes(block, model, Path(tmp))
        del block
        # In one graph the heap grows with the mosaic; in batches it stays one batch's.
        result["one_graph"] = [pass_heap(n, model, Path(tmp), threads=2, one_graph=True) for n in (1024, 4096)]
        result["batched"] = [pass_heap(65536, model, Path(tmp), threads=t) for t in (2, 16, 400)]
    for r in result["one_graph"] + result["batched"]:
        print("pass", json.dumps(r), flush=True)
    result["header"] = [header_heap(n, counts) for n in (4096, 16384)]
    for r in result["header"]:
        print("header", json.dumps(r), flush=True)
    result["tiles"] = tile_heap(args.tiles, args.crs)
    print("tiles", json.dumps(result["tiles"]), flush=True)
    per_chunk = {
        "graph_and_state": slope(*result["one_graph"], "heap_mb"),
        "sizes": slope(*result["header"], "sizes_mb"),
        "header_peak": slope(*result["header"], "peak_mb"),
    }
    batch_mb = max(r["heap_mb"] for r in result["batched"])  # the largest batch, on a cluster of 400 threads
    per_tile = result["tiles"].get("per_tile_bytes", 0)
    result["per_chunk_bytes"] = {k: round(v) for k, v in per_chunk.items()}
    result["projection"] = {}
    for state, where in STATES.items():
        chunks = where["pixels"] / CHUNK**2
        tiles_mb = where["tiles"] * per_tile / MiB
        during_pass = batch_mb + chunks * per_chunk["sizes"] / MiB + tiles_mb
        at_header = chunks * per_chunk["header_peak"] / MiB + tiles_mb
        unbatched = chunks * (per_chunk["graph_and_state"] + per_chunk["sizes"]) / MiB + tiles_mb
        result["projection"][state] = {
            "chunks": round(chunks), "tiles": where["tiles"], "during_pass_mb": round(during_pass), "at_header_mb": round(at_header),
            "one_graph_mb": round(unbatched),
        }
    print(json.dumps({"per_chunk_bytes": result["per_chunk_bytes"], "per_tile_bytes": per_tile, "batch_mb": batch_mb, "projection": result["projection"]}, indent=1))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
