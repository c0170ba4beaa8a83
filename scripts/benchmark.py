"""Benchmark ``landcover run`` against the read floor and peer methods on real NAIP mosaics.

    python scripts/benchmark.py [--sizes 10,30] [--quick] [--with-daskml-full] [--amdahl]
                                [--scenes DIR] [--workdir DIR] [--out benchmark.json]
    python scripts/benchmark.py --state        (scripts/state_rehearsal.py)
    python scripts/benchmark.py --state-http   (scripts/state_http.py: over loopback HTTP)
    python scripts/benchmark.py --harsh --sizes 30   (scripts/harsh_mosaic.py: a less kind 600 MP mosaic)
    python scripts/benchmark.py --startup      (scripts/startup.py: --help and a one-chunk run)

For each size N, an N x N mosaic of the real NAIP scenes (cycled, flipped and rotated so seams
are real edges) is built once and cached in ``--workdir``. We time decoding every 512 block once
with one thread per core (the floor), then the pipeline in a subprocess under ``/usr/bin/time -v`` (wall time,
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
import time
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from bench_common import REPO, artefact, build_mosaic, read_floor, timed_run
from rasterio.windows import Window
from scipy.spatial.distance import cdist

K = 7
QUICK_SIZE = 6  # at 10x10 the seed-method peer alone takes ~65-70 s and --quick overran 2 min
GRASS_MISSING = "grass not installed (Debian package grass-core)"
DASKML_MISSING = "dask_ml not importable (dask-ml not installed)"
LIBRARIES = ("numpy", "rasterio", "dask", "distributed", "dask-ml", "scikit-learn", "xarray", "rioxarray")


def run_pipeline(
    mosaic: Path, workdir: Path, n: int, *, dask_options: dict[str, Any] | None = None, name: str = "", sections: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run ``landcover run`` on the mosaic: wall time, peak RSS and the report's stage timings;
    ``sections``: config sections to add (``output`` keys are merged)."""
    output = artefact(workdir, f"labels{name}", n)
    sections = dict(sections or {})
    config = {
        "input": {"paths": [str(mosaic)]},
        "sample": {"size": 1_000_000, "seed": 0},
        "model": {"k": K},
        "output": {"path": str(output), "overwrite": True, **sections.pop("output", {})},
        "dask": {"chunk": 2048, **(dask_options or {})},
        **sections,
    }
    config_path = artefact(workdir, f"config{name}", n).with_suffix(".yaml")
    config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    result = timed_run([str(Path(sys.executable).parent / "landcover"), "run", str(config_path), "--quiet"])
    report = json.loads(output.with_name(output.stem + ".report.json").read_text())
    return {**result, "stages_s": report["timings_s"]}


IOWA_PIXELS = 0.4e12
AMDAHL_WORKERS = 100
AMDAHL_REPEATS = 2
# Stage, where it runs, and how it is projected to Iowa on AMDAHL_WORKERS workers from the 1- and
# 2-worker times (t1, t2), the pixel ratio x and the client's bookkeeping measured at Iowa's size
# (``client``: graph or header). The sample and the fit work on a fixed number of pixels.
AMDAHL_STAGES = (
    ("start-up", "client: imports, cluster start", "constant", lambda t1, t2, x, client: t2),
    ("open", "client: file headers", "O(files): 1 file here", lambda t1, t2, x, client: t2),
    ("sample", "workers read windows, client draws", "fixed windows", lambda t1, t2, x, client: t2),
    ("fit", "workers, sample in memory, small graphs", "fixed sample", lambda t1, t2, x, client: t2),
    ("label_write", "workers: label, tiles, overviews, DEFLATE", "t1 x / W + graph", lambda t1, t2, x, client: t1 * x / AMDAHL_WORKERS + client),
    ("place", "workers copy parts into the COG", "t1 x / W", lambda t1, t2, x, client: t1 * x / AMDAHL_WORKERS),
    ("finalise_client", "client: header, validation, quicklook", "t2 + header", lambda t1, t2, x, client: t2 + client),
    ("sidecars", "client: report, legend, STAC, HTML", "constant", lambda t1, t2, x, client: t2),
)


def client_at_iowa() -> dict[str, Any]:
    """The client's bookkeeping for Iowa, measured: the label pass's graph (stand-in chunk tasks
    with the real tree) and the COG's header and tile index."""
    from functools import partial

    from pipeline.cog import LABELS, Pyramid, layout, tree

    side = int(IOWA_PIXELS**0.5)
    pyramid = Pyramid(side, side, 2048)
    start = time.perf_counter()
    chunks = {(i, j): ("label_chunk", i, j) for _, i, j in pyramid.nodes(0)}  # the run adds one task per chunk too
    graph = {key: (partial(dict, index=index, folder=REPO, pyramid=pyramid), ("read", *index)) for index, key in chunks.items()}
    graph.update(tree(pyramid, (LABELS,), REPO, {(0, *index): key for index, key in chunks.items()}, "iowa")[0])
    graph_s = time.perf_counter() - start
    nodes = [node for depth in [0, *pyramid.depths()] for node in pyramid.nodes(depth)]
    tiles = {node: [(lambda r0, r1, c0, c1: (r1 - r0) * (c1 - c0))(*pyramid.tiles(node, lv)) for lv in pyramid.levels(node)] for node in nodes}
    sizes = {node: [[3000] * n for n in counts] for node, counts in tiles.items()}
    start = time.perf_counter()
    layout(pyramid, LABELS, sizes, copied=[])
    header_s = time.perf_counter() - start
    return {"chunks": len(chunks), "tree_nodes": len(nodes) - len(chunks), "tiles": sum(map(sum, tiles.values())),
            "graph_s": round(graph_s, 2), "header_s": round(header_s, 2)}


def amdahl(mosaic: Path, workdir: Path, n: int) -> dict[str, Any]:
    """The pipeline on a local-cluster of 1 and of 2 single-threaded workers (fastest of
    AMDAHL_REPEATS), per stage, projected to Iowa as AMDAHL_STAGES says."""
    with rasterio.open(mosaic) as src:
        pixels = src.width * src.height
    runs: dict[int, dict[str, float]] = {}
    for repeat in range(AMDAHL_REPEATS):
        for workers in (1, 2):
            options = {"scheduler": "local-cluster", "workers": workers, "threads_per_worker": 1}
            r = run_pipeline(mosaic, workdir, n, dask_options=options, name=f"-cluster{workers}")
            t = r["stages_s"]
            stages = {
                "start-up": r["seconds"] - t["total"], "open": t["open"], "sample": t["sample"], "fit": t["fit"],
                "label_write": t["label_write"], "place": t["place"], "finalise_client": t["finalise"],
                "sidecars": t["total"] - sum(t[k] for k in ("open", "sample", "fit", "label_write", "place", "finalise")),
                "wall": r["seconds"],
            }
            # The machine is shared: the fastest of the repeats is the least disturbed.
            runs[workers] = {k: min(v, runs.get(workers, stages)[k]) for k, v in stages.items()}
    client = client_at_iowa()
    x = IOWA_PIXELS / pixels
    table = []
    for stage, where, basis, project in AMDAHL_STAGES:
        t1, t2 = runs[1][stage], runs[2][stage]
        bookkeeping = {"label_write": client["graph_s"], "finalise_client": client["header_s"]}.get(stage, 0.0)
        table.append({
            "stage": stage, "where": where, "basis": basis, "1_worker_s": round(t1, 2), "2_workers_s": round(t2, 2),
            "speed_up": round(t1 / t2, 2) if t2 else None, "iowa_100_workers_s": round(project(t1, t2, x, bookkeeping), 1),
        })
    return {"mosaic": f"{n}x{n}", "megapixels": round(pixels / 1e6, 1), "iowa_over_mosaic": round(x, 1), "runs": runs, "table": table, "iowa_client": client}


def print_amdahl(result: dict[str, Any]) -> None:
    print(f"\nAmdahl at {result['mosaic']} ({result['megapixels']} MP) on local-cluster, projected to {AMDAHL_WORKERS} workers "
          f"at Iowa (x{result['iowa_over_mosaic']} pixels):")
    print(f"{'stage':>16} {'1 w s':>7} {'2 w s':>7} {'1/2':>5} {'Iowa s':>8}  {'projection':<18} where")
    for row in result["table"]:
        print(f"{row['stage']:>16} {row['1_worker_s']:>7.2f} {row['2_workers_s']:>7.2f} {row['speed_up']:>5.2f} "
              f"{row['iowa_100_workers_s']:>8.1f}  {row['basis']:<18} {row['where']}")
    print(f"{'wall':>16} {result['runs'][1]['wall']:>7.2f} {result['runs'][2]['wall']:>7.2f}")
    c = result["iowa_client"]
    print(f"client at Iowa, measured: graph of {c['chunks']:,} chunk tasks + {c['tree_nodes']:,} tree nodes {c['graph_s']:.2f} s; "
          f"header and tile index of {c['tiles']:,} tiles {c['header_s']:.2f} s")


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

    try:
        from dask_ml.cluster import KMeans
    except ImportError as error:  # run_peers skips this peer when dask_ml is missing; this is the direct _peer call
        sys.exit(f"error: {DASKML_MISSING}: {error}")

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
        f"r.out.gdal --overwrite input=labels output={out} format=GTiff createopt=COMPRESS=DEFLATE,TILED=YES\n"
    )
    subprocess.run(["grass", "--tmp-location", str(mosaic), "--exec", "sh", str(script)], check=True)


PEERS = {"sklearn": peer_sklearn, "daskml": peer_daskml, "grass": peer_grass}


def run_peer(name: str, mosaic: Path, workdir: Path, n: int) -> dict[str, float]:
    out = artefact(workdir, f"peer-{name}", n)
    return timed_run([sys.executable, str(Path(__file__).resolve()), "_peer", name, str(mosaic), str(out)])


def run_peers(mosaic: Path, workdir: Path, n: int, with_daskml: bool) -> dict[str, Any]:
    """The in-memory peers, at the small size (the seed method needs ~8 GB at 67 MP)."""
    peers: dict[str, Any] = {"sklearn": run_peer("sklearn", mosaic, workdir, n)}
    if not daskml_available():  # optional, like GRASS: dask-ml may leave the dependencies
        peers["daskml"] = {"skipped": DASKML_MISSING}
    elif with_daskml:
        peers["daskml"] = run_peer("daskml", mosaic, workdir, n)
    else:
        peers["daskml"] = {"skipped": "slow (~10 min at 67 MP); run with --with-daskml-full"}
    return peers


def daskml_available() -> bool:
    return find_spec("dask_ml") is not None


def library_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # an optional peer's library (dask-ml)
        return "not installed"


def inertia_ratio(mosaic: Path, ours: Path, reference: Path) -> dict[str, float]:
    """Our inertia over all valid pixels divided by scikit-learn's, both in float64, block by block."""
    ours_c = np.asarray(json.loads(ours.with_name(ours.stem + ".model.json").read_text())["centroids"])
    # The seed peer's KMeans (n_init="auto" is one k-means++ run) on every pixel is the reference fit.
    reference_c = np.asarray(json.loads(reference.with_suffix(".centroids.json").read_text()))
    both = np.vstack([ours_c, reference_c])  # one distance pass serves both models
    sums = np.zeros(2)
    invalid = 0
    with rasterio.open(mosaic) as src:
        for _, window in src.block_windows(1):
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
    git = ["git", "-C", str(REPO), "describe", "--always", "--dirty"]  # the package may change between runs
    return {
        "pipeline_commit": subprocess.run(git, capture_output=True, text=True).stdout.strip(),
        "cores": os.cpu_count(),
        "ram_gb": round(kbytes / 2**20, 1),
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),  # > cores means the timings were contended
        "python": platform.python_version(),
        "gdal": rasterio.__gdal_version__,
        **{lib: library_version(lib) for lib in LIBRARIES},
    }


# Back-to-back pairs at the largest size (--compare): a baseline run, then the same run with more.
COMPARISONS = {
    "postprocess": ({}, {"postprocess": {"majority": 3, "sieve": 16, "connectivity": 8}}),
    "overviews": ({"output": {"overviews": "nearest"}}, {"output": {"overviews": "mode"}}),
}


def compare(mosaic: Path, workdir: Path, n: int, which: str, repeats: int = 2) -> dict[str, Any]:
    """Wall and peak RSS of ``which``'s two configs, run alternately ``repeats`` times; the
    ratios of their medians (the second over the first)."""
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for _ in range(repeats):
        for label, sections in zip(runs, COMPARISONS[which]):
            runs[label].append(run_pipeline(mosaic, workdir, n, name=f"-{which}-{label}", sections=sections))
    median = {label: {key: float(np.median([r[key] for r in rs])) for key in ("seconds", "peak_rss_gb")} for label, rs in runs.items()}
    return {
        "with_over_without": {key: round(median["with"][key] / median["without"][key], 3) for key in ("seconds", "peak_rss_gb")},
        "median": median,
        "runs": runs,
        "configs": COMPARISONS[which],
    }


def print_table(result: dict[str, Any]) -> None:
    stages = ("open", "sample", "fit", "label_write", "finalise", "place")
    print(
        f"{'mosaic':>8} {'MP':>6} {'floor s':>8} {'pipe s':>7} {'pipe/floor':>10} {'RSS GB':>6} {'GRASS s':>8} {'GRASS/pipe':>10}  "
        + " ".join(f"{s:>11}" for s in stages)
    )
    for size, r in result["seconds"].items():
        p, grass = r["pipeline"], r["grass"]
        grass_s = f"{grass['seconds']:>8.1f} {result['ratios']['grass_over_pipeline'][size]:>10.1f}" if "seconds" in grass else f"{'-':>8} {'-':>10}"
        print(
            f"{size:>8} {r['megapixels']:>6.1f} {r['floor_s']:>8.2f} {p['seconds']:>7.1f} {result['ratios']['pipeline_over_floor'][size]:>10.1f} "
            f"{p['peak_rss_gb']:>6.2f} {grass_s}  " + " ".join(f"{p['stages_s'][s]:>11.1f}" for s in stages)
        )
    if any("skipped" in r["grass"] for r in result["seconds"].values()):
        print(f"GRASS: {GRASS_MISSING}")
    print(f"\npeers at {result['peers']['at']} (seconds, peak RSS; x pipeline):")
    for name, ratio in result["ratios"]["peers_over_pipeline"].items():
        r = result["peers"][name]
        detail = f"skipped: {r['skipped']}" if "skipped" in r else f"{r['seconds']:.1f} s ({ratio['time']}x), {r['peak_rss_gb']:.2f} GB ({ratio['rss']}x)"
        print(f"  {name:>8}: {detail}")
    print()
    if result["ratios"]["rss_growth_small_to_large"]:
        print(f"pipeline RSS growth, small to large: {result['ratios']['rss_growth_small_to_large']}x")
    print(f"inertia over all valid pixels, ours / sklearn KMeans: {result['ratios']['inertia_ratio_ours_over_sklearn']:.5f}")
    print("\n".join(["", *result["notes"]]))


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
    parser.add_argument("--amdahl", action="store_true", help="also run the largest size on local-cluster with 1 and 2 workers (Amdahl table)")
    parser.add_argument("--compare", default="", help=f"comma-separated pairs run back to back at the largest size: {', '.join(COMPARISONS)}")
    parser.add_argument("--compare-only", action="store_true", help="--compare alone: no floor, peers or table (the mosaics are still built)")
    parser.add_argument("--state", action="store_true", help="the state-scale rehearsal instead (scripts/state_rehearsal.py; ~1 h)")
    parser.add_argument("--tiles", default="64x80", help="--state: rows x columns of tile files (2.08 MP each)")
    parser.add_argument("--skip-cluster", action="store_true", help="--state: no local-cluster run")
    parser.add_argument("--skip-spread", action="store_true", help="--state: no 5-seed sample spread")
    parser.add_argument("--state-out", type=Path, default=None, help="--state / --state-http: the JSON to write (default benchmark-state.json / benchmark-state-http.json)")
    parser.add_argument("--harsh", action="store_true", help="the largest --sizes on the kind mosaic and on N x N overlapping files of mixed codecs, back to back (scripts/harsh_mosaic.py)")
    parser.add_argument("--state-http", action="store_true", help="the state rehearsal over loopback HTTP against local disk (scripts/state_http.py; a few minutes)")
    parser.add_argument("--cogs", type=int, default=192, help="--state-http: how many COGs (720 x 928 px each)")
    parser.add_argument("--naip-tiles", type=int, default=0, help="--state-http: instead, this many COGs (at most 4) the size of a NAIP quarter-quad")
    parser.add_argument("--steps", default="", help="--state: comma-separated subset of graph,open,sample,floor,threads,cleanup,cluster,small,identity,spread; --state-http: of runs,open,settings,look")
    parser.add_argument("--startup", action="store_true", help="fixed costs: --help and a run on one small chunk (scripts/startup.py; < 1 min)")
    parser.add_argument("--runs", type=int, default=7, help="--startup: runs of each command")
    args = parser.parse_args()
    if args.startup:
        import startup

        args.out.write_text(json.dumps(startup.main(["--runs", str(args.runs)]), indent=2) + "\n")
        return
    if args.harsh:
        import harsh_mosaic

        harsh_mosaic.main(args, run_pipeline=run_pipeline)
        return
    if args.state_http:
        import state_http

        args.state_out = args.state_out or Path("benchmark-state-http.json")
        state_http.main(args)
        return
    args.state_out = args.state_out or Path("benchmark-state.json")
    if args.state:
        import state_rehearsal

        state_rehearsal.main(args)
        return
    ns = [QUICK_SIZE] if args.quick else [int(s) for s in args.sizes.split(",")]
    with_daskml = args.with_daskml_full and not args.quick
    notes = [f"quick: {QUICK_SIZE}x{QUICK_SIZE} mosaic instead of 10x10 so the run stays under 2 min"] if args.quick else []
    if not daskml_available():  # run_peers skips the peer too
        notes.append(f"dask-ml full fit skipped: {DASKML_MISSING}")
        if args.with_daskml_full:
            print(f"note: --with-daskml-full ignored: {DASKML_MISSING}", flush=True)
    else:
        notes.append("dask-ml full fit " + ("included" if with_daskml else "skipped (no --with-daskml-full)"))

    comparisons = [c for c in args.compare.split(",") if c]
    if args.compare_only:
        mosaic = build_mosaic(ns[-1], args.scenes, args.workdir)
        result = {name: compare(mosaic, args.workdir, ns[-1], name) for name in comparisons}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        for name, r in result.items():
            print(f"{name}: with / without at {ns[-1]}x{ns[-1]}: wall {r['with_over_without']['seconds']}x, peak RSS {r['with_over_without']['peak_rss_gb']}x")
        return
    sizes: dict[str, dict[str, Any]] = {}
    for n in ns:
        mosaic = build_mosaic(n, args.scenes, args.workdir)
        with rasterio.open(mosaic) as src:
            megapixels = round(src.width * src.height / 1e6, 1)
        floor = round(read_floor([mosaic]), 3)
        sizes[f"{n}x{n}"] = {"megapixels": megapixels, "floor_s": floor, "pipeline": run_pipeline(mosaic, args.workdir, n)}
        # GRASS streams from disk, so it runs at every size
        sizes[f"{n}x{n}"]["grass"] = run_peer("grass", mosaic, args.workdir, n) if shutil.which("grass") else {"skipped": GRASS_MISSING}
    small = artefact(args.workdir, "mosaic", ns[0])
    peers = run_peers(small, args.workdir, ns[0], with_daskml)
    quality = inertia_ratio(small, artefact(args.workdir, "labels", ns[0]), artefact(args.workdir, "peer-sklearn", ns[0]))

    pipe = [r["pipeline"] for r in sizes.values()]
    result = {
        "ratios": {
            "pipeline_over_floor": {size: round(r["pipeline"]["seconds"] / r["floor_s"], 1) for size, r in sizes.items()},
            "peers_over_pipeline": {
                name: r if "skipped" in r else {"time": round(r["seconds"] / pipe[0]["seconds"], 2), "rss": round(r["peak_rss_gb"] / pipe[0]["peak_rss_gb"], 2)}
                for name, r in peers.items()
            },
            "grass_over_pipeline": {
                size: round(r["grass"]["seconds"] / r["pipeline"]["seconds"], 2) for size, r in sizes.items() if "seconds" in r["grass"]
            },
            "peak_rss_gb": {size: r["pipeline"]["peak_rss_gb"] for size, r in sizes.items()},
            "rss_growth_small_to_large": round(pipe[-1]["peak_rss_gb"] / pipe[0]["peak_rss_gb"], 2) if len(pipe) > 1 else None,
            "inertia_ratio_ours_over_sklearn": quality["inertia_ratio"],
        },
        "notes": notes,
        "seconds": sizes,
        "peers": {"at": f"{ns[0]}x{ns[0]}", **peers},
        "quality": quality,
        "machine": machine(),
    }
    if args.amdahl:
        result["amdahl"] = amdahl(artefact(args.workdir, "mosaic", ns[-1]), args.workdir, ns[-1])
    for name in comparisons:
        result[f"compare_{name}"] = compare(artefact(args.workdir, "mosaic", ns[-1]), args.workdir, ns[-1], name)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    if args.amdahl:
        print_amdahl(result["amdahl"])
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
