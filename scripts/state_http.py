"""State rehearsal over loopback HTTP against local disk (``benchmark.py --state-http``).

    python scripts/benchmark.py --state-http [--cogs 192] [--state-out benchmark-state-http.json]

Built once and cached in ``--workdir``/state-http: ``--cogs`` COGs (720 x 928, 4 bands, DEFLATE,
512 blocks, as NAIP on AWS) made from the shared NAIP scenes and laid edge to edge, and an item
collection describing them with proj metadata. A Range server (tests/http_server.py) serves the
folder on 127.0.0.1 and counts requests and bytes. Measured, each in a fresh process:

- ``landcover run`` on the local files and on the same COGs over HTTP through ``input.stac``:
  wall time ratio, labels identical, requests and bytes per stage (open, sample, label);
- opening: every header over HTTP (``input.paths`` of URLs) against the search (one file opened);
- the GDAL settings: the sample stage over HTTP with all of ``REMOTE_OPTIONS``, with each one
  turned back to GDAL's default, and with two candidates we do not set (VSI_CACHE,
  CPL_VSIL_CURL_ALLOWED_EXTENSIONS): requests, bytes, seconds;
- the first look (``algo/first_look.py``: each COG's coarsest overview) alone, local and over
  HTTP: seconds, requests and bytes per tile, and its share of each run's wall.

``--steps`` (``runs,open,settings,look``, all by default) chooses what to measure: at
``--cogs 5120`` (10 GB of COGs, 3.4 GP) the look and the two runs are the figures of interest.
``--naip-tiles N`` (at most 4) measures the same on N COGs the size of a NAIP quarter-quad
(12,000 x 10,000 px, overviews to /32 as GDAL's COG driver makes them) cut from the 600 MP
benchmark mosaic, in ``--workdir``/state-http-naip: what the look costs against a run per tile
of the real size (its cost is per tile, the run's per pixel).

Loopback has no latency, so the seconds here are CPU and protocol overhead; over the internet
each request also costs a round trip (20-100 ms to a cloud region), which is why requests per
tile is the figure to read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from bench_common import REPO, SCENE_SHAPE, build_mosaic, scene_variants, timed_run
from rasterio.io import MemoryFile
from rasterio.shutil import copy as copy_raster
from rasterio.warp import transform_bounds
from rasterio.windows import Window

sys.path.insert(0, str(REPO / "tests"))
from http_server import RangeServer  # noqa: E402  (the tests' server: one Range server for both)

K = 7
SAMPLE = 200_000
# GDAL's own default for each of our settings: "without it".
# (GDAL_DISABLE_READDIR_ON_OPEN is probed on one file by probe_readdir: against this server each
# of the 6 sidecar probes it causes waits for GDAL_HTTP_TIMEOUT, which would make the variant take
# minutes without saying more than its request count.)
GDAL_DEFAULTS = {
    "GDAL_HTTP_MAX_RETRY": "0",
    "CPL_VSIL_CURL_CACHE_SIZE": str(16 * 2**20),
}
CANDIDATES = {
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
}


def build_cogs(scenes: Path, folder: Path, n: int) -> list[Path]:
    """``n`` COGs of the scene variants, in rows of 16 laid edge to edge (cached by n)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"m_{i:04d}.tif" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    variants, profile = scene_variants(scenes)
    h, w = SCENE_SHAPE
    base = profile["transform"]
    res = base.a
    for i, path in enumerate(paths):
        row, col = divmod(i, 16)
        transform = Affine(res, 0, base.c + col * w * res, 0, -res, base.f - row * h * res)
        tile_profile = {**profile, "driver": "GTiff", "height": h, "width": w, "transform": transform}
        with MemoryFile() as memory, memory.open(**tile_profile) as tmp:
            tmp.write(variants[(3 * i + row) % len(variants)])
            copy_raster(tmp, path, driver="COG", BLOCKSIZE=512, COMPRESS="DEFLATE", PREDICTOR=2)
    return paths


NAIP_SHAPE = (10_000, 12_000)  # (rows, columns) of a quarter-quad at 60 cm, about


def build_naip_cogs(scenes: Path, workdir: Path, folder: Path, n: int) -> list[Path]:
    """``n`` (at most 4) COGs of ``NAIP_SHAPE``, two to a row, cut edge to edge from the 30 x 30
    benchmark mosaic (cached by n)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"qq_{i}.tif" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    h, w = NAIP_SHAPE
    with rasterio.open(build_mosaic(30, scenes, workdir)) as src:
        if n > (src.height // h) * (src.width // w):
            raise SystemExit(f"--naip-tiles: at most {(src.height // h) * (src.width // w)} tiles fit in {src.name}")
        for i, path in enumerate(paths):
            window = Window((i % 2) * w, (i // 2) * h, w, h)
            profile = {**src.profile, "height": h, "width": w, "transform": src.window_transform(window), "photometric": "MINISBLACK"}
            with MemoryFile() as memory, memory.open(**profile) as tmp:
                tmp.write(src.read(window=window))
                copy_raster(tmp, path, driver="COG", BLOCKSIZE=512, COMPRESS="DEFLATE", PREDICTOR=2, NUM_THREADS=2)
    return paths


def item_collection(paths: list[Path], url_of) -> dict[str, Any]:
    features = []
    for path in paths:
        with rasterio.open(path) as src:
            west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
            proj = {"proj:code": src.crs.to_string(), "proj:transform": list(src.transform)[:6], "proj:shape": list(src.shape)}
        features.append({
            "type": "Feature", "stac_version": "1.0.0", "id": path.stem, "collection": "naip-rehearsal",
            "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]},
            "bbox": [west, south, east, north], "properties": {"datetime": "2020-08-31T00:00:00Z", **proj},
            "assets": {"image": {"href": url_of(path), "type": "image/tiff; application=geotiff; profile=cloud-optimized"}},
            "links": [],
        })
    return {"type": "FeatureCollection", "features": features}


def run(config: dict[str, Any], path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    path.write_text(json.dumps(config, indent=2))
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})  # for the subprocess only: restored below
    try:
        result = timed_run([str(Path(sys.executable).parent / "landcover"), "run", str(path)], keep_stderr=True)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    output = Path(config["output"]["path"])
    report = json.loads(output.with_name(output.stem + ".report.json").read_text())
    with rasterio.open(output) as src:
        labels = src.read(1)
    stderr = result.pop("stderr")
    return {**result, "stages_s": report["timings_s"], "labels": labels, "log": stderr}


def measure_settings(server: RangeServer, urls: list[str], files_bytes: int) -> dict[str, Any]:
    """The sample stage over HTTP in a fresh process per variant of the GDAL settings."""
    code = (
        "import sys, json, time; from pipeline.config import InputConfig; from pipeline.io.mosaic import open_mosaic; from pipeline.stages.edge import input_spec\n"
        "from pipeline.algo.sample import draw_sample\n"
        "urls = json.loads(sys.argv[1]); start = time.perf_counter()\n"
        "m = open_mosaic(input_spec(InputConfig(paths=urls)), chunk=2048); opened = time.perf_counter()\n"
        "draw_sample(m, size=int(sys.argv[2]), seed=0, min_windows=32)\n"
        "print(json.dumps({'open_s': opened - start, 'sample_s': time.perf_counter() - opened}))"
    )
    variants: dict[str, dict[str, str]] = {"all of REMOTE_OPTIONS": {}}
    variants.update({f"without {k}": {k: v} for k, v in GDAL_DEFAULTS.items()})
    variants.update({f"with {k}={v}": {k: v} for k, v in CANDIDATES.items()})
    out = {}
    for name, env in variants.items():
        server.traffic.reset()
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(urls), str(SAMPLE // 4)], capture_output=True, text=True, env={**os.environ, **env}, timeout=900
        )
        if proc.returncode:
            out[name] = {"failed": proc.stderr[-500:]}
            continue
        times = json.loads(proc.stdout)
        requests = sum(server.traffic.requests.values())
        out[name] = {
            "requests": requests,
            "requests_per_file": round(requests / len(urls), 2),
            "bytes_over_files": round(sum(server.traffic.bytes.values()) / files_bytes, 4),
            "open_s": round(times["open_s"], 2),
            "sample_s": round(times["sample_s"], 2),
        }
        print(f"  {name}: {out[name]}", flush=True)
    return out


def measure_look(server: RangeServer, folder: Path, cogs: list[Path], files_bytes: int) -> dict[str, Any]:
    """The first look alone in a fresh process, on the local COGs and over HTTP (the mosaic
    opened from the item collection, as the runs open it): seconds, and per tile the requests
    and bytes it sent."""
    code = (
        "import sys, json, time; from pipeline.config import InputConfig, StacConfig; from pipeline.io.mosaic import open_mosaic\n"
        "from pipeline.stages.edge import input_spec; from pipeline.algo.first_look import first_look\n"
        "spec = InputConfig(paths=sys.argv[2:]) if sys.argv[1] == 'paths' else InputConfig(stac=StacConfig(source=sys.argv[2]))\n"
        "m = open_mosaic(input_spec(spec), chunk=2048); print('opened', flush=True); sys.stdin.readline()\n"
        "start = time.perf_counter(); look = first_look(m, window=512)\n"
        "print(json.dumps({'seconds': time.perf_counter() - start, **look.record.to_json()}), flush=True)"
    )
    out = {}
    for kind, argv in (("local", ["paths", *map(str, cogs)]), ("http", ["stac", server.href(folder / "items.json")])):
        proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "opened"
        server.traffic.reset()  # the look's own requests, not the open's
        proc.stdin.write("\n")
        proc.stdin.flush()
        record = json.loads(proc.stdout.readline())
        proc.wait(timeout=60)
        requests = sum(n for p, n in server.traffic.requests.items() if p.endswith(".tif"))
        sent = sum(n for p, n in server.traffic.bytes.items() if p.endswith(".tif"))
        out[kind] = {
            "seconds": round(record["seconds"], 2), "overview_levels": record["overview_levels"], "passes": record["passes"],
            "requests_per_tile": round(requests / len(cogs), 2), "kb_per_tile": round(sent / len(cogs) / 1e3, 1),
            "bytes_over_files": round(sent / files_bytes, 4),
        }
        print(f"  first look, {kind}: {out[kind]}", flush=True)
    return out


def probe_readdir(server: RangeServer, path: Path) -> dict[str, Any]:
    """Requests of one open, with GDAL's default (list the folder, probe sidecars) and ours."""
    code = "import sys, rasterio; rasterio.open(sys.argv[1]).close()"
    out = {}
    for value in ("FALSE", "EMPTY_DIR"):
        server.traffic.reset()
        env = {**os.environ, "GDAL_DISABLE_READDIR_ON_OPEN": value, "GDAL_HTTP_TIMEOUT": "1"}
        subprocess.run([sys.executable, "-c", code, "/vsicurl/" + server.href(path, f"probe={value}")], env=env, capture_output=True, timeout=120)
        out[value] = {"requests": sum(server.traffic.requests.values()), "paths": sorted(server.traffic.requests)}
    return out


STEPS = ("runs", "open", "settings", "look")


def main(args) -> None:
    steps = set(args.steps.split(",")) if args.steps else set(STEPS)
    if args.naip_tiles:
        folder = args.workdir / "state-http-naip"
        cogs = build_naip_cogs(args.scenes, args.workdir, folder / "cogs", args.naip_tiles)
    else:
        folder = args.workdir / "state-http"
        cogs = build_cogs(args.scenes, folder / "cogs", args.cogs)
    files_bytes = sum(p.stat().st_size for p in cogs)
    result: dict[str, Any] = {"cogs": len(cogs), "files_mb": round(files_bytes / 1e6, 1)}
    with rasterio.open(cogs[0]) as src:
        result["megapixels"] = round(len(cogs) * src.width * src.height / 1e6, 1)
    with RangeServer(folder) as server:
        (folder / "items.json").write_text(json.dumps(item_collection(cogs, server.href)))
        base = {"sample": {"size": SAMPLE, "seed": 0}, "model": {"k": K}, "dask": {"chunk": 2048}}

        def config(name: str, source: dict[str, Any]) -> dict[str, Any]:
            return {**base, "input": source, "output": {"path": str(folder / name / "labels.tif"), "overwrite": True}}

        if "runs" in steps:
            runs(result, server, folder, cogs, files_bytes, config)
        if "look" in steps:
            print("first look, local and over HTTP ...", flush=True)
            result["first_look"] = measure_look(server, folder, cogs, files_bytes)
            for kind in ("local", "http"):
                if kind in result:
                    result["first_look"][kind]["share_of_run_wall"] = round(result[kind]["stages_s"].get("first_look", 0.0) / result[kind]["seconds"], 4)
        if "open" in steps:
            print("open: every header over HTTP against the search ...", flush=True)
            result["open"] = measure_open(server, folder, cogs)
        if "settings" in steps:
            print("GDAL settings, sample stage over HTTP ...", flush=True)
            result["readdir_on_open"] = probe_readdir(server, cogs[0])
            result["settings"] = measure_settings(server, [server.href(p) for p in cogs], files_bytes)
    args.state_out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=2))
    print(f"\nwrote {args.state_out}")


def runs(result: dict[str, Any], server: RangeServer, folder: Path, cogs: list[Path], files_bytes: int, config) -> None:
    """``landcover run`` on the local COGs, over HTTP, and over HTTP with GDAL's own range cache."""
    print(f"landcover run, {len(cogs)} local COGs ...", flush=True)
    local = run(config("local", {"paths": [str(p) for p in cogs]}), folder / "run-local.json")
    print("landcover run, the same COGs over loopback HTTP (input.stac) ...", flush=True)
    server.traffic.reset()
    remote = run(config("http", {"stac": {"source": server.href(folder / "items.json")}}), folder / "run-http.json")
    tif_requests = sum(n for p, n in server.traffic.requests.items() if p.endswith(".tif"))
    tif_bytes = sum(n for p, n in server.traffic.bytes.items() if p.endswith(".tif"))
    print("landcover run over HTTP with GDAL's 16 MB range cache ...", flush=True)
    server.traffic.reset()
    small_cache = run(
        config("http-16mb", {"stac": {"source": server.href(folder / "items.json")}}), folder / "run-http-16mb.json",
        {"CPL_VSIL_CURL_CACHE_SIZE": str(16 * 2**20)},
    )
    result["http_16mb_cache"] = {
        "seconds": small_cache["seconds"],
        "requests_per_tile": round(sum(server.traffic.requests.values()) / len(cogs), 1),
        "bytes_over_files": round(sum(server.traffic.bytes.values()) / files_bytes, 3),
    }
    result["local"] = {k: v for k, v in local.items() if k not in ("labels", "log")}
    result["http"] = {k: v for k, v in remote.items() if k not in ("labels", "log")}
    result["labels_identical"] = bool(np.array_equal(local["labels"], remote["labels"]))
    result["http_over_local_wall"] = round(remote["seconds"] / local["seconds"], 2)
    result["run_requests_per_tile"] = round(tif_requests / len(cogs), 1)
    result["run_bytes_over_files"] = round(tif_bytes / files_bytes, 3)


def measure_open(server: RangeServer, folder: Path, cogs: list[Path]) -> dict[str, Any]:
    """Opening: every header over HTTP (``input.paths`` of URLs) against the search (one file opened)."""
    code = (
        "import sys, time; from pipeline.config import InputConfig, StacConfig; from pipeline.io.mosaic import open_mosaic; from pipeline.stages.edge import input_spec\n"
        "spec = InputConfig(paths=sys.argv[2:]) if sys.argv[1] == 'paths' else InputConfig(stac=StacConfig(source=sys.argv[2]))\n"
        "start = time.perf_counter(); open_mosaic(input_spec(spec), chunk=2048); print(time.perf_counter() - start)"
    )
    urls = [server.href(p) for p in cogs]
    opening = {}
    for kind, argv in (("paths (every header)", ["paths", *urls]), ("stac (one file opened)", ["stac", server.href(folder / "items.json")])):
        server.traffic.reset()
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
        opening[kind] = {"seconds": round(float(proc.stdout), 2), "requests": sum(server.traffic.requests.values())}
    return opening
