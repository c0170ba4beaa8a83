"""State-scale rehearsal: thousands of tiles, > 10 gigapixels, two UTM zones (``benchmark.py --state``).

    python scripts/benchmark.py --state [--tiles 64x80] [--steps graph,open,...] [--skip-cluster] [--skip-spread]

Built once and cached in ``--workdir``/state (~100 MB: the tiles are VRTs):
- 16 source GeoTIFFs of 1600 x 1300 px (2.08 MP; DEFLATE, 512 tiles), each four of the shared
  NAIP scenes (cropped, flipped, rotated) side by side;
- ``tiles-RxC/``: a grid of tile VRTs, each one source placed on the map, edge to edge at 5 m
  (64 x 80 = 5,120 files, 10.7 GP); the eastern fifth of the columns is in UTM zone 15
  (EPSG:26915), the rest in zone 14, so the run reprojects them through ``input.crs: EPSG:26914``;
- ``one-RxC.vrt``: the same zone-14 layout as one file, for the sample stage's one-file comparison;
- ``open10k/``: 10,240 small GeoTIFFs (64 x 64), to time opening ten thousand headers and to run
  threads against local-cluster on more than 5,000 files.

Steps (``--steps``, all by default): ``graph`` (tasks, pickled bytes, seconds to build),
``open`` (10,240 headers), ``sample`` (the sample stage on the tiles and on one file, alternating),
``floor`` (every 512 block of the tiles decoded once, one thread per core), ``threads`` and
``cluster`` (``landcover run``: wall, peak RSS, stages, a hash of the labels), ``cleanup`` (the
threads run with ``postprocess`` majority 3, sieve 16, 8-connected, right after it), ``small`` (the same
run at 0.6 GP, for memory), ``identity`` (threads and local-cluster on the 10,240 files: same
labels, no large-graph warning), ``spread`` (the sample over 5 seeds, stratified against the
earlier design, a random subset of all windows, at 0.6 GP and here).
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from bench_common import artefact, build_mosaic, scene_variants, timed_run
from rasterio.enums import Resampling
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

ZONE, EAST_ZONE = "EPSG:26914", "EPSG:26915"
TILE = (1300, 1600)  # rows, cols of a tile VRT: four 650 x 800 quadrants of the sources
EAST_SHARE = 0.2  # columns of tiles in the second UTM zone
RES = 5.0
ORIGIN = (300_000.0, 5_300_000.0)  # zone 14; the grid runs ~640 km east, into zone 15's longitudes
OPEN_TILES, OPEN_SIDE = (80, 128), 64
OVERVIEWS = [2, 4, 8, 16]  # a tile VRT shows its source's as its own (GDAL's implicit overviews)
SEEDS = range(5)


# --- data ----------------------------------------------------------------------------------------


def build_sources(scenes: Path, folder: Path) -> list[Path]:
    """16 tile-sized GeoTIFFs, each four scene variants (cropped) in a 2 x 2 arrangement, with
    overviews as NAIP COGs have them (the first look reads them, through the tile VRTs)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"source_{i:02d}.tif" for i in range(16)]
    if all(p.exists() for p in paths):
        for path in paths:  # sources cached before the first look had none
            with rasterio.open(path, "r+") as dst:
                if not dst.overviews(1):
                    dst.build_overviews(OVERVIEWS, Resampling.average)
        return paths
    variants, profile = scene_variants(scenes)
    rows, cols = TILE
    qh, qw = rows // 2, cols // 2
    for i, path in enumerate(paths):
        data = np.empty((4, rows, cols), np.uint8)
        for q in range(4):
            v = variants[(5 * i + 7 * q) % 16]
            data[:, (q // 2) * qh : (q // 2 + 1) * qh, (q % 2) * qw : (q % 2 + 1) * qw] = v[:, :qh, :qw]
        with rasterio.open(path, "w", height=rows, width=cols, **profile) as dst:
            dst.write(data)
            dst.build_overviews(OVERVIEWS, Resampling.average)
    return paths


def _source_xml(name: str, band: int, x: int = 0, y: int = 0) -> str:
    rows, cols = TILE
    return (
        f'<SimpleSource><SourceFilename relativeToVRT="1">{name}</SourceFilename><SourceBand>{band}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{cols}" ySize="{rows}"/><DstRect xOff="{x}" yOff="{y}" xSize="{cols}" ySize="{rows}"/></SimpleSource>'
    )


def _vrt(width: int, height: int, srs: str, transform: tuple[float, ...], sources: list[tuple[str, int, int]]) -> str:
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{band}" blockXSize="512" blockYSize="512">'
        f"<NoDataValue>0</NoDataValue><ColorInterp>Gray</ColorInterp>{''.join(_source_xml(n, band, x, y) for n, x, y in sources)}</VRTRasterBand>"
        for band in range(1, 5)
    )
    gt = ", ".join(repr(v) for v in transform)
    return f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{srs}</SRS><GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>\n'


def _source_of(i: int, j: int) -> str:
    return f"source_{(7 * i + 3 * j) % 16:02d}.tif"  # neighbours never repeat


def build_tiles(state: Path, grid: tuple[int, int]) -> tuple[list[Path], Path]:
    """Tile VRTs (zone 14 and, for the eastern columns, zone 15) and one.vrt; cached by grid."""
    folder = state / f"tiles-{grid[0]}x{grid[1]}"
    one = state / f"one-{grid[0]}x{grid[1]}.vrt"
    rows, cols = grid
    east_from = cols - round(cols * EAST_SHARE)
    paths = [folder / f"m_{i:03d}{j:03d}_{14 if j < east_from else 15}_20200831.vrt" for i in range(rows) for j in range(cols)]
    if one.exists() and all(p.exists() for p in paths):
        return paths, one
    folder.mkdir(parents=True, exist_ok=True)
    th, tw = TILE
    for path in paths:
        i, j = int(path.name[2:5]), int(path.name[5:8])
        x0, y0 = ORIGIN[0] + j * tw * RES, ORIGIN[1] - i * th * RES
        srs = ZONE
        if j >= east_from:  # the same place, expressed on zone 15's grid: reprojected by the run
            (x0,), (y0,) = transform_points(ZONE, EAST_ZONE, [x0], [y0])
            srs = EAST_ZONE
        path.write_text(_vrt(tw, th, srs, (x0, RES, 0.0, y0, 0.0, -RES), [("../" + _source_of(i, j), 0, 0)]))
    # One file with every tile in zone 14: the same pixel count and sources, one header.
    sources = [(_source_of(i, j), j * tw, i * th) for i in range(rows) for j in range(cols)]
    one.write_text(_vrt(cols * tw, rows * th, ZONE, (ORIGIN[0], RES, 0.0, ORIGIN[1], 0.0, -RES), sources))
    return paths, one


def build_open_set(state: Path, sources: list[Path]) -> list[Path]:
    """10,240 small GeoTIFFs laid edge to edge, to time opening ten thousand headers."""
    folder = state / "open10k"
    rows, cols = OPEN_TILES
    paths = [folder / f"t_{i:03d}_{j:03d}.tif" for i in range(rows) for j in range(cols)]
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(sources[0]) as src:
        data = src.read(window=Window(0, 0, OPEN_SIDE, OPEN_SIDE))
        profile = {**src.profile, "width": OPEN_SIDE, "height": OPEN_SIDE, "tiled": False, "photometric": "MINISBLACK"}
    for path in paths:
        i, j = int(path.stem[2:5]), int(path.stem[6:9])
        transform = rasterio.Affine(RES, 0, ORIGIN[0] + j * OPEN_SIDE * RES, 0, -RES, ORIGIN[1] - i * OPEN_SIDE * RES)
        with rasterio.open(path, "w", **{**profile, "transform": transform}) as dst:
            dst.write(data)
    return paths


# --- measures ------------------------------------------------------------------------------------


def read_floor(paths: list[Path], threads: int) -> float:
    """Seconds to decode every 512 block of every file once, one thread per core."""

    def read_all(path: Path) -> None:
        with rasterio.open(path) as src:
            for row in range(0, src.height, 512):
                for col in range(0, src.width, 512):
                    src.read(window=Window(col, row, min(512, src.width - col), min(512, src.height - row)))

    start = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=256), ThreadPoolExecutor(threads) as pool:
        list(pool.map(read_all, paths))
    return time.perf_counter() - start


def run_landcover(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """``landcover run`` in a subprocess: wall, peak RSS, stage timings, a hash of the labels and
    whether dask warned about a large graph."""
    path.write_text(json.dumps(config, indent=2))
    landcover = str(Path(sys.executable).parent / "landcover")
    result = timed_run([landcover, "run", str(path), "--quiet"], keep_stderr=True)
    output = Path(config["output"]["path"])
    report = json.loads(output.with_name(output.stem + ".report.json").read_text())
    stderr = result.pop("stderr")
    stages = report["timings_s"]
    startup = result["seconds"] - stages["total"]
    return {
        **result,
        "stages_s": stages,
        "startup_s": round(startup, 2),
        "client_alone_s": round(startup + stages["open"] + stages["finalise"] + stages["total"] - _summed(stages), 2),
        "first_look_share": round(stages.get("first_look", 0.0) / result["seconds"], 4),
        "labels_sha256": hashlib.sha256(_pixels(output)).hexdigest(),
        "large_graph_warning": "large graph" in stderr.lower(),
    }


def _summed(stages: dict[str, float]) -> float:
    """The stages' seconds added up: without the total, and without the parts of a stage the
    report also lists (the sample's first look, the fit's ISODATA)."""
    return sum(v for k, v in stages.items() if k not in ("total", "first_look", "isodata"))


def _pixels(path: Path) -> bytes:
    """The label pixels (not the file: its metadata records timings)."""
    digest = hashlib.sha256()
    with rasterio.open(path) as src:
        for _, window in src.block_windows(1):
            digest.update(src.read(1, window=window).tobytes())
    return digest.digest()


def graph_size(config: dict[str, Any]) -> dict[str, Any]:
    """The label pass's read graph and the sample's tasks, built in this process as a run builds them."""
    from pipeline.algo.sample import plan_sample, window_of
    from pipeline.config import InputConfig
    from pipeline.io.mosaic import open_mosaic, to_dask
    from pipeline.stages.edge import input_spec

    spec = InputConfig(**config["input"])
    start = time.perf_counter()
    mosaic = open_mosaic(input_spec(spec), chunk=config["dask"]["chunk"])
    opened = time.perf_counter()
    graph = dict(to_dask(mosaic).__dask_graph__())
    built = time.perf_counter()
    plan = plan_sample(mosaic, size=config["sample"]["size"], seed=0)
    jobs = [mosaic.plan(window_of(mosaic, n)) for n in plan.windows]
    planned = time.perf_counter()
    # One key holds the tiles (the reader every task names); the others are the chunk tasks.
    *sizes, root = sorted(len(pickle.dumps(task)) for task in graph.values())
    return {
        "tiles": len(mosaic.tiles),
        "reprojected_tiles": sum(t.warp is not None for t in mosaic.tiles),
        "megapixels": round(mosaic.height * mosaic.width / 1e6, 1),
        "chunks": len(sizes),
        "read_graph_bytes": sum(sizes) + root,
        "read_task_bytes_max": max(sizes),
        "reader_key_bytes": root,
        "all_tiles_bytes": len(pickle.dumps(mosaic.tiles)),
        "open_s": round(opened - start, 2),
        "read_graph_s": round(built - opened, 2),
        "sample_windows": len(plan.windows),
        "sample_strata": plan.strata,
        "sample_tiles": len({t.path for job in jobs for t in job.tiles}),
        "sample_plan_s": round(planned - built, 2),
    }


def same_bytes_on_many_files(state: Path, paths: list[Path]) -> dict[str, Any]:
    """threads and local-cluster on the 10,240 small files: the same labels, no large-graph warning."""
    out = state / "out"
    config = {
        "input": {"paths": [str(paths[0].parent / "*.tif")]},
        "sample": {"size": 1_000_000, "seed": 0},
        "model": {"k": 7},
        "output": {"path": str(out / "labels-10k.tif"), "overwrite": True},
        "dask": {"chunk": 2048},
    }
    threads = run_landcover(config, state / "run-10k-threads.json")
    cluster_config = {**config, "output": {**config["output"], "path": str(out / "labels-10k-cluster.tif")}, "dask": {"chunk": 2048, "scheduler": "local-cluster"}}
    cluster = run_landcover(cluster_config, state / "run-10k-cluster.json")
    return {"files": len(paths), "threads": threads, "local_cluster": cluster, "same_bytes": threads["labels_sha256"] == cluster["labels_sha256"]}


def time_open(paths: list[Path]) -> dict[str, Any]:
    code = (
        "import time, sys, json; from pipeline.config import InputConfig; from pipeline.io.mosaic import open_mosaic; from pipeline.stages.edge import input_spec\n"
        "start = time.perf_counter(); m = open_mosaic(input_spec(InputConfig(paths=sys.argv[1])), chunk=2048)\n"
        "print(json.dumps({'files': len(m.tiles), 'seconds': round(time.perf_counter() - start, 2)}))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(paths[0].parent / "*.tif")], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def time_samples(configs: dict[str, dict[str, Any]], seeds=(0, 1, 2)) -> dict[str, float]:
    """Median seconds of the sample stage (plan, read, select) for each config, in a fresh
    process per call, the configs alternating so that both see the same load."""
    runs: dict[str, list[float]] = {name: [] for name in configs}
    for seed in seeds:
        for name, config in configs.items():
            runs[name].append(time_sample(config, seed))
    return {name: round(float(np.median(r)), 2) for name, r in runs.items()}


def time_sample(config: dict[str, Any], seed: int) -> float:
    """Seconds of the sample stage (plan, read, select) in a fresh process."""
    code = (
        "import time, sys, json; from pipeline.config import InputConfig; from pipeline.io.mosaic import open_mosaic; from pipeline.stages.edge import input_spec\n"
        "from pipeline.algo.sample import draw_sample\n"
        "cfg = json.loads(sys.argv[1]); m = open_mosaic(input_spec(InputConfig(**cfg['input'])), chunk=2048)\n"
        "start = time.perf_counter(); draw_sample(m, size=cfg['sample']['size'], seed=int(sys.argv[2]))\n"
        "print(time.perf_counter() - start)"
    )
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(config), str(seed)], capture_output=True, text=True, check=True)
    return float(proc.stdout)


def sample_spread(spec_input: dict[str, Any], *, size: int, k: int) -> dict[str, Any]:
    """Stratified against the earlier design (random windows anywhere, >= 256 of them), 5 seeds:
    windows, tiles, seconds, and how far each seed's fitted centroids lie from the seeds' mean."""
    import dask
    from scipy.optimize import linear_sum_assignment

    from pipeline.algo.kmeans import fit_kmeans
    from pipeline.algo.sample import draw_sample, sample_block, window_of
    from pipeline.config import InputConfig, ModelConfig
    from pipeline.io.mosaic import open_mosaic, read
    from pipeline.stages.edge import input_spec

    mosaic = open_mosaic(input_spec(InputConfig(**spec_input)), chunk=2048)

    def earlier(seed: int) -> tuple[np.ndarray, int, int]:
        covered = mosaic.covered(512)
        numbers = np.flatnonzero(covered.ravel())
        order = np.random.default_rng(seed).permutation(len(numbers))
        picked = numbers[order[: max(256, math.ceil(3 * size / 512**2))]]
        jobs = [mosaic.plan(window_of(mosaic, int(n))) for n in picked]
        rate = min(1.0, 3 * size / sum(int(j.window.width * j.window.height) for j in jobs))
        parts = dask.compute(*[dask.delayed(lambda j, n: sample_block(read(j), seed=seed, index=n, rate=rate))(j, int(n)) for j, n in zip(jobs, picked)])
        keys = np.concatenate([p[0] for p in parts])
        pixels = np.concatenate([p[1] for p in parts])
        chosen = np.argsort(keys, kind="stable")[:size]
        return pixels[chosen], len(jobs), len({t.path for j in jobs for t in j.tiles})

    def stratified(seed: int) -> tuple[np.ndarray, int, int]:
        from pipeline.algo.sample import plan_sample

        plan = plan_sample(mosaic, size=size, seed=seed)
        jobs = [mosaic.plan(window_of(mosaic, n)) for n in plan.windows]
        return draw_sample(mosaic, size=size, seed=seed).pixels, len(jobs), len({t.path for j in jobs for t in j.tiles})

    out = {}
    for name, draw in (("earlier", earlier), ("stratified", stratified)):
        centroids, seconds, windows, tiles = [], [], 0, 0
        for seed in SEEDS:
            start = time.perf_counter()
            sample, windows, tiles = draw(seed)
            seconds.append(time.perf_counter() - start)
            fit = fit_kmeans(sample, seeds_from=sample, k=k, n_init=ModelConfig().n_init, max_iter=300, tol=1e-4, seed=0)
            centroids.append(fit.centroids)
        # Match every seed's classes to seed 0's, then measure distances to the matched mean (DN).
        matched = [centroids[0]]
        for c in centroids[1:]:
            cost = ((centroids[0][:, None, :] - c[None, :, :]) ** 2).sum(-1)
            matched.append(c[linear_sum_assignment(cost)[1]])
        stack = np.stack(matched)
        distance = np.linalg.norm(stack - stack.mean(axis=0), axis=-1)
        out[name] = {
            "windows": windows,
            "tiles": tiles,
            "sample_s_median": round(float(np.median(seconds)), 2),
            "centroid_spread_dn_mean": round(float(distance.mean()), 3),
            "centroid_spread_dn_max": round(float(distance.max()), 3),
        }
    return out


# --- main ----------------------------------------------------------------------------------------


STEPS = ("graph", "open", "sample", "floor", "threads", "cleanup", "cluster", "small", "identity", "spread")
POSTPROCESS = {"majority": 3, "sieve": 16, "connectivity": 8}  # the cleanup configs/naip.yaml makes


def main(args) -> None:
    import os

    steps = set(args.steps.split(",")) if args.steps else set(STEPS)
    if args.skip_cluster:
        steps.discard("cluster")
    if args.skip_spread:
        steps.discard("spread")
    state = args.workdir / "state"
    grid = tuple(int(v) for v in args.tiles.split("x"))
    sources = build_sources(args.scenes, state)
    tiles, one = build_tiles(state, grid)
    out_dir = state / "out"
    result: dict[str, Any] = {"grid": f"{grid[0]}x{grid[1]}", "files": len(tiles)}
    base = {
        "input": {"paths": [str(tiles[0].parent / "*.vrt")], "crs": ZONE},
        "sample": {"size": 1_000_000, "seed": 0},
        "model": {"k": 7},
        "output": {"path": str(out_dir / "labels.tif"), "overwrite": True},
        "dask": {"chunk": 2048},
    }
    small = build_mosaic(30, args.scenes, args.workdir)
    small_config = {**base, "input": {"paths": [str(small)]}, "output": {"path": str(artefact(args.workdir, "labels", 30)), "overwrite": True}}
    cluster = {**base, "output": {**base["output"], "path": str(out_dir / "labels-cluster.tif")}, "dask": {**base["dask"], "scheduler": "local-cluster"}}
    measures = {
        "graph": lambda: graph_size(base),
        "open": lambda: time_open(build_open_set(state, sources)),
        "sample": lambda: time_samples({"tiles": base, "one_file": {**base, "input": {"paths": [str(one)]}}}),
        "floor": lambda: round(read_floor(tiles, os.cpu_count() or 2), 2),
        "threads": lambda: run_landcover(base, state / "run-threads.json"),
        "cleanup": lambda: run_landcover(
            {**base, "postprocess": POSTPROCESS, "output": {**base["output"], "path": str(out_dir / "labels-cleanup.tif")}}, state / "run-cleanup.json"
        ),
        "cluster": lambda: run_landcover(cluster, state / "run-cluster.json"),
        "small": lambda: run_landcover(small_config, state / "run-small.json"),
        "identity": lambda: same_bytes_on_many_files(state, build_open_set(state, sources)),
        "spread": lambda: {
            "0.6 GP": sample_spread(small_config["input"], size=1_000_000, k=7),
            "state": sample_spread(base["input"], size=1_000_000, k=7),
        },
    }
    keys = {"open": "open_10k", "sample": "sample_stage_s", "floor": "floor_s", "cluster": "local_cluster"}
    for step in STEPS:
        if step in steps:
            print(f"{step} ...", flush=True)
            result[keys.get(step, step)] = measures[step]()
            print(json.dumps(result[keys.get(step, step)]), flush=True)
    args.state_out.write_text(json.dumps(result, indent=2) + "\n")
    if set(STEPS) - {"cluster", "spread"} <= steps:
        result["ratios"] = ratios(result)
        args.state_out.write_text(json.dumps(result, indent=2) + "\n")
        print_table(result)
    print(f"\nwrote {args.state_out}")


def ratios(r: dict[str, Any]) -> dict[str, Any]:
    t = r["threads"]
    stages = t["stages_s"]
    fixed = t["seconds"] - stages["label_write"] - stages.get("place", 0.0) - stages["finalise"]
    after_workers = stages["finalise"] + stages["total"] - _summed(stages)
    out = {
        "wall_over_floor": round(t["seconds"] / r["floor_s"], 2),
        "label_write_over_floor": round(stages["label_write"] / r["floor_s"], 2),
        "not_label_write_finalise_share": round(fixed / t["seconds"], 3),
        "client_alone_share": round(t["client_alone_s"] / t["seconds"], 3),
        "client_after_last_worker_task_share": round(after_workers / t["seconds"], 3),
        "rss_over_small": round(t["peak_rss_gb"] / r["small"]["peak_rss_gb"], 2),
        "sample_tiles_over_one_file": round(r["sample_stage_s"]["tiles"] / r["sample_stage_s"]["one_file"], 2),
        "per_gp_floor_s": round(r["floor_s"] / (r["graph"]["megapixels"] / 1000), 2),
        "per_gp_run_s": round(t["seconds"] / (r["graph"]["megapixels"] / 1000), 2),
    }
    if "cleanup" in r:
        c = r["cleanup"]
        out["cleanup_over_threads"] = {"wall": round(c["seconds"] / t["seconds"], 3), "peak_rss": round(c["peak_rss_gb"] / t["peak_rss_gb"], 3)}
        out["cleanup_client_alone_share"] = round(c["client_alone_s"] / c["seconds"], 3)
    if "local_cluster" in r:
        out["same_bytes_threads_cluster"] = r["local_cluster"]["labels_sha256"] == t["labels_sha256"]
        out["cluster_over_threads"] = round(r["local_cluster"]["seconds"] / t["seconds"], 2)
    return out


def print_table(r: dict[str, Any]) -> None:
    g, ra = r["graph"], r["ratios"]
    print(f"\nstate rehearsal: {g['tiles']} files ({g['reprojected_tiles']} reprojected), {g['megapixels'] / 1000:.2f} GP, {g['chunks']} chunks")
    print(f"read floor {r['floor_s']} s ({ra['per_gp_floor_s']} s/GP); open 10,240 files {r['open_10k']['seconds']} s")
    print(f"graph: {g['read_graph_bytes'] / 1e6:.2f} MB pickled, max task {g['read_task_bytes_max']} B (all tiles {g['all_tiles_bytes'] / 1e6:.2f} MB), built in {g['read_graph_s']} s")
    print(f"sample: {g['sample_windows']} windows from {g['sample_tiles']} tiles; stage {r['sample_stage_s']['tiles']} s on tiles, {r['sample_stage_s']['one_file']} s on one file ({ra['sample_tiles_over_one_file']}x)")
    stages = ("open", "sample", "fit", "label_write", "place", "finalise")
    print(f"{'run':>14} {'wall s':>8} {'RSS GB':>7} {'client s':>8} " + " ".join(f"{s:>11}" for s in stages))
    for name in ("threads", "local_cluster", "small"):
        if name in r:
            t = r[name]
            print(f"{name:>14} {t['seconds']:>8.1f} {t['peak_rss_gb']:>7.2f} {t['client_alone_s']:>8.1f} " + " ".join(f"{t['stages_s'].get(s, 0.0):>11.1f}" for s in stages))
    print(json.dumps(ra, indent=2))
    for size, spread in r.get("spread", {}).items():
        for design, s in spread.items():
            print(f"spread {size:>7} {design:>10}: {s['windows']} windows, {s['tiles']} tiles, {s['sample_s_median']} s, centroids within {s['centroid_spread_dn_mean']} DN (max {s['centroid_spread_dn_max']})")
