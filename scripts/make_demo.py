"""Generate a deterministic NAIP-like demo scene so new users have something to cluster.

NAIP is 4-band uint8 (red, green, blue, near-infrared) at 1 m in UTM, with 0 as nodata. The scene
holds crop fields, forest, a river, roads and rooftops. It also has two traps that real
quarter-quads have: river pixels whose NIR is exactly 0 while red, green and blue are not (they
are valid), and a wedge-shaped collar where all four bands are 0 (nodata).

    python scripts/make_demo.py [--out PATH] [--size N] [--seed S] [--force]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "data" / "demo" / "naip_like.tif"

# Truth codes (0 = nodata) and their mean digital numbers as (red, green, blue, nir).
CLASSES = {1: "green crop", 2: "senescent crop", 3: "bare soil", 4: "forest", 5: "water", 6: "road", 7: "rooftop"}
MEANS = np.array([[0, 0, 0, 0], [70, 100, 70, 195], [150, 140, 100, 130], [140, 120, 100, 120], [47, 65, 55, 160],
                  [40, 52, 62, 4], [140, 138, 134, 136], [215, 212, 208, 205]], np.float32).T  # (band, class)
TEXTURE = np.array([0, 0.06, 0.05, 0.06, 0.22, 0.03, 0.03, 0.02], np.float32)  # relative, per class
ROWS = np.array([0, 0.05, 0.03, 0.04, 0, 0, 0, 0], np.float32)  # crop-row / tillage striping
NOISE = 3.0  # per-pixel sensor noise, DN


def _smooth(rng: np.random.Generator, n: int, scale: int, ndim: int = 2) -> np.ndarray:
    """Unit-variance noise, n long on each of `ndim` axes, with features ~`scale` px (cheap: upsampled)."""
    c = max(4, n // scale)
    z = ndimage.zoom(rng.standard_normal((c,) * ndim).astype(np.float32), n / c, order=3)[(slice(n),) * ndim]
    return (z - z.mean()) / z.std()


def _edges(rng: np.random.Generator, n: int, nb: int) -> np.ndarray:
    """Jittered block boundaries: section roads are straight but not evenly spaced."""
    e = np.linspace(0, n, nb + 1)
    e[1:-1] += rng.uniform(-0.2, 0.2, nb - 1) * n / nb
    return e.round().astype(int)


def make_scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (image uint8 (4, size, size) as R, G, B, NIR; truth uint8 (size, size), see CLASSES)."""
    rng, n = np.random.default_rng(seed), size
    yy = xx = np.arange(n)
    y, x = yy[:, None], xx[None, :]

    # Fields: a jittered grid of blocks, each split into 1-4 strips with gently warped borders.
    nb = max(2, round(n / 300))
    re, ce = _edges(rng, n, nb), _edges(rng, n, nb)
    by, bx = np.searchsorted(re, yy, "right") - 1, np.searchsorted(ce, xx, "right") - 1
    ty, tx = (yy - re[by]) / np.diff(re)[by], (xx - ce[bx]) / np.diff(ce)[bx]
    block = by[:, None] * nb + bx[None, :]
    vertical, nstrips = rng.random(nb * nb) < 0.5, rng.integers(1, 5, nb * nb)
    t = np.where(vertical[block], tx[None, :], ty[:, None]) + 0.015 * _smooth(rng, n, 200)
    field = block * 4 + np.clip((t * nstrips[block]).astype(int), 0, nstrips[block] - 1)
    nf = nb * nb * 4
    cls = rng.choice(np.array([1, 2, 3], np.uint8), nf, p=[0.5, 0.25, 0.25])[field]
    gain = rng.normal(1, 0.06, (2, nf)).astype(np.float32)[:, field]  # per-field vigour: (visible, nir)
    gain[1] *= gain[0]
    period = rng.uniform(5, 8)
    stripes = np.where(vertical[block], np.sin(2 * np.pi * x / period), np.sin(2 * np.pi * y / period))

    # A meandering river with a riparian tree belt, plus upland woodlots.
    centre = n * rng.uniform(0.55, 0.7) + 0.08 * n * np.sin(2 * np.pi * yy / (0.6 * n) + rng.uniform(0, 6.3))
    centre += 0.03 * n * _smooth(rng, n, 150, 1)
    half = 0.012 * n * np.clip(1 + 0.3 * _smooth(rng, n, 100, 1), 0.3, None)
    dist = np.abs(x - centre[:, None]) - half[:, None]
    water = dist < 0
    edge = 0.25 * _smooth(rng, n, 40)  # ragged, not elliptical, forest margins
    riparian = dist < 0.015 * n * (1.3 + 0.7 * _smooth(rng, n, 60) + edge)
    forest = (_smooth(rng, n, 200) + edge > 1.2) | riparian
    cls[forest], cls[water] = 4, 5
    gain[:, forest | water] = 1.0

    # Straight section roads (gravel or asphalt) on block boundaries, drawn over water as bridges.
    roads = []
    for axis, edges in ((0, re), (1, ce)):
        for pos in rng.choice(edges[1:-1], min(2, nb - 1), replace=False):
            w, g = int(rng.integers(4, 8)), rng.uniform(0.8, 1.2)
            m = np.broadcast_to(np.abs((y if axis == 0 else x) - pos) < w / 2, (n, n))
            cls[m], gain[:, m] = 6, g
            roads.append((axis, int(pos), w))

    # Farmsteads: a few bright roofs beside the roads, each casting a short shadow to the north.
    for _ in range(max(1, n // 400)):
        axis, pos, w = roads[rng.integers(len(roads))]
        along, side = int(rng.integers(50, n - 50)), rng.choice([-1, 1])
        for _ in range(rng.integers(2, 5)):
            h, wd = (int(v) for v in rng.integers(8, 26, 2))  # extent across and along the road
            a0 = pos + side * (w // 2 + int(rng.integers(6, 40))) - (h if side < 0 else 0)
            b0 = along + int(rng.integers(-40, 40))
            (r0, h), (c0, wd) = ((a0, h), (b0, wd)) if axis == 0 else ((b0, wd), (a0, h))
            r0, c0 = int(np.clip(r0, 4, n - h)), int(np.clip(c0, 0, n - wd))
            roof = (slice(r0, r0 + h), slice(c0, c0 + wd))
            if not water[roof].any():
                gain[:, r0 - 4 : r0, c0 : c0 + wd] *= 0.55
                cls[roof], gain[:, roof[0], roof[1]] = 7, rng.uniform(0.85, 1.1)

    # Radiometry: class means x per-field gain x texture x gentle illumination falloff, plus noise.
    crowns = ndimage.gaussian_filter(rng.standard_normal((n, n)).astype(np.float32), 2.5)
    tex = np.where(cls == 4, crowns / crowns.std(), _smooth(rng, n, 24))
    shade = (1 + 0.03 * _smooth(rng, n, 400)) * (1 + TEXTURE[cls] * tex + ROWS[cls] * stripes)
    img = MEANS[:, cls]
    img[:3] *= gain[0] * shade
    img[3] *= gain[1] * shade
    img += NOISE * rng.standard_normal(img.shape).astype(np.float32)
    img = np.rint(img, out=img)
    img[:3] = np.clip(img[:3], 1, 255)  # visible never 0, so no valid pixel is all-zero ...
    img[3] = np.clip(img[3], 0, 255)  # ... while water NIR may (and does) read exactly 0

    # Collar: a wedge along the west edge, as when a UTM quarter-quad is cut from a rotated frame.
    frac = rng.uniform(0.03, 0.05)
    collar = x < 2 * frac * n * (1 - y / n)
    img[:, collar], cls[collar] = 0, 0
    return img.astype(np.uint8), cls.astype(np.uint8)


def write_scene(path: str | Path, image: np.ndarray, *, crs: str = "EPSG:26914",
                origin: tuple[float, float] = (500000.0, 5300000.0), resolution: float = 1.0) -> None:
    """Write a (4, h, w) uint8 image as a tiled, DEFLATE-compressed NAIP-style GeoTIFF (nodata 0)."""
    _, h, w = image.shape
    profile = dict(driver="GTiff", width=w, height=h, count=4, dtype="uint8", crs=crs, nodata=0,
                   transform=from_origin(origin[0], origin[1], resolution, resolution),
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate", predictor=2,
                   interleave="pixel", photometric="RGB")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        dst.descriptions = ("red", "green", "blue", "nir")
        # NIR is a plain band, not alpha: the pipeline would otherwise read it as a mask.
        dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output GeoTIFF (default {DEFAULT_OUT})")
    p.add_argument("--size", type=int, default=1536, help="width and height in pixels (default 1536)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = p.parse_args(argv)
    if args.size < 128:
        p.error("--size must be at least 128")  # room for a few fields, roads and farmsteads
    if args.out.exists() and not args.force:
        print(f"{args.out} already exists (use --force to regenerate)")
        return 0
    start = time.perf_counter()
    image, _ = make_scene(args.size, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_scene(args.out, image)
    print(f"wrote {args.out} ({args.size}x{args.size}, seed {args.seed}) in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
