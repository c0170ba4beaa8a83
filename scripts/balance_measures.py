"""Measures of ``features.balance`` on the real NAIP scenes (issue 12; not timed tests).

    python scripts/balance_measures.py [--scenes DIR] [--out DIR] [--estimators tls,quantiles]

1. **Re-flown pair.** One scene cut into two tiles overlapping by 20 % of the scene (186 columns),
   the right tile "re-flown" (per-band gain 0.82-1.12, offset -8..+12 DN, gamma 0.9): adjusted
   Rand index of the labels against the labels of the untouched scene, with ``none`` and with
   ``overlaps`` (each estimator). Per scene.
2. **No harm.** Two overlapping tiles of different content and one radiometry: the left tile from
   the 2009 scene, the right tile the same ground in the overlap (with independent 2 DN noise)
   and the 2020 scene beyond it; labels with ``overlaps`` against ``none`` (% identical).
3. **Real years.** The four scenes (2009, 2012, 2016, 2020: one quarter-quad) as a 2 x 2 mosaic of
   crops that overlap in pairs. Each tile is labelled alone (with its correction) by the run's
   model over the central ground all four see; the mean pairwise difference of their class
   shares (total variation, %) with ``none`` and ``overlaps``; the map in ``--out``.
4. **Cost.** The balance stage's share of the run's wall time on each of these mosaics.

Writes ``balance_measures.json`` and ``real_years.png`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import yaml
from rasterio.windows import Window
from sklearn.metrics import adjusted_rand_score

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline.algo.balance.solve as balance_module  # noqa: E402
from pipeline import load_config, run  # noqa: E402
from pipeline.algo.kernel import label_block  # noqa: E402
from pipeline.algo.model import load_model  # noqa: E402
from pipeline.config import InputConfig  # noqa: E402
from pipeline.io.mosaic import WindowRead, open_mosaic, read  # noqa: E402
from pipeline.stages.edge import input_spec  # noqa: E402

log = logging.getLogger("balance_measures")
SHAPE = (720, 928)  # common crop of the four scenes
GAIN = np.array([0.82, 0.95, 1.12, 0.9])
OFFSET = np.array([-8.0, 12.0, 4.0, -3.0])
GAMMA = 0.9
K = 7


def scenes(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as src:
            out[path.stem[-8:-4]] = src.read(window=Window(0, 0, SHAPE[1], SHAPE[0])).astype(np.float64)
    if not out:
        sys.exit(f"error: no .tif in {folder}; pass --scenes")
    return out


def write(path: Path, image: np.ndarray, row: int = 0, col: int = 0, profile: dict | None = None) -> Path:
    """A uint8 DEFLATE GeoTIFF placed at (row, col) of the first scene's grid (nodata 0 as NAIP)."""
    base = dict(profile)
    t = base.pop("transform")
    data = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    with rasterio.open(
        path, "w", height=data.shape[1], width=data.shape[2], transform=t * rasterio.Affine.translation(col, row), **base
    ) as dst:
        dst.write(data)
    return path


def classify(folder: Path, paths: list[Path], method: str, estimator: str = balance_module.ESTIMATOR, *, name: str | None = None):
    """``landcover run`` in process (k = 7, default sample) into ``folder/name``: the result, labels, wall seconds."""
    name = name or f"{method}-{estimator}"
    doc = {
        "input": {"paths": [str(p) for p in paths]},
        "features": {"balance": method},
        "model": {"k": K},
        "output": {"path": str(folder / name / "labels.tif"), "overwrite": True},
    }
    config_path = folder / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(doc))
    # The estimator is a module constant, not a config key: measured here to choose it.
    balance_module.balance.__kwdefaults__["estimator"] = estimator
    try:
        started = time.perf_counter()
        result = run(load_config(config_path))
        wall = time.perf_counter() - started
    finally:
        balance_module.balance.__kwdefaults__["estimator"] = balance_module.ESTIMATOR
    with rasterio.open(result.output) as src:
        labels = src.read(1)
    return result, labels, wall


def ari(a: np.ndarray, b: np.ndarray) -> float:
    valid = (a > 0) & (b > 0)
    return float(adjusted_rand_score(a[valid], b[valid]))


def reflown(folder: Path, images: dict[str, np.ndarray], profile: dict, estimators: list[str]) -> list[dict]:
    rows = []
    left_end, right_start = 557, 371  # 60 % tiles; 186 columns (20 % of the scene) shared
    for year, image in images.items():
        sub = folder / f"reflown-{year}"
        sub.mkdir(parents=True, exist_ok=True)
        reference = write(sub / "scene.tif", image, profile=profile)
        left = write(sub / "left.tif", image[:, :, :left_end], profile=profile)
        right = image[:, :, right_start:]
        changed = 255 * (right / 255) ** GAMMA * GAIN[:, None, None] + OFFSET[:, None, None]
        changed = np.where(right.sum(axis=0) == 0, 0, np.clip(changed, 1, 255))  # nodata stays nodata
        right_path = write(sub / "right.tif", changed, col=right_start, profile=profile)
        _, truth, _ = classify(sub, [reference], "none", name="untouched")
        row = {"scene": year}
        result, labels, _ = classify(sub, [left, right_path], "none")
        row["none"] = ari(truth, labels)
        for estimator in estimators:
            result, labels, wall = classify(sub, [left, right_path], "overlaps", estimator)
            row[estimator] = ari(truth, labels)
            row[f"{estimator}_balance_share"] = result.report.timings["balance"] / wall
        rows.append(row)
        log.info("re-flown %s: %s", year, row)
    return rows


def no_harm(folder: Path, images: dict[str, np.ndarray], profile: dict) -> dict:
    sub = folder / "no-harm"
    sub.mkdir(parents=True, exist_ok=True)
    years = sorted(images)
    first, last = images[years[0]], images[years[-1]]
    left_end, right_start = 557, 371
    left = write(sub / "left.tif", first[:, :, :left_end], profile=profile)
    noise = np.random.default_rng(0).normal(0, 2.0, first.shape)
    right = np.concatenate([first[:, :, right_start:left_end] + noise[:, :, right_start:left_end], last[:, :, left_end:]], axis=2)
    right = np.where(right.sum(axis=0) <= 0, 0, np.clip(right, 1, 255))
    right_path = write(sub / "right.tif", right, col=right_start, profile=profile)
    _, plain, _ = classify(sub, [left, right_path], "none")
    result, balanced, _ = classify(sub, [left, right_path], "overlaps")
    gains = [t.gains for t in result.model.balance.tiles]
    return {"identical_percent": float(100 * (plain == balanced).mean()), "gains": gains}


def real_years(folder: Path, images: dict[str, np.ndarray], profile: dict, png: Path, estimators: list[str]) -> dict:
    sub = folder / "real-years"
    sub.mkdir(parents=True, exist_ok=True)
    h, w = SHAPE
    rows_end, rows_start, cols_end, cols_start = 432, 288, 557, 371  # 60 % crops; 20 % shared
    layout = [((0, rows_end), (0, cols_end)), ((0, rows_end), (cols_start, w)), ((rows_start, h), (0, cols_end)), ((rows_start, h), (cols_start, w))]
    paths = []
    for (year, image), ((r0, r1), (c0, c1)) in zip(sorted(images.items()), layout):
        paths.append(write(sub / f"m_4709963_se_14_1_{year}0701.tif", image[:, r0:r1, c0:c1], row=r0, col=c0, profile=profile))
    centre = Window(cols_start, rows_start, cols_end - cols_start, rows_end - rows_start)
    out: dict = {"years": sorted(images)}
    maps = {}
    for method, estimator in [("none", balance_module.ESTIMATOR), *(("overlaps", e) for e in estimators)]:
        result, labels, wall = classify(sub, paths, method, estimator)
        name = method if method == "none" else f"overlaps-{estimator}"
        if method == "none" or estimator == balance_module.ESTIMATOR:
            maps[method] = (labels, result)
        model = load_model(result.model_path)
        mosaic = open_mosaic(input_spec(InputConfig(paths=tuple(map(str, paths)))), chunk=2048)
        tiles = mosaic.tiles
        if method == "overlaps":
            from pipeline.algo.balance import balance_for_predict

            mosaic, _ = balance_for_predict(mosaic, model.balance, seed=0)
            tiles = mosaic.tiles
        shares = []
        for tile in tiles:
            block = read(WindowRead(centre, (tile,), mosaic.bands, mosaic.access))
            labels_alone = label_block(model.features.apply(block), model.centroids)[0]
            counts = np.bincount(labels_alone.ravel(), minlength=K + 1)[1:]
            shares.append(counts / counts.sum())
        shares = np.array(shares)
        tv = [0.5 * np.abs(shares[a] - shares[b]).sum() for a in range(4) for b in range(a + 1, 4)]
        out[name] = {
            "class_share_tv_percent_mean": float(100 * np.mean(tv)),
            "class_share_tv_percent_max": float(100 * np.max(tv)),
            "balance_share": result.report.timings.get("balance", 0.0) / wall,
        }
        if method == "overlaps":
            out[name]["seam_rms_before"] = result.report.balance["seam_rms_before"]
            out[name]["seam_rms_after"] = result.report.balance["seam_rms_after"]
    _map(maps, png)
    return out


def cost(folder: Path, images: dict[str, np.ndarray], profile: dict, n: int, scale: int = 1, repeats: int = 2) -> dict:
    """Wall time of ``run`` with and without balance on an n x n grid of overlapping tiles (each
    ``scale`` x ``scale`` scenes of one canvas, 20 % overlap, as NAIP's buffers): the best of
    ``repeats`` runs each, alternated, on this busy machine. The balance reads a few windows per
    pair, so its share falls as tiles grow (a NAIP quarter-quad is ~200 of our scenes)."""
    sub = folder / f"cost-{n}x{n}-{scale}"
    sub.mkdir(parents=True, exist_ok=True)
    h, w = SHAPE[0] * scale, SHAPE[1] * scale
    stride_r, stride_c = int(h * 0.8), int(w * 0.8)
    variants = [v for image in images.values() for v in (image, image[:, ::-1], image[:, :, ::-1])]
    canvas_h, canvas_w = stride_r * (n - 1) + h, stride_c * (n - 1) + w
    canvas = np.zeros((4, canvas_h, canvas_w))
    sh, sw = SHAPE
    for r in range(0, canvas_h, sh):
        for c in range(0, canvas_w, sw):
            v = variants[(r // sh * 7 + c // sw) % len(variants)]
            canvas[:, r : r + sh, c : c + sw] = v[:, : canvas_h - r, : canvas_w - c]
    # Each tile "flown" with its own per-band gain, so that the corrections are applied on read.
    gains = np.random.default_rng(n).uniform(0.9, 1.1, (n, n, 4))
    paths = []
    for i in range(n):
        for j in range(n):
            crop = canvas[:, i * stride_r : i * stride_r + h, j * stride_c : j * stride_c + w]
            flown = np.where(crop.sum(axis=0) == 0, 0, np.clip(crop * gains[i, j][:, None, None], 1, 255))
            paths.append(write(sub / f"tile_{i:02d}_{j:02d}.tif", flown, row=i * stride_r, col=j * stride_c, profile=profile))
    walls: dict[str, list[float]] = {"none": [], "overlaps": []}
    balance_s = []
    for _ in range(repeats):
        for method in walls:
            result, _, wall = classify(sub, paths, method)
            walls[method].append(wall)
            if method == "overlaps":
                balance_s.append(result.report.timings["balance"])
    best = {m: min(v) for m, v in walls.items()}
    return {
        "tiles": n * n,
        "tile_megapixels": h * w / 1e6,
        "megapixels": canvas_h * canvas_w / 1e6,
        "pairs": result.report.balance["pairs"],
        "wall_ratio": best["overlaps"] / best["none"],
        "balance_over_none": min(balance_s) / best["none"],
        "balance_share": min(balance_s) / best["overlaps"],
    }


def _map(maps: dict, png: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.4))
    axes = fig.subplots(1, 2)
    for ax, (method, (labels, result)) in zip(axes, maps.items()):
        palette = result.model.palette
        lut = np.zeros((256, 3), dtype=np.uint8)
        for c, rgb in palette.items():
            lut[c] = rgb[:3]
        ax.imshow(lut[labels], interpolation="nearest")
        ax.set_title(f"features.balance: {method}")
        ax.set_xticks([])
        ax.set_yticks([])
        for r in (288, 432):
            ax.axhline(r, color="white", linewidth=0.6, linestyle="--")
        for c in (371, 557):
            ax.axvline(c, color="white", linewidth=0.6, linestyle="--")
    fig.suptitle("2009 | 2012 / 2016 | 2020 crops of one quarter-quad; dashed: tile edges")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=Path, default=REPO.parent / "shared" / "data" / "naip")
    parser.add_argument("--out", type=Path, default=REPO / "balance-measures")
    parser.add_argument("--estimators", default="tls,quantiles")
    parser.add_argument("--reflown-scenes", type=int, default=4, help="how many scenes to re-fly (1-4)")
    parser.add_argument("--cost-grid", type=int, default=10, help="n: the cost measure's n x n grid of overlapping tiles (0 = skip)")
    parser.add_argument("--cost-scale", type=int, default=1, help="scenes per tile side in the cost measure")
    parser.add_argument("--only-cost", action="store_true", help="only the cost measure")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    images = scenes(args.scenes)
    with rasterio.open(sorted(args.scenes.glob("*.tif"))[0]) as src:
        profile = dict(
            driver="GTiff", dtype="uint8", count=4, crs=src.crs, nodata=0, tiled=True, blockxsize=512, blockysize=512,
            compress="deflate", photometric="MINISBLACK", transform=src.transform,
        )
    estimators = args.estimators.split(",")
    picked = dict(list(images.items())[: args.reflown_scenes])
    if args.only_cost:
        print(json.dumps(cost(args.out, images, profile, args.cost_grid, args.cost_scale), indent=1))
        return
    results = {
        "reflown": reflown(args.out, picked, profile, estimators),
        "no_harm": no_harm(args.out, images, profile),
        "real_years": real_years(args.out, images, profile, args.out / "real_years.png", estimators),
    }
    if args.cost_grid:
        results["cost"] = cost(args.out, images, profile, args.cost_grid, args.cost_scale)
    (args.out / "balance_measures.json").write_text(json.dumps(results, indent=1))
    print("re-flown pair: ARI against the untouched scene (k = 7)")
    print(f"  {'scene':6} {'none':>6} " + " ".join(f"{e:>10}" for e in estimators) + "  balance share of wall time")
    for row in results["reflown"]:
        shares = ", ".join(f"{100 * row[f'{e}_balance_share']:.1f} %" for e in estimators)
        print(f"  {row['scene']:6} {row['none']:6.3f} " + " ".join(f"{row[e]:10.3f}" for e in estimators) + f"  {shares}")
    print(f"no harm: {results['no_harm']['identical_percent']:.2f} % of labels identical (overlaps vs none)")
    ry = results["real_years"]
    print("real years: class shares over the ground all four tiles see, pairwise difference between tiles (mean, max)")
    for name in ["none", *(f"overlaps-{e}" for e in estimators)]:
        row = ry[name]
        seam = f"; seam RMS {np.mean(row['seam_rms_before']):.1f} -> {np.mean(row['seam_rms_after']):.1f} DN" if "seam_rms_before" in row else ""
        print(
            f"  {name:20} {row['class_share_tv_percent_mean']:5.1f} % {row['class_share_tv_percent_max']:5.1f} %"
            f"{seam}; balance {100 * row['balance_share']:.1f} % of wall time"
        )
    if "cost" in results:
        c = results["cost"]
        print(
            f"cost: {c['tiles']} overlapping tiles of {c['tile_megapixels']:.1f} MP ({c['megapixels']:.0f} MP, {c['pairs']} pairs): wall time with balance "
            f"{c['wall_ratio']:.3f}x without; the balance stage {100 * c['balance_over_none']:.1f} % of the run without"
        )


if __name__ == "__main__":
    main()
