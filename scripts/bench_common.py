"""What the benchmark and the state rehearsals share: the NAIP scenes, the mosaics built from them
and timing a command.

``scripts/benchmark.py`` (the entry point), ``scripts/state_rehearsal.py`` and
``scripts/state_http.py`` import from here; this module imports none of them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parent.parent
SCENE_SHAPE = (720, 928)  # common crop of the four scenes (723-724 x 934)
BLOCK = 512


def scene_variants(scenes_dir: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The four scenes cropped to one shape, each in four orientations; and the mosaic profile."""
    paths = sorted(scenes_dir.glob("*.tif"))
    if not paths:
        sys.exit(f"error: no .tif in {scenes_dir}; pass --scenes")
    h, w = SCENE_SHAPE
    with rasterio.open(paths[0]) as src:  # the mosaic starts at the first scene's corner
        crs, res, origin = src.crs, src.res[0], (src.transform.c, src.transform.f)
    variants = []
    for path in paths:
        with rasterio.open(path) as src:
            a = src.read(window=Window(0, 0, w, h))
        variants += [a, np.flip(a, 1), np.flip(a, 2), np.rot90(a, 2, axes=(1, 2))]
    profile = dict(
        driver="GTiff", dtype="uint8", count=4, crs=crs, nodata=0, tiled=True, blockxsize=BLOCK,
        blockysize=BLOCK, compress="deflate", photometric="MINISBLACK", bigtiff="IF_SAFER", num_threads=2,
        transform=rasterio.Affine(res, 0, origin[0], 0, -res, origin[1]),
    )  # MINISBLACK: otherwise GDAL marks band 4 (NIR) as alpha
    return variants, profile


def artefact(workdir: Path, kind: str, n: int) -> Path:
    """Every file of a size is keyed by N, so sizes never overwrite each other."""
    return workdir / f"{kind}-{n}x{n}.tif"


def build_mosaic(n: int, scenes_dir: Path, workdir: Path) -> Path:
    """Write the N x N mosaic one block row at a time (never whole in memory); cached by N."""
    path = artefact(workdir, "mosaic", n)
    if path.exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    variants, profile = scene_variants(scenes_dir)
    h, w = SCENE_SHAPE
    height, width = n * h, n * w

    def scene(i: int, j: int) -> np.ndarray:
        # Cycle through the scenes; vary orientation by row and column so neighbours differ.
        return variants[4 * ((i * n + j) % (len(variants) // 4)) + (i + 2 * j) % 4]

    tmp = path.with_suffix(".partial.tif")  # renamed when complete, so an aborted build is never reused
    with rasterio.open(tmp, "w", height=height, width=width, **profile) as dst:
        for r0 in range(0, height, BLOCK):
            r1 = min(r0 + BLOCK, height)
            strip = np.empty((4, r1 - r0, width), np.uint8)
            for i in range(r0 // h, (r1 - 1) // h + 1):
                a, b = max(r0, i * h), min(r1, (i + 1) * h)
                for j in range(n):
                    strip[:, a - r0 : b - r0, j * w : (j + 1) * w] = scene(i, j)[:, a - i * h : b - i * h]
            dst.write(strip, window=Window(0, r0, width, r1 - r0))
    tmp.rename(path)
    return path


def read_floor(paths: list[Path]) -> float:
    """Seconds to decode every block of every file once with one thread per core, one dataset
    per thread and file (the opens included)."""
    local = threading.local()
    opened: list[rasterio.DatasetReader] = []

    def read(job: tuple[Path, Window]) -> None:
        path, window = job
        cache = getattr(local, "open", None)
        if cache is None:
            cache = local.open = {}
        if path not in cache:
            cache[path] = rasterio.open(path)
            opened.append(cache[path])
        cache[path].read(window=window)

    jobs = []
    for path in paths:
        with rasterio.open(path) as src:
            jobs += [(path, w) for _, w in src.block_windows(1)]
    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(read, jobs))
    seconds = time.perf_counter() - start
    for src in opened:
        src.close()
    return seconds


def timed_run(cmd: list[str], *, keep_stderr: bool = False) -> dict[str, Any]:
    """Wall seconds and peak RSS (GB) of a command under /usr/bin/time -v (and its stderr)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    kbytes = re.findall(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[-1]
    result: dict[str, Any] = {"seconds": round(seconds, 2), "peak_rss_gb": round(int(kbytes) / 2**20, 3)}
    return {**result, "stderr": proc.stderr} if keep_stderr else result
