"""Fixed costs: ``landcover --help`` and ``landcover run`` on a raster of one small chunk.

    python scripts/benchmark.py --startup [--runs 7]    (or python scripts/startup.py)

A 256 x 256 crop of a real NAIP scene (the demo scene where ../shared is absent) is written to a
temporary folder; after one warm-up run (numba's cache, the OS's file cache), each command runs
``--runs`` times in a fresh process, from its start to its exit, and the median wall is printed
beside the import floor (``python -c "import numpy, rasterio, dask.array"``, what any run of ours
must load) and the targets: --help <= 0.5 s, a run <= 2 s. The run's own report says where its
time went (open, sample, fit, label_write, finalise); the rest is imports and exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rasterio
import yaml
from rasterio.windows import Window

REPO = Path(__file__).resolve().parent.parent
NAIP = REPO.parent / "shared" / "data" / "naip"
DEMO = REPO / "data" / "demo" / "naip_like.tif"
LANDCOVER = Path(sys.executable).with_name("landcover")
TARGETS = {"help": 0.5, "run": 2.0}
SIDE = 256


def crop(folder: Path) -> Path:
    source = next(iter(sorted(NAIP.glob("*.tif"))), DEMO)
    with rasterio.open(source) as src:
        window = Window(src.width // 2, src.height // 2, SIDE, SIDE)
        profile = {**src.profile, "width": SIDE, "height": SIDE, "transform": src.window_transform(window), "tiled": True, "blockxsize": SIDE, "blockysize": SIDE}
        data = src.read(window=window)
    path = folder / "crop.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def median_wall(command: list[str], runs: int, cwd: Path) -> float:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)  # warm-up
    walls = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        walls.append(time.perf_counter() - began)
    return statistics.median(walls)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args, _ = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = crop(folder)
        config = folder / "run.yaml"
        config.write_text(yaml.safe_dump({
            "input": {"paths": [image.name], "alpha": "none"}, "model": {"k": 5},
            "output": {"path": "out/labels.tif", "overwrite": True},
        }))
        result = {
            "import_floor_s": median_wall([sys.executable, "-c", "import numpy, rasterio, dask.array"], args.runs, folder),
            "help_s": median_wall([str(LANDCOVER), "--help"], args.runs, folder),
            "run_s": median_wall([str(LANDCOVER), "run", str(config), "--quiet"], args.runs, folder),
            "run_stages_s": json.loads((folder / "out" / "labels.report.json").read_text())["timings_s"],
        }
    for key, target in (("help_s", TARGETS["help"]), ("run_s", TARGETS["run"])):
        verdict = "met" if result[key] <= target else "NOT met"
        print(f"{key[:-2]:>5}: {result[key]:.2f} s median of {args.runs} (target <= {target} s: {verdict})")
    print(f"import floor (numpy, rasterio, dask.array): {result['import_floor_s']:.2f} s; the run's stages: {result['run_stages_s']}")
    return result


if __name__ == "__main__":
    main()
