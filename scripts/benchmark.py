"""Benchmark ``landcover run`` against the read floor and peer methods on real NAIP mosaics.

    python scripts/benchmark.py [--sizes 10,30] [--quick] [--with-daskml-full]
                                [--scenes DIR] [--workdir DIR] [--out benchmark.json]

For each size N, an N x N mosaic of the real NAIP scenes (cycled, flipped and rotated so seams
are real edges) is built once and cached in ``--workdir``. We time decoding every 512 block with
2 threads (the floor), then the pipeline in a subprocess under ``/usr/bin/time -v`` (wall time,
peak RSS, per-stage timings from its report). At the first (small) size we also run the peers,
each in its own subprocess, and compare our inertia over all valid pixels with scikit-learn's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy.spatial.distance import cdist

REPO = Path(__file__).resolve().parent.parent
SCENE_SHAPE = (720, 928)  # common crop of the four scenes (723-724 x 934)
BLOCK = 512
K = 7
QUICK_SIZE = 6  # at 10x10 the seed-method peer alone takes ~65-70 s and --quick overran 2 min
LIBRARIES = ("numpy", "rasterio", "dask", "distributed", "dask-ml", "scikit-learn", "xarray", "rioxarray")


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


def build_mosaic(n: int, scenes_dir: Path, workdir: Path) -> Path:
    """Write the N x N mosaic one block row at a time (never whole in memory); cached by N."""
    path = workdir / f"mosaic-{n}x{n}.tif"
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


def block_windows(path: Path) -> list[Window]:
    with rasterio.open(path) as src:
        return [w for _, w in src.block_windows(1)]


def read_floor(path: Path) -> float:
    """Seconds to decode every block once with 2 threads, one dataset per thread."""
    local = threading.local()
    opened: list[rasterio.DatasetReader] = []

    def read(window: Window) -> None:
        if not hasattr(local, "src"):
            local.src = rasterio.open(path)
            opened.append(local.src)
        local.src.read(window=window)

    windows = block_windows(path)
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(read, windows))
    seconds = time.perf_counter() - start
    for src in opened:
        src.close()
    return seconds


def timed_run(cmd: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (GB) of a command under /usr/bin/time -v."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    kbytes = re.findall(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[-1]
    return {"seconds": round(seconds, 2), "peak_rss_gb": round(int(kbytes) / 2**20, 3)}


def run_pipeline(mosaic: Path, workdir: Path, n: int) -> tuple[dict[str, Any], Path]:
    """Run ``landcover run`` on the mosaic; return its measurements and the output path."""
    output = workdir / f"labels-{n}x{n}.tif"
    config = {
        "input": {"paths": [str(mosaic)]},
        "sample": {"size": 1_000_000, "seed": 0},
        "model": {"k": K},
        "output": {"path": str(output), "overwrite": True},
        "dask": {"chunk": 2048},
    }
    config_path = workdir / f"config-{n}x{n}.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    result = timed_run([str(Path(sys.executable).parent / "landcover"), "run", str(config_path), "--quiet"])
    report = json.loads(output.with_name(output.stem + ".report.json").read_text())
    return {**result, "stages_s": report["timings_s"]}, output


def peer_sklearn(mosaic: Path, out: Path) -> None:
    """The seed tutorial: every pixel in one float64 array through scikit-learn, labels as Float32."""
    from sklearn.cluster import KMeans

    with rasterio.open(mosaic) as src:
        image, profile = src.read(), src.profile
    pixels = image.reshape(image.shape[0], -1).T.astype(np.float64)
    model = KMeans(n_clusters=K, random_state=0).fit(pixels)
    labels = model.predict(pixels).astype(np.float32).reshape(image.shape[1:])
    profile.update(count=1, dtype="float32", photometric="MINISBLACK")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(labels, 1)
    out.with_suffix(".centroids.json").write_text(json.dumps(model.cluster_centers_.tolist()))


def peer_daskml(mosaic: Path, out: Path) -> None:
    """dask-ml k-means|| fitted on the full pixel matrix (float32, ~1 M-row chunks); fit only."""
    import dask
    import dask.array as da
    from dask_ml.cluster import KMeans

    with rasterio.open(mosaic) as src:
        height, width, bands = src.height, src.width, src.count
    rows = max(1, 2**20 // width)

    def strip(r0: int, r1: int) -> np.ndarray:
        with rasterio.open(mosaic) as src:  # one dataset per task: tasks run on several threads
            return src.read(window=Window(0, r0, width, r1 - r0)).reshape(bands, -1).T.astype(np.float32)

    parts = [
        da.from_delayed(dask.delayed(strip)(r0, min(r0 + rows, height)), ((min(r0 + rows, height) - r0) * width, bands), np.float32)
        for r0 in range(0, height, rows)
    ]
    model = KMeans(n_clusters=K, init="k-means||", random_state=0).fit(da.concatenate(parts))
    out.with_suffix(".centroids.json").write_text(json.dumps(np.asarray(model.cluster_centers_).tolist()))


def peer_grass(mosaic: Path, out: Path) -> None:
    """GRASS i.cluster + i.maxlik in a temporary project georeferenced from the mosaic."""
    script = out.with_suffix(".sh")
    script.write_text(
        f"set -e\nr.in.gdal input={mosaic} output=m\ng.region raster=m.1\n"
        "i.group group=g subgroup=g input=m.1,m.2,m.3,m.4\n"
        f"i.cluster group=g subgroup=g signaturefile=sig classes={K}\n"
        "i.maxlik group=g subgroup=g signaturefile=sig output=labels\n"
        f"r.out.gdal input=labels output={out} format=GTiff createopt=COMPRESS=DEFLATE,TILED=YES\n"
    )
    subprocess.run(["grass", "--tmp-location", str(mosaic), "--exec", "sh", str(script)], check=True)


PEERS = {"sklearn": peer_sklearn, "daskml": peer_daskml, "grass": peer_grass}


def run_peers(mosaic: Path, workdir: Path, with_daskml: bool) -> dict[str, Any]:
    peers: dict[str, Any] = {}
    for name in PEERS:
        if name == "daskml" and not with_daskml:
            peers[name] = {"skipped": "slow (~10 min at 67 MP); run with --with-daskml-full"}
        elif name == "grass" and not shutil.which("grass"):
            peers[name] = {"skipped": "grass not installed (Debian package grass-core)"}
        else:
            out = workdir / f"peer-{name}.tif"
            peers[name] = timed_run([sys.executable, str(Path(__file__).resolve()), "_peer", name, str(mosaic), str(out)])
    return peers


def inertia_ratio(mosaic: Path, ours: Path, reference: Path) -> dict[str, float]:
    """Our inertia over all valid pixels divided by scikit-learn's, both in float64, block by block."""
    ours_c = np.asarray(json.loads(ours.with_name(ours.stem + ".model.json").read_text())["centroids"])
    reference_c = np.asarray(json.loads(reference.with_suffix(".centroids.json").read_text()))
    both = np.vstack([ours_c, reference_c])  # one distance pass serves both models
    sums = np.zeros(2)
    invalid = 0
    with rasterio.open(mosaic) as src:
        for window in block_windows(mosaic):
            x = src.read(window=window).reshape(src.count, -1).T
            valid = x.any(axis=1)  # nodata = all bands 0
            invalid += int((~valid).sum())
            d = cdist(x[valid].astype(np.float64), both, "sqeuclidean")
            sums += [d[:, : len(ours_c)].min(axis=1).sum(), d[:, len(ours_c) :].min(axis=1).sum()]
    if invalid:  # the seed method fits on every pixel, so its centroids are a valid reference only without nodata
        sys.exit(f"error: {mosaic} has {invalid} nodata pixels; the sklearn reference would include them")
    return {"inertia_ratio": round(float(sums[0] / sums[1]), 5), "inertia_ours": float(sums[0]), "inertia_sklearn": float(sums[1])}


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text()
    kbytes = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
    return {
        "cores": os.cpu_count(),
        "ram_gb": round(kbytes / 2**20, 1),
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),  # > cores means the timings were contended
        "python": platform.python_version(),
        "gdal": rasterio.__gdal_version__,
        **{lib: version(lib) for lib in LIBRARIES},
    }


def print_table(label: dict[int, str], sizes: dict[int, dict[str, Any]], peers: dict[str, Any], quality: dict[str, float]) -> None:
    stages = ("open", "sample", "fit", "label_write", "finalise")
    print(f"{'mosaic':>8} {'MP':>6} {'floor s':>8} {'pipe s':>8} {'pipe/floor':>10} {'RSS GB':>7}  " + " ".join(f"{s:>11}" for s in stages))
    for n, r in sizes.items():
        p = r["pipeline"]
        print(
            f"{label[n]:>8} {r['megapixels']:>6.1f} {r['floor_s']:>8.2f} {p['seconds']:>8.1f} {p['seconds'] / r['floor_s']:>10.1f} "
            f"{p['peak_rss_gb']:>7.2f}  " + " ".join(f"{p['stages_s'][s]:>11.1f}" for s in stages)
        )
    small = sizes[next(iter(sizes))]["pipeline"]
    print(f"\npeers at {label[next(iter(sizes))]} (x pipeline):")
    for name, r in peers.items():
        if "skipped" in r:
            print(f"  {name:>8}: skipped ({r['skipped']})")
        else:
            print(f"  {name:>8}: {r['seconds']:7.1f} s ({r['seconds'] / small['seconds']:.1f}x), {r['peak_rss_gb']:.2f} GB ({r['peak_rss_gb'] / small['peak_rss_gb']:.1f}x)")
    print(f"\ninertia over all valid pixels, ours / sklearn KMeans: {quality['inertia_ratio']:.4f}")


def main() -> None:
    if sys.argv[1:2] == ["_peer"]:  # hidden: one peer, run in its own process so time -v measures it alone
        _, _, name, mosaic, out = sys.argv
        PEERS[name](Path(mosaic), Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,30", help="mosaic sizes N (N x N scenes); the first is the small one")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE}x{QUICK_SIZE} only (not 10x10: see QUICK_SIZE), no dask-ml full fit (< 2 min)")
    parser.add_argument("--with-daskml-full", action="store_true", help="also fit dask-ml KMeans on every pixel (~10 min)")
    parser.add_argument("--scenes", type=Path, default=REPO.parent / "shared" / "data" / "naip")
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmark-data")
    parser.add_argument("--out", type=Path, default=Path("benchmark.json"))
    args = parser.parse_args()
    ns = [QUICK_SIZE] if args.quick else [int(s) for s in args.sizes.split(",")]
    with_daskml = args.with_daskml_full and not args.quick
    label = {n: f"{n}x{n}" for n in ns}
    notes = [f"quick: {label[ns[0]]} mosaic instead of 10x10 so the run stays under 2 min"] if args.quick else []
    notes.append("dask-ml full fit " + ("included" if with_daskml else "skipped (no --with-daskml-full)"))

    sizes: dict[int, dict[str, Any]] = {}
    for n in ns:
        mosaic = build_mosaic(n, args.scenes, args.workdir)
        with rasterio.open(mosaic) as src:
            megapixels = src.width * src.height / 1e6
        floor = read_floor(mosaic)
        pipeline, output = run_pipeline(mosaic, args.workdir, n)
        sizes[n] = {"megapixels": round(megapixels, 1), "floor_s": round(floor, 3), "pipeline": pipeline}
        if n == ns[0]:
            peers = run_peers(mosaic, args.workdir, with_daskml)
            quality = inertia_ratio(mosaic, output, args.workdir / "peer-sklearn.tif")

    small, large = sizes[ns[0]]["pipeline"], sizes[ns[-1]]["pipeline"]
    result = {
        "ratios": {
            "pipeline_over_floor": {label[n]: round(r["pipeline"]["seconds"] / r["floor_s"], 1) for n, r in sizes.items()},
            "peers_over_pipeline": {
                name: r if "skipped" in r else {"time": round(r["seconds"] / small["seconds"], 2), "rss": round(r["peak_rss_gb"] / small["peak_rss_gb"], 2)}
                for name, r in peers.items()
            },
            "peak_rss_gb": {label[n]: r["pipeline"]["peak_rss_gb"] for n, r in sizes.items()},
            "rss_growth_small_to_large": round(large["peak_rss_gb"] / small["peak_rss_gb"], 2),
            "inertia_ratio_ours_over_sklearn": quality["inertia_ratio"],
        },
        "notes": notes,
        "seconds": {label[n]: r for n, r in sizes.items()},
        "peers": {"at": label[ns[0]], **peers},
        "quality": quality,
        "machine": machine(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(label, sizes, peers, quality)
    print("\n".join(["", *notes]))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
