"""ISODATA on the real scenes: is its k seed-stable, is its map, what does it cost? (issue 19)

For each scene (each real NAIP scene in ../shared/data/naip, the four as one mosaic, "mosaic",
and the demo) and each start k, the sample is drawn with seeds 0..4 as ``landcover run`` draws
it (default config, ``model.method: isodata``), ISODATA chooses k on it and the restarts fit that
k, exactly as the fit stage does; then, back to back on the same sample, the K-Means fit alone at
the same final k. Every valid pixel of the scene is labelled with each seed's centroids.
Printed per scene and start: the k of each seed, the lowest adjusted Rand index between two
seeds' maps, the median fit times and their ratio (ISODATA + restarts / restarts alone). With
``--sweep``, ``landcover sweep`` over ``--sweep-k`` on seed 0 gives the suggested range (knee to
best silhouette) and whether ISODATA's k falls in it. Targets: one k over the seeds, ARI >= 0.98,
cost ratio <= 3.

    python scripts/isodata_measures.py [--scenes 2009,mosaic] [--starts 2,7,12] [--seeds 5] [--sweep] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from pipeline.algo.kernel import nearest
from pipeline.algo.kmeans import fit_kmeans
from pipeline.algo.sample import full_matrix
from pipeline.config import Config
from pipeline.io.imagery import mosaic_imagery
from pipeline.io.mosaic import open_mosaic, to_dask
from pipeline.stages.edge import features_of, input_spec
from pipeline.stages.fit import prepare_sample, run_isodata
from pipeline.stages.sweep import parse_k, sweep

ROOT = Path(__file__).resolve().parent.parent
NAIP = ROOT.parent / "shared" / "data" / "naip"
DEMO = ROOT / "data" / "demo" / "naip_like.tif"
TARGET_ARI, TARGET_RATIO = 0.98, 3.0


def scenes(wanted: list[str] | None) -> dict[str, list[str]]:
    found = {p.stem.rsplit("_", 1)[-1][:4]: [str(p)] for p in sorted(NAIP.glob("*.tif"))}
    if found:
        found["mosaic"] = [str(NAIP / "*.tif")]
    else:
        print(f"note: no NAIP scenes at {NAIP}; measuring the demo only", file=sys.stderr)
    if DEMO.exists():
        found["demo"] = [str(DEMO)]
    return {name: paths for name, paths in found.items() if not wanted or name in wanted}


def config_for(paths: list[str], k: int) -> Config:
    return Config.model_validate({
        "input": {"paths": paths, "band_names": ["red", "green", "blue", "nir"]}, "model": {"k": k, "method": "isodata"},
    })


def measure(paths: list[str], start: int, seeds: int) -> dict:
    config = config_for(paths, start)
    m = config.model
    mosaic = open_mosaic(input_spec(config.input), chunk=config.dask.chunk)
    features = features_of(config.features, mosaic.band_names)
    pixels = np.ascontiguousarray(full_matrix(to_dask(mosaic)).compute().T)
    ks, maps, isodata_s, kmeans_s, iterations = [], [], [], [], []
    for seed in range(seeds):
        _, spec, sample = prepare_sample(mosaic_imagery(mosaic), features, size=config.sample.size, seed=seed)
        began = time.perf_counter()
        chosen = run_isodata(m, sample, spec.names)
        fit = fit_kmeans(sample, seeds_from=sample, k=chosen.k, n_init=m.n_init, max_iter=m.max_iter, tol=m.tol, seed=seed, init=m.init)
        isodata_s.append(time.perf_counter() - began)
        began = time.perf_counter()
        fit_kmeans(sample, seeds_from=sample, k=chosen.k, n_init=m.n_init, max_iter=m.max_iter, tol=m.tol, seed=seed, init=m.init)
        kmeans_s.append(time.perf_counter() - began)
        ks.append(chosen.k)
        iterations.append(len(chosen.history))
        maps.append(nearest(spec.apply(pixels), fit.centroids)[0])
    return {
        "start": start, "pixels": pixels.shape[1], "ks": ks, "iterations": iterations,
        "min_ari": min(adjusted_rand_score(a, b) for a, b in itertools.combinations(maps, 2)),
        "isodata_fit_s": float(np.median(isodata_s)), "kmeans_fit_s": float(np.median(kmeans_s)),
        "ratio": float(np.median(np.array(isodata_s) / np.array(kmeans_s))),
    }


def sweep_range(paths: list[str], start: int, ks: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result, _, _ = sweep(config_for(paths, start), parse_k(ks), out_dir=out)
    return {"range": list(result.suggested_range), "isodata_k": result.isodata.k, "inside": result.isodata_in_range}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", help="comma-separated: 2009,2012,2016,2020,mosaic,demo (default all)")
    parser.add_argument("--starts", default="7", help="model.k values ISODATA starts from (default 7)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sweep", action="store_true", help="also sweep --sweep-k on seed 0")
    parser.add_argument("--sweep-k", default="3..12")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    print(f"{'scene':>7} {'start':>5} {'k per seed':>18} {'min ARI':>8} {'isodata s':>9} {'kmeans s':>8} {'ratio':>6}  sweep")
    for name, paths in scenes(args.scenes.split(",") if args.scenes else None).items():
        for start in (int(s) for s in args.starts.split(",")):
            row = {"scene": name, **measure(paths, start, args.seeds)}
            if args.sweep:
                row["sweep"] = sweep_range(paths, start, args.sweep_k)
            results.append(row)
            swept = "" if "sweep" not in row else f"range {row['sweep']['range']}, inside: {row['sweep']['inside']}"
            print(
                f"{name:>7} {start:>5} {row['ks']!s:>18} {row['min_ari']:>8.3f} {row['isodata_fit_s']:>9.2f} "
                f"{row['kmeans_fit_s']:>8.2f} {row['ratio']:>6.2f}  {swept}", flush=True,
            )
    stable = all(len(set(r["ks"])) == 1 for r in results)
    worst = min(r["min_ari"] for r in results)
    ratio = max(r["ratio"] for r in results)
    print(
        f"one k per scene and start: {stable}; worst ARI {worst:.3f} (target >= {TARGET_ARI}); "
        f"worst cost ratio {ratio:.2f} (target <= {TARGET_RATIO})"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
