"""The 600 MP benchmark on a less kind mosaic (``benchmark.py --harsh``), back to back with the kind one.

The kind mosaic is one GeoTIFF (DEFLATE, 512 blocks) of the shared scenes side by side. A state
is not: thousands of files, each with its own codec and block size, overlapping their neighbours.
Here the N x N scenes become N x N files laid with an OVERLAP-pixel overlap (windows straddle
files and are composited), the codec and block size cycling over CODECS (NAIP's distributions use
DEFLATE and LZW; ZSTD is what a re-encoded archive may use). The floor is measured the same way
for both, in the same run: every block of every file decoded once, one thread per core, one dataset
per thread and file (the opens included: the pipeline opens each file too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from bench_common import SCENE_SHAPE, build_mosaic, read_floor, scene_variants
from rasterio.io import MemoryFile
from rasterio.shutil import copy as copy_raster

OVERLAP = 16  # pixels each file shares with its right and lower neighbours
CODECS = (
    {"COMPRESS": "DEFLATE", "PREDICTOR": "2", "BLOCKSIZE": "512"},
    {"COMPRESS": "LZW", "PREDICTOR": "2", "BLOCKSIZE": "256"},
    {"COMPRESS": "ZSTD", "LEVEL": "9", "BLOCKSIZE": "512"},
    {"COMPRESS": "DEFLATE", "LEVEL": "9", "BLOCKSIZE": "256"},
)


def build_tiles(n: int, scenes_dir: Path, workdir: Path) -> list[Path]:
    """N x N COGs, cached by N: the scenes in the kind mosaic's order, overlapping, codecs cycling."""
    folder = workdir / f"harsh-{n}x{n}"
    done = folder / "done.json"
    if done.exists():
        return [folder / name for name in json.loads(done.read_text())]
    folder.mkdir(parents=True, exist_ok=True)
    variants, profile = scene_variants(scenes_dir)
    h, w = SCENE_SHAPE
    res, (x0, y0) = profile["transform"].a, (profile["transform"].c, profile["transform"].f)
    names = []
    for i in range(n):
        for j in range(n):
            data = variants[4 * ((i * n + j) % (len(variants) // 4)) + (i + 2 * j) % 4]
            transform = rasterio.Affine(res, 0, x0 + j * (w - OVERLAP) * res, 0, -res, y0 - i * (h - OVERLAP) * res)
            tile = {**profile, "transform": transform, "height": h, "width": w}
            for key in ("tiled", "blockxsize", "blockysize", "compress", "num_threads", "bigtiff"):
                tile.pop(key)
            name = f"t_{i:03d}_{j:03d}.tif"
            with MemoryFile() as memory, memory.open(**tile) as tmp:
                tmp.write(np.ascontiguousarray(data))
                copy_raster(tmp, folder / name, driver="COG", **CODECS[(i * n + j) % len(CODECS)])
            names.append(name)
    done.write_text(json.dumps(names))
    return [folder / name for name in names]


def main(args: Any, *, run_pipeline) -> None:
    """Floor and pipeline on the kind mosaic and on the harsh files, back to back; JSON and a table."""
    n = int(args.sizes.split(",")[-1])
    kind = build_mosaic(n, args.scenes, args.workdir)
    tiles = build_tiles(n, args.scenes, args.workdir)
    result: dict[str, Any] = {}
    for name, files, inputs in (
        ("kind: one file", [kind], [str(kind)]),
        (f"harsh: {len(tiles)} files", tiles, [str(t) for t in tiles]),
    ):
        floor_s = round(read_floor(files), 3)
        run = run_pipeline(kind, args.workdir, n, name=f"-{name.split(':')[0]}", sections={"input": {"paths": inputs}})
        result[name] = {
            "floor_s": floor_s, "pipeline": run, "pipeline_over_floor": round(run["seconds"] / floor_s, 2),
            "bytes_on_disk_mb": round(sum(Path(p).stat().st_size for p in inputs) / 2**20, 1),
        }
    out = args.out if args.out != Path("benchmark.json") else Path("benchmark-harsh.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'mosaic':>22} {'MB':>7} {'floor s':>8} {'pipe s':>7} {'pipe/floor':>10} {'RSS GB':>6}")
    for name, r in result.items():
        p = r["pipeline"]
        print(f"{name:>22} {r['bytes_on_disk_mb']:>7.1f} {r['floor_s']:>8.2f} {p['seconds']:>7.1f} {r['pipeline_over_floor']:>10.2f} {p['peak_rss_gb']:>6.2f}")
    print(f"\nwrote {out}")
