"""Does the fit find the same optimum whatever the seed? The measure of issue 12.

For each scene (the real NAIP scenes in ../shared/data/naip, one at a time, and the demo scene)
and each k, the sample is drawn and fitted with seeds 0..4 as ``landcover run`` does (default
config otherwise), every pixel of the scene is labelled with each seed's centroids, and the script
prints the lowest adjusted Rand index between any two seeds' maps, the spread of the inertias over
all pixels ((max - min) / min) and the median fit time. Each seeding listed in ``--init``
(``model.init``) is fitted in turn on each seed's sample, back to back with the fit as it was
before issue 12 (dask-ml's k-means||, 8 rounds, 3 restarts on 100 000 pixels, the best refined on
the sample; ``--no-old`` leaves it out), which is measured the same way. Times are also given as
a ratio to the first fit listed, and for each seeding how many of a fit's restarts reached its
best inertia (fewest-most over the seeds). Targets: ARI >= 0.98, spread <= 0.5 %, fit time <= 2x the old one.

    python scripts/fit_stability.py [--k 5,7,10] [--seeds 5] [--scenes 2009,demo] [--init 'k-means++,k-means||']
                                    [--no-old] [--json PATH] [--naip DIR,DIR] [--crop 1,0.5] [--size 1000000,100000]

``--naip`` takes other folders of scenes too (e.g. other years of the quarter-quad, kept outside
the repository); ``--crop`` fits central crops of each scene (a fraction of each side) as scenes
of their own, and ``--size`` other sample sizes (a sample smaller than the scene is a different
draw for every seed): variants nobody tuned on. The last line gives the worst case over them.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import rasterio
from rasterio.windows import Window
from sklearn.metrics import adjusted_rand_score

from pipeline.algo.kernel import nearest
from pipeline.algo.kmeans import fit_kmeans
from pipeline.algo.lloyd import sum_squared_errors
from pipeline.algo.sample import draw_sample, fixed_sample, full_matrix
from pipeline.algo.seeding import SEEDINGS
from pipeline.config import Config
from pipeline.io.mosaic import open_mosaic, to_dask
from pipeline.stages.edge import input_spec

ROOT = Path(__file__).resolve().parent.parent
NAIP = ROOT.parent / "shared" / "data" / "naip"
DEMO = ROOT / "data" / "demo" / "naip_like.tif"
TARGET_ARI, TARGET_SPREAD, TARGET_RATIO = 0.98, 0.5, 2.0
OLD = "old"


def fit_before_issue_12(sample: np.ndarray, *, k: int, max_iter: int, tol: float, seed: int) -> np.ndarray:
    """The fit before issue 12, as the reference: 3 dask-ml k-means|| restarts (8 rounds) on the
    first 100 000 rows of the sample, the lowest inertia refined by dask-ml's Lloyd on all of it."""
    from dask_ml.cluster import (
        KMeans,  # only for this reference, no longer a dependency
    )

    tol_absolute = tol * float(sample.var(axis=0, dtype=np.float64).mean())

    def lloyd(matrix: da.Array, init, restart_seed: int = 0) -> np.ndarray:
        model = KMeans(n_clusters=k, init=init, max_iter=max_iter, tol=tol_absolute, random_state=restart_seed, init_max_iter=8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(matrix)
        return np.asarray(model.cluster_centers_, dtype=np.float64)

    head = sample[:100_000]
    chunked = [da.from_array(m, chunks=(262_144, -1)).persist() for m in (head, sample)]
    restarts = [lloyd(chunked[0], "k-means||", int(np.random.SeedSequence([seed, r]).generate_state(1)[0])) for r in range(3)]
    best = min(restarts, key=lambda c: sum_squared_errors(head, c))
    return lloyd(chunked[1], best)


def scenes(wanted: list[str] | None, folders: list[Path]) -> dict[str, Path]:
    found = {p.stem.rsplit("_", 1)[-1][:4]: p for folder in folders for p in sorted(folder.glob("*.tif"))}
    if not found:
        print(f"note: no NAIP scenes in {', '.join(map(str, folders))}; measuring the demo only", file=sys.stderr)
    if not DEMO.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo.py")], check=True)
    found["demo"] = DEMO
    return {name: path for name, path in found.items() if not wanted or name in wanted}


def cropped(path: Path, share: float, folder: Path) -> Path:
    """The central ``share`` of each side of a scene, as a GeoTIFF of its own in ``folder``."""
    if share >= 1:
        return path
    out = folder / f"{path.stem}-crop{share:g}.tif"
    if not out.exists():
        with rasterio.open(path) as src:
            h, w = round(src.height * share), round(src.width * share)
            window = Window((src.width - w) // 2, (src.height - h) // 2, w, h)
            # MINISBLACK: otherwise GDAL marks band 4 (NIR) of the copy as alpha.
            profile = {**src.profile, "height": h, "width": w, "transform": src.window_transform(window), "photometric": "MINISBLACK"}
            with rasterio.open(out, "w", **profile) as dst:
                dst.write(src.read(window=window))
    return out


def measure(path: Path, ks: list[int], seeds: int, fits: list[str], size: int | None = None) -> list[dict]:
    """Per k, for each of ``fits`` (seedings, and OLD for the fit before issue 12): the lowest ARI
    between seeds' maps, the inertia spread and the median fit time, and for each seeding how many
    fits were unstable and how many restarts of each fit reached its best. On each seed's sample
    the fits run one after the other, so their times are measured under the same load."""
    config = Config.model_validate({"input": {"paths": [str(path)]}, **({"sample": {"size": size}} if size else {})})
    m = config.model
    mosaic = open_mosaic(input_spec(config.input), chunk=config.dask.chunk)
    pixels = full_matrix(to_dask(mosaic)).compute()
    samples = [draw_sample(mosaic, size=config.sample.size, seed=s) for s in range(seeds)]
    # As ``landcover run`` decides ties: on a sample drawn with a fixed seed, the same for every seed.
    decide = functools.cache(lambda: fixed_sample(mosaic, samples[0], size=len(samples[0].pixels)))
    rows = []
    for k in ks:
        found: dict[str, list] = {name: [] for name in fits}
        seconds: dict[str, list] = {name: [] for name in fits}
        unstable = dict.fromkeys(fits, 0)
        reached: dict[str, list] = {name: [] for name in fits}
        for seed, drawn in enumerate(samples):
            sample = drawn.pixels
            for name in fits:
                began = time.perf_counter()
                if name == OLD:
                    centroids = fit_before_issue_12(sample, k=k, max_iter=m.max_iter, tol=m.tol, seed=seed)
                else:
                    fit = fit_kmeans(
                        sample, seeds_from=sample, k=k, n_init=m.n_init, max_iter=m.max_iter, tol=m.tol, seed=seed, init=name,
                        reference=drawn.reference, decide=decide, whole=drawn.record.whole,
                    )
                    centroids = fit.centroids
                    unstable[name] += bool(fit.restarts.unstable)
                    reached[name].append(fit.restarts.reached_best)
                seconds[name].append(time.perf_counter() - began)
                found[name].append(centroids)
        row = {"k": k, "pixels": len(pixels), "sample": len(samples[0].pixels), "seeds": seeds}
        for name, centroids in found.items():
            maps = [nearest(pixels.T, c)[0] for c in centroids]
            inertias = np.array([sum_squared_errors(pixels, c) for c in centroids])
            row[name] = {
                "min_ari": min(adjusted_rand_score(a, b) for a, b in itertools.combinations(maps, 2)),
                "inertia_spread_pct": 100 * (inertias.max() / inertias.min() - 1),
                "fit_s": float(np.median(seconds[name])),
                "unstable_fits": None if name == OLD else unstable[name],
                "restarts_reached_best": reached[name],
            }
        rows.append(row)
    return rows


def print_row(scene: str, row: dict, fits: list[str]) -> None:
    for name in fits:
        r = row[name]
        unstable = "" if r["unstable_fits"] is None else f"{r['unstable_fits']} of {row['seeds']}"
        reached = f"{min(r['restarts_reached_best'])}-{max(r['restarts_reached_best'])}" if r["restarts_reached_best"] else ""
        print(
            f"{scene:>12} {row['k']:>3} {name:>10} {r['min_ari']:>8.3f} {r['inertia_spread_pct']:>9.3f} {r['fit_s']:>6.2f} "
            f"{r['fit_s'] / row[fits[0]]['fit_s']:>10.2f} {reached:>8}  {unstable}",
            flush=True,
        )


def summarise(rows: list[dict], fits: list[str]) -> tuple[dict, dict]:
    """Per fit, its total fit time over the table as a ratio to the first fit's, and per seeding
    whether it met the targets (the time target against the old fit, when that was measured)."""
    total = {name: sum(r[name]["fit_s"] for r in rows) for name in fits}
    ratios = {name: total[name] / total[fits[0]] for name in fits}
    met = {}
    for name in fits:
        if name == OLD:
            continue
        met[name] = {  # plain bools for JSON
            f"min ARI >= {TARGET_ARI}": bool(min(r[name]["min_ari"] for r in rows) >= TARGET_ARI),
            f"inertia spread <= {TARGET_SPREAD} %": bool(max(r[name]["inertia_spread_pct"] for r in rows) <= TARGET_SPREAD),
        }
        if OLD in fits:
            met[name][f"fit time <= {TARGET_RATIO}x the old"] = bool(total[name] <= TARGET_RATIO * total[OLD])
    return ratios, met


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", default="5,7,10", help="comma-separated k (default 5,7,10)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--scenes", default=None, help="comma-separated: 2009, 2012, 2016, 2020, demo (default all)")
    p.add_argument(
        "--init", default="k-means++", help=f"comma-separated seedings (model.init) to fit: {', '.join(SEEDINGS)} (default k-means++)"
    )
    p.add_argument("--no-old", action="store_true", help="leave out the fit before issue 12 (dask-ml's k-means||)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--naip", default=str(NAIP), help="comma-separated folders of scenes (default ../shared/data/naip)")
    p.add_argument("--crop", default="1", help="comma-separated shares of each side: central crops fitted as scenes (default 1)")
    p.add_argument("--size", default="", help="comma-separated sample sizes (default: the config's, 1000000)")
    args = p.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    fits = args.init.split(",")
    unknown = [name for name in fits if name not in SEEDINGS]
    if unknown:
        p.error(f"--init: unknown seeding(s) {', '.join(unknown)}; use {', '.join(SEEDINGS)}")
    if not args.no_old and importlib.util.find_spec("dask_ml") is None:
        print("note: dask-ml is not installed (pip install dask-ml): the fit before issue 12 is left out", file=sys.stderr)
        args.no_old = True
    fits += [] if args.no_old else [OLD]
    results = {}
    folders = [Path(f) for f in args.naip.split(",")]
    crops = [float(c) for c in args.crop.split(",")]
    sizes = [int(v) for v in args.size.split(",")] if args.size else [None]
    print(f"{'scene':>12} {'k':>3} {'fit':>10} {'min ARI':>8} {'spread %':>9} {'fit s':>6} {'/' + fits[0]:>10} {'reached':>8}  unstable")
    with dask.config.set(scheduler="threads"), tempfile.TemporaryDirectory() as crops_dir:
        for name, path in scenes(args.scenes.split(",") if args.scenes else None, folders).items():
            for share, size in itertools.product(crops, sizes):
                variant = name + (f"/{share:g}" if share < 1 else "") + (f"@{size // 1000}k" if size else "")
                results[variant] = measure(cropped(path, share, Path(crops_dir)), ks, args.seeds, fits, size)
                for row in results[variant]:
                    print_row(variant, row, fits)
    ratios, met = summarise([r for rs in results.values() for r in rs], fits)
    for name in fits[1:]:
        print(f"fit time, {name} / {fits[0]}, summed over the table: {ratios[name]:.2f}")
    for name, targets in met.items():
        for target, ok in targets.items():
            print(f"{name}: {'met' if ok else 'NOT met'}: {target}")
        worst = min(((r[name]["min_ari"], variant, r["k"]) for variant, rows in results.items() for r in rows))
        print(f"{name}: worst case min ARI {worst[0]:.3f} ({worst[1]}, k = {worst[2]})")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "targets": met, "time_ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
